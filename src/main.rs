//! The `paygate` binary: all behaviour lives in the library; see `cli/mod.rs`.

fn main() -> std::process::ExitCode {
    paygate::main()
}
