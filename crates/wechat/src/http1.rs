//! The one HTTP/1.1 request reader of the native tools (mock-api, the bench's
//! upstream and ext_authz service, every backend of the tests) and the chunked-body
//! decoder the client shares: keep-alive, `content-length` and chunked bodies,
//! `expect: 100-continue`, empty lines before a request, bounded sizes.
//!
//! Written by hand because the tests and the bench need what no well-kept server
//! crate exposes: byte-exact control of the connection (closing it with no byte of
//! response, answering with trailers, a thread per connection so one stalled
//! request holds up no other), and reading chunked trailers.

pub mod client;

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// A request as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client wants the connection kept open after the response.
    pub keep_alive: bool,
}

impl Request {
    /// The first value of `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path and the query (without `?`).
    pub fn path_and_query(&self) -> (&str, &str) {
        self.target.split_once('?').unwrap_or((&self.target, ""))
    }
}

/// Why no request could be read: the connection ended, or the client sent something
/// to be answered with this status (and then closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    Closed,
    Bad(u16, &'static str),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Closed
    }
}

/// Size limits for what is read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub head: usize,
    pub body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head: 64 * 1024,
            body: 1024 * 1024,
        }
    }
}

/// A server's side of one connection.
pub struct Connection {
    pub stream: TcpStream,
    /// Bytes read but not yet used (the start of a pipelined request, say).
    buf: Vec<u8>,
    limits: Limits,
}

/// What a request head says about its body.
struct Head {
    request: Request,
    chunked: bool,
    length: usize,
    expects_continue: bool,
}

impl Connection {
    pub fn new(stream: TcpStream, limits: Limits) -> Connection {
        Connection {
            stream,
            buf: Vec::new(),
            limits,
        }
    }

    /// Reads more bytes into `buf`; an end of stream is `Closed`.
    fn fill(&mut self) -> Result<(), ReadError> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        self.buf
            .extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(())
    }

    /// The next request on the connection.
    pub fn read_request(&mut self) -> Result<Request, ReadError> {
        let head_end = self.read_head()?;
        let head = parse_head(self.buf.get(..head_end).unwrap_or_default(), self.limits)?;
        self.buf.drain(..head_end + 4);
        let body = self.read_body(&head)?;
        Ok(Request {
            body,
            ..head.request
        })
    }

    /// Reads until a whole head is buffered; where it ends.
    fn read_head(&mut self) -> Result<usize, ReadError> {
        loop {
            // Empty lines before a request line are allowed (RFC 9112 §2.2).
            let blank = self
                .buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            self.buf.drain(..blank);
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                return Ok(end);
            }
            if self.buf.len() > self.limits.head {
                return Err(ReadError::Bad(431, "request head too large"));
            }
            self.fill()?;
        }
    }

    fn read_body(&mut self, head: &Head) -> Result<Vec<u8>, ReadError> {
        let mut continued = false;
        loop {
            if head.chunked {
                match dechunk(&self.buf, self.limits.body)
                    .map_err(|why| ReadError::Bad(400, why))?
                {
                    Some((body, used)) => {
                        self.buf.drain(..used);
                        return Ok(body);
                    }
                    None if self.buf.len() > self.limits.body + self.limits.head => {
                        return Err(ReadError::Bad(413, "body too large"));
                    }
                    None => {}
                }
            } else if self.buf.len() >= head.length {
                return Ok(self.buf.drain(..head.length).collect());
            }
            if head.expects_continue && !continued {
                self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
                continued = true;
            }
            self.fill()?;
        }
    }

    /// Writes a response with these headers (`content-length` added) and `body`.
    pub fn write_response(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        keep_alive: bool,
    ) -> io::Result<()> {
        let mut out = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\n", body.len()));
        if !keep_alive {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(body);
        self.stream.write_all(&out)?;
        self.stream.flush()
    }
}

