//! The decision for one request, as a pure function of what the host gathered:
//! method, `:path`, the downstream address, the time, the configuration and the
//! allowlist. The host code only carries the [`Verdict`] out.
//!
//! The steps run in the README's order ("What happens to a request"): method, query,
//! source, signature, freshness.

use crate::allowlist::CallbackAllowlist;
use crate::config::{Config, Platform, SourceMode, WhenUnavailable};
use crate::query::{parse_query, CallbackQuery};
pub use crate::rejection::{Reason, Rejection, RETRY_AFTER_SECONDS};
use crate::safe_mode::{QueryVerified, SafeModeQuery};
use crate::signature::{request_signature, signature_matches, HexDigest};
use crate::tables::replay::QueryUse;
use std::net::{IpAddr, SocketAddr};

/// What the host hands over about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// `:method`, as sent.
    pub method: &'a [u8],
    /// `:path` (path and query); `None` when the request had none.
    pub path: Option<&'a [u8]>,
    /// The `source.address` property: `ip:port` or `[v6]:port`.
    pub source: Option<&'a [u8]>,
}

/// The addresses allowed to call (the static entries ∪ the live list), and whether
/// the live part has loaded.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub allow: CallbackAllowlist,
    /// False until the live WeChat list has been fetched (when one is configured).
    pub live_list_ready: bool,
}

impl Sources {
    /// Only `allow`, ready at once.
    pub fn fixed(allow: CallbackAllowlist) -> Sources {
        Sources {
            allow,
            live_list_ready: true,
        }
    }
}

/// How the source check went for a request that was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceOutcome {
    /// On the allowlist.
    Listed,
    /// Not listed, let through because `source.mode` is `report`.
    ReportOnly,
    /// Let through before the live list loaded (`when_unavailable: allow`).
    Unverified,
    /// `source.mode` is `off`.
    NotChecked,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not on the guarded path: untouched.
    PassThrough,
    /// Answer with the status and reason; the backend never sees it.
    Reject(Rejection),
    /// A verified handshake: answer 200 with `echostr` (opened), unless its query was
    /// used before.
    Echo {
        echostr: Echostr,
        source: SourceOutcome,
        /// The signed query, to be recorded as used (it can never carry a push, nor
        /// be answered again).
        query: Option<QueryUse>,
    },
    /// A verified push: forward it (after the body-size check, and for a safe-mode
    /// push once its body has been checked too).
    Forward {
        openid: Option<String>,
        source: SourceOutcome,
        /// Set for `encrypt_type=aes`: what the body's `Encrypt` is checked against.
        safe: Option<SafeModeQuery>,
        /// The signed query, refused as a replay if it was used before.
        query: Option<QueryUse>,
        /// Open Platform: the authorizer's AppID, from the path.
        authorizer: Option<String>,
    },
}

/// A verified handshake's `echostr`: the answer as it came, or (WeCom) still sealed,
/// to be opened only once its query is known to be unused, so that a used query is
/// answered as a replay whatever it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Echostr {
    Plain(String),
    Sealed(String),
}

