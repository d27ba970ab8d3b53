//! WeChat's API as the filter uses it, pure: the requests for an access token
//! (`stable_token` or the classic `token`) and for the callback IP list
//! (`getcallbackip`), the parsing of their replies, and what each errcode asks of the
//! filter (the meanings are `gate::errcodes`'). No I/O here: the host sends what this builds.

use crate::allowlist::{parse_block, Block};
use crate::errcodes::{self, Handling};
use serde::Deserialize;
use std::fmt;

/// An HTTP call to make against one of the configured upstream clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    pub method: &'static str,
    /// Path and query. Holds the secret or access token: never log it.
    pub path: String,
    pub body: Option<Vec<u8>>,
}

impl ApiCall {
    /// The call as sent through `upstream`, given up after `timeout_ms`.
    pub fn to(self, upstream: &crate::config::Upstream, timeout_ms: u64) -> super::Outgoing {
        let mut headers = vec![
            (":method", self.method.to_string()),
            (":path", self.path),
            (":authority", upstream.authority.clone()),
        ];
        if self.body.is_some() {
            headers.push(("content-type", "application/json".to_string()));
        }
        super::Outgoing {
            cluster: upstream.cluster.clone(),
            headers,
            body: self.body,
            timeout: std::time::Duration::from_millis(timeout_ms),
        }
    }
}

/// `POST /cgi-bin/stable_token`: shares one token among all callers, 10,000 calls/min.
pub fn stable_token_call(appid: &str, secret: &str, force_refresh: bool) -> ApiCall {
    let body = serde_json::json!({
        "grant_type": "client_credential",
        "appid": appid,
        "secret": secret,
        "force_refresh": force_refresh,
    });
    ApiCall {
        method: "POST",
        path: "/cgi-bin/stable_token".to_string(),
        body: Some(body.to_string().into_bytes()),
    }
}

/// `GET /cgi-bin/token`: every call invalidates the previous token, everywhere.
pub fn classic_token_call(appid: &str, secret: &str) -> ApiCall {
    ApiCall {
        method: "GET",
        path: format!(
            "/cgi-bin/token?{}",
            crate::query::encode_query(&[
                ("grant_type", "client_credential"),
                ("appid", appid),
                ("secret", secret)
            ])
        ),
        body: None,
    }
}

/// WeCom's `GET /cgi-bin/gettoken` (on qyapi.weixin.qq.com): the CorpID and the
/// app's secret; WeCom hands every caller the same token while it lives.
pub fn wecom_token_call(corpid: &str, secret: &str) -> ApiCall {
    ApiCall {
        method: "GET",
        path: format!(
            "/cgi-bin/gettoken?{}",
            crate::query::encode_query(&[("corpid", corpid), ("corpsecret", secret)])
        ),
        body: None,
    }
}

/// `GET /cgi-bin/getcallbackip`.
pub fn callback_ip_call(access_token: &str) -> ApiCall {
    ApiCall {
        method: "GET",
        path: format!(
            "/cgi-bin/getcallbackip?{}",
            crate::query::encode_query(&[("access_token", access_token)])
        ),
        body: None,
    }
}

/// Why a call did not give what was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFailure {
    /// No response: connection failure, reset or timeout (a reply with no `:status`).
    Transport,
    /// An HTTP status other than 200.
    Status(u32),
    /// A 200 whose body is not the JSON expected.
    BadReply,
    /// WeChat's own error.
    Errcode { code: i64, message: String },
    /// `ip_list` had no usable entry.
    EmptyList,
    /// `ip_list` had an entry broader than [`MIN_PREFIX_V4`] / [`MIN_PREFIX_V6`]
    /// (`0.0.0.0/0` admits every source): the whole list is refused.
    TooBroad { entry: String },
}

