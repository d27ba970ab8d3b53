//! `wechat-gate mock-api`: a local stand-in for WeChat's API server
//! (api.weixin.qq.com), to exercise the filter's live callback IP list without WeChat.
//!
//! It answers `POST /cgi-bin/stable_token`, `GET /cgi-bin/token`,
//! `GET /cgi-bin/getcallbackip` and `GET /cgi-bin/get_api_domain_ip` with WeChat's reply
//! shapes and errcodes (HTTP 200 even for errors, as WeChat does), and can inject
//! faults into those calls: delays, dropped connections, non-JSON bodies and errcodes.
//! `/__calls`, `/__callback_ips` and `/__faults` inspect and steer it while it runs.
//!
//! The HTTP/1.1 server is a small one of its own (keep-alive, `content-length` and
//! chunked bodies, `expect: 100-continue`) rather than a library's, so that a "dropped"
//! call can really close its connection with no byte of response, keep-alive or not.
//! Each connection has its own thread, so a delayed call holds up no other caller.
//!
//! The AppSecret comes from the environment (`WECHAT_APPSECRET`, or the variable
//! `--secret-env` names). Neither it nor any access token is ever printed or logged.

use crate::allowlist::parse_block;
use percent_encoding::percent_decode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The command line of `wechat-gate mock-api`.
#[derive(clap::Args, Clone)]
pub struct MockApiArgs {
    /// Address to listen on (port 0: any free port; the line printed at start names it).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: String,
    /// The account's AppID that token requests must carry.
    #[arg(long)]
    pub appid: String,
    /// The environment variable that holds the AppSecret token requests must carry.
    #[arg(long, value_name = "NAME", default_value = "WECHAT_APPSECRET")]
    pub secret_env: String,
    /// An IP address or CIDR block for getcallbackip's `ip_list` (repeatable; default 127.0.0.1).
    #[arg(long = "callback-ip", value_name = "IP_OR_CIDR")]
    pub callback_ip: Vec<String>,
    /// Lifetime of an access token, in seconds.
    #[arg(long, default_value_t = 7200, value_parser = clap::value_parser!(u64).range(1..))]
    pub token_ttl: u64,
    /// The first N WeChat API calls answer errcode --fail-errcode.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub fail: u64,
    /// The errcode of --fail.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "ERRCODE")]
    pub fail_errcode: i64,
    /// Every WeChat API call waits this long before answering.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub delay_ms: u64,
    /// The first N WeChat API calls get their connection closed with no response.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub drop: u64,
    /// The first N WeChat API calls answer HTTP 200 with a body that is not JSON.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub garbage: u64,
}

