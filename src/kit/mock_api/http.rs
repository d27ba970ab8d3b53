//! mock-api's HTTP/1.1 server: keep-alive, `content-length` and chunked bodies,
//! `expect: 100-continue`, and a way to close a connection with no byte of response.

use percent_encoding::percent_decode;
use serde_json::json;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::time::Duration;

/// What to do with a request.
pub(super) enum Outcome {
    Reply {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Close the connection without a byte of response.
    Drop,
}

pub(super) const JSON: &str = "application/json; charset=utf-8";

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) struct Request {
    pub(super) method: String,
    pub(super) path: String,
    query: String,
    pub(super) body: Vec<u8>,
    keep_alive: bool,
    /// The caller's address, as WeChat sees the egress IP.
    pub(super) peer: Option<IpAddr>,
}

impl Request {
    /// The first value of `name` in the query, percent- and `+`-decoded.
    pub(super) fn query(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key) == name).then(|| decode(value))
        })
    }
}

fn decode(text: &str) -> String {
    let plus_as_space = text.replace('+', " ");
    percent_decode(plus_as_space.as_bytes())
        .decode_utf8_lossy()
        .into_owned()
}

/// Why no request could be read: the connection ended, or the client sent something
/// to answer with this status (and then close).
enum ReadError {
    Closed,
    Bad(u16, &'static str),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Closed
    }
}

struct Connection {
    stream: TcpStream,
    /// Bytes read but not yet used (the start of a pipelined request, say).
    buf: Vec<u8>,
}

/// Serves requests on `stream` with `handle` until the client closes (or a reply says
/// not to keep the connection alive).
pub(super) fn serve_connection(stream: TcpStream, handle: &dyn Fn(&Request) -> Outcome) {
    if stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IDLE_TIMEOUT)).is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let mut conn = Connection {
        stream,
        buf: Vec::new(),
    };
    loop {
        let req = match conn.read_request() {
            Ok(req) => Request { peer, ..req },
            Err(ReadError::Closed) => return,
            Err(ReadError::Bad(status, why)) => {
                let body = json!({ "errcode": -1, "errmsg": why }).to_string();
                let _ = conn.write_response(status, JSON, body.as_bytes(), false);
                return;
            }
        };
        match handle(&req) {
            Outcome::Drop => {
                let _ = conn.stream.shutdown(Shutdown::Both);
                return;
            }
            Outcome::Reply {
                status,
                content_type,
                body,
            } => {
                if conn
                    .write_response(status, content_type, &body, req.keep_alive)
                    .is_err()
                    || !req.keep_alive
                {
                    return;
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Connection {
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

    fn read_request(&mut self) -> Result<Request, ReadError> {
        let head_end = loop {
            // Empty lines before a request line are allowed (RFC 9112 §2.2).
            let blank = self
                .buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            self.buf.drain(..blank);
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Bad(431, "request head too large"));
            }
            self.fill()?;
        };
        let head = self.buf.get(..head_end).unwrap_or_default();
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
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let connection = header("connection").unwrap_or_default();
        let keep_alive = if version == "HTTP/1.1" {
            !connection.contains("close")
        } else {
            connection.contains("keep-alive")
        };
        let chunked = header("transfer-encoding").is_some_and(|te| te.contains("chunked"));
        let length = match header("content-length") {
            Some(_) if chunked => None,
            Some(v) => Some(
                v.parse::<usize>()
                    .map_err(|_| ReadError::Bad(400, "bad content-length"))?,
            ),
            None => None,
        };
        if length.is_some_and(|n| n > MAX_BODY) {
            return Err(ReadError::Bad(413, "body too large"));
        }
        let expects_continue = header("expect").is_some_and(|e| e == "100-continue");
        let (method, target) = (method.to_string(), target.to_string());
        self.buf.drain(..head_end + 4);

        let mut continued = false;
        let body = loop {
            if chunked {
                match dechunk(&self.buf).map_err(|why| ReadError::Bad(400, why))? {
                    Some((body, used)) => {
                        self.buf.drain(..used);
                        break body;
                    }
                    None if self.buf.len() > MAX_BODY + MAX_HEAD => {
                        return Err(ReadError::Bad(413, "body too large"));
                    }
                    None => {}
                }
            } else {
                let n = length.unwrap_or(0);
                if self.buf.len() >= n {
                    break self.buf.drain(..n).collect();
                }
            }
            if expects_continue && !continued {
                self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
                continued = true;
            }
            self.fill()?;
        };

        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        Ok(Request {
            path: path.to_string(),
            query: query.to_string(),
            method,
            body,
            keep_alive,
            peer: None,
        })
    }

    fn write_response(
        &mut self,
        status: u16,
        content_type: &str,
        body: &[u8],
        keep_alive: bool,
    ) -> io::Result<()> {
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            505 => "HTTP Version Not Supported",
            _ => "Unknown",
        };
        let mut out = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{}\r\n",
            body.len(),
            if keep_alive { "" } else { "connection: close\r\n" }
        )
        .into_bytes();
        out.extend_from_slice(body);
        self.stream.write_all(&out)?;
        self.stream.flush()
    }
}

/// Decodes a chunked body at the start of `buf`: the body and the bytes it took
/// (trailers included), `None` while incomplete.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, &'static str> {
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
            // Trailer fields, up to an empty line.
            loop {
                let rest = buf.get(pos..).unwrap_or_default();
                let Some(end) = find(rest, b"\r\n") else {
                    return Ok(None);
                };
                pos += end + 2;
                if end == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if body.len().saturating_add(size) > MAX_BODY {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_with_their_length() {
        let raw = b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\nGET";
        let (body, used) = dechunk(raw).expect("valid").expect("complete");
        assert_eq!(body, b"abcde");
        assert_eq!(raw.get(used..), Some(&b"GET"[..]));
        assert!(dechunk(b"3\r\nab").expect("valid").is_none());
        assert!(dechunk(b"zz\r\n").is_err());
    }

    #[test]
    fn query_values_are_decoded() {
        let req = Request {
            method: "GET".into(),
            path: "/".into(),
            query: "a=1&access%5Ftoken=x%2By+z&a=2".into(),
            body: Vec::new(),
            keep_alive: true,
            peer: None,
        };
        assert_eq!(req.query("a").as_deref(), Some("1"));
        assert_eq!(req.query("access_token").as_deref(), Some("x+y z"));
        assert_eq!(req.query("b"), None);
    }
}
