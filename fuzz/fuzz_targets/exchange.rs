//! A request's whole life (`gate::exchange::Exchange`) fed with arbitrary event
//! sequences through the fake proxy (`gate::testing::FakeProxy`, the unit tests'
//! too), one to four requests sharing its retry and replay tables. Besides never panicking, it asserts the gate's
//! promise, judged here independently of the gate's code from how the fuzzer built
//! each request:
//!
//! - nothing of a request goes upstream (its headers let go, its body released)
//!   unless its head passes: the guarded path, POST, a `signature` the fuzzer
//!   computed with a configured token (WeCom: none, its query is signed with the
//!   body), a fresh timestamp, an admitted source, `encrypt_type=aes` where
//!   `safe_mode.require` says so;
//! - no body is released unless it passes too: within `max_body_bytes`, and for a
//!   safe-mode push a `msg_signature` the fuzzer computed over the `Encrypt` it sent
//!   with the token that signed the query, and (with a key configured) an `Encrypt`
//!   the fuzzer sealed with the account's key for its appid;
//! - a signed query whose request was delivered is never delivered again (while
//!   `timestamp_tolerance_seconds` is on).
#![no_main]

use arbitrary::Arbitrary;
use gate::config::{self, Config, Platform, SourceMode, WhenUnavailable};
use gate::exchange::{BodyMode, ByteCount, Circumstances, Effect, Exchange, Flow, Step};
use gate::header_map::HeaderMap;
use gate::message::Format;
use gate::query::encode_query;
use gate::request::Sources;
use gate::safe_mode::cipher::{encrypt, AesKey};
use gate::safe_mode::envelope::push_body_in;
use gate::signature::{as_str, sign};
use gate::testing::FakeProxy;
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::OnceLock;

const NOW: i64 = 1_800_000_000;
const TOKEN: &str = "tok";
const PREVIOUS_TOKEN: &str = "tok-before";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const OTHER_KEY: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";
const APPID: &str = "wx0123456789abcdef";

/// A configuration to fuzz against, and what the target knows of it.
struct Setup {
    config: Config,
    /// The tokens that sign, current first.
    tokens: &'static [&'static str],
    /// The keys that open, current first (empty: no key, the signature is all).
    keys: &'static [&'static str],
}

