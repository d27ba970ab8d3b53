//! The exchange's rules, one test each, against the fake proxy
//! ([`crate::testing::FakeProxy`]) that answers what the test says and records what
//! it was asked. The tables are the real ones on one in-memory shard each.

use super::*;
use crate::body::{BODY_DEADLINE_MS, MAX_STREAMED_UNVERIFIED, MAX_WAITING};
use crate::config;
use crate::query::encode_query;
use crate::safe_mode::{cipher, envelope};
use crate::signature::{as_str, request_signature, sign};
use crate::testing::FakeProxy;

const TOKEN: &str = "tok";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APPID: &str = "wx1234";
const NOW: i64 = 1_800_000_000;

fn cfg(extra: &str) -> Config {
    cfg_with_source(r#"{"allow": ["127.0.0.2"]}"#, extra)
}

fn cfg_with_source(source: &str, extra: &str) -> Config {
    let json = format!(
        r#"{{"path": "/wechat", "token": "{TOKEN}", "appid": "{APPID}", "source": {source}{extra}}}"#
    );
    config::parse(json.as_bytes(), &|_| None).expect("test config")
}

fn safe_cfg() -> Config {
    cfg(&format!(
        r#", "safe_mode": {{"encoding_aes_key": "{KEY}", "decrypt": true}}"#
    ))
}

fn query(nonce: &str, extra: &[(&str, &str)]) -> String {
    let ts = NOW.to_string();
    let sig = request_signature(TOKEN, &ts, nonce);
    let mut pairs = vec![
        ("signature", as_str(&sig)),
        ("timestamp", &ts),
        ("nonce", nonce),
    ];
    pairs.extend_from_slice(extra);
    encode_query(&pairs)
}

fn message(msg_id: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o_sender]]></FromUserName>\
         <CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>"
    )
}

fn ctx(config: &Config) -> Circumstances<'_> {
    Circumstances {
        config,
        now: NOW,
        body_mode: BodyMode::Hold,
        streamed_unverified: 0,
        waiting: 0,
        longest_tolerance: 0,
    }
}

fn streaming(config: &Config) -> Circumstances<'_> {
    Circumstances {
        body_mode: BodyMode::Stream,
        ..ctx(config)
    }
}

fn headers(method: &str, path: &str, extra: &[(&str, &str)]) -> HeaderMap {
    let mut pairs: Vec<(&[u8], &[u8])> = vec![
        (b":authority", b"backend.example"),
        (b":method", method.as_bytes()),
        (b":path", path.as_bytes()),
    ];
    pairs.extend(extra.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    HeaderMap::from_pairs(&pairs)
}

/// A POST of `body` to `/wechat?query`, its headers with the body's length.
fn post(x: &mut Exchange, c: &Config, p: &mut FakeProxy, query: &str, body: &str) -> Step {
    post_in(x, ctx(c), p, query, body)
}

/// [`post`], judged in `ctx`.
fn post_in(
    x: &mut Exchange,
    ctx: Circumstances<'_>,
    p: &mut FakeProxy,
    query: &str,
    body: &str,
) -> Step {
    let len = body.len().to_string();
    let h = headers(
        "POST",
        &format!("/wechat?{query}"),
        &[("content-length", &len)],
    );
    p.request_body = body.as_bytes().to_vec();
    let mut head = x.on_request_headers(ctx, &h, body.is_empty(), p);
    if head.flow == Flow::Pause && x.is_held() {
        // The effects of both events, in order; the flow of the last.
        let body = x.on_request_body(ctx, body.len(), true, p);
        head.effects.extend(body.effects);
        head.flow = body.flow;
    }
    head
}

fn counted(step: &Step, counter: Counter) -> bool {
    step.effects.contains(&Effect::Count(counter))
}

fn rejected(step: &Step) -> Option<Reason> {
    step.effects.iter().find_map(|e| match e {
        Effect::Reject(r) => Some(r.reason),
        _ => None,
    })
}

fn replied(step: &Step) -> Option<(u32, Vec<u8>)> {
    step.effects.iter().find_map(|e| match e {
        Effect::LocalReply { status, body, .. } => Some((*status, body.clone())),
        _ => None,
    })
}

fn forwarded(step: &Step) -> bool {
    step.flow == Flow::Continue && counted(step, Counter::Forwarded)
}

fn success() -> Option<(u32, Vec<u8>)> {
    Some((200, b"success".to_vec()))
}

#[test]
fn a_request_on_another_path_passes_and_nothing_is_asked() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let step = Exchange::new().on_request_headers(
        ctx(&c),
        &headers("POST", "/other?x", &[]),
        false,
        &mut p,
    );
    assert_eq!(step.flow, Flow::Continue);
    assert_eq!(step.effects, [Effect::Count(Counter::PassedThrough)]);
    assert!(p.asked.is_empty(), "{:?}", p.asked);
}

#[test]
fn a_verified_handshake_is_echoed_and_its_query_can_never_carry_a_push() {
    let c = cfg(r#", "dedupe_seconds": 0"#);
    let mut p = FakeProxy::new(&c);
    let q = query("1", &[("echostr", "hello")]);
    let step = Exchange::new().on_request_headers(
        ctx(&c),
        &headers("GET", &format!("/wechat?{q}"), &[]),
        true,
        &mut p,
    );
    assert_eq!(replied(&step), Some((200, b"hello".to_vec())));
    assert!(counted(&step, Counter::Handshake));
    let step = post(&mut Exchange::new(), &c, &mut p, &query("1", &[]), "<xml/>");
    assert_eq!(replied(&step), success());
    assert!(counted(&step, Counter::Replayed));
}

#[test]
fn a_push_without_a_body_to_read_is_forwarded_at_once_with_the_gates_headers() {
    // Neither retries nor parking need its body.
    let c = cfg(r#", "dedupe_seconds": 0, "park": {"max_messages": 0}"#);
    let mut p = FakeProxy::new(&c);
    let q = query("1", &[("openid", "o_query")]);
    let h = headers(
        "POST",
        &format!("/wechat?{q}"),
        &[
            ("content-length", "6"),
            ("x_wechat_gate_verified", "forged"),
            ("X-Wechat-Gate-Openid", "o_x"),
        ],
    );
    let step = Exchange::new().on_request_headers(ctx(&c), &h, false, &mut p);
    assert!(forwarded(&step));
    assert!(!p.asked.contains(&"request_body"));
    let removed: Vec<&[u8]> = step
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::RemoveRequestHeader(n) => Some(n.as_slice()),
            _ => None,
        })
        .collect();
    assert_eq!(
        removed,
        [&b"x_wechat_gate_verified"[..], b"X-Wechat-Gate-Openid"]
    );
    assert!(step.effects.contains(&Effect::SetRequestHeader(
        "x-wechat-gate-verified",
        "1".into()
    )));
    assert!(step.effects.contains(&Effect::SetRequestHeader(
        "x-wechat-gate-openid",
        "o_query".into()
    )));
}

#[test]
fn a_used_query_is_a_replay_whatever_its_body() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let q = query("1", &[]);
    assert!(forwarded(&post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &q,
        &message(1)
    )));
    for body in [message(1), message(2), "<xml/>".to_string()] {
        let step = post(&mut Exchange::new(), &c, &mut p, &q, &body);
        assert_eq!(replied(&step), success());
        assert!(counted(&step, Counter::Replayed));
    }
}

/// Two gates of one proxy sharing a token (one account on two routes): a query used
/// under a 2 s tolerance is still used 10 s later where 300 s is allowed, because its
/// entry lives as long as the proxy's longest tolerance; were that unknown, only as
/// long as the recording gate's own.
#[test]
fn a_used_query_is_remembered_as_long_as_any_gate_of_the_proxy_accepts_it() {
    let short = cfg(r#", "timestamp_tolerance_seconds": 2"#);
    let long = cfg("");
    let q = query("1", &[]);
    for (longest, replayed) in [(300, true), (0, false)] {
        let mut p = FakeProxy::new(&long);
        let at = |c, now| Circumstances {
            now,
            longest_tolerance: longest,
            ..ctx(c)
        };
        let mut first = Exchange::new();
        assert!(forwarded(&post_in(
            &mut first,
            at(&short, NOW),
            &mut p,
            &q,
            &message(1)
        )));
        p.reached = true;
        first.on_stream_end(&mut p);
        let later = post_in(
            &mut Exchange::new(),
            at(&long, NOW + 10),
            &mut p,
            &q,
            &message(2),
        );
        assert_eq!(
            counted(&later, Counter::Replayed),
            replayed,
            "longest {longest}"
        );
        assert_eq!(forwarded(&later), !replayed, "longest {longest}");
    }
}

/// A GET to `target` through a fresh exchange, to the end of its stream (the host
/// ends every stream, a handshake's too, after its answer).
fn get(c: &Config, p: &mut FakeProxy, target: &str) -> Step {
    let mut x = Exchange::new();
    let step = x.on_request_headers(ctx(c), &headers("GET", target, &[]), true, p);
    x.on_stream_end(p);
    step
}

#[test]
fn a_used_query_is_a_replay_whatever_its_method() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    // A push's query, as a GET with an echostr of the sender's choosing.
    let mut x = Exchange::new();
    assert!(forwarded(&post(
        &mut x,
        &c,
        &mut p,
        &query("1", &[]),
        &message(1)
    )));
    x.on_stream_end(&mut p);
    let step = get(
        &c,
        &mut p,
        &format!("/wechat?{}", query("1", &[("echostr", "<h1>")])),
    );
    assert_eq!(replied(&step), success());
    assert!(counted(&step, Counter::Replayed));
    assert!(!counted(&step, Counter::Handshake));
    // A handshake's, again as it was or with another echostr.
    let handshake = format!("/wechat?{}", query("2", &[("echostr", "first")]));
    assert_eq!(
        replied(&get(&c, &mut p, &handshake)),
        Some((200, b"first".to_vec()))
    );
    for again in [
        handshake,
        format!("/wechat?{}", query("2", &[("echostr", "x")])),
    ] {
        let step = get(&c, &mut p, &again);
        assert_eq!(replied(&step), success(), "{again}");
        assert!(counted(&step, Counter::Replayed), "{again}");
    }
    // A handshake's query can never carry a push, after its stream ended too.
    let step = post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &query("2", &[]),
        &message(2),
    );
    assert_eq!(replied(&step), success());
    assert!(counted(&step, Counter::Replayed));
}

