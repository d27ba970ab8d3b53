//! `wechat-gate mock-api`: a local stand-in for WeChat's API server
//! (api.weixin.qq.com), to exercise the filter's live callback IP list without WeChat.
//!
//! It answers `POST /cgi-bin/stable_token`, `GET /cgi-bin/token`,
//! `GET /cgi-bin/getcallbackip`, `GET /cgi-bin/get_api_domain_ip` and
//! `POST /cgi-bin/callback/check` with WeChat's reply shapes and errcodes (HTTP 200 even
//! for errors, as WeChat does), and can inject faults into those calls: delays, dropped
//! connections, non-JSON bodies, errcodes (for the first N calls, or for every call to
//! one endpoint), and a callback URL that WeChat cannot resolve or reach.
//! `/__calls`, `/__callback_ips` and `/__faults` inspect and steer it while it runs.
//!
//! The HTTP/1.1 server (`http`) is a small one of its own rather than a library's, so
//! that a "dropped" call can really close its connection with no byte of response,
//! keep-alive or not. Each connection has its own thread, so a delayed call holds up no
//! other caller. The endpoints are in `routes`.
//!
//! The AppSecret comes from the environment (`WECHAT_APPSECRET`, or the variable
//! `--secret-env` names). Neither it nor any access token is ever printed or logged.

mod http;
mod routes;

use gate::allowlist::parse_block;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::TcpListener;
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
                ..Faults::default()
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
                    .spawn(move || {
                        http::serve_connection(stream, &|req| routes::handle(&shared, req))
                    });
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

/// What goes wrong, as set by the flags or `POST /__faults` (which replaces them all).
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Faults {
    /// The first `fail` calls (any endpoint) answer `errcode`.
    fail: u64,
    errcode: i64,
    delay_ms: u64,
    drop: u64,
    garbage: u64,
    /// Every call to these endpoints answers this errcode, until the faults change.
    errcodes: BTreeMap<Endpoint, i64>,
    /// `callback/check`: WeChat's pings to the callback URL's addresses are all lost.
    unreachable: bool,
    /// `callback/check`: the callback URL's domain resolves to nothing.
    no_dns: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            fail: 0,
            errcode: -1,
            delay_ms: 0,
            drop: 0,
            garbage: 0,
            errcodes: BTreeMap::new(),
            unreachable: false,
            no_dns: false,
        }
    }
}

#[derive(Serialize, Default)]
struct Calls {
    stable_token: u64,
    token: u64,
    getcallbackip: u64,
    get_api_domain_ip: u64,
    callback_check: u64,
    /// WeCom's token endpoint; shown once it has been called.
    #[serde(skip_serializing_if = "is_zero")]
    gettoken: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// WeChat's endpoints, named as in `/__calls` and `/__faults`' `errcodes`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Endpoint {
    StableToken,
    Token,
    #[serde(rename = "getcallbackip")]
    CallbackIp,
    #[serde(rename = "get_api_domain_ip")]
    ApiDomainIp,
    CallbackCheck,
    /// WeCom's `GET /cgi-bin/gettoken?corpid=&corpsecret=`.
    #[serde(rename = "gettoken")]
    WecomToken,
}

enum Fault {
    Drop,
    Garbage,
    Fail(i64),
}

impl State {
    /// Counts a call to `endpoint` and takes the fault it gets, if any.
    fn take_fault(&mut self, endpoint: Endpoint) -> Option<Fault> {
        let calls = &mut self.calls;
        let counter = match endpoint {
            Endpoint::StableToken => &mut calls.stable_token,
            Endpoint::Token => &mut calls.token,
            Endpoint::CallbackIp => &mut calls.getcallbackip,
            Endpoint::ApiDomainIp => &mut calls.get_api_domain_ip,
            Endpoint::CallbackCheck => &mut calls.callback_check,
            Endpoint::WecomToken => &mut calls.gettoken,
        };
        *counter = counter.saturating_add(1);
        let faults = &mut self.faults;
        if faults.drop > 0 {
            faults.drop -= 1;
            Some(Fault::Drop)
        } else if faults.garbage > 0 {
            faults.garbage -= 1;
            Some(Fault::Garbage)
        } else if faults.fail > 0 {
            faults.fail -= 1;
            Some(Fault::Fail(faults.errcode))
        } else {
            faults
                .errcodes
                .get(&endpoint)
                .map(|code| Fault::Fail(*code))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