impl ApiFailure {
    /// A list refused for what it holds (not for how it came): counted each time,
    /// logged once per failure streak.
    pub fn is_refused_list(&self) -> bool {
        matches!(self, ApiFailure::TooBroad { .. })
    }
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiFailure::Transport => {
                f.write_str("no response (connection failure, reset or timeout)")
            }
            ApiFailure::Status(s) => write!(f, "HTTP status {s}"),
            ApiFailure::BadReply => f.write_str("the reply is not the JSON expected"),
            ApiFailure::Errcode { code, message } => {
                write!(
                    f,
                    "errcode {code} ({})",
                    message.chars().take(120).collect::<String>()
                )
            }
            ApiFailure::EmptyList => f.write_str("ip_list has no usable entry"),
            ApiFailure::TooBroad { entry } => write!(
                f,
                "ip_list entry {entry:?} is broader than /{MIN_PREFIX_V4} (IPv4) or \
                 /{MIN_PREFIX_V6} (IPv6): the list is refused"
            ),
        }
    }
}

/// An access token and how long it lives.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub value: String,
    pub expires_in: u64,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken(<redacted>, expires_in {})", self.expires_in)
    }
}

#[derive(Deserialize)]
struct Reply {
    errcode: Option<i64>,
    errmsg: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
    ip_list: Option<Vec<serde_json::Value>>,
}

fn parse_reply(status: Option<u32>, body: &[u8]) -> Result<Reply, ApiFailure> {
    match status {
        None => return Err(ApiFailure::Transport),
        Some(200) => {}
        Some(other) => return Err(ApiFailure::Status(other)),
    }
    let reply: Reply = serde_json::from_slice(body).map_err(|_| ApiFailure::BadReply)?;
    match reply.errcode {
        Some(code) if code != 0 => Err(ApiFailure::Errcode {
            code,
            message: reply.errmsg.clone().unwrap_or_default(),
        }),
        _ => Ok(reply),
    }
}

/// The reply of `stable_token` or `token`.
pub fn parse_token_reply(status: Option<u32>, body: &[u8]) -> Result<AccessToken, ApiFailure> {
    let reply = parse_reply(status, body)?;
    match (reply.access_token, reply.expires_in) {
        (Some(value), Some(expires_in)) if !value.is_empty() && expires_in > 0 => {
            Ok(AccessToken { value, expires_in })
        }
        _ => Err(ApiFailure::BadReply),
    }
}

/// The reply of `getcallbackip`: the entries that parse, and those that did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackIps {
    pub blocks: Vec<Block>,
    /// The entries as WeChat sent them (the usable ones), to share with other workers.
    pub entries: Vec<String>,
    pub skipped: Vec<String>,
}

/// The most entries taken from one reply: shared data is never cleaned, so bound it.
pub const MAX_ENTRIES: usize = 20_000;

/// The broadest entry a callback list from the API may hold. WeChat's lists hold
/// single addresses and small blocks (its documented example: a `/25`); an entry wider than this admits
/// sources no WeChat data centre has, and `0.0.0.0/0` every source. Each bound is
/// 65,536 of the smallest unit an operator assigns: IPv4 addresses (`/16`), IPv6
/// `/64` subnets (`/48`, one site).
pub const MIN_PREFIX_V4: u32 = 16;
pub const MIN_PREFIX_V6: u32 = 48;

/// Whether `block` is broader than [`MIN_PREFIX_V4`] / [`MIN_PREFIX_V6`].
pub fn too_broad(block: &Block) -> bool {
    match *block {
        Block::V4(start, end) => u64::from(end - start.min(end)) >= 1u64 << (32 - MIN_PREFIX_V4),
        Block::V6(start, end) => end - start.min(end) >= 1u128 << (128 - MIN_PREFIX_V6),
    }
}

