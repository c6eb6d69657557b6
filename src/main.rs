//! The `paygate` binary: all behaviour lives in the library; see `cli.rs`.

fn main() -> std::process::ExitCode {
    paygate::cli::main()
}