impl Echostr {
    /// The handshake's answer: a sealed `echostr` decrypted (401 `decrypt` if it does
    /// not open to a handshake's token).
    pub fn open(self, config: &Config) -> Result<String, Rejection> {
        match self {
            Echostr::Plain(text) => Ok(text),
            Echostr::Sealed(sealed) => wecom::open_echostr(config, &sealed),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// Decides what to do with a request. `now_unix` is the current time in seconds.
pub fn decide(req: &RequestHead<'_>, config: &Config, sources: &Sources, now_unix: i64) -> Verdict {
    let PathMatch::Guarded { authorizer } = path::match_path(req.path, config) else {
        return Verdict::PassThrough;
    };
    let query = req.path.map_or(&b""[..], |p| split_path(p).1);
    let verdict = check(req, query, config, sources, now_unix);
    match (verdict, authorizer) {
        (Err(r), _) => Verdict::Reject(r),
        (
            Ok(Verdict::Forward {
                openid,
                source,
                safe,
                query,
                ..
            }),
            Some(segment),
        ) => match authorizer_of(segment) {
            Ok(authorizer) => Verdict::Forward {
                openid,
                source,
                safe,
                query,
                authorizer: Some(authorizer),
            },
            Err(r) => Verdict::Reject(r),
        },
        (Ok(v), _) => v,
    }
}

/// The authorizer's AppID from a path pattern's segment.
fn authorizer_of(segment: &[u8]) -> Result<String, Rejection> {
    if !path::is_plausible_appid(segment) {
        return Err(Rejection::new(
            Reason::Malformed,
            "the path's authorizer segment is not an AppID (wx and 16 hex digits)",
        ));
    }
    Ok(String::from_utf8_lossy(segment).into_owned())
}

fn check(
    req: &RequestHead<'_>,
    query: &[u8],
    config: &Config,
    sources: &Sources,
    now_unix: i64,
) -> Result<Verdict, Rejection> {
    if config.platform == Platform::Wecom {
        return wecom::check(req, query, config, sources, now_unix);
    }
    // 1. Method.
    let method = method_of(req)?;
    // 2. Query.
    #[cfg(feature = "attribution-twice-query")]
    let _ = std::hint::black_box(parse_query(std::hint::black_box(query)));
    let q = parse_query(query).map_err(|e| Rejection::new(Reason::Malformed, e.to_string()))?;
    let signed = read_signed(&q, method, config)?;
    // 3. Source.
    let source = check_source(req.source, config, sources)?;
    // 4. Signature.
    let p = &signed.params;
    let (token, expected) = verify_signature(config, p)?;
    let safe = signed.msg_signature.map(|msg_signature| SafeModeQuery {
        msg_signature: msg_signature.to_string(),
        timestamp: p.timestamp.to_string(),
        nonce: p.nonce.to_string(),
        verified: QueryVerified::BySignature { token },
    });
    // 5. Freshness.
    let tolerance = config.timestamp_tolerance_seconds;
    check_freshness(p.timestamp_value, now_unix, tolerance)?;
    // 6. and 7.
    let query = QueryUse::of(&expected, p.timestamp_value, tolerance);
    Ok(match signed.echostr {
        Some(echostr) => Verdict::Echo {
            echostr: Echostr::Plain(echostr.to_string()),
            source,
            query,
        },
        None => Verdict::Forward {
            openid: q.openid.as_deref().map(str::to_string),
            source,
            safe,
            query,
            authorizer: None,
        },
    })
}

/// GET (a handshake) or POST (a push), on a request that has a `:path`.
fn method_of(req: &RequestHead<'_>) -> Result<Method, Rejection> {
    let method = match req.method {
        b"GET" => Method::Get,
        b"POST" => Method::Post,
        _ => {
            return Err(Rejection::new(
                Reason::Method,
                "only GET and POST are accepted",
            ))
        }
    };
    if req.path.is_none() {
        return Err(Rejection::new(Reason::Malformed, "request has no :path"));
    }
    Ok(method)
}

/// What a request's query carries, read and checked for form (not yet verified).
struct Signed<'q> {
    params: Params<'q>,
    /// A handshake's `echostr`.
    echostr: Option<&'q str>,
    /// A safe-mode push's `msg_signature`.
    msg_signature: Option<&'q str>,
}

fn read_signed<'q>(
    q: &'q CallbackQuery<'_>,
    method: Method,
    config: &Config,
) -> Result<Signed<'q>, Rejection> {
    let params = required_params(q)?;
    let echostr = match method {
        Method::Get => Some(non_empty("echostr", q.echostr.as_deref())?),
        Method::Post => None,
    };
    let aes = q
        .encrypt_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("aes"));
    let msg_signature = match method {
        Method::Post if aes => Some(non_empty("msg_signature", q.msg_signature.as_deref())?),
        Method::Post | Method::Get => None,
    };
    if method == Method::Post
        && msg_signature.is_none()
        && config.safe_mode.as_ref().is_some_and(|s| s.require)
    {
        return Err(Rejection::new(
            Reason::Malformed,
            "safe_mode.require is set: a push must carry encrypt_type=aes",
        ));
    }
    if q.openid.as_deref().is_some_and(|o| !is_plausible_openid(o)) {
        return Err(Rejection::new(
            Reason::Malformed,
            "query parameter openid is not 1 to 128 letters, digits, '-' or '_'",
        ));
    }
    Ok(Signed {
        params,
        echostr,
        msg_signature,
    })
}

/// The index of the token (of a rotation) that signed the query, and the signature.
/// Every token is tried, in constant time each, whichever matches.
fn verify_signature(config: &Config, p: &Params<'_>) -> Result<(usize, HexDigest), Rejection> {
    let mut matched = None;
    for (i, token) in config.token.all() {
        let expected = request_signature(token.expose(), p.timestamp, p.nonce);
        if signature_matches(&expected, p.signature.as_bytes()) && matched.is_none() {
            matched = Some((i, expected));
        }
    }
    matched.ok_or_else(|| Rejection::new(Reason::Signature, "signature does not match"))
}

