//! A raw HTTP/1.1 client: request bytes go on the wire exactly as written.
//!
//! HTTP client libraries normalize request targets (`/a/./b` → `/a/b`), which
//! would hide exactly the path tricks the gateway must handle, so tests speak
//! HTTP over a plain `TcpStream`. Responses are parsed just enough for
//! assertions: status line, headers, and a body framed by `Content-Length`,
//! `chunked`, or connection close. Every read has a deadline.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::DEADLINE;

/// A request to be serialized verbatim.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// `GET target`.
pub(crate) fn get(target: &str) -> Request {
    request("GET", target)
}

/// `POST target` with a `Content-Length` body.
pub(crate) fn post(target: &str, body: impl Into<Vec<u8>>) -> Request {
    request("POST", target).body(body)
}

/// Any method; `Host: paygate.test` is added unless a `host` header is given.
pub(crate) fn request(method: &str, target: &str) -> Request {
    Request {
        method: method.to_string(),
        target: target.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

impl Request {
    /// Adds a header line as given (name case and duplicates preserved).
    pub(crate) fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub(crate) fn bearer(self, token: &str) -> Request {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// Sets the body and a matching `Content-Length`.
    pub(crate) fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-length"));
        let len = self.body.len().to_string();
        self.header("Content-Length", &len)
    }

    /// The bytes put on the wire.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            out.extend_from_slice(b"Host: paygate.test\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub(crate) struct RawResponse {
    pub status: u16,
    /// Header names lowercased, values as sent (trimmed), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of a header, by case-insensitive name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of a header, by case-insensitive name.
    pub(crate) fn header_all(&self, name: &str) -> Vec<&str> {
        super::header_values(&self.headers, name)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; fails the test with the body when it is not JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Whether the upstream made this response (the test upstream marks every
    /// response it makes with `X-Upstream: 1`).
    pub(crate) fn answered_by_upstream(&self) -> bool {
        self.header("x-upstream") == Some("1")
    }
}

/// The status line and headers of a response, before its body.
#[derive(Debug, Clone)]
pub(crate) struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        super::header_values(&self.headers, name).into_iter().next()
    }

    pub(crate) fn is_chunked(&self) -> bool {
        self.headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    }

    pub(crate) fn content_length(&self) -> Option<usize> {
        self.header("content-length").map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad Content-Length {v:?}"))
        })
    }
}

/// One client connection speaking raw HTTP/1.1.
pub(crate) struct RawConn {
    stream: TcpStream,
    /// Bytes read from the socket but not yet consumed by a parser.
    buf: Vec<u8>,
}

impl RawConn {
    pub(crate) async fn connect(addr: SocketAddr) -> RawConn {
        let stream = timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connecting to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        RawConn::from_stream(stream)
    }

    pub(crate) fn from_stream(stream: TcpStream) -> RawConn {
        stream.set_nodelay(true).ok();
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Gives back the socket and whatever was read past the last parsed message.
    pub(crate) fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// Writes bytes verbatim.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match timeout(DEADLINE, self.stream.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write deadline")),
        }
    }

    /// Sends a request and reads its response.
    pub(crate) async fn request(&mut self, req: &Request) -> RawResponse {
        self.write(&req.to_bytes())
            .await
            .unwrap_or_else(|e| panic!("writing {} {}: {e}", req.method, req.target));
        self.read_response().await
    }

    /// Reads one full response; fails the test on EOF, garbage or deadline.
    pub(crate) async fn read_response(&mut self) -> RawResponse {
        self.try_read_response()
            .await
            .unwrap_or_else(|e| panic!("reading response: {e}"))
    }

    /// Reads one full response (not for responses to `HEAD`).
    pub(crate) async fn try_read_response(&mut self) -> io::Result<RawResponse> {
        let head = self.try_read_head().await?;
        let body = self.read_body(&head).await?;
        Ok(RawResponse {
            status: head.status,
            headers: head.headers,
            body,
        })
    }

    /// Reads the status line and headers only.
    pub(crate) async fn read_head(&mut self) -> ResponseHead {
        self.try_read_head()
            .await
            .unwrap_or_else(|e| panic!("reading response head: {e}"))
    }

    pub(crate) async fn try_read_head(&mut self) -> io::Result<ResponseHead> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill().await?;
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        parse_head(&head)
    }

    /// Reads the body that follows `head`, framed as the head says.
    pub(crate) async fn read_body(&mut self, head: &ResponseHead) -> io::Result<Vec<u8>> {
        if head.status < 200 || head.status == 204 || head.status == 304 {
            return Ok(Vec::new());
        }
        if head.is_chunked() {
            let mut body = Vec::new();
            while let Some(chunk) = self.try_read_chunk().await? {
                body.extend_from_slice(&chunk);
            }
            return Ok(body);
        }
        if let Some(len) = head.content_length() {
            return self.read_exact(len).await;
        }
        self.read_to_close().await
    }

    /// Reads the next chunk of a chunked body; `None` after the last chunk (and
    /// its trailers) was consumed.
    pub(crate) async fn read_chunk(&mut self) -> Option<Vec<u8>> {
        self.try_read_chunk()
            .await
            .unwrap_or_else(|e| panic!("reading a chunk: {e}"))
    }

    async fn try_read_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let line = self.read_line().await?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            // Trailers, then an empty line.
            while !self.read_line().await?.is_empty() {}
            return Ok(None);
        }
        let data = self.read_exact(size).await?;
        let crlf = self.read_line().await?;
        if !crlf.is_empty() {
            return Err(invalid(format!("chunk not followed by CRLF: {crlf:?}")));
        }
        Ok(Some(data))
    }

    /// Reads until the peer closes; errors (a reset) end the read too, and are
    /// returned so a caller can tell a clean close from a reset.
    pub(crate) async fn read_to_close(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match self.fill().await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Ok(std::mem::take(&mut self.buf))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Returns buffered bytes, or waits for the next bytes from the socket.
    pub(crate) async fn read_some(&mut self) -> io::Result<Vec<u8>> {
        if self.buf.is_empty() {
            self.fill().await?;
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Reads exactly `n` bytes.
    pub(crate) async fn read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads one CRLF-terminated line, without the CRLF.
    async fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes into the buffer; EOF is `UnexpectedEof`.
    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = match timeout(DEADLINE, self.stream.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no bytes within {DEADLINE:?}; unparsed so far: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ))
            }
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed; unparsed so far: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// Opens a connection, sends one request, reads its response.
pub(crate) async fn send(addr: SocketAddr, req: Request) -> RawResponse {
    RawConn::connect(addr).await.request(&req).await
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn parse_head(head: &[u8]) -> io::Result<ResponseHead> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_string();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!(
            "not an HTTP/1 status line: {status_line:?}"
        )));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(ResponseHead { status, headers })
}
