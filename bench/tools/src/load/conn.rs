//! One keep-alive connection of the load generator: a non-blocking socket that writes
//! its request and reads its response as the poll loop lets it, and the response
//! parser that says when a response is whole.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Instant;
use wechat::http1;

/// One connection's state.
pub(super) struct Conn {
    pub(super) stream: Option<TcpStream>,
    /// Bytes of the current request still to write.
    pub(super) out: Vec<u8>,
    pub(super) written: usize,
    /// Bytes of the current response read so far.
    pub(super) inp: Vec<u8>,
    /// The request in flight: its index and when it was sent.
    pub(super) current: Option<(usize, Instant)>,
    /// Responses read on this connection since it was made.
    pub(super) served: usize,
    /// The request in flight was sent again on a new connection already.
    pub(super) retried: bool,
}

impl Conn {
    pub(super) fn idle() -> Conn {
        Conn {
            stream: None,
            out: Vec::new(),
            written: 0,
            inp: Vec::new(),
            current: None,
            served: 0,
            retried: false,
        }
    }

    /// Writes what the socket takes now of the request in flight.
    pub(super) fn write_some(&mut self) {
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        while self.written < self.out.len() {
            match s.write(&self.out[self.written..]) {
                Ok(0) => break,
                Ok(k) => self.written += k,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break, // the read side will see the connection end
            }
        }
    }

    /// Reads all the socket has now; true when the connection ended.
    pub(super) fn read_available(&mut self, buf: &mut [u8]) -> bool {
        let Some(s) = self.stream.as_mut() else {
            return false;
        };
        loop {
            match s.read(buf) {
                Ok(0) => return true,
                Ok(k) => self.inp.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }
}

/// A new non-blocking connection, or `None` when it cannot be made.
pub(super) fn connect(addr: &str) -> Option<TcpStream> {
    TcpStream::connect(addr).ok().inspect(|s| {
        let _ = s.set_nodelay(true);
        let _ = s.set_nonblocking(true);
    })
}

pub(super) enum Parsed {
    Incomplete,
    Done { status: u16, close: bool },
    Bad,
}

/// A whole response at the start of `buf`?
pub(super) fn parse_response(buf: &[u8], head_request: bool) -> Parsed {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > 64 * 1024 {
            Parsed::Bad
        } else {
            Parsed::Incomplete
        };
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Bad;
    };
    let mut lines = head.split("\r\n");
    let status: u16 = match lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
    {
        Some(s) => s,
        None => return Parsed::Bad,
    };
    let (mut length, mut chunked, mut close) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (
            name.trim().to_ascii_lowercase(),
            value.trim().to_ascii_lowercase(),
        );
        match name.as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => close = value.contains("close"),
            _ => {}
        }
    }
    let body = &buf[end + 4..];
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return Parsed::Done { status, close };
    }
    if chunked {
        return match http1::dechunk(body, 16 * 1024 * 1024) {
            Ok(Some(_)) => Parsed::Done { status, close },
            Ok(None) => Parsed::Incomplete,
            Err(_) => Parsed::Bad,
        };
    }
    match length {
        Some(n) if body.len() >= n => Parsed::Done { status, close },
        Some(_) => Parsed::Incomplete,
        // No length: the body ends with the connection (read to EOF).
        None => Parsed::Incomplete,
    }
}
