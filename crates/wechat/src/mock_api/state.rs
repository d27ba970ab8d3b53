//! mock-api's state: the account's current token (and the one it replaced), the
//! faults in force, the call counts, and what the message and media calls received.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

pub(super) struct Shared {
    pub(super) appid: String,
    pub(super) secret: String,
    pub(super) token_ttl_ms: u64,
    pub(super) state: Mutex<State>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) struct State {
    /// The one current token: issuing a new one invalidates the previous.
    pub(super) token: Option<Token>,
    /// The token the current one replaced (for `stale_stable`).
    pub(super) previous: Option<String>,
    pub(super) callback_ips: Vec<String>,
    pub(super) faults: Faults,
    pub(super) calls: BTreeMap<&'static str, u64>,
    /// The bodies of `message/custom/send` and WeCom's `message/send`, in order.
    pub(super) messages: Vec<Value>,
    pub(super) media: HashMap<String, Media>,
}

impl State {
    pub(super) fn new(callback_ips: Vec<String>, faults: Faults) -> State {
        State {
            token: None,
            previous: None,
            callback_ips,
            faults,
            calls: BTreeMap::new(),
            messages: Vec::new(),
            media: HashMap::new(),
        }
    }

    /// Adds one to the count `name` of `/__calls`.
    pub(super) fn count(&mut self, name: &'static str) {
        let n = self.calls.entry(name).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// `/__calls`: the callback role's endpoints always, the others once called.
    pub(super) fn calls_json(&self) -> Value {
        let mut out = Map::new();
        for name in ALWAYS_SHOWN {
            out.insert(name.into(), Value::from(0u64));
        }
        for (name, n) in &self.calls {
            out.insert((*name).into(), Value::from(*n));
        }
        Value::Object(out)
    }

    /// Makes `value` the current token, for the configured lifetime.
    pub(super) fn install_token(&mut self, value: String, now: u64, ttl_ms: u64) {
        self.previous = self.token.take().map(|t| t.value);
        self.token = Some(Token {
            value,
            expires_at: now.saturating_add(ttl_ms),
        });
    }

    /// Counts a call to `endpoint` and takes the fault it gets, if any, in this order:
    /// hang, drop, garbage, fail (all calls), then hangs, busy, errcodes (per endpoint).
    pub(super) fn take_fault(&mut self, endpoint: Endpoint) -> Option<Fault> {
        self.count(endpoint.name());
        let f = &mut self.faults;
        if take_one(&mut f.hang) {
            Some(Fault::Hang)
        } else if take_one(&mut f.drop) {
            Some(Fault::Drop)
        } else if take_one(&mut f.garbage) {
            Some(Fault::Garbage)
        } else if take_one(&mut f.fail) {
            Some(Fault::Fail(f.errcode))
        } else if f.hangs.get_mut(&endpoint).is_some_and(take_one) {
            Some(Fault::Hang)
        } else if f.busy.get_mut(&endpoint).is_some_and(take_one) {
            Some(Fault::Fail(-1))
        } else {
            f.errcodes.get(&endpoint).map(|code| Fault::Fail(*code))
        }
    }
}

/// Takes one from a countdown; whether there was one to take.
fn take_one(n: &mut u64) -> bool {
    if *n > 0 {
        *n -= 1;
        true
    } else {
        false
    }
}

const ALWAYS_SHOWN: [&str; 5] = [
    "stable_token",
    "token",
    "getcallbackip",
    "get_api_domain_ip",
    "callback_check",
];

pub(super) struct Token {
    pub(super) value: String,
    /// Unix milliseconds.
    pub(super) expires_at: u64,
}

/// A stored media file (`media/upload` or `POST /__media`).
pub(super) struct Media {
    pub(super) filename: String,
    pub(super) content_type: Option<String>,
    pub(super) bytes: Arc<Vec<u8>>,
}

/// What goes wrong, as set by the flags or `POST /__faults` (which replaces them all).
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct Faults {
    /// The first `fail` calls (any endpoint) answer `errcode`.
    pub(super) fail: u64,
    pub(super) errcode: i64,
    pub(super) delay_ms: u64,
    pub(super) drop: u64,
    pub(super) garbage: u64,
    /// The first `hang` calls (any endpoint) are read and never answered.
    pub(super) hang: u64,
    /// The next N connections are closed as soon as they are accepted, before a byte is
    /// read (control calls included).
    pub(super) refuse: u64,
    /// The next N non-forced stable_token calls hand back the token the current one
    /// replaced.
    pub(super) stale_stable: u64,
    /// The first N calls to each endpoint are read and never answered.
    pub(super) hangs: BTreeMap<Endpoint, u64>,
    /// The first N calls to each endpoint answer errcode -1 (system busy).
    pub(super) busy: BTreeMap<Endpoint, u64>,
    /// Every call to these endpoints answers this errcode, until the faults change.
    pub(super) errcodes: BTreeMap<Endpoint, i64>,
    /// `callback/check`: WeChat's pings to the callback URL's addresses are all lost.
    pub(super) unreachable: bool,
    /// `callback/check`: the callback URL's domain resolves to nothing.
    pub(super) no_dns: bool,
    /// The `expires_in` of the tickets getticket hands out.
    pub(super) ticket_expires_in: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            fail: 0,
            errcode: -1,
            delay_ms: 0,
            drop: 0,
            garbage: 0,
            hang: 0,
            refuse: 0,
            stale_stable: 0,
            hangs: BTreeMap::new(),
            busy: BTreeMap::new(),
            errcodes: BTreeMap::new(),
            unreachable: false,
            no_dns: false,
            ticket_expires_in: 7200,
        }
    }
}

