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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_every_address_is_asked_on_loopback() {
        let ask = |addr: &str| reachable(addr.parse().unwrap()).to_string();
        assert_eq!(ask("0.0.0.0:9090"), "127.0.0.1:9090");
        assert_eq!(ask("[::]:9090"), "[::1]:9090");
        assert_eq!(ask("10.1.2.3:9090"), "10.1.2.3:9090");
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let error = check(addr, "/healthz", Duration::from_secs(1)).unwrap_err();
        assert!(
            error.starts_with(&format!("cannot connect to {addr}")),
            "{error}"
        );
    }

    #[test]
    fn only_a_200_status_line_is_healthy() {
        use std::io::BufRead;
        let answer = |reply: &'static str| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = std::io::BufReader::new(stream);
                let mut line = String::new();
                // Read the request head, then answer.
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                reader.get_mut().write_all(reply.as_bytes()).unwrap();
            });
            let result = check(addr, "/healthz", Duration::from_secs(5));
            server.join().unwrap();
            result
        };
        assert_eq!(
            answer("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").as_deref(),
            Ok("HTTP/1.1 200 OK")
        );
        let error = answer("HTTP/1.1 503 Service Unavailable\r\n\r\n").unwrap_err();
        assert!(
            error.ends_with("HTTP/1.1 503 Service Unavailable"),
            "{error}"
        );
        let error = answer("").unwrap_err();
        assert!(error.ends_with("closed without an answer"), "{error}");
        assert!(answer("SSH-2.0-OpenSSH\r\n").is_err());
    }
}