pub fn parse_callback_ip_reply(
    status: Option<u32>,
    body: &[u8],
) -> Result<CallbackIps, ApiFailure> {
    let reply = parse_reply(status, body)?;
    let list = reply.ip_list.ok_or(ApiFailure::BadReply)?;
    let mut ips = CallbackIps {
        blocks: Vec::new(),
        entries: Vec::new(),
        skipped: Vec::new(),
    };
    for item in list.into_iter().take(MAX_ENTRIES) {
        match item.as_str().map(|s| (s, parse_block(s))) {
            Some((text, Ok(block))) if too_broad(&block) => {
                return Err(ApiFailure::TooBroad {
                    entry: text.trim().chars().take(64).collect(),
                })
            }
            Some((text, Ok(block))) => {
                ips.blocks.push(block);
                ips.entries.push(text.trim().to_string());
            }
            Some((text, Err(_))) => ips.skipped.push(text.chars().take(64).collect()),
            None => ips
                .skipped
                .push(item.to_string().chars().take(64).collect()),
        }
    }
    if ips.blocks.is_empty() {
        return Err(ApiFailure::EmptyList);
    }
    Ok(ips)
}

/// What an errcode asks of the filter and of the operator, from [`errcodes`]' table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// The token is bad or expired: drop it and get a new one.
    NewToken,
    /// WeChat is busy: try again.
    Retry,
    /// Only the operator can fix it; the table's meaning says what is wrong.
    Operator(&'static str),
    /// Anything else: back off and try again later.
    Other,
}

