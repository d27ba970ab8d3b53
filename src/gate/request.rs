//! The decision for one request, as a pure function of what the host gathered:
//! method, `:path`, the downstream address, the time, the configuration and the
//! allowlist. The host code only carries the [`Verdict`] out.
//!
//! The steps run in the README's order ("What happens to a request"): method, query,
//! source, signature, freshness.

use crate::gate::allowlist::CallbackAllowlist;
use crate::gate::config::{Config, SourceMode, WhenUnavailable};
use crate::gate::dedupe::Entry;
use crate::gate::query::{parse_query, CallbackQuery};
pub use crate::gate::rejection::{Reason, Rejection, RETRY_AFTER_SECONDS};
use crate::gate::signature::{request_signature, signature_matches, HexDigest};
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
    /// A verified handshake: answer 200 with `echostr`.
    Echo {
        echostr: String,
        source: SourceOutcome,
        /// The signed query, to be recorded as used (it can never carry a push).
        query: Option<QueryUse>,
    },
    /// A verified push: forward it (after the body-size check, and for a safe-mode
    /// push once its body has been checked too).
    Forward {
        openid: Option<String>,
        source: SourceOutcome,
        /// Set for `encrypt_type=aes`: what the body's `Encrypt` is checked against.
        safe: Option<SafePush>,
        /// The signed query, refused as a replay if it was used before.
        query: Option<QueryUse>,
    },
}

/// A verified signed query (`signature`, `timestamp`, `nonce`), for the table of used
/// queries: it may carry one request while its timestamp is fresh. `None` when
/// `timestamp_tolerance_seconds` is 0 (a query is then valid forever, and no table
/// could remember it that long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryUse {
    /// From the verified signature (a SHA-1 of the token, timestamp and nonce).
    pub identity: u64,
    /// The query's timestamp, Unix seconds.
    pub timestamp: u64,
    /// Unix seconds from which the query is stale anyway on every worker:
    /// `timestamp + tolerance + 1`, plus [`CLOCK_SLACK_SECONDS`].
    pub expires_at: u64,
}

/// How far one worker's clock may lag another's (the tick clock is up to a second
/// old): a query is remembered this much longer than it can be fresh anywhere.
pub const CLOCK_SLACK_SECONDS: u64 = 5;

impl QueryUse {
    fn of(signature: &HexDigest, timestamp: i64, tolerance: u64) -> Option<QueryUse> {
        if tolerance == 0 {
            return None;
        }
        let hex = std::str::from_utf8(signature.get(..16)?).ok()?;
        let timestamp = u64::try_from(timestamp).ok()?;
        Some(QueryUse {
            identity: u64::from_str_radix(hex, 16).ok()?,
            timestamp,
            expires_at: timestamp
                .saturating_add(tolerance)
                .saturating_add(1 + CLOCK_SLACK_SECONDS),
        })
    }

    /// Its entry in the table of used queries, aged by its timestamp.
    pub fn entry(&self) -> Entry {
        Entry {
            identity: self.identity,
            stamp: self.timestamp,
            expires_at: self.expires_at,
        }
    }
}

/// The query parameters of a safe-mode push (`encrypt_type=aes`), kept for the body
/// check (`msg_signature`) and the encrypted reply (`timestamp`, `nonce`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePush {
    pub msg_signature: String,
    pub timestamp: String,
    pub nonce: String,
    /// Which of the rotated tokens signed the query (0: current): `msg_signature` and
    /// the sealed reply use the same one.
    pub token: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// Whether a request with this `:path` is on the guarded path (every request is,
/// when the configuration names none). The host asks first, so that a request on
/// another path costs nothing more.
pub fn guards(path: Option<&[u8]>, config: &Config) -> bool {
    match (&config.path, path) {
        (None, _) => true,
        (Some(guarded), Some(p)) => split_path(p).0 == guarded.as_bytes(),
        (Some(_), None) => false,
    }
}