#[test]
fn a_push_whose_body_must_be_read_is_held_then_released_and_forwarded() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = Exchange::new();
    let h = headers(
        "POST",
        &format!("/wechat?{}", query("1", &[])),
        &[("content-length", "9")],
    );
    let step = x.on_request_headers(ctx(&c), &h, false, &mut p);
    assert_eq!(step.flow, Flow::Pause);
    assert!(step.effects.contains(&Effect::Hold {
        for_ms: BODY_DEADLINE_MS
    }));
    assert_eq!(
        x.on_request_body(ctx(&c), 4, false, &mut p).flow,
        Flow::Pause
    );
    p.request_body = message(5).into_bytes();
    let step = x.on_request_body(ctx(&c), p.request_body.len(), true, &mut p);
    assert_eq!(step.effects.first(), Some(&Effect::Release));
    assert!(forwarded(&step));
}

#[test]
fn a_held_push_whose_body_never_comes_is_408_and_its_query_is_free_again() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = Exchange::new();
    let q = query("1", &[]);
    let h = headers("POST", &format!("/wechat?{q}"), &[("content-length", "9")]);
    x.on_request_headers(ctx(&c), &h, false, &mut p);
    let step = x.on_body_deadline(&mut p);
    assert_eq!(rejected(&step), Some(Reason::BodyTimeout));
    assert!(step.effects.contains(&Effect::Note(Note::BodyNeverCame)));
    assert!(forwarded(&post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &q,
        &message(1)
    )));
}

#[test]
fn a_held_push_records_its_query_only_as_it_goes_upstream() {
    // The first use stalls, held: a second use with its whole body is not answered
    // `success` for it, but forwarded; the first then finds its query used.
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let q = query("1", &[]);
    let mut stalled = Exchange::new();
    let h = headers("POST", &format!("/wechat?{q}"), &[("content-length", "9")]);
    let step = stalled.on_request_headers(ctx(&c), &h, false, &mut p);
    assert_eq!(step.flow, Flow::Pause);
    assert!(!counted(&step, Counter::Replayed));
    assert!(forwarded(&post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &q,
        &message(1)
    )));
    p.request_body = message(1).into_bytes();
    let step = stalled.on_request_body(ctx(&c), p.request_body.len(), true, &mut p);
    assert_eq!(replied(&step), success());
    assert!(counted(&step, Counter::Replayed));
    assert!(step.effects.contains(&Effect::Release));
    // The other way round: the stalled first use times out, the second is forwarded.
    let q = query("2", &[]);
    let mut stalled = Exchange::new();
    let h = headers("POST", &format!("/wechat?{q}"), &[("content-length", "9")]);
    stalled.on_request_headers(ctx(&c), &h, false, &mut p);
    let mut second = Exchange::new();
    let step = second.on_request_headers(ctx(&c), &h, false, &mut p);
    assert!(
        !counted(&step, Counter::Replayed),
        "nothing went upstream yet"
    );
    assert_eq!(
        rejected(&stalled.on_body_deadline(&mut p)),
        Some(Reason::BodyTimeout)
    );
    p.request_body = message(2).into_bytes();
    let step = second.on_request_body(ctx(&c), p.request_body.len(), true, &mut p);
    assert!(forwarded(&step), "{:?}", step.effects);
}

#[test]
fn a_streamed_push_records_its_query_with_its_headers_and_a_probed_one_as_they_go() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let q = query("1", &[]);
    // Streamed: its headers go upstream now, so its query is used now.
    head_of(&mut Exchange::new(), streaming(&c), &mut p, &q, &message(1));
    let step = head_of(&mut Exchange::new(), streaming(&c), &mut p, &q, &message(1));
    assert_eq!(replied(&step), success());
    assert!(counted(&step, Counter::Replayed));
    // Probed: used meanwhile by another, it is answered as it would go upstream.
    let q = query("2", &[]);
    let mut probed = Exchange::new();
    head_of(&mut probed, unknown(&c), &mut p, &q, &message(2));
    head_of(&mut Exchange::new(), streaming(&c), &mut p, &q, &message(2));
    let step = probed.on_probe(unknown(&c), count(3), &mut p);
    assert_eq!(replied(&step), success());
    assert!(step.effects.contains(&Effect::Release));
    assert!(!step.effects.contains(&Effect::ResumeRequest));
    assert!(!sets_a_header(&step));
    assert!(!probed.is_held());
}

#[test]
fn a_body_over_the_limit_is_413_and_its_query_is_free_again() {
    let c = cfg(r#", "max_body_bytes": 10"#);
    let mut p = FakeProxy::new(&c);
    let mut x = Exchange::new();
    let q = query("1", &[]);
    let h = headers("POST", &format!("/wechat?{q}"), &[("content-length", "8")]);
    x.on_request_headers(ctx(&c), &h, false, &mut p);
    assert_eq!(
        rejected(&x.on_request_body(ctx(&c), 11, false, &mut p)),
        Some(Reason::TooLarge)
    );
    let step = post(&mut Exchange::new(), &c, &mut p, &q, "<xml/>");
    assert!(forwarded(&step));
}

#[test]
fn a_retry_of_a_forwarded_message_is_answered_success_and_its_query_stays_used() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    assert!(forwarded(&post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &query("1", &[]),
        &message(9)
    )));
    let retry = query("2", &[]);
    let step = post(&mut Exchange::new(), &c, &mut p, &retry, &message(9));
    assert_eq!(replied(&step), success());
    assert!(counted(&step, Counter::Deduplicated));
    let step = post(&mut Exchange::new(), &c, &mut p, &retry, &message(10));
    assert!(
        counted(&step, Counter::Replayed),
        "the retry's query was used"
    );
}

/// A safe-mode push of `message` (its query and body), sealed as WeChat does.
fn safe_push(nonce: &str, message: &str) -> (String, String) {
    let key = cipher::AesKey::from_encoding_aes_key(KEY).expect("key");
    let encrypt = cipher::encrypt(&key, APPID, message.as_bytes(), &[3; 16]);
    let ts = NOW.to_string();
    let msg_signature = as_str(&sign(&[TOKEN, &ts, nonce, &encrypt])).to_string();
    let q = query(
        nonce,
        &[
            ("openid", "o_query"),
            ("encrypt_type", "aes"),
            ("msg_signature", &msg_signature),
        ],
    );
    (q, envelope::push_body(Some("gh_1"), &encrypt))
}

#[test]
fn a_decrypted_push_reaches_the_backend_as_plaintext_from_its_verified_sender() {
    let c = safe_cfg();
    let mut p = FakeProxy::new(&c);
    let (q, body) = safe_push("1", &message(3));
    let step = post(&mut Exchange::new(), &c, &mut p, &q, &body);
    assert!(forwarded(&step));
    let e = &step.effects;
    // Its headers waited for the body: the new length is set, nothing removed first.
    assert!(!e.contains(&Effect::RemoveRequestHeader(b"content-length".to_vec())));
    assert!(e.contains(&Effect::ReplaceRequestBody(message(3).into_bytes())));
    assert!(e.contains(&Effect::SetRequestHeader(
        "content-length",
        message(3).len().to_string()
    )));
    let path = format!("/wechat?{}", query("1", &[("openid", "o_query")]));
    assert!(
        e.contains(&Effect::SetRequestHeader(":path", path)),
        "{e:?}"
    );
    assert!(e.contains(&Effect::SetRequestHeader(
        "x-wechat-gate-openid",
        "o_sender".into()
    )));
    assert!(e.contains(&Effect::SetRequestHeader(
        "x-wechat-gate-decrypted",
        "1".into()
    )));
    assert!(counted(&step, Counter::Decrypted));
}

#[test]
fn a_forged_msg_signature_is_401_and_nothing_is_forwarded() {
    let c = safe_cfg();
    let mut p = FakeProxy::new(&c);
    let (q, body) = safe_push("1", &message(3));
    let tampered = body.replacen("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A", 1);
    let step = post(&mut Exchange::new(), &c, &mut p, &q, &tampered);
    assert_eq!(rejected(&step), Some(Reason::MsgSignature));
    assert!(!step
        .effects
        .iter()
        .any(|e| matches!(e, Effect::SetRequestHeader(..))));
}