pub fn advice(code: i64) -> Advice {
    match errcodes::lookup(code) {
        Some(e) => match e.handling {
            Handling::NewToken => Advice::NewToken,
            Handling::Retry => Advice::Retry,
            Handling::Operator => Advice::Operator(e.meaning),
        },
        None => Advice::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_token_call_is_a_json_post() {
        let c = stable_token_call("wx1", "s3cret", false);
        assert_eq!(
            (c.method, c.path.as_str()),
            ("POST", "/cgi-bin/stable_token")
        );
        let body: serde_json::Value = serde_json::from_slice(&c.body.expect("body")).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"grant_type": "client_credential", "appid": "wx1", "secret": "s3cret", "force_refresh": false})
        );
        let forced: serde_json::Value =
            serde_json::from_slice(&stable_token_call("wx1", "s", true).body.expect("body"))
                .expect("json");
        assert_eq!(forced["force_refresh"], true);
    }

    #[test]
    fn classic_token_and_callback_ip_calls_encode_their_query() {
        let c = classic_token_call("wx1", "a&b=c");
        assert_eq!(c.method, "GET");
        assert_eq!(
            c.path,
            "/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=a%26b%3Dc"
        );
        assert_eq!(
            callback_ip_call("T+1").path,
            "/cgi-bin/getcallbackip?access_token=T%2B1"
        );
    }

    #[test]
    fn token_reply_is_read() {
        let t = parse_token_reply(Some(200), br#"{"access_token":"ACCESS","expires_in":7200}"#)
            .expect("token");
        assert_eq!((t.value.as_str(), t.expires_in), ("ACCESS", 7200));
        assert!(
            !format!("{t:?}").contains("ACCESS"),
            "Debug must not show the token"
        );
    }

    #[test]
    fn token_reply_failures_are_told_apart() {
        assert_eq!(parse_token_reply(None, b""), Err(ApiFailure::Transport));
        assert_eq!(
            parse_token_reply(Some(503), b"{}"),
            Err(ApiFailure::Status(503))
        );
        assert_eq!(
            parse_token_reply(Some(200), b"<html>"),
            Err(ApiFailure::BadReply)
        );
        assert_eq!(
            parse_token_reply(Some(200), br#"{"expires_in":7200}"#),
            Err(ApiFailure::BadReply)
        );
        assert_eq!(
            parse_token_reply(Some(200), br#"{"access_token":"","expires_in":7200}"#),
            Err(ApiFailure::BadReply)
        );
        assert_eq!(
            parse_token_reply(
                Some(200),
                br#"{"errcode":40125,"errmsg":"invalid appsecret"}"#
            ),
            Err(ApiFailure::Errcode {
                code: 40125,
                message: "invalid appsecret".into()
            })
        );
    }

    #[test]
    fn errcode_zero_is_success() {
        assert!(parse_token_reply(
            Some(200),
            br#"{"errcode":0,"access_token":"A","expires_in":1}"#
        )
        .is_ok());
    }

    #[test]
    fn callback_list_takes_ipv4_ipv6_and_cidrs_and_skips_bad_entries() {
        let ips = parse_callback_ip_reply(
            Some(200),
            br#"{"ip_list":["101.226.62.77","101.226.103.0/25","240e:e1:a900:50::/64","not-an-ip",7]}"#,
        )
        .expect("list");
        assert_eq!(ips.blocks.len(), 3);
        assert_eq!(
            ips.entries,
            ["101.226.62.77", "101.226.103.0/25", "240e:e1:a900:50::/64"]
        );
        assert_eq!(ips.skipped, ["not-an-ip", "7"]);
    }

    #[test]
    fn empty_or_unusable_list_is_a_failure() {
        assert_eq!(
            parse_callback_ip_reply(Some(200), br#"{"ip_list":[]}"#),
            Err(ApiFailure::EmptyList)
        );
        assert_eq!(
            parse_callback_ip_reply(Some(200), br#"{"ip_list":["x"]}"#),
            Err(ApiFailure::EmptyList)
        );
        assert_eq!(
            parse_callback_ip_reply(Some(200), br#"{}"#),
            Err(ApiFailure::BadReply)
        );
        assert_eq!(
            parse_callback_ip_reply(
                Some(200),
                br#"{"errcode":40001,"errmsg":"invalid credential"}"#
            )
            .map_err(|e| advice_of(&e)),
            Err(Some(Advice::NewToken))
        );
    }

    #[test]
    fn a_list_with_an_entry_broader_than_the_bound_is_refused_whole() {
        // Issue 18 §7: `0.0.0.0/0` from the API admitted every source.
        for entry in [
            "0.0.0.0/0",
            "127.0.0.3/0",
            "10.0.0.0/8",
            "101.226.0.0/15",
            "::/0",
            "240e::/20",
            "2001:db8::/47",
        ] {
            let body = format!(r#"{{"ip_list":["101.226.62.77","{entry}","101.226.103.0/25"]}}"#);
            let refused = parse_callback_ip_reply(Some(200), body.as_bytes());
            assert_eq!(
                refused,
                Err(ApiFailure::TooBroad {
                    entry: entry.to_string()
                }),
                "{entry}"
            );
            assert!(refused.is_err_and(|e| e.is_refused_list()
                && e.to_string().contains(entry)
                && e.to_string().contains("/16")));
        }
        // Up to the bound, and what WeChat's lists hold, is taken.
        let ips = parse_callback_ip_reply(
            Some(200),
            br#"{"ip_list":["101.226.0.0/16","101.226.103.0/25","1.2.3.4","2001:db8::/48","240e:e1:a900:50::/64","::1"]}"#,
        )
        .expect("within the bound");
        assert_eq!(ips.entries.len(), 6);
        assert!(!ApiFailure::EmptyList.is_refused_list());
    }

    fn advice_of(e: &ApiFailure) -> Option<Advice> {
        match e {
            ApiFailure::Errcode { code, .. } => Some(advice(*code)),
            _ => None,
        }
    }

    #[test]
    fn list_is_bounded() {
        let list: Vec<String> = (0..MAX_ENTRIES + 10)
            .map(|i| format!("\"10.{}.{}.1\"", i / 256 % 256, i % 256))
            .collect();
        let body = format!("{{\"ip_list\":[{}]}}", list.join(","));
        assert_eq!(
            parse_callback_ip_reply(Some(200), body.as_bytes())
                .expect("list")
                .entries
                .len(),
            MAX_ENTRIES
        );
    }

    #[test]
    fn errcodes_map_to_what_must_happen() {
        for code in [40001, 40014, 42001] {
            assert_eq!(advice(code), Advice::NewToken, "{code}");
        }
        assert_eq!(advice(-1), Advice::Retry);
        for code in [40164, 40013, 40125, 45009, 89501, 89503, 89506, 89507] {
            assert!(matches!(advice(code), Advice::Operator(_)), "{code}");
        }
        assert!(matches!(advice(40164), Advice::Operator(h) if h.contains("IP whitelist")));
        assert_eq!(advice(12345), Advice::Other);
    }
}