/// Decides what to do with a request. `now_unix` is the current time in seconds.
pub fn decide(req: &RequestHead<'_>, config: &Config, sources: &Sources, now_unix: i64) -> Verdict {
    if !guards(req.path, config) {
        return Verdict::PassThrough;
    }
    let query = req.path.map_or(&b""[..], |p| split_path(p).1);
    match check(req, query, config, sources, now_unix) {
        Ok(v) => v,
        Err(r) => Verdict::Reject(r),
    }
}

fn check(
    req: &RequestHead<'_>,
    query: &[u8],
    config: &Config,
    sources: &Sources,
    now_unix: i64,
) -> Result<Verdict, Rejection> {
    // 1. Method.
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
    // 2. Query.
    let q = parse_query(query).map_err(|e| Rejection::new(Reason::Malformed, e.to_string()))?;
    let signed = read_signed(&q, method, config)?;
    // 3. Source.
    let source = check_source(req.source, config, sources)?;
    // 4. Signature.
    let p = &signed.params;
    let (token, expected) = verify_signature(config, p)?;
    let safe = signed.safe.map(|s| SafePush { token, ..s });
    // 5. Freshness.
    let tolerance = config.timestamp_tolerance_seconds;
    check_freshness(p.timestamp_value, now_unix, tolerance)?;
    // 6. and 7.
    let query = QueryUse::of(&expected, p.timestamp_value, tolerance);
    Ok(match signed.echostr {
        Some(echostr) => Verdict::Echo {
            echostr: echostr.to_string(),
            source,
            query,
        },
        None => Verdict::Forward {
            openid: q.openid.clone(),
            source,
            safe,
            query,
        },
    })
}

/// What a request's query carries, read and checked for form (not yet verified).
struct Signed<'q> {
    params: Params<'q>,
    /// A handshake's `echostr`.
    echostr: Option<&'q str>,
    /// A safe-mode push's parameters.
    safe: Option<SafePush>,
}

fn read_signed<'q>(
    q: &'q CallbackQuery,
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
    let safe = match method {
        Method::Post if aes => Some(SafePush {
            msg_signature: non_empty("msg_signature", q.msg_signature.as_deref())?.to_string(),
            timestamp: params.timestamp.to_string(),
            nonce: params.nonce.to_string(),
            token: 0,
        }),
        Method::Post | Method::Get => None,
    };
    if method == Method::Post
        && safe.is_none()
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
        safe,
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

fn required_params(q: &CallbackQuery) -> Result<Params<'_>, Rejection> {
    let signature = non_empty("signature", q.signature.as_deref())?;
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

/// Splits `:path` into the path and the query (without `?`).
fn split_path(path: &[u8]) -> (&[u8], &[u8]) {
    let mut halves = path.splitn(2, |&b| b == b'?');
    (
        halves.next().unwrap_or_default(),
        halves.next().unwrap_or_default(),
    )
}