#[test]
fn a_used_query_under_another_sealed_body_is_a_replay_not_a_msg_signature_refusal() {
    let c = safe_cfg();
    let mut p = FakeProxy::new(&c);
    let (q, body) = safe_push("1", &message(3));
    assert!(forwarded(&post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &q,
        &body
    )));
    let (_, other) = safe_push("1", &message(4));
    let step = post(&mut Exchange::new(), &c, &mut p, &q, &other);
    assert_eq!(replied(&step), success(), "{:?}", step.effects);
    assert!(counted(&step, Counter::Replayed));
}

/// A push forwarded by `x`, ready for its response.
fn forwarded_push(c: &Config, p: &mut FakeProxy, nonce: &str) -> Exchange {
    let mut x = Exchange::new();
    // Each push its own message: nonce "n" carries MsgId 400 + n.
    let msg = message(400 + nonce.parse::<u64>().unwrap_or(0));
    let (q, body) = if c.safe_mode.is_some() {
        safe_push(nonce, &msg)
    } else {
        (query(nonce, &[]), msg)
    };
    assert!(forwarded(&post(&mut x, c, p, &q, &body)));
    x
}

#[test]
fn envoys_own_failure_becomes_200_success() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    p.status = Some(504);
    p.details = Some(b"upstream_response_timeout".to_vec());
    let step = x.on_response_headers(ctx(&c), false, &mut p);
    assert!(counted(&step, Counter::UpstreamFailure));
    assert!(step
        .effects
        .contains(&Effect::SetResponseHeader(":status", "200")));
    let step = x.on_response_body(ctx(&c), 24, true, &mut p);
    assert_eq!(
        step.effects,
        [Effect::ReplaceResponseBody(b"success".to_vec())]
    );
}

#[test]
fn the_backends_own_5xx_is_passed_on_and_its_message_retried_but_not_its_query() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    p.status = Some(500);
    let step = x.on_response_headers(ctx(&c), true, &mut p);
    assert_eq!(step.effects, []);
    x.on_stream_end(&mut p);
    // WeChat's retry (a new query) is delivered; the old query carries nothing.
    assert!(forwarded(&post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &query("2", &[]),
        &message(401)
    )));
    let step = post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &query("1", &[]),
        &message(41),
    );
    assert!(counted(&step, Counter::Replayed));
}

#[test]
fn a_request_envoy_never_sent_leaves_its_query_free_under_pass() {
    let c = cfg(r#", "on_upstream_failure": "pass""#);
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    p.status = Some(503);
    p.details = Some(b"upstream_reset_before_response_started{connection_failure}".to_vec());
    assert_eq!(x.on_response_headers(ctx(&c), true, &mut p).effects, []);
    assert!(forwarded(&post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &query("1", &[]),
        &message(401)
    )));
    // After a timeout the backend may have had it: the query stays used.
    let mut x = forwarded_push(&c, &mut p, "2");
    p.details = Some(b"upstream_response_timeout".to_vec());
    x.on_response_headers(ctx(&c), true, &mut p);
    assert!(counted(
        &post(
            &mut Exchange::new(),
            &c,
            &mut p,
            &query("2", &[]),
            &message(41)
        ),
        Counter::Replayed
    ));
}

#[test]
fn under_success_a_push_envoy_never_sent_stays_recorded_as_handled() {
    // WeChat is told `success` and will not try it again, so its query and its message
    // stay recorded: a try within dedupe_seconds is answered `success` too (make soak
    // sees such a push delivered by a try after that).
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    p.status = Some(503);
    p.details = Some(b"upstream_reset_before_response_started{connection_failure}".to_vec());
    let step = x.on_response_headers(ctx(&c), true, &mut p);
    assert!(counted(&step, Counter::UpstreamFailure));
    x.on_stream_end(&mut p);
    let retry = post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &query("2", &[]),
        &message(401),
    );
    assert!(counted(&retry, Counter::Deduplicated));
    let replay = post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &query("1", &[]),
        &message(41),
    );
    assert!(counted(&replay, Counter::Replayed));
}

fn envoy_refused(p: &mut FakeProxy) {
    p.status = Some(503);
    p.details = Some(b"upstream_reset_before_response_started{connection_failure}".to_vec());
}

fn parked_counts(step: &Step) -> Vec<Counter> {
    step.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Park(crate::park::Effect::Count(c)) => Some(*c),
            _ => None,
        })
        .collect()
}

#[test]
fn a_push_envoy_could_not_deliver_is_parked_as_it_went_upstream_and_answered_success() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    envoy_refused(&mut p);
    let step = x.on_response_headers(ctx(&c), true, &mut p);
    assert!(counted(&step, Counter::UpstreamFailure));
    assert!(step
        .effects
        .contains(&Effect::SetResponseHeader(":status", "200")));
    assert_eq!(parked_counts(&step), [Counter::Parked]);
    let [parcel] = p.parcels.as_slice() else {
        panic!("one parcel: {:?}", p.parcels);
    };
    assert_eq!(parcel.body, message(401).into_bytes());
    assert_eq!(parcel.cluster, "backend");
    assert_eq!(parcel.authority, "backend.example");
    assert!(parcel.path.starts_with("/wechat?"), "{}", parcel.path);
    assert!(parcel
        .headers
        .contains(&(b"x-wechat-gate-verified".to_vec(), b"1".to_vec())));
}

#[test]
fn a_decrypted_push_is_parked_as_the_backend_would_have_had_it_in_plaintext() {
    let c = safe_cfg();
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    p.status = Some(504);
    p.details = Some(b"upstream_response_timeout".to_vec());
    let step = x.on_response_headers(ctx(&c), false, &mut p);
    assert_eq!(parked_counts(&step), [Counter::Parked]);
    let parcel = &p.parcels[0];
    assert_eq!(parcel.body, message(401).into_bytes());
    // As the gate sent it: the path without the safe-mode parameters, the gate's
    // headers, the plaintext's length.
    assert!(!parcel.path.contains("msg_signature"), "{}", parcel.path);
    let header = |name: &str| {
        parcel
            .headers
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("x-wechat-gate-decrypted").as_deref(), Some("1"));
    assert_eq!(
        header("content-length"),
        Some(message(401).len().to_string())
    );
}

#[test]
fn with_no_room_to_park_envoys_failure_goes_to_wechat_which_retries() {
    let c = cfg(r#", "park": {"max_messages": 1}"#);
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    envoy_refused(&mut p);
    assert_eq!(
        parked_counts(&x.on_response_headers(ctx(&c), true, &mut p)),
        [Counter::Parked]
    );
    x.on_stream_end(&mut p);
    let mut x = forwarded_push(&c, &mut p, "2");
    envoy_refused(&mut p);
    let step = x.on_response_headers(ctx(&c), true, &mut p);
    assert!(!counted(&step, Counter::UpstreamFailure));
    assert_eq!(parked_counts(&step), [Counter::ParkFull]);
    assert!(!step
        .effects
        .iter()
        .any(|e| matches!(e, Effect::SetResponseHeader(..))));
    x.on_stream_end(&mut p);
    // WeChat's retry of that message, and the same query, are let through as under
    // `pass`: Envoy never sent it.
    p.status = Some(200);
    p.details = Some(b"via_upstream".to_vec());
    assert!(forwarded(&post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &query("3", &[]),
        &message(402)
    )));
}