/// Parses a request head (without its final blank line).
fn parse_head(head: &[u8], limits: Limits) -> Result<Head, ReadError> {
    let head = std::str::from_utf8(head).map_err(|_| ReadError::Bad(400, "bad request"))?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
        request_line.next(),
    ) else {
        return Err(ReadError::Bad(400, "bad request line"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ReadError::Bad(505, "HTTP version not supported"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(ReadError::Bad(400, "bad header"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let request = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Vec::new(),
        keep_alive: false,
    };
    let lower = |name: &str| request.header(name).map(str::to_ascii_lowercase);
    let connection = lower("connection").unwrap_or_default();
    let keep_alive = if version == "HTTP/1.1" {
        !connection.contains("close")
    } else {
        connection.contains("keep-alive")
    };
    let chunked = lower("transfer-encoding").is_some_and(|te| te.contains("chunked"));
    let length = match request.header("content-length") {
        Some(v) if !chunked => v
            .parse::<usize>()
            .map_err(|_| ReadError::Bad(400, "bad content-length"))?,
        _ => 0,
    };
    if length > limits.body {
        return Err(ReadError::Bad(413, "body too large"));
    }
    let expects_continue = lower("expect").is_some_and(|e| e == "100-continue");
    Ok(Head {
        request: Request {
            keep_alive,
            ..request
        },
        chunked,
        length,
        expects_continue,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The usual reason phrase of a status.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// Decodes a chunked body at the start of `buf`: the body and the bytes it took
/// (trailers included), `None` while incomplete.
pub fn dechunk(buf: &[u8], max_body: usize) -> Result<Option<(Vec<u8>, usize)>, &'static str> {
    let mut body = Vec::new();
    let mut pos = 0usize;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(line_end) = find(rest, b"\r\n") else {
            return if rest.len() > 1024 {
                Err("bad chunk size")
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(rest.get(..line_end).unwrap_or_default())
            .map_err(|_| "bad chunk size")?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        pos += line_end + 2;
        if size == 0 {
            return Ok(skip_trailers(buf, pos).map(|end| (body, end)));
        }
        if body.len().saturating_add(size) > max_body {
            return Err("body too large");
        }
        let Some(data) = buf.get(pos..pos + size) else {
            return Ok(None);
        };
        body.extend_from_slice(data);
        pos += size;
        match buf.get(pos..pos + 2) {
            None => return Ok(None),
            Some(b"\r\n") => pos += 2,
            Some(_) => return Err("bad chunk"),
        }
    }
}

/// Where the trailer fields starting at `pos` end (after their empty line), once
/// they are all there.
fn skip_trailers(buf: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let end = find(buf.get(pos..)?, b"\r\n")?;
        pos += end + 2;
        if end == 0 {
            return Some(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn chunked_bodies_decode_with_their_length() {
        let raw = b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\nGET";
        let (body, used) = dechunk(raw, 100).expect("valid").expect("complete");
        assert_eq!(body, b"abcde");
        assert_eq!(raw.get(used..), Some(&b"GET"[..]));
        assert!(dechunk(b"3\r\nab", 100).expect("valid").is_none());
        assert!(dechunk(b"zz\r\n", 100).is_err());
        assert!(dechunk(b"3\r\nabc\r\n0\r\n\r\n", 2).is_err());
    }

    /// Sends `raw` to a connection and reads what the server side reads.
    fn read(raw: &[u8]) -> (Vec<Result<Request, ReadError>>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        client.write_all(raw).expect("write");
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let (stream, _) = listener.accept().expect("accept");
        let mut conn = Connection::new(
            stream,
            Limits {
                head: 256,
                body: 64,
            },
        );
        let mut got = Vec::new();
        loop {
            let r = conn.read_request();
            let end = r.is_err();
            got.push(r);
            if end {
                break;
            }
        }
        drop(conn);
        let mut echoed = Vec::new();
        let _ = client.read_to_end(&mut echoed);
        (got, echoed)
    }

    #[test]
    fn pipelined_requests_with_both_body_framings_are_read_in_order() {
        let (got, _) = read(
            b"\r\nPOST /a?x=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
              POST /b HTTP/1.1\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\nde\r\n0\r\n\r\n",
        );
        let a = got[0].as_ref().expect("first");
        assert_eq!(
            (a.method.as_str(), a.path_and_query()),
            ("POST", ("/a", "x=1"))
        );
        assert_eq!((a.body.as_slice(), a.keep_alive), (&b"abc"[..], true));
        let b = got[1].as_ref().expect("second");
        assert_eq!((b.body.as_slice(), b.keep_alive), (&b"de"[..], false));
        assert_eq!(got[2], Err(ReadError::Closed));
    }

    #[test]
    fn oversized_and_malformed_requests_get_their_status() {
        for (raw, status) in [
            (&b"POST / HTTP/1.1\r\ncontent-length: 65\r\n\r\n"[..], 413),
            (b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n", 400),
            (b"GET / HTTP/2\r\n\r\n", 505),
            (b"GET /\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
        ] {
            let (got, _) = read(raw);
            assert!(
                matches!(got[0], Err(ReadError::Bad(s, _)) if s == status),
                "{}: {:?}",
                String::from_utf8_lossy(raw),
                got[0]
            );
        }
        let (got, _) = read(&[b'x'; 300]);
        assert!(matches!(got[0], Err(ReadError::Bad(431, _))));
    }

    #[test]
    fn a_client_that_expects_100_continue_is_told_to_go_on() {
        let (got, echoed) =
            read(b"POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(got[0].as_ref().expect("read").body, b"ok");
        // The body was already there: no need to ask for it.
        assert!(echoed.is_empty());
    }
}