/// The body-size rule for a verified POST, decided on its headers: the body must be
/// declared (`content-length`, as WeChat always sends) and within `max_body_bytes`, or
/// absent (`end_of_stream` on the headers). A body of unknown length is refused with
/// 411 rather than streamed: nothing reaches the backend before its size is known.
pub fn check_body(
    content_length: Option<&[u8]>,
    end_of_stream: bool,
    max_body_bytes: u64,
) -> Result<(), Rejection> {
    let Some(raw) = content_length else {
        if end_of_stream {
            return Ok(());
        }
        return Err(Rejection::new(
            Reason::LengthRequired,
            "a POST must declare its content-length (WeChat always does)",
        ));
    };
    let len = std::str::from_utf8(raw)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Rejection::new(Reason::Malformed, "content-length is not a number"))?;
    if len > max_body_bytes {
        return Err(Rejection::new(
            Reason::TooLarge,
            format!("body is larger than max_body_bytes ({max_body_bytes})"),
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::signature::as_str;

    const TOKEN: &str = "test-token";
    const NOW: i64 = 1_800_000_000;

    fn config(extra: &str) -> Config {
        let json = format!(
            r#"{{"path": "/wechat", "token": "{TOKEN}", "source": {{"allow": ["127.0.0.2", "10.0.0.0/8", "2001:db8::/32"]}}{extra}}}"#
        );
        crate::gate::config::parse(json.as_bytes(), &|_| None).expect("test config")
    }

    fn signed_query(token: &str, ts: i64, nonce: &str) -> String {
        let sig = request_signature(token, &ts.to_string(), nonce);
        format!("signature={}&timestamp={ts}&nonce={nonce}", as_str(&sig))
    }

    fn run(cfg: &Config, method: &str, path: &str, source: &str) -> Verdict {
        let allow = cfg.source.allow.clone();
        decide(
            &RequestHead {
                method: method.as_bytes(),
                path: Some(path.as_bytes()),
                source: Some(source.as_bytes()),
            },
            cfg,
            &Sources {
                allow: allow.clone(),
                live_list_ready: true,
            },
            NOW,
        )
    }

    fn reason(v: &Verdict) -> Option<Reason> {
        match v {
            Verdict::Reject(r) => Some(r.reason),
            _ => None,
        }
    }

    const LISTED: &str = "127.0.0.2:40000";

    #[test]
    fn signed_handshake_is_echoed() {
        let c = config("");
        let path = format!("/wechat?{}&echostr=hello", signed_query(TOKEN, NOW, "7"));
        assert_eq!(
            run(&c, "GET", &path, LISTED),
            Verdict::Echo {
                echostr: "hello".into(),
                source: SourceOutcome::Listed,
                query: Some(QueryUse {
                    identity: u64::from_str_radix(
                        &as_str(&request_signature(TOKEN, &NOW.to_string(), "7"))[..16],
                        16
                    )
                    .expect("hex"),
                    timestamp: NOW as u64,
                    expires_at: NOW as u64 + 301 + CLOCK_SLACK_SECONDS,
                }),
            }
        );
    }

    #[test]
    fn echostr_is_returned_decoded() {
        let c = config("");
        let path = format!(
            "/wechat?{}&echostr=a%2Fb%20c+d",
            signed_query(TOKEN, NOW, "7")
        );
        assert!(
            matches!(run(&c, "GET", &path, LISTED), Verdict::Echo { echostr, .. } if echostr == "a/b c d")
        );
    }

    #[test]
    fn signed_post_is_forwarded_with_openid() {
        let c = config("");
        let path = format!("/wechat?{}&openid=oUser_1-x", signed_query(TOKEN, NOW, "7"));
        assert_eq!(
            run(&c, "POST", &path, LISTED),
            Verdict::Forward {
                openid: Some("oUser_1-x".into()),
                source: SourceOutcome::Listed,
                safe: None,
                query: QueryUse::of(&request_signature(TOKEN, &NOW.to_string(), "7"), NOW, 300),
            }
        );
    }

    #[test]
    fn other_paths_pass_through() {
        let c = config("");
        for path in ["/", "/wechat/", "/wechatx", "/other?signature=x", "/Wechat"] {
            assert_eq!(
                run(&c, "DELETE", path, "1.1.1.1:1"),
                Verdict::PassThrough,
                "{path}"
            );
        }
    }

    #[test]
    fn without_a_path_every_request_is_guarded() {
        let c = crate::gate::config::parse(
            format!(r#"{{"token": "{TOKEN}", "source": {{"mode": "off"}}}}"#).as_bytes(),
            &|_| None,
        )
        .expect("config");
        assert_eq!(
            reason(&run(&c, "GET", "/anything", LISTED)),
            Some(Reason::Malformed)
        );
    }

    #[test]
    fn methods_other_than_get_and_post_get_405_with_allow() {
        let c = config("");
        for m in ["PUT", "HEAD", "OPTIONS", "DELETE", "get", "CONNECT"] {
            let v = run(&c, m, "/wechat", LISTED);
            assert_eq!(reason(&v), Some(Reason::Method), "{m}");
            if let Verdict::Reject(r) = v {
                assert_eq!(r.reason.status(), 405);
                assert_eq!(r.headers(), &[("allow", "GET, POST")]);
            }
        }
    }

    #[test]
    fn missing_or_empty_parameters_are_400() {
        let c = config("");
        let good = signed_query(TOKEN, NOW, "7");
        for path in [
            "/wechat".to_string(),
            "/wechat?timestamp=1&nonce=2".to_string(),
            "/wechat?signature=&timestamp=1&nonce=2".to_string(),
            "/wechat?signature=a&nonce=2".to_string(),
            "/wechat?signature=a&timestamp=1".to_string(),
            format!("/wechat?{good}"), // GET without echostr
            format!("/wechat?{good}&echostr="),
        ] {
            assert_eq!(
                reason(&run(&c, "GET", &path, LISTED)),
                Some(Reason::Malformed),
                "{path}"
            );
        }
    }

    #[test]
    fn repeated_or_non_utf8_parameters_are_400() {
        let c = config("");
        let good = signed_query(TOKEN, NOW, "7");
        for path in [
            format!("/wechat?{good}&nonce=7&echostr=x"),
            format!("/wechat?{good}&echostr=%FF"),
            format!("/wechat?{good}&echostr=1&echostr=1"),
        ] {
            assert_eq!(
                reason(&run(&c, "GET", &path, LISTED)),
                Some(Reason::Malformed),
                "{path}"
            );
        }
    }

    #[test]
    fn timestamp_that_is_not_a_number_is_400() {
        let c = config("");
        for ts in ["abc", "-5", "1e9", "99999999999999999999999", " 1"] {
            let path = format!("/wechat?signature=a&timestamp={ts}&nonce=1&echostr=x");
            assert_eq!(
                reason(&run(&c, "GET", &path, LISTED)),
                Some(Reason::Malformed),
                "{ts}"
            );
        }
    }

    #[test]
    fn implausible_openid_is_400() {
        let c = config("");
        let path = format!("/wechat?{}&openid=a%0D%0Ab", signed_query(TOKEN, NOW, "7"));
        assert_eq!(
            reason(&run(&c, "POST", &path, LISTED)),
            Some(Reason::Malformed)
        );
    }

    #[test]
    fn unlisted_source_is_403_before_the_signature_is_looked_at() {
        let c = config("");
        let path = format!("/wechat?{}&echostr=x", signed_query("wrong", NOW, "7"));
        assert_eq!(
            reason(&run(&c, "GET", &path, "127.0.0.3:1")),
            Some(Reason::Source)
        );
    }

    #[test]
    fn source_address_forms_envoy_reports() {
        let c = config("");
        let path = format!("/wechat?{}&echostr=x", signed_query(TOKEN, NOW, "7"));
        for listed in [
            "127.0.0.2:1",
            "10.9.8.7:65535",
            "[2001:db8::5]:443",
            "[::ffff:127.0.0.2]:80",
            "127.0.0.2",
        ] {
            assert!(
                matches!(run(&c, "GET", &path, listed), Verdict::Echo { .. }),
                "{listed}"
            );
        }
        for unlisted in [
            "127.0.0.3:1",
            "[2001:db9::5]:443",
            "garbage",
            "",
            "127.0.0.2:99999",
            "envoy://internal",
        ] {
            assert_eq!(
                reason(&run(&c, "GET", &path, unlisted)),
                Some(Reason::Source),
                "{unlisted}"
            );
        }
    }

    #[test]
    fn missing_source_address_is_403() {
        let c = config("");
        let allow = c.source.allow.clone();
        let path = format!("/wechat?{}&echostr=x", signed_query(TOKEN, NOW, "7"));
        let v = decide(
            &RequestHead {
                method: b"GET",
                path: Some(path.as_bytes()),
                source: None,
            },
            &c,
            &Sources {
                allow: allow.clone(),
                live_list_ready: true,
            },
            NOW,
        );
        assert_eq!(reason(&v), Some(Reason::Source));
    }

    #[test]
    fn report_mode_lets_unlisted_sources_through_and_says_so() {
        let c = crate::gate::config::parse(
            format!(
                r#"{{"token": "{TOKEN}", "source": {{"mode": "report", "allow": ["127.0.0.2"]}}}}"#
            )
            .as_bytes(),
            &|_| None,
        )
        .expect("config");
        let path = format!("/wechat?{}", signed_query(TOKEN, NOW, "7"));
        assert_eq!(
            run(&c, "POST", &path, "127.0.0.9:1"),
            Verdict::Forward {
                openid: None,
                source: SourceOutcome::ReportOnly,
                safe: None,
                query: QueryUse::of(&request_signature(TOKEN, &NOW.to_string(), "7"), NOW, 300),
            }
        );
        assert!(matches!(
            run(&c, "POST", &path, LISTED),
            Verdict::Forward {
                source: SourceOutcome::Listed,
                ..
            }
        ));
    }

    #[test]
    fn report_mode_still_checks_the_signature() {
        let c = crate::gate::config::parse(
            format!(r#"{{"token": "{TOKEN}", "source": {{"mode": "report"}}}}"#).as_bytes(),
            &|_| None,
        )
        .expect("config");
        let path = format!("/wechat?{}", signed_query("wrong", NOW, "7"));
        assert_eq!(
            reason(&run(&c, "POST", &path, "127.0.0.9:1")),
            Some(Reason::Signature)
        );
    }

    #[test]
    fn mode_off_skips_the_source_check() {
        let c = crate::gate::config::parse(
            format!(r#"{{"token": "{TOKEN}", "source": {{"mode": "off"}}}}"#).as_bytes(),
            &|_| None,
        )
        .expect("config");
        let path = format!("/wechat?{}", signed_query(TOKEN, NOW, "7"));
        assert!(matches!(
            run(&c, "POST", &path, "garbage"),
            Verdict::Forward {
                source: SourceOutcome::NotChecked,
                ..
            }
        ));
    }

    #[test]
    fn before_the_live_list_loads_deny_gives_503_and_static_entries_still_work() {
        let mut c = config("");
        let allow = c.source.allow.clone();
        let path = format!("/wechat?{}", signed_query(TOKEN, NOW, "7"));
        let run_unready = |c: &Config, source: &str| {
            decide(
                &RequestHead {
                    method: b"POST",
                    path: Some(path.as_bytes()),
                    source: Some(source.as_bytes()),
                },
                c,
                &Sources {
                    allow: allow.clone(),
                    live_list_ready: false,
                },
                NOW,
            )
        };
        let v = run_unready(&c, "127.0.0.9:1");
        assert_eq!(reason(&v), Some(Reason::Unavailable));
        if let Verdict::Reject(r) = &v {
            assert_eq!(r.reason.status(), 503);
            assert_eq!(r.headers(), &[("retry-after", RETRY_AFTER_SECONDS)]);
        }
        assert!(matches!(
            run_unready(&c, LISTED),
            Verdict::Forward {
                source: SourceOutcome::Listed,
                ..
            }
        ));
        c.source.when_unavailable = WhenUnavailable::Allow;
        assert!(matches!(
            run_unready(&c, "127.0.0.9:1"),
            Verdict::Forward {
                source: SourceOutcome::Unverified,
                ..
            }
        ));
    }

    #[test]
    fn wrong_signature_is_401() {
        let c = config("");
        let path = format!(
            "/wechat?{}&echostr=x",
            signed_query("not-the-token", NOW, "7")
        );
        assert_eq!(
            reason(&run(&c, "GET", &path, LISTED)),
            Some(Reason::Signature)
        );
        let v = run(&c, "GET", &path, LISTED);
        if let Verdict::Reject(r) = v {
            assert_eq!(r.reason.status(), 401);
        }
    }

    #[test]
    fn uppercase_signature_is_not_accepted() {
        let c = config("");
        let sig = request_signature(TOKEN, &NOW.to_string(), "7");
        let upper = as_str(&sig).to_ascii_uppercase();
        let path = format!("/wechat?signature={upper}&timestamp={NOW}&nonce=7&echostr=x");
        assert_eq!(
            reason(&run(&c, "GET", &path, LISTED)),
            Some(Reason::Signature)
        );
    }

    #[test]
    fn timestamp_outside_the_window_is_401_stale() {
        let c = config("");
        for ts in [NOW - 301, NOW + 301, 0] {
            let path = format!("/wechat?{}&echostr=x", signed_query(TOKEN, ts, "7"));
            let v = run(&c, "GET", &path, LISTED);
            assert_eq!(reason(&v), Some(Reason::Stale), "{ts}");
        }
        for ts in [NOW - 300, NOW + 300, NOW] {
            let path = format!("/wechat?{}&echostr=x", signed_query(TOKEN, ts, "7"));
            assert!(
                matches!(run(&c, "GET", &path, LISTED), Verdict::Echo { .. }),
                "{ts}"
            );
        }
    }

    fn query_use(v: &Verdict) -> Option<QueryUse> {
        match v {
            Verdict::Echo { query, .. } | Verdict::Forward { query, .. } => *query,
            _ => None,
        }
    }

    #[test]
    fn a_verified_query_is_identified_by_its_signature_whatever_the_method_or_extras() {
        let c = config("");
        let q = signed_query(TOKEN, NOW, "7");
        let get = query_use(&run(&c, "GET", &format!("/wechat?{q}&echostr=a"), LISTED));
        let post = query_use(&run(&c, "POST", &format!("/wechat?{q}"), LISTED));
        let other = query_use(&run(&c, "POST", &format!("/wechat?{q}&openid=o2"), LISTED));
        assert!(get.is_some());
        assert_eq!(get, post, "a handshake's query cannot become a push");
        assert_eq!(post, other);
        let another_nonce = signed_query(TOKEN, NOW, "8");
        assert_ne!(
            query_use(&run(
                &c,
                "POST",
                &format!("/wechat?{another_nonce}"),
                LISTED
            )),
            post
        );
        assert_eq!(
            post.map(|u| u.expires_at),
            Some(NOW as u64 + 301 + CLOCK_SLACK_SECONDS)
        );
    }

    #[test]
    fn with_tolerance_zero_no_query_is_remembered() {
        let c = config(r#", "timestamp_tolerance_seconds": 0"#);
        let path = format!("/wechat?{}", signed_query(TOKEN, NOW, "7"));
        let v = run(&c, "POST", &path, LISTED);
        assert!(matches!(v, Verdict::Forward { query: None, .. }), "{v:?}");
    }

    #[test]
    fn tolerance_zero_turns_the_freshness_check_off() {
        let c = config(r#", "timestamp_tolerance_seconds": 0"#);
        let path = format!("/wechat?{}&echostr=x", signed_query(TOKEN, 1, "7"));
        assert!(matches!(
            run(&c, "GET", &path, LISTED),
            Verdict::Echo { .. }
        ));
    }

    #[test]
    fn largest_timestamps_do_not_overflow() {
        let c = config("");
        let path = format!(
            "/wechat?{}&echostr=x",
            signed_query(TOKEN, 999_999_999_999_999_999, "7")
        );
        assert_eq!(reason(&run(&c, "GET", &path, LISTED)), Some(Reason::Stale));
    }

    #[test]
    fn body_over_the_limit_is_413() {
        assert_eq!(check_body(Some(b"10"), false, 10), Ok(()));
        assert_eq!(
            check_body(Some(b"11"), false, 10).map_err(|r| r.reason),
            Err(Reason::TooLarge)
        );
        assert_eq!(
            check_body(Some(b"11"), false, 10).map_err(|r| r.reason.status()),
            Err(413)
        );
    }

    #[test]
    fn body_of_unknown_length_is_411_and_no_body_is_fine() {
        assert_eq!(
            check_body(None, false, 10).map_err(|r| r.reason.status()),
            Err(411)
        );
        assert_eq!(check_body(None, true, 10), Ok(()));
    }

    #[test]
    fn content_length_that_is_not_a_number_is_400() {
        for bad in [
            &b"99999999999999999999999999"[..],
            b"-1",
            b"",
            b"1 0",
            b"0x10",
        ] {
            assert_eq!(
                check_body(Some(bad), false, 10).map_err(|r| r.reason),
                Err(Reason::Malformed)
            );
        }
    }

    #[test]
    fn gate_headers_are_recognised_in_any_case() {
        assert!(is_gate_header(b"x-wechat-gate-verified"));
        assert!(is_gate_header(b"X-WeChat-Gate-Openid"));
        assert!(!is_gate_header(b"x-wechat-gat"));
        assert!(!is_gate_header(b"x-wechat-other"));
    }

    #[test]
    fn gate_headers_spelled_with_underscores_are_recognised_too() {
        for name in [
            &b"x_wechat_gate_verified"[..],
            b"X_WECHAT_GATE_OPENID",
            b"x-wechat_gate-verified",
            b"x_wechat-gate_decrypted",
        ] {
            assert!(is_gate_header(name), "{}", String::from_utf8_lossy(name));
        }
        assert!(!is_gate_header(b"x_wechat_gatex"));
        assert!(!is_gate_header(b"x.wechat.gate.verified"));
        assert!(!is_gate_header(b"-wechat-gate-verified"));
    }

    #[test]
    fn rejection_body_names_the_reason() {
        let c = config("");
        if let Verdict::Reject(r) = run(&c, "PUT", "/wechat", LISTED) {
            assert_eq!(
                r.body(),
                "wechat-gate: method: only GET and POST are accepted\n"
            );
        } else {
            panic!("expected a rejection");
        }
    }

    #[test]
    fn a_safe_mode_push_carries_its_msg_signature_timestamp_and_nonce() {
        let c = config("");
        let path = format!(
            "/wechat?{}&encrypt_type=aes&msg_signature=abc",
            signed_query(TOKEN, NOW, "7")
        );
        match run(&c, "POST", &path, LISTED) {
            Verdict::Forward { safe: Some(s), .. } => {
                assert_eq!(s.msg_signature, "abc");
                assert_eq!(s.timestamp, NOW.to_string());
                assert_eq!(s.nonce, "7");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encrypt_type_aes_is_read_case_insensitively() {
        let c = config("");
        let path = format!(
            "/wechat?{}&encrypt_type=AES&msg_signature=abc",
            signed_query(TOKEN, NOW, "7")
        );
        assert!(matches!(
            run(&c, "POST", &path, LISTED),
            Verdict::Forward { safe: Some(_), .. }
        ));
    }

    #[test]
    fn a_safe_mode_push_without_msg_signature_is_400() {
        let c = config("");
        for extra in ["&encrypt_type=aes", "&encrypt_type=aes&msg_signature="] {
            let path = format!("/wechat?{}{extra}", signed_query(TOKEN, NOW, "7"));
            assert_eq!(
                reason(&run(&c, "POST", &path, LISTED)),
                Some(Reason::Malformed)
            );
        }
    }

    #[test]
    fn safe_mode_require_refuses_plaintext_pushes_but_not_the_handshake() {
        let c = config(
            r#", "appid": "wx1", "safe_mode": {"encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "require": true}"#,
        );
        let plain = format!("/wechat?{}", signed_query(TOKEN, NOW, "7"));
        assert_eq!(
            reason(&run(&c, "POST", &plain, LISTED)),
            Some(Reason::Malformed)
        );
        let raw = format!("{plain}&encrypt_type=raw");
        assert_eq!(
            reason(&run(&c, "POST", &raw, LISTED)),
            Some(Reason::Malformed)
        );
        let aes = format!("{plain}&encrypt_type=aes&msg_signature=abc");
        assert!(matches!(
            run(&c, "POST", &aes, LISTED),
            Verdict::Forward { safe: Some(_), .. }
        ));
        let get = format!("{plain}&echostr=hi");
        assert!(matches!(run(&c, "GET", &get, LISTED), Verdict::Echo { .. }));
    }
}