#[test]
fn with_parking_off_a_push_envoy_could_not_deliver_is_answered_success_and_not_parked() {
    let c = cfg(r#", "park": {"max_messages": 0}"#);
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    envoy_refused(&mut p);
    let step = x.on_response_headers(ctx(&c), true, &mut p);
    assert!(counted(&step, Counter::UpstreamFailure));
    assert!(parked_counts(&step).is_empty());
    assert!(!p.asked.contains(&"park"));
    // Under `pass` nothing is parked either.
    let c = cfg(r#", "on_upstream_failure": "pass""#);
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    envoy_refused(&mut p);
    x.on_response_headers(ctx(&c), true, &mut p);
    assert!(!p.asked.contains(&"park"));
}

#[test]
fn the_backends_own_answer_is_never_parked() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    p.status = Some(500);
    x.on_response_headers(ctx(&c), true, &mut p);
    assert!(p.parcels.is_empty());
}

#[test]
fn the_reply_to_a_decrypted_push_is_sealed_and_opens_again() {
    let c = safe_cfg();
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    let step = x.on_response_headers(ctx(&c), false, &mut p);
    assert_eq!(
        step.effects,
        [Effect::RemoveResponseHeader("content-length")]
    );
    p.response_body = b"<xml><Content>r</Content></xml>".to_vec();
    let step = x.on_response_body(ctx(&c), p.response_body.len(), true, &mut p);
    let Some(Effect::ReplaceResponseBody(sealed)) = step.effects.first() else {
        panic!("{step:?}");
    };
    let encrypt = envelope::extract_encrypt(sealed).expect("Encrypt");
    let key = cipher::AesKey::from_encoding_aes_key(KEY).expect("key");
    assert_eq!(
        cipher::decrypt(&key, APPID, &encrypt).expect("opens"),
        p.response_body
    );
    assert!(counted(&step, Counter::ReplyEncrypted));
}

#[test]
fn a_reply_that_cannot_be_sealed_goes_out_as_success_never_in_plaintext() {
    let c = safe_cfg();
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    x.on_response_headers(ctx(&c), false, &mut p);
    p.response_body = b"<xml>secret</xml>".to_vec();
    p.random = None;
    let step = x.on_response_body(ctx(&c), 17, true, &mut p);
    assert!(step
        .effects
        .contains(&Effect::ReplaceResponseBody(b"success".to_vec())));
    assert!(step.effects.contains(&Effect::Note(Note::SealFailed)));
}

#[test]
fn a_reply_followed_by_trailers_is_sealed_at_the_trailers() {
    let c = safe_cfg();
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    x.on_response_headers(ctx(&c), false, &mut p);
    p.response_body = b"<xml>r</xml>".to_vec();
    assert_eq!(
        x.on_response_body(ctx(&c), 12, false, &mut p).flow,
        Flow::Pause
    );
    let step = x.on_response_trailers(ctx(&c), &mut p);
    assert!(counted(&step, Counter::ReplyEncrypted));
}

#[test]
fn a_stream_that_ends_before_reaching_upstream_forgets_what_it_recorded() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    p.reached = false;
    x.on_stream_end(&mut p);
    assert!(forwarded(&post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &query("1", &[]),
        &message(401)
    )));
    let mut x = forwarded_push(&c, &mut p, "2");
    p.reached = true;
    x.on_stream_end(&mut p);
    let step = post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &query("3", &[]),
        &message(402),
    );
    assert!(
        counted(&step, Counter::Deduplicated),
        "reached: the message stays"
    );
}

#[test]
fn before_refusing_503_the_exchange_asks_for_a_newer_list() {
    let c = cfg_with_source(
        r#"{"wechat_api": {"secret": "s", "upstreams": [{"cluster": "a", "authority": "b"}]}}"#,
        "",
    );
    let mut p = FakeProxy::new(&c);
    p.sources = Rc::new(Sources::default());
    let step = post(&mut Exchange::new(), &c, &mut p, &query("1", &[]), "<xml/>");
    assert_eq!(rejected(&step), Some(Reason::Unavailable));
    assert!(p.asked.contains(&"newer_sources"));
    let mut allow = crate::allowlist::CallbackAllowlist::default();
    allow = allow.union(&crate::allowlist::CallbackAllowlist::from_blocks(vec![
        crate::allowlist::parse_block("127.0.0.2").expect("block"),
    ]));
    p.newer = Some(Rc::new(Sources::fixed(allow)));
    assert!(forwarded(&post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &query("2", &[]),
        &message(1)
    )));
}

#[test]
fn trailers_refuse_a_held_push_and_lose_gate_names_on_a_forwarded_one() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = Exchange::new();
    let h = headers(
        "POST",
        &format!("/wechat?{}", query("1", &[])),
        &[("content-length", "9")],
    );
    x.on_request_headers(ctx(&c), &h, false, &mut p);
    assert_eq!(
        rejected(&x.on_request_trailers(&mut p)),
        Some(Reason::Malformed)
    );
    let mut x = forwarded_push(&cfg(r#", "dedupe_seconds": 0"#), &mut p, "2");
    p.trailers = vec![b"x_wechat_gate_openid".to_vec(), b"x-other".to_vec()];
    let step = x.on_request_trailers(&mut p);
    assert_eq!(
        step.effects,
        [Effect::RemoveRequestTrailer(
            b"x_wechat_gate_openid".to_vec()
        )]
    );
}

#[test]
fn a_change_the_host_refused_refuses_the_push_and_frees_its_query() {
    let c = cfg(r#", "dedupe_seconds": 0"#);
    let mut p = FakeProxy::new(&c);
    let mut x = forwarded_push(&c, &mut p, "1");
    let step = x.on_effect_refused("the gate's headers could not be set", &mut p);
    assert_eq!(rejected(&step), Some(Reason::Malformed));
    assert!(forwarded(&post(
        &mut Exchange::new(),
        &c,
        &mut p,
        &query("1", &[]),
        "<xml/>"
    )));
}

#[test]
fn without_configuration_the_filter_fails_closed() {
    let step = unconfigured();
    assert_eq!(step.flow, Flow::Pause);
    assert_eq!(replied(&step).map(|(s, _)| s), Some(503));
}

/// The headers of a push of `body` (its length declared), in `c`'s body mode.
fn head_of(
    x: &mut Exchange,
    c: Circumstances<'_>,
    p: &mut FakeProxy,
    query: &str,
    body: &str,
) -> Step {
    let len = body.len().to_string();
    let h = headers(
        "POST",
        &format!("/wechat?{query}"),
        &[("content-length", &len)],
    );
    p.request_body = body.as_bytes().to_vec();
    x.on_request_headers(c, &h, false, p)
}

fn sets_a_header(step: &Step) -> bool {
    step.effects.iter().any(|e| {
        matches!(
            e,
            Effect::SetRequestHeader(..) | Effect::RemoveRequestHeader(..)
        )
    })
}

#[test]
fn streamed_the_checked_headers_go_on_at_once_and_the_body_waits_for_its_checks() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = Exchange::new();
    let step = head_of(
        &mut x,
        streaming(&c),
        &mut p,
        &query("1", &[("openid", "o_q")]),
        &message(7),
    );
    assert_eq!(step.flow, Flow::Continue, "the headers go on");
    let e = &step.effects;
    assert!(e.contains(&Effect::SetRequestHeader(
        "x-wechat-gate-verified",
        "1".into()
    )));
    assert!(e.contains(&Effect::SetRequestHeader(
        "x-wechat-gate-openid",
        "o_q".into()
    )));
    assert!(e.contains(&Effect::Hold {
        for_ms: BODY_DEADLINE_MS
    }));
    assert!(!e
        .iter()
        .any(|e| matches!(e, Effect::Probe | Effect::RemoveRequestHeader(..))));
    assert!(
        !counted(&step, Counter::Forwarded),
        "not until the body passed"
    );
    assert_eq!(
        x.on_request_body(streaming(&c), 3, false, &mut p).flow,
        Flow::Pause
    );
    let step = x.on_request_body(streaming(&c), message(7).len(), true, &mut p);
    assert!(forwarded(&step));
    assert!(
        !sets_a_header(&step),
        "the headers are gone: {:?}",
        step.effects
    );
}

#[test]
fn a_streamed_safe_mode_push_goes_on_chunked_decrypted_and_without_the_unsigned_openid() {
    let c = safe_cfg();
    let mut p = FakeProxy::new(&c);
    let mut x = Exchange::new();
    let (q, body) = safe_push("1", &message(3));
    let step = head_of(&mut x, streaming(&c), &mut p, &q, &body);
    let e = &step.effects;
    assert!(e.contains(&Effect::RemoveRequestHeader(b"content-length".to_vec())));
    let path = format!("/wechat?{}", query("1", &[("openid", "o_query")]));
    assert!(e.contains(&Effect::SetRequestHeader(":path", path)));
    assert!(e.contains(&Effect::SetRequestHeader(
        "x-wechat-gate-decrypted",
        "1".into()
    )));
    assert!(!e
        .iter()
        .any(|e| matches!(e, Effect::SetRequestHeader("x-wechat-gate-openid", _))));
    let step = x.on_request_body(streaming(&c), body.len(), true, &mut p);
    assert!(forwarded(&step));
    assert!(step
        .effects
        .contains(&Effect::ReplaceRequestBody(message(3).into_bytes())));
    assert!(!sets_a_header(&step));
}

#[test]
fn a_streamed_push_refused_or_repeated_by_its_body_is_answered_here() {
    let c = safe_cfg();
    let mut p = FakeProxy::new(&c);
    let (q, body) = safe_push("1", &message(3));
    let forged = body.replacen("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A", 1);
    let mut x = Exchange::new();
    head_of(&mut x, streaming(&c), &mut p, &q, &forged);
    let step = x.on_request_body(streaming(&c), forged.len(), true, &mut p);
    assert_eq!(rejected(&step), Some(Reason::MsgSignature));
    assert_eq!(step.flow, Flow::Pause);
    // The real push, then WeChat's retry of it under a new query.
    let mut x = Exchange::new();
    head_of(&mut x, streaming(&c), &mut p, &q, &body);
    assert!(forwarded(&x.on_request_body(
        streaming(&c),
        body.len(),
        true,
        &mut p
    )));
    let (retry_q, retry_body) = safe_push("2", &message(3));
    let mut x = Exchange::new();
    head_of(&mut x, streaming(&c), &mut p, &retry_q, &retry_body);
    let step = x.on_request_body(streaming(&c), retry_body.len(), true, &mut p);
    assert_eq!(replied(&step), success());
    assert!(counted(&step, Counter::Deduplicated));
}

/// Found by the `exchange` fuzz target (a WeCom push, streamed, answered by the
/// backend before its body was whole, then its unsigned body released): streamed, a
/// push's headers are upstream while its body is still being read, so the backend
/// may answer first. That answer must leave the body held: it is released only once
/// it has passed, and a forged one is refused, never let go unchecked.
#[test]
fn streamed_a_response_before_the_body_is_whole_never_releases_it_unchecked() {
    let c = safe_cfg();
    let mut p = FakeProxy::new(&c);
    let (q, body) = safe_push("1", &message(3));
    let forged = body.replacen("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A", 1);
    let mut x = Exchange::new();
    assert_eq!(
        head_of(&mut x, streaming(&c), &mut p, &q, &forged).flow,
        Flow::Continue
    );
    assert_eq!(
        x.on_request_body(streaming(&c), 3, false, &mut p).flow,
        Flow::Pause
    );
    let _ = x.on_response_headers(streaming(&c), false, &mut p);
    let step = x.on_request_body(streaming(&c), forged.len(), true, &mut p);
    assert_eq!(rejected(&step), Some(Reason::MsgSignature), "{step:?}");
    assert_eq!(step.flow, Flow::Pause);
    // The genuine body, answered early likewise, is released once it has passed.
    let (q, body) = safe_push("2", &message(4));
    let mut x = Exchange::new();
    head_of(&mut x, streaming(&c), &mut p, &q, &body);
    let _ = x.on_response_headers(streaming(&c), false, &mut p);
    let step = x.on_request_body(streaming(&c), body.len(), true, &mut p);
    assert!(forwarded(&step), "{step:?}");
    assert!(step
        .effects
        .contains(&Effect::ReplaceRequestBody(message(4).into_bytes())));
}

fn unknown(config: &Config) -> Circumstances<'_> {
    Circumstances {
        body_mode: BodyMode::Unknown,
        ..ctx(config)
    }
}