/// Binds, prints `mock-api: listening on http://ADDR` and serves until the process is
/// killed. Returns only on a bad argument or when the address cannot be bound.
pub fn run(args: MockApiArgs) -> Result<(), String> {
    let secret = crate::secret_env::read(&args.secret_env, "the AppSecret", "--secret-env")
        .map_err(|e| e.to_string())?;
    let callback_ips = if args.callback_ip.is_empty() {
        vec!["127.0.0.1".to_string()]
    } else {
        validate_ips(&args.callback_ip).map_err(|e| format!("--callback-ip: {e}"))?
    };
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let shared = Arc::new(Shared {
        appid: args.appid,
        secret,
        token_ttl_ms: args.token_ttl.saturating_mul(1000),
        state: Mutex::new(State {
            token: None,
            callback_ips,
            faults: Faults {
                fail: args.fail,
                errcode: args.fail_errcode,
                delay_ms: args.delay_ms,
                drop: args.drop,
                garbage: args.garbage,
            },
            calls: Calls::default(),
        }),
    });
    {
        let mut out = io::stdout().lock();
        writeln!(out, "mock-api: listening on http://{addr}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let shared = Arc::clone(&shared);
                // A thread that cannot be started drops (closes) its connection.
                let _ = thread::Builder::new()
                    .name("mock-api-conn".into())
                    .spawn(move || serve_connection(stream, &shared));
            }
            // Out of file descriptors and the like: let connections drain a moment.
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
    Err("the listener stopped".into())
}

fn validate_ips(entries: &[String]) -> Result<Vec<String>, String> {
    entries
        .iter()
        .map(|e| {
            parse_block(e)
                .map(|_| e.trim().to_string())
                .map_err(|bad| bad.to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// State

struct Shared {
    appid: String,
    secret: String,
    token_ttl_ms: u64,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct State {
    /// The one current token: issuing a new one invalidates the previous.
    token: Option<Token>,
    callback_ips: Vec<String>,
    faults: Faults,
    calls: Calls,
}

struct Token {
    value: String,
    /// Unix milliseconds.
    expires_at: u64,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Faults {
    fail: u64,
    errcode: i64,
    delay_ms: u64,
    drop: u64,
    garbage: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            fail: 0,
            errcode: -1,
            delay_ms: 0,
            drop: 0,
            garbage: 0,
        }
    }
}

#[derive(Serialize, Default)]
struct Calls {
    stable_token: u64,
    token: u64,
    getcallbackip: u64,
    get_api_domain_ip: u64,
}

#[derive(Clone, Copy)]
enum Endpoint {
    StableToken,
    Token,
    CallbackIp,
    ApiDomainIp,
}

enum Fault {
    Drop,
    Garbage,
    Fail(i64),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

const TOKEN_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `MOCK_` and 64 random URL-safe characters.
fn new_token_value() -> Option<String> {
    let mut bytes = [0u8; 64];
    getrandom::getrandom(&mut bytes).ok()?;
    let mut value = String::with_capacity(69);
    value.push_str("MOCK_");
    for b in bytes {
        value.push(char::from(*TOKEN_ALPHABET.get(usize::from(b & 63))?));
    }
    Some(value)
}

// ---------------------------------------------------------------------------------
// Routing

enum Outcome {
    Reply {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Close the connection without a byte of response.
    Drop,
}

const JSON: &str = "application/json; charset=utf-8";

fn reply(status: u16, body: &Value) -> Outcome {
    Outcome::Reply {
        status,
        content_type: JSON,
        body: body.to_string().into_bytes(),
    }
}

fn ok(body: &Value) -> Outcome {
    reply(200, body)
}

fn errcode(code: i64, message: &str) -> Outcome {
    ok(&json!({ "errcode": code, "errmsg": message }))
}

fn handle(shared: &Shared, req: &Request) -> Outcome {
    let endpoint = match req.path.as_str() {
        "/cgi-bin/stable_token" => Some(Endpoint::StableToken),
        "/cgi-bin/token" => Some(Endpoint::Token),
        "/cgi-bin/getcallbackip" => Some(Endpoint::CallbackIp),
        "/cgi-bin/get_api_domain_ip" => Some(Endpoint::ApiDomainIp),
        _ => None,
    };
    if let Some(endpoint) = endpoint {
        return wechat_call(shared, endpoint, req);
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/__calls") => match serde_json::to_value(&shared.lock().calls) {
            Ok(calls) => ok(&calls),
            Err(_) => errcode(-1, "system error"),
        },
        ("GET", "/__callback_ips") => ok(&json!({ "ip_list": shared.lock().callback_ips })),
        ("POST" | "PUT", "/__callback_ips") => {
            let entries: Vec<String> = match serde_json::from_slice(&req.body) {
                Ok(entries) => entries,
                Err(_) => return bad_request("the body must be a JSON array of strings"),
            };
            match validate_ips(&entries) {
                Ok(list) => {
                    let n = list.len();
                    shared.lock().callback_ips = list;
                    ok(&json!({ "ok": true, "entries": n }))
                }
                Err(e) => bad_request(&e),
            }
        }
        ("POST" | "PUT", "/__faults") => match serde_json::from_slice::<Faults>(&req.body) {
            Ok(faults) => {
                shared.lock().faults = faults;
                ok(&json!({ "ok": true }))
            }
            Err(e) => bad_request(&format!(
                "the body must be a JSON object with fail, errcode, delay_ms, drop, garbage: {e}"
            )),
        },
        _ => reply(404, &json!({ "errcode": -1, "errmsg": "not found" })),
    }
}

fn bad_request(why: &str) -> Outcome {
    reply(400, &json!({ "ok": false, "error": why }))
}

/// One of WeChat's endpoints: counted, then faults, then the real answer.
fn wechat_call(shared: &Shared, endpoint: Endpoint, req: &Request) -> Outcome {
    let (fault, delay_ms) = {
        let mut state = shared.lock();
        let calls = &mut state.calls;
        let counter = match endpoint {
            Endpoint::StableToken => &mut calls.stable_token,
            Endpoint::Token => &mut calls.token,
            Endpoint::CallbackIp => &mut calls.getcallbackip,
            Endpoint::ApiDomainIp => &mut calls.get_api_domain_ip,
        };
        *counter = counter.saturating_add(1);
        let faults = &mut state.faults;
        let fault = if faults.drop > 0 {
            faults.drop -= 1;
            Some(Fault::Drop)
        } else if faults.garbage > 0 {
            faults.garbage -= 1;
            Some(Fault::Garbage)
        } else if faults.fail > 0 {
            faults.fail -= 1;
            Some(Fault::Fail(faults.errcode))
        } else {
            None
        };
        (fault, faults.delay_ms)
    };
    if delay_ms > 0 {
        thread::sleep(Duration::from_millis(delay_ms));
    }
    match fault {
        Some(Fault::Drop) => return Outcome::Drop,
        Some(Fault::Garbage) => {
            return Outcome::Reply {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: b"<html>not json".to_vec(),
            }
        }
        Some(Fault::Fail(code)) => return errcode(code, fault_message(code)),
        None => {}
    }
    match endpoint {
        Endpoint::StableToken => stable_token(shared, req),
        Endpoint::Token => classic_token(shared, req),
        Endpoint::CallbackIp | Endpoint::ApiDomainIp => {
            if req.method != "GET" {
                return errcode(43001, "require GET method");
            }
            let token = req.query("access_token");
            let state = shared.lock();
            match &state.token {
                Some(current) if token.as_deref() == Some(current.value.as_str()) => {
                    if now_ms() >= current.expires_at {
                        return errcode(42001, "access_token expired");
                    }
                }
                _ => {
                    return errcode(
                        40001,
                        "invalid credential, access_token is invalid or not latest",
                    )
                }
            }
            match endpoint {
                Endpoint::CallbackIp => ok(&json!({ "ip_list": state.callback_ips })),
                _ => ok(&json!({
                    "ip_list": ["101.89.47.18", "101.91.34.103", "240e:e1:a900:50::18"]
                })),
            }
        }
    }
}

fn fault_message(code: i64) -> &'static str {
    match code {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40164 => "invalid ip, not in whitelist",
        42001 => "access_token expired",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit mustslower retry next minute",
        48001 => "api unauthorized",
        _ => "mock fault",
    }
}

/// The checks both token endpoints make, in WeChat's order.
fn check_credentials(
    shared: &Shared,
    grant_type: Option<&str>,
    appid: Option<&str>,
    secret: Option<&str>,
) -> Result<(), Outcome> {
    if grant_type != Some("client_credential") {
        return Err(errcode(40002, "invalid grant_type"));
    }
    if appid != Some(shared.appid.as_str()) {
        return Err(errcode(40013, "invalid appid"));
    }
    if secret != Some(shared.secret.as_str()) {
        return Err(errcode(40125, "invalid appsecret"));
    }
    Ok(())
}

#[derive(Deserialize)]
struct StableTokenBody {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: bool,
}

/// Stable semantics: the current token is shared while it lives; `force_refresh`
/// replaces it.
fn stable_token(shared: &Shared, req: &Request) -> Outcome {
    if req.method != "POST" {
        return errcode(43002, "require POST method");
    }
    let Ok(body) = serde_json::from_slice::<StableTokenBody>(&req.body) else {
        return errcode(47001, "data format error");
    };
    if let Err(refused) = check_credentials(
        shared,
        body.grant_type.as_deref(),
        body.appid.as_deref(),
        body.secret.as_deref(),
    ) {
        return refused;
    }
    let now = now_ms();
    let mut state = shared.lock();
    if !body.force_refresh {
        if let Some(current) = state.token.as_ref().filter(|t| now < t.expires_at) {
            let remaining_s = (current.expires_at - now).div_ceil(1000);
            return ok(&json!({ "access_token": current.value, "expires_in": remaining_s }));
        }
    }
    issue(shared, &mut state, now)
}

/// Classic semantics: every call issues a new token and invalidates the previous.
fn classic_token(shared: &Shared, req: &Request) -> Outcome {
    if req.method != "GET" {
        return errcode(43001, "require GET method");
    }
    if let Err(refused) = check_credentials(
        shared,
        req.query("grant_type").as_deref(),
        req.query("appid").as_deref(),
        req.query("secret").as_deref(),
    ) {
        return refused;
    }
    let now = now_ms();
    let mut state = shared.lock();
    issue(shared, &mut state, now)
}

fn issue(shared: &Shared, state: &mut State, now: u64) -> Outcome {
    let Some(value) = new_token_value() else {
        return errcode(-1, "system error");
    };
    let reply = ok(&json!({
        "access_token": value,
        "expires_in": shared.token_ttl_ms / 1000,
    }));
    state.token = Some(Token {
        value,
        expires_at: now.saturating_add(shared.token_ttl_ms),
    });
    reply
}

// ---------------------------------------------------------------------------------
// HTTP/1.1

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

struct Request {
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
    keep_alive: bool,
}

impl Request {
    /// The first value of `name` in the query, percent- and `+`-decoded.
    fn query(&self, name: &str) -> Option<String> {
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

fn serve_connection(stream: TcpStream, shared: &Shared) {
    if stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IDLE_TIMEOUT)).is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let mut conn = Connection {
        stream,
        buf: Vec::new(),
    };
    loop {
        let req = match conn.read_request() {
            Ok(req) => req,
            Err(ReadError::Closed) => return,
            Err(ReadError::Bad(status, why)) => {
                let body = json!({ "errcode": -1, "errmsg": why }).to_string();
                let _ = conn.write_response(status, JSON, body.as_bytes(), false);
                return;
            }
        };
        match handle(shared, &req) {
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
        };
        assert_eq!(req.query("a").as_deref(), Some("1"));
        assert_eq!(req.query("access_token").as_deref(), Some("x+y z"));
        assert_eq!(req.query("b"), None);
    }

    #[test]
    fn tokens_are_url_safe_and_distinct() {
        let a = new_token_value().expect("random");
        let b = new_token_value().expect("random");
        assert_ne!(a, b);
        assert_eq!(a.len(), 69);
        assert!(a.starts_with("MOCK_"));
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
