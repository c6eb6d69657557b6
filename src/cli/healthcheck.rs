//! `paygate healthcheck`: asks the running gateway for its liveness endpoint
//! and exits 0 when it answers 200, 1 otherwise. A container `HEALTHCHECK`
//! runs it, so it needs no curl or wget in the image: one plain HTTP/1.1
//! request over a std TCP socket, each step bounded by the timeout.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;

/// The status line is all that is read; a health answer is a few dozen bytes.
const MAX_HEAD: usize = 1024;

/// Which listener to ask, and the path that answers liveness there.
pub(super) fn target(config: &Config, public: bool) -> Result<(SocketAddr, &'static str), String> {
    match &config.admin {
        Some(admin) if !public => Ok((reachable(admin.listen), "/healthz")),
        _ if config.server.tls.is_some() => Err(
            "the public listener speaks TLS; configure [admin] (plain HTTP) for the health check"
                .into(),
        ),
        _ => Ok((reachable(config.server.listen), "/_paygate/healthz")),
    }
}

/// A listener bound to every address (`0.0.0.0`, `[::]`) is asked on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// `GET path` on `addr`; Ok with the status line when it is a 200.
pub(super) fn check(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{addr}: {e}"))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: paygate-healthcheck\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("no answer from {addr}{path}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or("").trim().to_string();
    let status = status_line.split(' ').nth(1);
    if status_line.starts_with("HTTP/1.") && status == Some("200") {
        Ok(status_line)
    } else if status_line.is_empty() {
        Err(format!("http://{addr}{path}: closed without an answer"))
    } else {
        Err(format!("http://{addr}{path}: {status_line}"))
    }
}

pub(super) fn run(config: &Config, public: bool, timeout: Duration) -> ExitCode {
    let (addr, path) = match target(config, public) {
        Ok(target) => target,
        Err(e) => return super::fail(&format!("unhealthy: {e}")),
    };
    match check(addr, path, timeout) {
        Ok(status) => {
            super::out(format_args!("healthy: http://{addr}{path} {status}\n"));
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&format!("unhealthy: {e}")),
    }
}