/// Envoy's byte count for a probed push: `arrived` body bytes since it was held.
fn count(arrived: u64) -> ByteCount {
    ByteCount {
        when_held: Some(277),
        now: Some(277 + arrived),
    }
}

#[test]
fn not_knowing_the_host_a_push_is_held_and_probed() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = Exchange::new();
    let step = head_of(&mut x, unknown(&c), &mut p, &query("1", &[]), &message(7));
    assert_eq!(step.flow, Flow::Pause);
    assert!(step.effects.contains(&Effect::Probe));
    assert!(!sets_a_header(&step));
    // Its body is handed over while held: the host holds.
    let step = x.on_request_body(unknown(&c), 5, false, &mut p);
    assert_eq!(
        step.effects,
        [
            Effect::EndProbe,
            Effect::Observe(Observation::BodyWhileHeld),
            Effect::Hold {
                for_ms: BODY_DEADLINE_MS
            }
        ],
        "and the deadline counts again from this part"
    );
    assert_eq!(
        x.on_probe(unknown(&c), count(5), &mut p).effects,
        [Effect::EndProbe],
        "a probe after the body began only ends"
    );
}

#[test]
fn a_slow_or_stalled_client_shows_nothing_and_is_waited_for() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = Exchange::new();
    head_of(&mut x, unknown(&c), &mut p, &query("1", &[]), &message(7));
    for _ in 0..300 {
        let step = x.on_probe(unknown(&c), count(0), &mut p);
        assert_eq!((step.flow, step.effects), (Flow::Pause, vec![]));
    }
    // No count to be had is no evidence either.
    let none = ByteCount {
        when_held: None,
        now: Some(400),
    };
    assert_eq!(
        x.on_probe(unknown(&c), none, &mut p).effects,
        [Effect::Note(Note::NoByteCount)],
        "said (once per VM, by the host)"
    );
    let step = x.on_body_deadline(&mut p);
    assert!(step.effects.iter().any(|e| matches!(
        e,
        Effect::Reject(r) if r.reason == Reason::BodyTimeout
    )));
    assert!(!step.effects.iter().any(|e| matches!(e, Effect::Observe(_))));
}

#[test]
fn body_bytes_the_host_kept_back_settle_stream_and_let_the_checked_headers_go() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = Exchange::new();
    head_of(&mut x, unknown(&c), &mut p, &query("1", &[]), &message(7));
    let step = x.on_probe(unknown(&c), count(3), &mut p);
    assert_eq!(
        step.effects.first(),
        Some(&Effect::Observe(Observation::BodyKeptByHost))
    );
    assert!(step.effects.contains(&Effect::SetRequestHeader(
        "x-wechat-gate-verified",
        "1".into()
    )));
    assert!(step
        .effects
        .ends_with(&[Effect::Streamed, Effect::ResumeRequest]));
    let step = x.on_request_body(streaming(&c), message(7).len(), true, &mut p);
    assert!(forwarded(&step));
    assert!(!sets_a_header(&step));
    assert!(!step.effects.iter().any(|e| matches!(e, Effect::Observe(_))));
}

fn streaming_full(config: &Config, waiting: usize) -> Circumstances<'_> {
    Circumstances {
        streamed_unverified: MAX_STREAMED_UNVERIFIED,
        waiting,
        ..streaming(config)
    }
}

#[test]
fn beyond_the_streamed_cap_a_push_waits_off_the_backend_until_envoy_has_its_body() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    let mut x = Exchange::new();
    let body = message(7);
    let step = head_of(
        &mut x,
        streaming_full(&c, 0),
        &mut p,
        &query("1", &[]),
        &body,
    );
    assert_eq!(step.flow, Flow::Pause, "the headers wait");
    assert!(step.effects.contains(&Effect::Probe));
    assert!(!sets_a_header(&step));
    let full = streaming_full(&c, 1);
    assert_eq!(
        x.on_probe(full, count(0), &mut p).effects,
        [],
        "nothing yet"
    );
    assert_eq!(
        x.on_probe(full, count(3), &mut p).effects,
        [],
        "part, and no room"
    );
    let len = u64::try_from(body.len()).unwrap();
    let step = x.on_probe(full, count(len), &mut p);
    assert!(step
        .effects
        .ends_with(&[Effect::Streamed, Effect::ResumeRequest]));
    assert!(!step.effects.iter().any(|e| matches!(e, Effect::Observe(_))));
    let step = x.on_request_body(streaming(&c), body.len(), true, &mut p);
    assert!(forwarded(&step));
    // With room again, a part is still not enough: it could stall half-way.
    let mut x = Exchange::new();
    head_of(
        &mut x,
        streaming_full(&c, 0),
        &mut p,
        &query("2", &[]),
        &body,
    );
    assert_eq!(x.on_probe(streaming(&c), count(3), &mut p).effects, []);
}

#[test]
fn beyond_the_waiting_cap_a_push_is_refused_503_with_retry_after() {
    let c = cfg("");
    let mut p = FakeProxy::new(&c);
    for ctx in [
        streaming_full(&c, MAX_WAITING),
        Circumstances {
            waiting: MAX_WAITING,
            ..unknown(&c)
        },
    ] {
        let mut x = Exchange::new();
        let step = head_of(&mut x, ctx, &mut p, &query("3", &[]), &message(7));
        let rejection = step
            .effects
            .iter()
            .find_map(|e| match e {
                Effect::Reject(r) => Some(r.clone()),
                _ => None,
            })
            .expect("refused");
        assert_eq!(rejection.reason, Reason::Busy);
        assert_eq!(rejection.reason.status(), 503);
        assert_eq!(rejection.headers(), [("retry-after", "5")]);
        assert!(counted(&step, Counter::Rejected(Reason::Busy)));
        assert!(!sets_a_header(&step));
    }
}

const OLD_TOKEN: &str = "old-tok";
const OLD_KEY: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";

fn rotating_cfg() -> Config {
    let json = format!(
        r#"{{"path": "/wechat", "token": ["{TOKEN}", "{OLD_TOKEN}"], "appid": "{APPID}", "source": {{"allow": ["127.0.0.2"]}}, "safe_mode": {{"encoding_aes_key": ["{KEY}", "{OLD_KEY}"], "decrypt": true}}}}"#
    );
    config::parse(json.as_bytes(), &|_| None).expect("rotating config")
}

/// A safe-mode push signed with `token` and encrypted with `key`.
fn push_with(token: &str, key: &str, nonce: &str, message: &str) -> (String, String) {
    let key = cipher::AesKey::from_encoding_aes_key(key).expect("key");
    let encrypt = cipher::encrypt(&key, APPID, message.as_bytes(), &[3; 16]);
    let ts = NOW.to_string();
    let signature = request_signature(token, &ts, nonce);
    let msg_signature = as_str(&sign(&[token, &ts, nonce, &encrypt])).to_string();
    let q = encode_query(&[
        ("signature", as_str(&signature)),
        ("timestamp", &ts),
        ("nonce", nonce),
        ("encrypt_type", "aes"),
        ("msg_signature", &msg_signature),
    ]);
    (q, envelope::push_body(Some("gh_1"), &encrypt))
}

/// The sealed reply's MsgSignature and plaintext, opened with `token` and `key`.
fn open_sealed(sealed: &[u8], token: &str, key: &str, nonce: &str) -> Option<Vec<u8>> {
    let encrypt = envelope::extract_encrypt(sealed).ok()?;
    let signature = crate::xml::element(sealed, "MsgSignature").ok()??;
    let expected = sign(&[token, &NOW.to_string(), nonce, &encrypt]);
    if signature != as_str(&expected) {
        return None;
    }
    let key = cipher::AesKey::from_encoding_aes_key(key).ok()?;
    cipher::decrypt(&key, APPID, &encrypt).ok()
}

