//! The tests' HTTP/1.1 client: one request per connection, plain TCP, optionally from a
//! chosen local address (127.0.0.2, 127.0.0.3… to appear as different sources), and able
//! to write bytes no well-behaved client would ([`exchange`]) or to hold a connection
//! open ([`connect`]). It exists for the end-to-end tests, which need requests byte for
//! byte as written; the CLI and the doctor talk through [`crate::client`] (https too).
#![allow(clippy::indexing_slicing)]

use super::dechunk as dechunk_to;
use crate::client::MAX_RESPONSE_BYTES;
use socket2::{Domain, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a request may take, connection to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An `http://host:port/path?query` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

pub fn parse_url(url: &str) -> io::Result<Url> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {why}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs are supported"))?;
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| bad("bad port"))?)
        }
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Url {
        host: host.to_string(),
        port,
        target: target.to_string(),
    })
}

/// Sends one request and reads the whole response (the connection is closed after),
/// given up with a `TimedOut` error when it has not all come within [`DEFAULT_TIMEOUT`]
/// of the start (a silent server, a trickling or endless body).
pub fn request(
    method: &str,
    url: &Url,
    headers: &[(&str, &[u8])],
    body: &[u8],
    source: Option<IpAddr>,
) -> io::Result<Response> {
    let timeout = DEFAULT_TIMEOUT;
    let mut raw = format!(
        "{method} {} HTTP/1.1\r\nhost: {}:{}\r\nconnection: close\r\n",
        url.target, url.host, url.port
    )
    .into_bytes();
    for (name, value) in headers {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method == "POST" {
        raw.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    let deadline = Instant::now() + timeout;
    let mut stream = connect_within(&url.host, url.port, source, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&raw)?;
    read_response_by(&mut stream, deadline)
}

/// Writes `raw` as is and reads the response (within [`DEFAULT_TIMEOUT`]).
pub fn exchange(host: &str, port: u16, source: Option<IpAddr>, raw: &[u8]) -> io::Result<Response> {
    let mut stream = connect(host, port, source)?;
    stream.write_all(raw)?;
    read_response(&mut stream)
}

/// Reads one response from `stream` (within [`DEFAULT_TIMEOUT`]).
pub fn read_response(stream: &mut TcpStream) -> io::Result<Response> {
    read_response_by(stream, Instant::now() + DEFAULT_TIMEOUT)
}

/// Reads one response from `stream`, all of it by `deadline` and at most
/// [`MAX_RESPONSE_BYTES`] of body.
pub fn read_response_by(stream: &mut TcpStream, deadline: Instant) -> io::Result<Response> {
    // Stop as soon as the response is complete: waiting for the server to close would
    // cost Envoy's delayed-close timeout (1 s) on every request.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(&buf));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out(&buf))
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        skip_interim(&mut buf);
        if is_complete(&buf) {
            break;
        }
        if buf.len() > MAX_RESPONSE_BYTES + 64 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the response is over {MAX_RESPONSE_BYTES} bytes: not read further"),
            ));
        }
    }
    parse_response(&buf)
}

fn timed_out(read: &[u8]) -> io::Error {
    let what = if read.is_empty() {
        "no answer"
    } else {
        "the response did not end"
    };
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} in time"))
}

/// Drops the interim (1xx) answers at the start of `buf`: RFC 9110 §15.2 has a
/// client read past them to the final one, whether it asked for them or not. (101
/// is final: nothing here upgrades.)
fn skip_interim(buf: &mut Vec<u8>) {
    while buf.starts_with(b"HTTP/1.")
        && buf.get(8..10) == Some(b" 1")
        && buf.get(10..12) != Some(b"01")
    {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        buf.drain(..end + 4);
    }
}

/// True when `buf` holds a whole response whose end is known without EOF.
fn is_complete(buf: &[u8]) -> bool {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let rest = &buf[head_end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return dechunk(rest).is_some();
    }
    head.split("\r\n")
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|len| rest.len() >= len)
}

/// A connection to `host:port`, from `source` when given ([`DEFAULT_TIMEOUT`] to read).
pub fn connect(host: &str, port: u16, source: Option<IpAddr>) -> io::Result<TcpStream> {
    connect_within(host, port, source, Duration::from_secs(5))
}

/// [`connect`], given up after `timeout`.
fn connect_within(
    host: &str,
    port: u16,
    source: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let target: SocketAddr = (host, port)
        .to_socket_addrs()?
        .find(|a| source.is_none_or(|s| s.is_ipv4() == a.is_ipv4()))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {host}")))?;
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    if let Some(source) = source {
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    socket
        .connect_timeout(&target.into(), timeout)
        .map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                io::Error::new(io::ErrorKind::TimedOut, "no connection in time")
            }
            _ => e,
        })?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
    Ok(stream)
}

/// Parses a complete HTTP/1.1 response (content-length, chunked, or until close).
pub fn parse_response(buf: &[u8]) -> io::Result<Response> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no complete response head"))?;
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &buf[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest.get(..len)
            .ok_or_else(|| bad("body shorter than content-length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A whole chunked body at the start of `rest`, if it is all there.
fn dechunk(rest: &[u8]) -> Option<Vec<u8>> {
    dechunk_to(rest, usize::MAX)
        .ok()
        .flatten()
        .map(|(body, _)| body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_target() {
        let u = parse_url("http://127.0.0.1:10000/wechat?a=1").expect("url");
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("127.0.0.1", 10000, "/wechat?a=1")
        );
        let u = parse_url("http://localhost").expect("url");
        assert_eq!((u.port, u.target.as_str()), (80, "/"));
        let u = parse_url("http://[::1]:8080/x").expect("url");
        assert_eq!((u.host.as_str(), u.port), ("::1", 8080));
        assert!(parse_url("https://x/").is_err());
    }

    #[test]
    fn interim_answers_are_read_past_and_101_is_final() {
        let mut buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\nHTTP/1.1 200 OK\r\n".to_vec();
        skip_interim(&mut buf);
        assert_eq!(buf, b"HTTP/1.1 200 OK\r\n");
        let mut partial = b"HTTP/1.1 100 Cont".to_vec();
        skip_interim(&mut partial);
        assert_eq!(partial, b"HTTP/1.1 100 Cont", "an unfinished head waits");
        let mut upgrade = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
        skip_interim(&mut upgrade);
        assert!(upgrade.starts_with(b"HTTP/1.1 101"));
    }

    #[test]
    fn responses_with_length_chunks_or_close() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx: y\r\n\r\nabcdef")
            .expect("ok");
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("X")),
            (200, &b"abc"[..], Some("y"))
        );
        let r = parse_response(b"HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").expect("ok");
        assert_eq!(r.body, b"abcde");
        let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\nuntil close").expect("ok");
        assert_eq!(r.body, b"until close");
    }
}
