//! The `process_*` metrics every Prometheus client library exports (memory,
//! CPU, file descriptors, threads, start time), read from `/proc` when
//! `/metrics` is scraped. Linux only; elsewhere the family is absent.

use std::fmt::Write;

/// `/proc` reports CPU times in clock ticks of `USER_HZ`, which the kernel
/// fixes at 100 for user space on every architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// Appends the family in the text exposition format.
pub(crate) fn render(out: &mut String) {
    let Some(p) = read() else {
        return;
    };
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    metric(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds,
    );
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        p.resident_bytes as f64,
    );
    metric(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        p.virtual_bytes as f64,
    );
    metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        p.start_time_seconds,
    );
    metric(
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
        p.threads as f64,
    );
    if let Some(open) = p.open_fds {
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            open as f64,
        );
    }
    if let Some(max) = p.max_fds {
        metric(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max as f64,
        );
    }
}

struct Process {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    start_time_seconds: f64,
    threads: u64,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

fn read() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let mut process = parse(&stat, &status, &boot)?;
    process.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        // The directory handle being read is one of the entries.
        .map(|entries| entries.count().saturating_sub(1) as u64);
    process.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| max_open_files(&limits));
    Some(process)
}

/// `/proc/self/stat` (CPU, threads, start, virtual size), `/proc/self/status`
/// (resident size, in kB: no page size needed) and `/proc/stat` (boot time).
fn parse(stat: &str, status: &str, boot: &str) -> Option<Process> {
    // The command name (field 2) may hold spaces and parentheses: count the
    // fields after its closing one. Field 3 is then index 0.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let cpu_ticks = field(14)? + field(15)?;
    let threads = field(20)?;
    let start_ticks = field(22)?;
    let virtual_bytes = field(23)?;
    let resident_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())?;
    let boot_time = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    Some(Process {
        cpu_seconds: cpu_ticks as f64 / TICKS_PER_SECOND,
        resident_bytes: resident_kb * 1024,
        virtual_bytes,
        start_time_seconds: boot_time as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        threads,
        open_fds: None,
        max_fds: None,
    })
}

/// The soft limit on `Max open files`; `None` when unlimited.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (pay gate) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 50 0 0 20 0 7 0 123456 98765432 2500 18446744073709551615";
        let status = "Name:\tpaygate\nVmRSS:\t   10240 kB\nThreads:\t7\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let p = parse(stat, status, boot).unwrap();
        assert_eq!(p.cpu_seconds, 2.0);
        assert_eq!(p.threads, 7);
        assert_eq!(p.virtual_bytes, 98_765_432);
        assert_eq!(p.resident_bytes, 10_485_760);
        assert_eq!(p.start_time_seconds, 1_700_000_000.0 + 1234.56);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 1048576              files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn renders_this_process() {
        let mut out = String::new();
        render(&mut out);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(
                out.contains(&format!("\n{name} ")),
                "{name} missing:\n{out}"
            );
        }
    }
}