/// WeChat's endpoints, named as in `/__calls` and the per-endpoint faults.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Endpoint {
    StableToken,
    Token,
    Getcallbackip,
    GetApiDomainIp,
    CallbackCheck,
    /// WeCom's `GET /cgi-bin/gettoken?corpid=&corpsecret=`.
    Gettoken,
    UserInfo,
    CustomSend,
    MediaUpload,
    MediaGet,
    GetticketJsapi,
    GetticketWxCard,
    /// getticket with a `type` that is neither.
    Getticket,
    Jscode2session,
    Oauth2AccessToken,
    /// WeCom's `POST /cgi-bin/message/send`.
    WecomMessageSend,
}

impl Endpoint {
    pub(super) fn name(self) -> &'static str {
        match self {
            Endpoint::StableToken => "stable_token",
            Endpoint::Token => "token",
            Endpoint::Getcallbackip => "getcallbackip",
            Endpoint::GetApiDomainIp => "get_api_domain_ip",
            Endpoint::CallbackCheck => "callback_check",
            Endpoint::Gettoken => "gettoken",
            Endpoint::UserInfo => "user_info",
            Endpoint::CustomSend => "custom_send",
            Endpoint::MediaUpload => "media_upload",
            Endpoint::MediaGet => "media_get",
            Endpoint::GetticketJsapi => "getticket_jsapi",
            Endpoint::GetticketWxCard => "getticket_wx_card",
            Endpoint::Getticket => "getticket",
            Endpoint::Jscode2session => "jscode2session",
            Endpoint::Oauth2AccessToken => "oauth2_access_token",
            Endpoint::WecomMessageSend => "wecom_message_send",
        }
    }
}

pub(super) enum Fault {
    Hang,
    Drop,
    Garbage,
    Fail(i64),
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

const TOKEN_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `prefix` and `len` random URL-safe characters.
pub(super) fn random_value(prefix: &str, len: usize) -> Option<String> {
    let mut bytes = vec![0u8; len];
    getrandom::getrandom(&mut bytes).ok()?;
    let mut value = String::with_capacity(prefix.len() + len);
    value.push_str(prefix);
    for b in bytes {
        value.push(char::from(*TOKEN_ALPHABET.get(usize::from(b & 63))?));
    }
    Some(value)
}

/// An access token: `MOCK_` and 64 random URL-safe characters.
pub(super) fn new_token_value() -> Option<String> {
    random_value("MOCK_", 64)
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

    #[test]
    fn every_endpoint_name_is_its_serde_name() {
        for e in [
            Endpoint::StableToken,
            Endpoint::Getcallbackip,
            Endpoint::GetApiDomainIp,
            Endpoint::Gettoken,
            Endpoint::GetticketWxCard,
            Endpoint::Jscode2session,
            Endpoint::Oauth2AccessToken,
            Endpoint::WecomMessageSend,
        ] {
            let parsed: Endpoint =
                serde_json::from_value(Value::from(e.name())).expect("a known name");
            assert!(parsed == e, "{}", e.name());
        }
    }
}