/// `|now − timestamp| ≤ tolerance`; a tolerance of 0 turns the check off.
fn check_freshness(timestamp: i64, now_unix: i64, tolerance: u64) -> Result<(), Rejection> {
    let skew = (i128::from(now_unix) - i128::from(timestamp)).unsigned_abs();
    if tolerance > 0 && skew > u128::from(tolerance) {
        return Err(Rejection::new(
            Reason::Stale,
            format!("timestamp is {skew} s away from now, more than the {tolerance} s allowed"),
        ));
    }
    Ok(())
}

struct Params<'q> {
    signature: &'q str,
    timestamp: &'q str,
    timestamp_value: i64,
    nonce: &'q str,
}

fn required_params<'q>(q: &'q CallbackQuery<'_>) -> Result<Params<'q>, Rejection> {
    signed_params(q, "signature", q.signature.as_deref())
}

/// The signature (under `name`), timestamp and nonce every signed query carries.
fn signed_params<'q>(
    q: &'q CallbackQuery<'_>,
    name: &'static str,
    signature: Option<&'q str>,
) -> Result<Params<'q>, Rejection> {
    let signature = non_empty(name, signature)?;
    let timestamp = non_empty("timestamp", q.timestamp.as_deref())?;
    let nonce = non_empty("nonce", q.nonce.as_deref())?;
    let timestamp_value = parse_timestamp(timestamp).ok_or_else(|| {
        Rejection::new(
            Reason::Malformed,
            "query parameter timestamp is not a number of seconds",
        )
    })?;
    Ok(Params {
        signature,
        timestamp,
        timestamp_value,
        nonce,
    })
}

fn non_empty<'q>(name: &'static str, value: Option<&'q str>) -> Result<&'q str, Rejection> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(Rejection::new(
            Reason::Malformed,
            format!("query parameter {name} is empty"),
        )),
        None => Err(Rejection::new(
            Reason::Malformed,
            format!("query parameter {name} is missing"),
        )),
    }
}

/// Unix seconds as decimal digits (64-bit: no year-2038 surprise).
fn parse_timestamp(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub(crate) fn is_plausible_openid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_source(
    address: Option<&[u8]>,
    config: &Config,
    sources: &Sources,
) -> Result<SourceOutcome, Rejection> {
    let mode = config.source.mode;
    if mode == SourceMode::Off {
        return Ok(SourceOutcome::NotChecked);
    }
    let ip = address.and_then(parse_source_address);
    if ip.is_some_and(|ip| sources.allow.contains(ip)) {
        return Ok(SourceOutcome::Listed);
    }
    if mode == SourceMode::Report {
        return Ok(SourceOutcome::ReportOnly);
    }
    if !sources.live_list_ready {
        return match config.source.when_unavailable {
            WhenUnavailable::Allow => Ok(SourceOutcome::Unverified),
            WhenUnavailable::Deny => Err(Rejection::new(
                Reason::Unavailable,
                "WeChat's callback IP list has not loaded yet",
            )),
        };
    }
    Err(Rejection::new(
        Reason::Source,
        match ip {
            Some(_) => "source address is not on the allowlist",
            None => "source address is unknown",
        },
    ))
}

/// `source.address` as Envoy gives it: `1.2.3.4:5678` or `[2001:db8::1]:5678`; a bare
/// address (no port) is accepted too.
pub fn parse_source_address(raw: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(raw).ok()?;
    text.parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()
}

/// The headers this filter owns: any a client sends are removed before forwarding.
pub const GATE_HEADER_PREFIX: &str = "x-wechat-gate-";

/// True for a header name that a backend could read as one of the gate's own: in
/// any case, and with `_` for `-`, since CGI-style backends (PHP, WSGI, many Java
/// containers) turn both into `HTTP_X_WECHAT_GATE_…`.
pub fn is_gate_header(name: &[u8]) -> bool {
    name.get(..GATE_HEADER_PREFIX.len()).is_some_and(|start| {
        start
            .iter()
            .zip(GATE_HEADER_PREFIX.bytes())
            .all(|(&b, p)| b.to_ascii_lowercase() == p || (b == b'_' && p == b'-'))
    })
}

mod path;
#[cfg(test)]
mod tests;
mod wecom;

use path::split_path;
pub use path::{guards, PathMatch};
