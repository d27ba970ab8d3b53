//! What a request through an API-role instance is, from its method, `:path` and
//! address: not under the prefix (it passes on untouched), refused, a token request
//! answered with the stand-in, the gate's own JS-SDK signature, or a call to make.
//!
//! The path after the prefix goes to WeChat with the real token, so it is held to
//! the characters of WeChat's own API paths: no percent-encoding, no backslash, no
//! empty, `.` or `..` segment. Nothing the caller sends can point the token anywhere
//! but WeChat's API path it names.

use super::refusal::Refusal;
use super::ticket::TicketType;
use crate::config::{ApiConfig, Platform};
use std::net::IpAddr;

/// The gate's own endpoints live under `<path>/wechat-gate/`, which is no path of
/// WeChat's.
pub const OWN: &str = "/wechat-gate/";
/// `GET <path>/wechat-gate/jssdk-config?url=…`: JS-SDK's `wx.config` values.
pub const JSSDK_CONFIG: &str = "jssdk-config";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Not under the prefix: passes through untouched.
    NotMine,
    Refuse(Refusal),
    /// A token request: answered with [`super::STAND_IN_TOKEN`].
    StandIn,
    /// The JS-SDK signature for the page `url` (decoded).
    Jssdk {
        url: String,
    },
    Call(Target),
}

/// A call to make to WeChat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub method: String,
    /// WeChat's path (`/cgi-bin/user/info`).
    pub path: String,
    /// The caller's query, raw, without the `?`.
    pub query: String,
    pub kind: Kind,
}

/// What WeChat wants of the gate for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The access token in the query.
    Token,
    /// `appid` and `secret` in the query (`/sns/jscode2session`, `/sns/oauth2/…`).
    Secret,
    /// The caller's own credentials: a user's OAuth token (`/sns/userinfo`,
    /// `/sns/auth`) or refresh token. Sent as the caller wrote it; the account's
    /// token is neither added nor refreshed for it.
    Caller,
    /// A ticket: answered from the shared cache when it holds one, else a
    /// [`Kind::Token`] call whose ticket is cached.
    Ticket(TicketType),
}

/// The paths WeChat wants the AppSecret on instead of a token.
const SECRET_PATHS: &[&str] = &["/sns/jscode2session", "/sns/oauth2/access_token"];
/// The paths whose `access_token` is a user's, not the account's (网页授权).
const CALLER_PATHS: &[&str] = &["/sns/userinfo", "/sns/auth", "/sns/oauth2/refresh_token"];

/// A byte of a plain path: what WeChat's API paths are made of.
pub fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~')
}

/// Judges a request: `path` is the whole `:path` (with its query), `caller` the
/// connection's peer address (`None`: the host would not say, refused).
pub fn route(config: &ApiConfig, method: &str, path: &[u8], caller: Option<IpAddr>) -> Route {
    let (path, query) = match path.iter().position(|b| *b == b'?') {
        Some(q) => (path.get(..q).unwrap_or_default(), path.get(q + 1..)),
        None => (path, None),
    };
    let Some(rest) = under_prefix(path, config.path.as_bytes()) else {
        return Route::NotMine;
    };
    if !caller.is_some_and(|ip| config.callers.contains(ip)) {
        return Route::Refuse(Refusal::NotACaller);
    }
    let Some(rest) = plain(rest) else {
        return Route::Refuse(Refusal::BadPath);
    };
    let query = match query.map(std::str::from_utf8) {
        None => String::new(),
        Some(Ok(q)) => q.to_string(),
        Some(Err(_)) => return Route::Refuse(Refusal::BadPath),
    };
    if let Some(own) = rest.strip_prefix(OWN) {
        return own_endpoint(config, method, own, &query);
    }
    if is_token_request(config.platform, rest) {
        return Route::StandIn;
    }
    let kind = if SECRET_PATHS.contains(&rest) {
        Kind::Secret
    } else if CALLER_PATHS.contains(&rest) {
        Kind::Caller
    } else if rest == "/cgi-bin/ticket/getticket" && method == "GET" {
        TicketType::of_query(&query).map_or(Kind::Token, Kind::Ticket)
    } else {
        Kind::Token
    };
    Route::Call(Target {
        method: method.to_string(),
        path: rest.to_string(),
        query,
        kind,
    })
}

/// The rest of `path` after `prefix`, if `path` is under it on a segment boundary
/// (`/wechat-api/mp` holds `/wechat-api/mp/cgi-bin/…`, not `/wechat-api/mpx`).
fn under_prefix<'p>(path: &'p [u8], prefix: &[u8]) -> Option<&'p [u8]> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.first() == Some(&b'/')).then_some(rest)
}

/// `rest` if it is a plain path of at least one segment: `/` then segments of
/// [`is_path_byte`]s, none empty, `.` or `..`.
fn plain(rest: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(rest).ok()?;
    let ok = text.starts_with('/')
        && text.bytes().all(is_path_byte)
        && text
            .split('/')
            .skip(1)
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    ok.then_some(text)
}

fn is_token_request(platform: Platform, rest: &str) -> bool {
    match platform {
        Platform::Wecom => rest == "/cgi-bin/gettoken",
        _ => rest == "/cgi-bin/token" || rest == "/cgi-bin/stable_token",
    }
}

fn own_endpoint(config: &ApiConfig, method: &str, own: &str, query: &str) -> Route {
    if own != JSSDK_CONFIG || method != "GET" || config.platform != Platform::OfficialAccount {
        return Route::Refuse(Refusal::NoSuchEndpoint);
    }
    match query_value(query, "url").filter(|u| !u.is_empty()) {
        Some(url) => Route::Jssdk { url },
        None => Route::Refuse(Refusal::BadPath),
    }
}

/// The first value of `name` in a raw query, percent- and `+`-decoded.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            let spaced = v.replace('+', " ");
            percent_encoding::percent_decode_str(&spaced)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}