#[test]
fn while_rotating_a_push_under_either_token_and_key_passes_and_its_reply_uses_the_same() {
    let c = rotating_cfg();
    for (token, key, nonce) in [
        (TOKEN, KEY, "1"),
        (OLD_TOKEN, KEY, "2"),
        (TOKEN, OLD_KEY, "3"),
        (OLD_TOKEN, OLD_KEY, "4"),
    ] {
        let mut p = FakeProxy::new(&c);
        let mut x = Exchange::new();
        let (q, body) = push_with(
            token,
            key,
            nonce,
            &message(800 + nonce.parse::<u64>().unwrap_or(0)),
        );
        let step = post(&mut x, &c, &mut p, &q, &body);
        assert!(forwarded(&step), "{token} {key}: {:?}", step.effects);
        x.on_response_headers(ctx(&c), false, &mut p);
        p.response_body = b"<xml>reply</xml>".to_vec();
        let step = x.on_response_body(ctx(&c), 16, true, &mut p);
        let Some(Effect::ReplaceResponseBody(sealed)) = step.effects.first() else {
            panic!("{step:?}");
        };
        assert_eq!(
            open_sealed(sealed, token, key, nonce).as_deref(),
            Some(&b"<xml>reply</xml>"[..]),
            "sealed with the token and key that opened the push ({token}, {key})"
        );
    }
}

#[test]
fn a_token_or_key_outside_the_rotation_is_refused() {
    let c = rotating_cfg();
    let mut p = FakeProxy::new(&c);
    let (q, body) = push_with("stranger", KEY, "1", &message(1));
    assert_eq!(
        rejected(&post(&mut Exchange::new(), &c, &mut p, &q, &body)),
        Some(Reason::Signature)
    );
    let other_key = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
    let (q, body) = push_with(TOKEN, other_key, "2", &message(2));
    assert_eq!(
        rejected(&post(&mut Exchange::new(), &c, &mut p, &q, &body)),
        Some(Reason::Decrypt)
    );
}

// ---- platforms --------------------------------------------------------------

fn platform_cfg(platform: &str, path: &str, extra: &str) -> Config {
    let json = format!(
        r#"{{"platform": "{platform}", "path": "{path}", "token": "{TOKEN}", "appid": "{APPID}", "source": {{"allow": ["127.0.0.2"]}}, "safe_mode": {{"encoding_aes_key": "{KEY}", "decrypt": true}}{extra}}}"#
    );
    config::parse(json.as_bytes(), &|_| None).expect("platform config")
}

fn aes() -> cipher::AesKey {
    cipher::AesKey::from_encoding_aes_key(KEY).expect("key")
}

/// WeCom's query: msg_signature over the token, timestamp, nonce and `signed`.
fn wecom_query(nonce: &str, signed: &str, extra: &[(&str, &str)]) -> String {
    let ts = NOW.to_string();
    let msg_signature = as_str(&sign(&[TOKEN, &ts, nonce, signed])).to_string();
    let mut pairs = vec![
        ("msg_signature", msg_signature.as_str()),
        ("timestamp", ts.as_str()),
        ("nonce", nonce),
    ];
    pairs.extend_from_slice(extra);
    encode_query(&pairs)
}

#[test]
fn wecoms_handshake_answers_the_decrypted_echostr() {
    let c = platform_cfg("wecom", "/wecom", "");
    let mut p = FakeProxy::new(&c);
    let echostr = cipher::encrypt(&aes(), APPID, b"4872341879287", &[1; 16]);
    let get = |q: &str, p: &mut FakeProxy| {
        Exchange::new().on_request_headers(
            ctx(&c),
            &headers("GET", &format!("/wecom?{q}"), &[]),
            true,
            p,
        )
    };
    let q = wecom_query("1", &echostr, &[("echostr", &echostr)]);
    assert_eq!(
        replied(&get(&q, &mut p)),
        Some((200, b"4872341879287".to_vec()))
    );
    let forged = wecom_query("2", "another", &[("echostr", &echostr)]);
    assert_eq!(rejected(&get(&forged, &mut p)), Some(Reason::MsgSignature));
    let other_corp = cipher::encrypt(&aes(), "ww_other", b"x", &[1; 16]);
    let q = wecom_query("3", &other_corp, &[("echostr", &other_corp)]);
    assert_eq!(rejected(&get(&q, &mut p)), Some(Reason::Decrypt));
    // The handshake's query can never carry a push: its msg_signature signs the
    // echostr, so as a push's it fails, and if it signed the body it is a replay.
    let body = envelope::push_body(Some(APPID), &echostr);
    let q = wecom_query("1", &echostr, &[]);
    let step = open_post(&c, &mut p, "/wecom", &q, &body);
    assert!(counted(&step, Counter::Replayed), "{:?}", step.effects);
}

/// Issue 18, 1: a WeCom handshake's query was forgotten when its stream ended, so
/// its URL was answered (decrypted) again, and carried its echostr, posted as the
/// Encrypt, to the backend as a verified push.
#[test]
fn a_wecom_handshake_query_stays_used_once_its_stream_has_ended() {
    let c = platform_cfg("wecom", "/wecom", "");
    let mut p = FakeProxy::new(&c);
    let echostr = cipher::encrypt(&aes(), APPID, b"4872341879287", &[1; 16]);
    let target = format!(
        "/wecom?{}",
        wecom_query("1", &echostr, &[("echostr", &echostr)])
    );
    let step = get(&c, &mut p, &target);
    assert_eq!(replied(&step), Some((200, b"4872341879287".to_vec())));
    assert!(counted(&step, Counter::Handshake));
    let step = get(&c, &mut p, &target);
    assert_eq!(replied(&step), success());
    assert!(counted(&step, Counter::Replayed));
    assert!(!counted(&step, Counter::Handshake));
    let body = envelope::push_body(Some(APPID), &echostr);
    let step = open_post(
        &c,
        &mut p,
        "/wecom",
        &wecom_query("1", &echostr, &[]),
        &body,
    );
    assert!(!forwarded(&step), "{:?}", step.effects);
    assert!(counted(&step, Counter::Replayed), "{:?}", step.effects);
}

/// A handshake refused after its query was recorded (its echostr does not open to a
/// token) leaves the query free: it was answered nothing.
#[test]
fn a_wecom_handshake_refused_at_its_echostr_leaves_its_query_free() {
    let c = platform_cfg("wecom", "/wecom", "");
    let mut p = FakeProxy::new(&c);
    let (q, body, encrypt) = wecom_push_for(APPID, "1", &message(81));
    let step = get(
        &c,
        &mut p,
        &format!("/wecom?{q}&{}", encode_query(&[("echostr", &encrypt)])),
    );
    assert_eq!(rejected(&step), Some(Reason::Decrypt));
    assert!(forwarded(&open_post(&c, &mut p, "/wecom", &q, &body)));
}

#[test]
fn a_wecom_push_is_verified_by_its_body_decrypted_and_its_query_then_used_up() {
    let c = platform_cfg("wecom", "/wecom", "");
    let mut p = FakeProxy::new(&c);
    let encrypt = cipher::encrypt(&aes(), APPID, message(31).as_bytes(), &[2; 16]);
    let body = envelope::push_body(Some(APPID), &encrypt);
    let q = wecom_query("5", &encrypt, &[]);
    let mut x = Exchange::new();
    let len = body.len().to_string();
    let h = headers("POST", &format!("/wecom?{q}"), &[("content-length", &len)]);
    p.request_body = body.clone().into_bytes();
    let head = x.on_request_headers(ctx(&c), &h, false, &mut p);
    assert_eq!(
        head.flow,
        Flow::Pause,
        "nothing goes on before the body verifies it"
    );
    let step = x.on_request_body(ctx(&c), body.len(), true, &mut p);
    assert!(forwarded(&step));
    assert!(step
        .effects
        .contains(&Effect::ReplaceRequestBody(message(31).into_bytes())));
    // The same query again: a replay, whatever the body.
    let mut x = Exchange::new();
    x.on_request_headers(ctx(&c), &h, false, &mut p);
    let step = x.on_request_body(ctx(&c), body.len(), true, &mut p);
    assert!(counted(&step, Counter::Replayed), "{:?}", step.effects);
    // A forged msg_signature is refused.
    let forged = wecom_query("6", "not the body", &[]);
    let mut x = Exchange::new();
    let h = headers(
        "POST",
        &format!("/wecom?{forged}"),
        &[("content-length", &len)],
    );
    x.on_request_headers(ctx(&c), &h, false, &mut p);
    assert_eq!(
        rejected(&x.on_request_body(ctx(&c), body.len(), true, &mut p)),
        Some(Reason::MsgSignature)
    );
}

/// A third-party platform's push for authorizer `authorizer` of `message`.
fn open_push(nonce: &str, message: &str) -> (String, String) {
    let encrypt = cipher::encrypt(&aes(), APPID, message.as_bytes(), &[4; 16]);
    let ts = NOW.to_string();
    let msg_signature = as_str(&sign(&[TOKEN, &ts, nonce, &encrypt])).to_string();
    (
        query(
            nonce,
            &[("encrypt_type", "aes"), ("msg_signature", &msg_signature)],
        ),
        envelope::push_body(Some("gh_authorizer"), &encrypt),
    )
}