fn setups() -> &'static [Setup] {
    static SETUPS: OnceLock<Vec<Setup>> = OnceLock::new();
    SETUPS.get_or_init(|| {
        let live = r#""wechat_api": {"secret": "s", "upstreams": [{"cluster": "api", "authority": "api.weixin.qq.com"}]}"#;
        let aes = |decrypt: bool| {
            format!(r#", "safe_mode": {{"encoding_aes_key": "{KEY}", "decrypt": {decrypt}}}"#)
        };
        let one = &[TOKEN][..];
        let keyed = &[KEY][..];
        let setup = |json: String, tokens, keys| Setup {
            config: config::parse(json.as_bytes(), &|_| None).expect("a fuzz config"),
            tokens,
            keys,
        };
        let base = |source: &str, extra: &str| {
            format!(
                r#"{{"path": "/wechat", "token": "{TOKEN}", "appid": "{APPID}", "source": {{{source}}}{extra}}}"#
            )
        };
        let listed = r#""allow": ["127.0.0.2"]"#;
        vec![
            // Plaintext pushes, read for retries; safe-mode pushes without a key.
            setup(base(listed, ""), one, &[]),
            // Forwarded on their headers.
            setup(base(listed, r#", "dedupe_seconds": 0"#), one, &[]),
            setup(base(r#""mode": "report""#, &aes(true)), one, keyed),
            setup(
                base(
                    r#""mode": "off""#,
                    &format!(
                        r#", "max_body_bytes": 300, "safe_mode": {{"encoding_aes_key": "{KEY}", "require": true}}"#
                    ),
                ),
                one,
                keyed,
            ),
            setup(
                base(
                    &format!(r#"{listed}, "when_unavailable": "allow", {live}"#),
                    &format!(r#", "platform": "mini_program"{}"#, aes(true)),
                ),
                one,
                keyed,
            ),
            setup(
                base(listed, &format!(r#", "platform": "wecom"{}"#, aes(true))),
                one,
                keyed,
            ),
            // Rotated token and key, freshness off (and with it the replay table).
            setup(
                format!(
                    r#"{{"path": "/wechat", "token": ["{TOKEN}", "{PREVIOUS_TOKEN}"], "appid": "{APPID}", "timestamp_tolerance_seconds": 0, "source": {{{listed}, {live}}}, "safe_mode": {{"encoding_aes_key": ["{OTHER_KEY}", "{KEY}"], "decrypt": true}}}}"#
                ),
                &[TOKEN, PREVIOUS_TOKEN],
                &[OTHER_KEY, KEY],
            ),
            // Every request guarded; Envoy's failures answered `success`.
            setup(
                format!(
                    r#"{{"token": "{TOKEN}", "appid": "{APPID}", "on_upstream_failure": "success", "source": {{"mode": "off"}}{}}}"#,
                    aes(true)
                ),
                one,
                keyed,
            ),
        ]
    })
}

/// `:path` before the query, and whether `/wechat` guards it.
const PATHS: [(&str, bool); 6] = [
    ("/wechat", true),
    ("/wechat/", true),
    ("/wechat;jsessionid=1", true),
    ("/other", false),
    ("/wechatx", false),
    ("/wechat/x", false),
];

/// `source.address`, and whether it is on the allowlist (127.0.0.2).
const SOURCES: [(Option<&str>, bool); 6] = [
    (Some("127.0.0.2:4000"), true),
    (Some("[::ffff:127.0.0.2]:4000"), true),
    (Some("127.0.0.2"), true),
    (Some("10.0.0.1:5"), false),
    (Some("not an address"), false),
    (None, false),
];

#[derive(Arbitrary, Debug)]
struct Input {
    setup: u8,
    body_mode: u8,
    /// The worker's streamed bodies outstanding (its cap is 16), and whether its
    /// waiting pushes are at their cap.
    streamed: u8,
    waiting_full: bool,
    /// The live list has loaded (when one is configured).
    live_ready: bool,
    requests: Vec<Request>,
}

#[derive(Arbitrary, Debug)]
enum Method {
    Get,
    Post,
    Other(String),
}

#[derive(Arbitrary, Debug, Clone)]
enum Signed {
    /// With the configured token at this index (beyond the configured ones: a token
    /// the gate does not know).
    Token(u8),
    /// This text.
    Text(String),
    Missing,
}

#[derive(Arbitrary, Debug, Clone)]
enum Timestamp {
    /// `NOW + offset` seconds, with that many leading zeros.
    Offset(i32, u8),
    /// Not a number (it starts with `x`).
    Text(String),
    Missing,
}

#[derive(Arbitrary, Debug, Clone)]
enum Sealed {
    Genuine(Vec<u8>),
    OtherKey(Vec<u8>),
    OtherAppid(Vec<u8>, String),
    Text(String),
}

#[derive(Arbitrary, Debug, Clone)]
enum Body {
    Plain(Vec<u8>),
    /// A safe-mode envelope: its `Encrypt` as sealed, `ToUserName`, JSON or XML,
    /// text inserted after its opening.
    Envelope {
        sealed: Sealed,
        to: Option<String>,
        json: bool,
        junk: String,
    },
}

#[derive(Arbitrary, Debug, Clone)]
enum ContentLength {
    Exact,
    Missing,
    Text(String),
}

#[derive(Arbitrary, Debug)]
struct Request {
    /// Repeats the query of an earlier request (a replay), with its own body.
    replay_of: Option<u8>,
    method: Method,
    path: u8,
    source: u8,
    signature: Signed,
    timestamp: Timestamp,
    nonce: String,
    echostr: Option<String>,
    openid: Option<String>,
    encrypt_type: Option<String>,
    msg_signature: Signed,
    /// Appended to the query as it is.
    extra_query: String,
    content_length: ContentLength,
    headers: Vec<(String, String)>,
    body: Body,
    end_of_stream: bool,
    events: Vec<Event>,
    response_status: u16,
    response_details: u8,
    response_body: Vec<u8>,
    random: Option<[u8; 16]>,
    prefix: [u8; 16],
}

#[derive(Arbitrary, Debug)]
enum Event {
    /// This many more bytes of the body; the last part may end the stream.
    Body(u16, bool),
    Trailers(Vec<String>),
    /// A tick's look, with this many body bytes Envoy counted since the push was held.
    Probe(u16),
    BodyDeadline,
    EffectRefused,
    ResponseHeaders(bool),
    ResponseBody(u16, bool),
    ResponseTrailers,
    StreamEnd,
}

/// What the target knows about a query, kept for the requests that repeat it.
#[derive(Clone)]
struct QueryFacts {
    text: String,
    /// The configured token that signed it.
    token: Option<usize>,
    fresh: bool,
    aes: bool,
    /// What its `msg_signature` signs (the `Encrypt`, or WeCom's `echostr`), and with
    /// which configured token.
    msg_signed: Option<(String, usize)>,
    /// Its identity in the replay table, as the target sees it.
    key: String,
}

/// A request as built, and what the target knows about it.
struct Built {
    headers: HeaderMap,
    body: Vec<u8>,
    guarded: bool,
    /// Its head passes every check.
    head_ok: bool,
    /// Its body passes too.
    body_ok: bool,
    query: QueryFacts,
}

fn key(text: &str) -> AesKey {
    AesKey::from_encoding_aes_key(text).expect("a valid key")
}

/// A signed value, and the index of the token that signed it (if a configured one).
fn signed(s: &Signed, setup: &Setup, parts: &[&str]) -> (Option<String>, Option<usize>) {
    match s {
        Signed::Token(i) => {
            let i = usize::from(*i % 3);
            let token = setup.tokens.get(i).copied().unwrap_or("not-a-token");
            let mut all = vec![token];
            all.extend_from_slice(parts);
            (
                Some(as_str(&sign(&all)).to_string()),
                (i < setup.tokens.len()).then_some(i),
            )
        }
        Signed::Text(t) => (Some(t.clone()), None),
        Signed::Missing => (None, None),
    }
}

/// The body (none when the headers end the stream), its `Encrypt`, and whether that
/// is the account's own sealed message.
fn body_of(r: &Request, setup: &Setup) -> (Vec<u8>, Option<String>, bool) {
    match &r.body {
        _ if r.end_of_stream => (Vec::new(), None, false),
        Body::Plain(b) => (b.clone(), None, false),
        Body::Envelope {
            sealed,
            to,
            json,
            junk,
        } => {
            let (encrypt, genuine) = match sealed {
                Sealed::Genuine(m) => (
                    encrypt(&key(setup.keys.last().unwrap_or(&KEY)), APPID, m, &r.prefix),
                    !setup.keys.is_empty(),
                ),
                Sealed::OtherKey(m) => (
                    encrypt(&key(OTHER_KEY), APPID, m, &r.prefix),
                    setup.keys.contains(&OTHER_KEY),
                ),
                Sealed::OtherAppid(m, appid) => (
                    encrypt(&key(KEY), appid, m, &r.prefix),
                    appid == APPID && setup.keys.contains(&KEY),
                ),
                Sealed::Text(t) => (t.clone(), false),
            };
            let format = if *json { Format::Json } else { Format::Xml };
            let mut body = push_body_in(format, to.as_deref(), &encrypt);
            body.insert_str(if *json { 1 } else { 5 }, junk);
            (body.into_bytes(), Some(encrypt), genuine)
        }
    }
}

fn build(r: &Request, setup: &Setup, live_ready: bool, earlier: &[QueryFacts]) -> Built {
    let config = &setup.config;
    let wecom = config.platform == Platform::Wecom;
    let (path, on_path) = PATHS[usize::from(r.path) % PATHS.len()];
    let guarded = on_path || config.path.is_none();

    let (body, encrypt, genuine) = body_of(r, setup);

    // The query: a replay repeats an earlier one's exactly.
    let replayed = r
        .replay_of
        .and_then(|i| earlier.get(usize::from(i) % earlier.len().max(1)));
    let query = match replayed {
        Some(q) => q.clone(),
        None => query(r, setup, encrypt.as_deref().unwrap_or_default()),
    };

    let method = match &r.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Other(m) => m.as_str(),
    };
    let (_, listed) = SOURCES[usize::from(r.source) % SOURCES.len()];
    let s = &config.source;
    let ready = live_ready || s.wechat_api.is_none();
    let source_ok = s.mode != SourceMode::Enforce
        || listed
        || (!ready && s.when_unavailable == WhenUnavailable::Allow);
    // WeCom's pushes are all encrypted, without `encrypt_type`.
    let safe = wecom || query.aes;
    let require = config.safe_mode.as_ref().is_some_and(|m| m.require);
    let head_ok = guarded
        && method == "POST"
        && query.fresh
        && source_ok
        && (wecom || query.token.is_some())
        && !(require && !safe);
    let msg_ok = match (&query.msg_signed, &encrypt) {
        (Some((signed, token)), Some(e)) => signed == e && (wecom || Some(*token) == query.token),
        _ => false,
    };
    let body_ok = body.len() as u64 <= config.max_body_bytes
        && (!safe || (msg_ok && (genuine || setup.keys.is_empty())));

    let full_path = format!("{path}?{}", query.text);
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b":method".to_vec(), method.into()),
        (b":path".to_vec(), full_path.into_bytes()),
    ];
    match &r.content_length {
        ContentLength::Exact => {
            pairs.push((b"content-length".to_vec(), body.len().to_string().into()))
        }
        ContentLength::Missing => {}
        ContentLength::Text(t) => pairs.push((b"content-length".to_vec(), format!("x{t}").into())),
    }
    for (n, v) in r.headers.iter().take(4) {
        pairs.push((n.as_bytes().to_vec(), v.as_bytes().to_vec()));
    }
    let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (&n[..], &v[..])).collect();
    Built {
        headers: HeaderMap::from_pairs(&refs),
        body,
        guarded,
        head_ok,
        body_ok: head_ok && body_ok,
        query,
    }
}

/// A new query as the fuzzer chose to sign it.
fn query(r: &Request, setup: &Setup, encrypt: &str) -> QueryFacts {
    let config = &setup.config;
    let wecom = config.platform == Platform::Wecom;
    let (ts, fresh) = match &r.timestamp {
        Timestamp::Offset(offset, zeros) => {
            let tolerance = config.timestamp_tolerance_seconds;
            let value = NOW + i64::from(*offset);
            let text = format!("{}{value}", "0".repeat(usize::from(zeros % 4)));
            (
                Some(text),
                tolerance == 0 || u64::from(offset.unsigned_abs()) <= tolerance,
            )
        }
        Timestamp::Text(t) => (Some(format!("x{t}")), false),
        Timestamp::Missing => (None, false),
    };
    let ts_text = ts.clone().unwrap_or_default();
    let nonce = r.nonce.as_str();
    let (signature, token) = signed(&r.signature, setup, &[&ts_text, nonce]);
    let signed_part = match &r.echostr {
        Some(e) if wecom => e.as_str(),
        _ => encrypt,
    };
    let (msg_signature, msg_token) =
        signed(&r.msg_signature, setup, &[&ts_text, nonce, signed_part]);
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = &signature {
        pairs.push(("signature", s));
    }
    if let Some(t) = &ts {
        pairs.push(("timestamp", t));
    }
    pairs.push(("nonce", nonce));
    if let Some(e) = &r.echostr {
        pairs.push(("echostr", e));
    }
    if let Some(o) = &r.openid {
        pairs.push(("openid", o));
    }
    if let Some(t) = &r.encrypt_type {
        pairs.push(("encrypt_type", t));
    }
    if let Some(m) = &msg_signature {
        pairs.push(("msg_signature", m));
    }
    let mut text = encode_query(&pairs);
    text.push_str(&r.extra_query);
    QueryFacts {
        text,
        token,
        fresh,
        aes: r
            .encrypt_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("aes")),
        msg_signed: msg_token.map(|t| (signed_part.to_string(), t)),
        key: if wecom {
            format!("wecom {ts_text} {nonce} {signed_part}")
        } else {
            format!("{token:?} {ts_text} {nonce}")
        },
    }
}

/// What became of a request so far, as the host would see it.
#[derive(Default, Clone, Copy)]
struct Fate {
    answered: bool,
    headers_forwarded: bool,
    body_released: bool,
}

/// Applies a step's effects and flow; checks that nothing goes upstream unchecked.
fn apply(step: &Step, b: &Built, fate: &mut Fate, body_whole: bool, what: &str) {
    for e in &step.effects {
        match e {
            Effect::Reject(_) | Effect::LocalReply { .. } => fate.answered = true,
            Effect::ResumeRequest if !fate.answered => forward_headers(b, fate, what),
            _ => {}
        }
    }
    if step.flow == Flow::Continue && !fate.answered && b.guarded {
        forward_headers(b, fate, what);
        if body_whole {
            assert!(
                b.body_ok,
                "{what}: a body that did not pass was released: {:?}",
                String::from_utf8_lossy(&b.body)
            );
            fate.body_released = true;
        }
    }
}

fn forward_headers(b: &Built, fate: &mut Fate, what: &str) {
    assert!(
        b.head_ok,
        "{what}: a request whose head did not pass went upstream: {:?}",
        b.query.text
    );
    fate.headers_forwarded = true;
}

/// An effect the host may fail to carry out (and then tells the exchange).
fn can_fail(e: &Effect) -> bool {
    matches!(
        e,
        Effect::SetRequestHeader(..)
            | Effect::RemoveRequestHeader(_)
            | Effect::ReplaceRequestBody(_)
            | Effect::RemoveRequestTrailer(_)
    )
}

fn run(input: Input) {
    let setups = setups();
    let setup = &setups[usize::from(input.setup) % setups.len()];
    let config = &setup.config;
    let ctx = Circumstances {
        config,
        now: NOW,
        body_mode: match input.body_mode % 3 {
            0 => BodyMode::Hold,
            1 => BodyMode::Stream,
            _ => BodyMode::Unknown,
        },
        streamed_unverified: usize::from(input.streamed % 20),
        waiting: if input.waiting_full {
            gate::body::MAX_WAITING
        } else {
            0
        },
        longest_tolerance: 0,
    };
    let mut sources = Sources::fixed(config.source.allow.clone());
    sources.live_list_ready = input.live_ready || config.source.wechat_api.is_none();
    // Whatever was forwarded reaches the backend (so nothing forwarded is ever
    // forgotten, and a delivered query stays used).
    let mut fake = FakeProxy::new(config);
    fake.sources = Rc::new(sources);
    let mut earlier: Vec<QueryFacts> = Vec::new();
    let mut delivered: HashSet<String> = HashSet::new();
    for (n, r) in input.requests.iter().take(4).enumerate() {
        let b = build(r, setup, input.live_ready, &earlier);
        earlier.push(b.query.clone());
        fake.source = SOURCES[usize::from(r.source) % SOURCES.len()]
            .0
            .map(|s| s.as_bytes().to_vec());
        fake.request_body = b.body.clone();
        fake.status = Some(u32::from(r.response_status % 600));
        fake.details = Some(match r.response_details % 3 {
            0 => b"via_upstream".to_vec(),
            1 => b"upstream_reset_before_response_started{remote_reset}".to_vec(),
            _ => b"response_timeout".to_vec(),
        });
        fake.response_body = r.response_body.clone();
        fake.random = r.random;
        let fate = exchange(ctx, r, &b, &mut fake, &format!("request {n}"));
        if fate.body_released && config.timestamp_tolerance_seconds > 0 {
            assert!(
                delivered.insert(b.query.key.clone()),
                "request {n}: a signed query delivered before was delivered again: {}",
                b.query.key
            );
        }
    }
}

/// One request's events, in an order Envoy could deliver them.
fn exchange(
    ctx: Circumstances<'_>,
    r: &Request,
    b: &Built,
    fake: &mut FakeProxy,
    what: &str,
) -> Fate {
    let mut x = Exchange::new();
    let mut fate = Fate::default();
    let eos = r.end_of_stream;
    let step = x.on_request_headers(ctx, &b.headers, eos, fake);
    apply(&step, b, &mut fate, eos, &format!("{what} headers"));
    // The host may fail to carry out the last step's effects: then it did not go on.
    let mut before = (Fate::default(), step.effects.iter().any(can_fail));
    let mut size = 0usize;
    let mut request_over = eos;
    let mut response_started = false;
    let mut response_over = false;
    let mut response_size = 0usize;
    for event in r.events.iter().take(16) {
        if fate.answered {
            break;
        }
        let last = fate;
        let step = match event {
            Event::Body(more, end) if !request_over => {
                size = (size + usize::from(*more)).min(b.body.len());
                let end = *end && size == b.body.len();
                request_over = end;
                let step = x.on_request_body(ctx, size, end, fake);
                apply(&step, b, &mut fate, end, &format!("{what} body"));
                step
            }
            Event::Trailers(names) if !request_over && size == b.body.len() => {
                request_over = true;
                fake.trailers = names.iter().map(|n| n.as_bytes().to_vec()).collect();
                let step = x.on_request_trailers(fake);
                apply(&step, b, &mut fate, true, &format!("{what} trailers"));
                step
            }
            Event::Probe(arrived) => {
                let count = ByteCount {
                    when_held: Some(300),
                    now: Some(300 + u64::from(*arrived)),
                };
                let step = x.on_probe(ctx, count, fake);
                apply(&step, b, &mut fate, false, &format!("{what} probe"));
                step
            }
            Event::BodyDeadline => {
                let step = x.on_body_deadline(fake);
                apply(&step, b, &mut fate, false, &format!("{what} deadline"));
                step
            }
            Event::EffectRefused if before.1 => {
                // Right after the step whose effect failed: it did not go on.
                fate = before.0;
                let step = x.on_effect_refused("fuzz", fake);
                apply(&step, b, &mut fate, false, &format!("{what} refused"));
                step
            }
            // A response comes only once the request has gone upstream.
            Event::ResponseHeaders(end)
                if (fate.headers_forwarded || !b.guarded) && !response_started =>
            {
                response_started = true;
                response_over = *end;
                x.on_response_headers(ctx, *end, fake)
            }
            Event::ResponseBody(more, end) if response_started && !response_over => {
                response_size = (response_size + usize::from(*more)).min(fake.response_body.len());
                response_over = *end;
                x.on_response_body(ctx, response_size, *end, fake)
            }
            Event::ResponseTrailers if response_started && !response_over => {
                response_over = true;
                x.on_response_trailers(ctx, fake)
            }
            Event::StreamEnd => break,
            _ => continue,
        };
        before = (last, step.effects.iter().any(can_fail));
    }
    x.on_stream_end(fake);
    fate
}

fuzz_target!(|input: Input| run(input));
