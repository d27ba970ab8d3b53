//! mock-api's HTTP/1.1 server on [`crate::http1`]: keep-alive, a way to close a
//! connection with no byte of response, and one to never answer.

use crate::http1::{Connection, Limits, ReadError};
use percent_encoding::percent_decode;
use serde_json::json;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// What to do with a request.
pub(super) enum Outcome {
    Reply {
        status: u16,
        /// `content-type` first, then any others.
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Close the connection without a byte of response.
    Drop,
    /// Answer nothing, and keep the connection open until the client closes it.
    Hang,
}

pub(super) const JSON: &str = "application/json; charset=utf-8";

const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a hung call keeps its connection at most (then the thread ends).
const HANG_AT_MOST: Duration = Duration::from_secs(30 * 60);

/// Room for a 10 MiB media upload and more (so that one over the limit gets WeChat's
/// 40006 rather than a refusal of the server's).
const LIMITS: Limits = Limits {
    head: 64 * 1024,
    body: 24 * 1024 * 1024,
};

pub(super) struct Request {
    pub(super) method: String,
    pub(super) path: String,
    query: String,
    pub(super) body: Vec<u8>,
    pub(super) content_type: Option<String>,
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
    let mut conn = Connection::new(stream, LIMITS);
    loop {
        let req = match conn.read_request() {
            Ok(req) => {
                let (path, query) = req.path_and_query();
                Request {
                    method: req.method.clone(),
                    path: path.to_string(),
                    query: query.to_string(),
                    content_type: req.header("content-type").map(str::to_string),
                    body: req.body,
                    keep_alive: req.keep_alive,
                    peer,
                }
            }
            Err(ReadError::Closed) => return,
            Err(ReadError::Bad(status, why)) => {
                let body = json!({ "errcode": -1, "errmsg": why }).to_string();
                let _ =
                    conn.write_response(status, &[("content-type", JSON)], body.as_bytes(), false);
                return;
            }
        };
        match handle(&req) {
            Outcome::Drop => {
                let _ = conn.stream.shutdown(Shutdown::Both);
                return;
            }
            Outcome::Hang => return hang(&mut conn.stream),
            Outcome::Reply {
                status,
                headers,
                body,
            } => {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                if conn
                    .write_response(status, &headers, &body, req.keep_alive)
                    .is_err()
                    || !req.keep_alive
                {
                    return;
                }
            }
        }
    }
}

/// Reads (and drops) whatever comes until the client closes the connection.
fn hang(stream: &mut TcpStream) {
    let started = Instant::now();
    let mut sink = [0u8; 8192];
    while started.elapsed() < HANG_AT_MOST {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        let req = Request {
            method: "GET".into(),
            path: "/".into(),
            query: "a=1&access%5Ftoken=x%2By+z&a=2".into(),
            body: Vec::new(),
            content_type: None,
            keep_alive: true,
            peer: None,
        };
        assert_eq!(req.query("a").as_deref(), Some("1"));
        assert_eq!(req.query("access_token").as_deref(), Some("x+y z"));
        assert_eq!(req.query("b"), None);
    }
}