fn open_post(c: &Config, p: &mut FakeProxy, path: &str, q: &str, body: &str) -> Step {
    let len = body.len().to_string();
    let h = headers("POST", &format!("{path}?{q}"), &[("content-length", &len)]);
    p.request_body = body.as_bytes().to_vec();
    let mut x = Exchange::new();
    let mut head = x.on_request_headers(ctx(c), &h, false, p);
    if x.is_held() {
        let rest = x.on_request_body(ctx(c), body.len(), true, p);
        head.effects.extend(rest.effects);
        head.flow = rest.flow;
    }
    head
}

#[test]
fn one_open_platform_route_serves_every_authorizer_named_in_its_path() {
    const AUTHORIZER: &str = "wx570bc396a51b8ff8";
    let c = platform_cfg("open_platform", "/open/$APPID$/callback", "");
    let mut p = FakeProxy::new(&c);
    let path = format!("/open/{AUTHORIZER}/callback");
    let (q, body) = open_push("1", &message(50));
    let step = open_post(&c, &mut p, &path, &q, &body);
    assert!(forwarded(&step), "{:?}", step.effects);
    assert!(step.effects.contains(&Effect::SetRequestHeader(
        "x-wechat-gate-authorizer-appid",
        AUTHORIZER.into()
    )));
    // A segment that is no AppID is refused, never passed through.
    let (q, body) = open_push("2", &message(51));
    assert_eq!(
        rejected(&open_post(&c, &mut p, "/open/evil/callback", &q, &body)),
        Some(Reason::Malformed)
    );
    // A message naming another authorizer than the path does not pass.
    let named = message(52).replace(
        "</xml>",
        "<AuthorizerAppid>wx0000000000000001</AuthorizerAppid></xml>",
    );
    let (q, body) = open_push("3", &named);
    assert_eq!(
        rejected(&open_post(&c, &mut p, &path, &q, &body)),
        Some(Reason::Account)
    );
    // Plaintext pushes do not exist on a third-party platform.
    let plain = query("4", &[]);
    assert_eq!(
        rejected(&open_post(&c, &mut p, &path, &plain, &message(53))),
        Some(Reason::Malformed)
    );
}

#[test]
fn an_authorization_event_for_another_component_is_refused() {
    let c = platform_cfg("open_platform", "/open/auth", "");
    let mut p = FakeProxy::new(&c);
    let event = |appid: &str| {
        format!("<xml><AppId><![CDATA[{appid}]]></AppId><CreateTime>1413192605</CreateTime><InfoType><![CDATA[component_verify_ticket]]></InfoType><ComponentVerifyTicket><![CDATA[ticket@@@x]]></ComponentVerifyTicket></xml>")
    };
    let (q, body) = open_push("1", &event(APPID));
    assert!(forwarded(&open_post(&c, &mut p, "/open/auth", &q, &body)));
    let (q, body) = open_push("2", &event("wxOTHER"));
    assert_eq!(
        rejected(&open_post(&c, &mut p, "/open/auth", &q, &body)),
        Some(Reason::Account)
    );
    // The ticket comes every ten minutes; a retry of the same one is recognised.
    let (q, body) = open_push("3", &event(APPID));
    assert!(counted(
        &open_post(&c, &mut p, "/open/auth", &q, &body),
        Counter::Deduplicated
    ));
}

#[test]
fn a_mini_programs_json_push_is_read_decrypted_and_answered_in_json() {
    let c = platform_cfg("mini_program", "/mp", "");
    let mut p = FakeProxy::new(&c);
    let json_message = r#"{"ToUserName":"gh_mp","FromUserName":"o_mp","CreateTime":1,"MsgType":"text","Content":"hi","MsgId":77}"#;
    let encrypt = cipher::encrypt(&aes(), APPID, json_message.as_bytes(), &[5; 16]);
    let ts = NOW.to_string();
    let msg_signature = as_str(&sign(&[TOKEN, &ts, "1", &encrypt])).to_string();
    let q = query(
        "1",
        &[("encrypt_type", "aes"), ("msg_signature", &msg_signature)],
    );
    let body = format!(r#"{{"ToUserName":"gh_mp","Encrypt":"{encrypt}"}}"#);
    let mut x = Exchange::new();
    let step = {
        let len = body.len().to_string();
        let h = headers("POST", &format!("/mp?{q}"), &[("content-length", &len)]);
        p.request_body = body.clone().into_bytes();
        x.on_request_headers(ctx(&c), &h, false, &mut p);
        x.on_request_body(ctx(&c), body.len(), true, &mut p)
    };
    assert!(forwarded(&step));
    assert!(step.effects.contains(&Effect::ReplaceRequestBody(
        json_message.as_bytes().to_vec()
    )));
    assert!(step.effects.contains(&Effect::SetRequestHeader(
        "x-wechat-gate-openid",
        "o_mp".into()
    )));
    x.on_response_headers(ctx(&c), false, &mut p);
    p.response_body = br#"{"MsgType":"transfer_customer_service"}"#.to_vec();
    let step = x.on_response_body(ctx(&c), p.response_body.len(), true, &mut p);
    let Some(Effect::ReplaceResponseBody(sealed)) = step.effects.first() else {
        panic!("{step:?}");
    };
    let v: serde_json::Value = serde_json::from_slice(sealed).expect("a JSON envelope");
    let encrypt = v["Encrypt"].as_str().expect("Encrypt");
    assert_eq!(
        cipher::decrypt(&aes(), APPID, encrypt).expect("opens"),
        p.response_body
    );
    assert_eq!(
        v["MsgSignature"],
        as_str(&sign(&[TOKEN, &ts, "1", encrypt]))
    );
    // A plaintext JSON push's retry is recognised by its MsgId.
    let mut plain = |nonce: &str| {
        let mut x = Exchange::new();
        let q = query(nonce, &[]);
        let len = json_message.len().to_string();
        let h = headers("POST", &format!("/mp?{q}"), &[("content-length", &len)]);
        p.request_body = json_message.as_bytes().to_vec();
        x.on_request_headers(ctx(&c), &h, false, &mut p);
        x.on_request_body(ctx(&c), json_message.len(), true, &mut p)
    };
    assert!(
        counted(&plain("2"), Counter::Deduplicated),
        "the same MsgId as the encrypted one"
    );
}

// ---- adversarial: platforms -------------------------------------------------

/// A WeCom push of `message`, encrypted for `receive_id`: its query and its body.
fn wecom_push_for(receive_id: &str, nonce: &str, message: &str) -> (String, String, String) {
    let encrypt = cipher::encrypt(&aes(), receive_id, message.as_bytes(), &[3; 16]);
    let body = envelope::push_body(Some(receive_id), &encrypt);
    (wecom_query(nonce, &encrypt, &[]), body, encrypt)
}

/// WeCom's 成员变更 / 客户变更 events come from `sys`, and many come in one second
/// (a bulk import, a batch of new customers): only ChangeType, UserID and
/// ExternalUserID tell them apart. Each is a message of its own, never a retry.
#[test]
fn wecom_contact_events_in_one_second_for_different_users_are_each_delivered() {
    let c = platform_cfg("wecom", "/wecom", "");
    let mut p = FakeProxy::new(&c);
    let contact = |user: &str| {
        format!(
            "<xml><ToUserName><![CDATA[{APPID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
             <CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[change_contact]]></Event><ChangeType>create_user</ChangeType>\
             <UserID><![CDATA[{user}]]></UserID></xml>"
        )
    };
    let customer = |external: &str| {
        format!(
            "<xml><ToUserName><![CDATA[{APPID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
             <CreateTime>1403610514</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[add_external_contact]]></ChangeType>\
             <UserID><![CDATA[zhangsan]]></UserID><ExternalUserID><![CDATA[{external}]]></ExternalUserID></xml>"
        )
    };
    for (nonce, event) in [
        ("1", contact("zhangsan")),
        ("2", contact("lisi")),
        ("3", customer("woAJ2GCAAAXtWyujaWJHDDGi0mACH71w")),
        ("4", customer("woAJ2GCAAAd8qmKa_jZ0bqvRrdBHPJIg")),
    ] {
        let (q, body, _) = wecom_push_for(APPID, nonce, &event);
        let step = open_post(&c, &mut p, "/wecom", &q, &body);
        assert!(
            forwarded(&step),
            "event {nonce} was taken for a retry and never delivered: {:?}",
            step.effects
        );
    }
}

/// A push's query (msg_signature over the token, timestamp, nonce and the body's
/// Encrypt) and its Encrypt are exactly what a handshake carries as its query and
/// echostr. Whoever saw one push (WeCom may call over plain HTTP: that is what the
/// encryption is for) must not be able to have the gate decrypt it for them.
#[test]
fn a_wecom_push_seen_on_the_wire_never_becomes_a_handshake_the_gate_decrypts() {
    let c = platform_cfg("wecom", "/wecom", "");
    let mut p = FakeProxy::new(&c);
    let secret = message(80).replace("hi", "the salary list");
    let (q, body, encrypt) = wecom_push_for(APPID, "1", &secret);
    // WeChat's push goes through as it should.
    assert!(forwarded(&open_post(&c, &mut p, "/wecom", &q, &body)));
    // The observer replays its query as a GET with the Encrypt as echostr.
    let handshake = format!("{q}&{}", encode_query(&[("echostr", &encrypt)]));
    let step = Exchange::new().on_request_headers(
        ctx(&c),
        &headers("GET", &format!("/wecom?{handshake}"), &[]),
        true,
        &mut p,
    );
    let leaked = replied(&step).filter(|(_, body)| body == secret.as_bytes());
    assert_eq!(
        leaked.map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned())),
        None,
        "the gate answered a used push's query with the decrypted message"
    );
    // Its query is used: a replay, answered like a retry, whatever the method.
    assert_eq!(replied(&step), success());
    assert!(counted(&step, Counter::Replayed), "{:?}", step.effects);
    // Nor before the push arrives (an observer racing WeChat), nor with a
    // tolerance of 0: a handshake's plaintext is a short token, never a message.
    let (q, _, encrypt) = wecom_push_for(APPID, "2", &secret);
    let handshake = format!("{q}&{}", encode_query(&[("echostr", &encrypt)]));
    let step = Exchange::new().on_request_headers(
        ctx(&c),
        &headers("GET", &format!("/wecom?{handshake}"), &[]),
        true,
        &mut p,
    );
    assert_eq!(
        replied(&step).map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned())),
        None,
        "a message was answered as a handshake's echostr"
    );
}

/// A decrypted push must be a message of its platform's format; whatever else opens
/// under a valid msg_signature (a handshake's token, text, JSON where only XML is
/// pushed) is refused 400 and its query left free.
#[test]
fn a_decrypted_push_that_is_not_a_message_of_its_platform_is_refused() {
    let json = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"text","Content":"hi","MsgId":7}"#;
    for (platform, plaintext, passes) in [
        ("wecom", "4872341879287", false),
        ("wecom", json, false),
        ("official_account", "just text", false),
        ("official_account", json, false),
        ("official_account", "", false),
        ("mini_program", "just text", false),
        ("mini_program", json, true),
        ("mini_program", message(9).as_str(), true),
    ] {
        let c = platform_cfg(platform, "/wechat", "");
        let mut p = FakeProxy::new(&c);
        let (q, body) = if platform == "wecom" {
            let (q, body, _) = wecom_push_for(APPID, "1", plaintext);
            (q, body)
        } else {
            safe_push("1", plaintext)
        };
        let step = open_post(&c, &mut p, "/wechat", &q, &body);
        if passes {
            assert!(
                forwarded(&step),
                "{platform} {plaintext}: {:?}",
                step.effects
            );
            continue;
        }
        assert_eq!(
            rejected(&step),
            Some(Reason::Malformed),
            "{platform} {plaintext}"
        );
        assert!(!forwarded(&step), "{platform} {plaintext}");
        if platform != "wecom" {
            // Its query is free again (WeCom's is recorded only after the body passed).
            let (q, body) = safe_push("1", &message(10));
            assert!(forwarded(&open_post(&c, &mut p, "/wechat", &q, &body)));
        }
    }
}

/// `AuthorizerAppid` twice (or holding structure) is no proof it names this route's
/// authorizer: the message is refused as an ambiguous one, as a repeated `Encrypt` is.
#[test]
fn an_open_platform_message_that_names_its_authorizer_ambiguously_is_refused() {
    const AUTHORIZER: &str = "wx570bc396a51b8ff8";
    let c = platform_cfg("open_platform", "/open/$APPID$/callback", "");
    let path = format!("/open/{AUTHORIZER}/callback");
    for (nonce, named) in [
        (
            "1",
            format!("<AuthorizerAppid>wx0000000000000001</AuthorizerAppid><AuthorizerAppid>{AUTHORIZER}</AuthorizerAppid>"),
        ),
        (
            "2",
            "<AuthorizerAppid><a>wx0000000000000001</a></AuthorizerAppid>".to_string(),
        ),
    ] {
        let mut p = FakeProxy::new(&c);
        let (q, body) = open_push(nonce, &message(60).replace("</xml>", &format!("{named}</xml>")));
        let step = open_post(&c, &mut p, &path, &q, &body);
        assert_eq!(
            rejected(&step),
            Some(Reason::Account),
            "{named}: {:?}",
            step.effects
        );
    }
}

/// The pattern refuses any segment that is no AppID rather than pass it through;
/// the same must hold for the spellings of the route many frameworks serve as it
/// (a trailing slash, `;` path parameters), which Envoy's normalisation keeps.
#[test]
fn look_alikes_of_an_open_platform_route_are_refused_never_passed_through() {
    let c = platform_cfg("open_platform", "/open/$APPID$/callback", "");
    for path in [
        "/open/wx570bc396a51b8ff8/callback/",
        "/open/wx570bc396a51b8ff8/callback;jsessionid=1",
    ] {
        let mut p = FakeProxy::new(&c);
        let (q, body) = open_push("1", &message(61));
        let len = body.len().to_string();
        let h = headers(
            "POST",
            &format!("{path}?{q}"),
            &[
                ("content-length", &len),
                ("x-wechat-gate-verified", "1"),
                ("x-wechat-gate-authorizer-appid", "wx570bc396a51b8ff8"),
            ],
        );
        p.request_body = body.into_bytes();
        let step = Exchange::new().on_request_headers(ctx(&c), &h, false, &mut p);
        assert!(
            !counted(&step, Counter::PassedThrough),
            "{path} passed through with the client's x-wechat-gate-* headers"
        );
    }
}

/// Streamed, a push's headers go on before its body is read. For every other
/// platform those headers were verified (the query's signature); a WeCom query is
/// verified only by the body, so its headers leave unverified (stream mode has no
/// other way: README "Platforms"). What holds is that its body never does: a forged
/// push is refused once its body is in, and never released, so the upstream request
/// is reset before it completes.
#[test]
fn streamed_a_forged_wecom_push_never_has_its_body_released() {
    let c = platform_cfg("wecom", "/wecom", "");
    let mut p = FakeProxy::new(&c);
    let forged = wecom_query("9", "anything at all", &[]);
    let body = "<xml><ToUserName>ww</ToUserName><Encrypt><![CDATA[QUFBQUFBQUFBQUFBQUFBQQ==]]></Encrypt></xml>";
    let len = body.len().to_string();
    let h = headers(
        "POST",
        &format!("/wecom?{forged}"),
        &[("content-length", &len)],
    );
    let mut x = Exchange::new();
    let _headers_went_on = x.on_request_headers(streaming(&c), &h, false, &mut p);
    p.request_body = body.as_bytes().to_vec();
    let step = x.on_request_body(streaming(&c), body.len(), true, &mut p);
    assert_eq!(
        rejected(&step),
        Some(Reason::MsgSignature),
        "{:?}",
        step.effects
    );
    assert_ne!(
        step.flow,
        Flow::Continue,
        "a forged body was released upstream"
    );
}

/// A decrypted push's reply leaves sealed or as `success`, whatever its format: a
/// backend answering a JSON push in XML (or an XML push in JSON) must not have its
/// reply sent to WeChat in plaintext.
#[test]
fn a_reply_in_the_other_format_than_the_push_never_goes_out_in_plaintext() {
    let c = platform_cfg("mini_program", "/mp", "");
    let json_message = r#"{"ToUserName":"gh_mp","FromUserName":"o_mp","CreateTime":1,"MsgType":"text","Content":"hi","MsgId":78}"#;
    let encrypt = cipher::encrypt(&aes(), APPID, json_message.as_bytes(), &[5; 16]);
    let ts = NOW.to_string();
    let msg_signature = as_str(&sign(&[TOKEN, &ts, "1", &encrypt])).to_string();
    let q = query(
        "1",
        &[("encrypt_type", "aes"), ("msg_signature", &msg_signature)],
    );
    let body = format!(r#"{{"ToUserName":"gh_mp","Encrypt":"{encrypt}"}}"#);
    let mut p = FakeProxy::new(&c);
    let mut x = Exchange::new();
    let len = body.len().to_string();
    let h = headers("POST", &format!("/mp?{q}"), &[("content-length", &len)]);
    p.request_body = body.clone().into_bytes();
    x.on_request_headers(ctx(&c), &h, false, &mut p);
    assert!(forwarded(&x.on_request_body(
        ctx(&c),
        body.len(),
        true,
        &mut p
    )));
    x.on_response_headers(ctx(&c), false, &mut p);
    let reply = "<xml><ToUserName><![CDATA[o_mp]]></ToUserName><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[private]]></Content></xml>";
    p.response_body = reply.as_bytes().to_vec();
    let step = x.on_response_body(ctx(&c), reply.len(), true, &mut p);
    let replaced = step.effects.iter().find_map(|e| match e {
        Effect::ReplaceResponseBody(b) => Some(b.clone()),
        _ => None,
    });
    assert!(
        replaced.is_some_and(|b| !b.windows(7).any(|w| w == b"private")),
        "the XML reply to a JSON push went out as it was: {:?}",
        step.effects
    );
}
