//! WeChat's retries and replays. A retry of a message forwarded in the last
//! `dedupe_seconds` is answered `success` without the backend (also when encrypted
//! anew), unless the forward failed. A signed query carries one push: a replay is
//! answered `success` without the backend, a first use that never reached the
//! backend may be used again, and with the freshness check off nothing is remembered.

use crate::harness::backend::{Backend, Reply};
use crate::harness::config::{gate_config, gated};
use crate::harness::requests::{nonce, signed, text_xml, LISTED, TOKEN};
use crate::harness::safe_mode::{push, safe_config, text_message};
use crate::harness::{now, wait_past};
use gate::query::encode_query;
use serde_json::json;

#[test]
fn a_used_query_never_carries_a_push_to_the_backend_again() {
    let backend = Backend::start();
    // A short retry window, so a replay after it is quick to reach.
    let envoy = gated(backend.port, gate_config(json!({"dedupe_seconds": 2}))).start();
    let sent_at = now();
    let query = signed(TOKEN, sent_at, &nonce(), &[("openid", "o_first")]);
    let first = text_xml("o_first", "the real push", 4001);
    let r = envoy.post(&query, &first, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    // An exact copy at once, the same query with another body, a handshake's query
    // used for a push, and an exact copy after the retry window: each answered
    // `success`, none reaching the backend.
    let r = envoy.post(&query, &first, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    let forged = text_xml("o_victim", "a body of the attacker's", 4002);
    let r = envoy.post(&query, &forged, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    let handshake_query = signed(TOKEN, now(), &nonce(), &[("echostr", "e")]);
    let r = envoy.send(
        "GET",
        &format!("/wechat?{handshake_query}"),
        &[],
        b"",
        LISTED,
    );
    assert_eq!((r.status, r.body_text().as_str()), (200, "e"));
    let r = envoy.post(&handshake_query, &forged, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    wait_past(sent_at, 4);
    let r = envoy.post(&query, &first, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));

    assert_eq!(backend.bodies(), [first], "only the first use arrived");
    assert_eq!(envoy.counter("wechat_gate.replayed"), 4);
    assert_eq!(envoy.counter("wechat_gate.forwarded"), 1);
    assert_eq!(envoy.counter("wechat_gate.deduplicated"), 0);
}

/// A signed query seen once (a push's, or a handshake's, in an access log) sent as a
/// GET with an `echostr` of the sender's choosing: a replay like any other, answered
/// `success`, never the sender's text under the account's domain.
#[test]
fn a_used_query_sent_as_a_handshake_is_answered_success_never_echoed() {
    let backend = Backend::start();
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    let get = |query: &str, echostr: &str| {
        let target = format!("/wechat?{query}&{}", encode_query(&[("echostr", echostr)]));
        envoy.send("GET", &target, &[], b"", LISTED)
    };
    // A plaintext push and a safe-mode push, delivered; a handshake, answered.
    let plain = signed(TOKEN, now(), &nonce(), &[("openid", "o_safe_user")]);
    let message = text_message("a plaintext push", 4301);
    assert_eq!(envoy.post(&plain, &message, LISTED).status, 200);
    let sealed = push(&text_message("a sealed push", 4302), &nonce());
    assert_eq!(envoy.push(&sealed).status, 200);
    let handshake = signed(TOKEN, now(), &nonce(), &[]);
    let r = get(&handshake, "first");
    assert_eq!((r.status, r.body_text().as_str()), (200, "first"));
    // Each query again as a GET, and the handshake's URL as it was.
    let phish = "<h1>Account suspended: call +00 000</h1>";
    for (used, echostr) in [
        (&plain, phish),
        (&sealed.query, phish),
        (&handshake, phish),
        (&handshake, "first"),
    ] {
        let r = get(used, echostr);
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "success"),
            "{used} echostr={echostr}"
        );
    }
    assert_eq!(backend.records().len(), 2, "{:?}", backend.bodies());
    assert_eq!(envoy.counter("wechat_gate.handshake"), 1);
    assert_eq!(envoy.counter("wechat_gate.replayed"), 4);
    assert_eq!(envoy.counter("wechat_gate.forwarded"), 2);
}

#[test]
fn a_query_whose_first_use_never_reached_the_backend_is_delivered_when_used_again() {
    let backend = Backend::start();
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    let query = signed(TOKEN, now(), &nonce(), &[]);
    let body = text_xml("o_user", "second time lucky", 4101);
    // The first try stalls half-way through its body: 408, nothing forwarded.
    let half = format!(
        "POST /wechat?{query} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        &body[..body.len() / 2]
    );
    let r = envoy.send_raw(half.as_bytes(), LISTED).expect("an answer");
    assert_eq!(r.status, 408, "{}", r.body_text());
    assert!(backend.records().is_empty());
    // The same query again, whole: delivered.
    let r = envoy.post(&query, &body, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(backend.records().len(), 1);
    assert_eq!(envoy.counter("wechat_gate.replayed"), 0);
    // From then on it is used.
    let r = envoy.post(&query, &body, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(backend.records().len(), 1);
    assert_eq!(envoy.counter("wechat_gate.replayed"), 1);
}

#[test]
fn with_tolerance_zero_a_used_query_is_not_remembered() {
    // What the README says is lost with the freshness check off: a signed query is
    // good forever, and no table can remember it that long.
    let backend = Backend::start();
    let envoy = gated(
        backend.port,
        gate_config(json!({"timestamp_tolerance_seconds": 0, "dedupe_seconds": 0})),
    )
    .start();
    let query = signed(TOKEN, now(), &nonce(), &[]);
    for id in [4201, 4202] {
        let r = envoy.post(&query, &text_xml("o_user", "again", id), LISTED);
        assert_eq!(r.status, 200);
    }
    assert_eq!(backend.records().len(), 2);
    assert_eq!(envoy.counter("wechat_gate.replayed"), 0);
}

#[test]
fn retries_of_a_forwarded_message_are_answered_success_without_the_backend() {
    let backend = Backend::start();
    // Two workers: a retry may land on either, and the table is shared.
    let envoy = gated(backend.port, safe_config(json!({"safe_mode": null})))
        .workers(2)
        .start();
    let post = |body: &str, nonce: &str| {
        let query = signed(TOKEN, now(), nonce, &[]);
        envoy.post(&query, body, LISTED)
    };
    let message = text_message("retry me", 7007);
    for nonce in ["1", "2", "3", "4", "5", "6"] {
        let r = post(&message, nonce);
        assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    }
    let other = text_message("retry me", 7008);
    assert_eq!(post(&other, "7").status, 200);
    let event = |key: &str| {
        format!(
            "<xml><ToUserName><![CDATA[gh_e2e]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
             <CreateTime>1714036504</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
        )
    };
    for nonce in ["8", "9"] {
        assert_eq!(post(&event("k1"), nonce).status, 200);
    }
    assert_eq!(post(&event("k2"), "10").status, 200);

    assert_eq!(
        backend.bodies(),
        [message, other, event("k1"), event("k2")],
        "each message reached the backend once"
    );
    assert_eq!(envoy.counter("wechat_gate.deduplicated"), 6);
    assert_eq!(envoy.counter("wechat_gate.forwarded"), 4);
}

#[test]
fn retries_of_an_encrypted_message_are_recognised_after_decryption() {
    let backend = Backend::start();
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    let message = text_message("encrypted retry", 8008);
    // WeChat re-encrypts (a new random prefix) and re-signs each retry.
    for nonce in ["1", "2", "3"] {
        assert_eq!(envoy.push(&push(&message, nonce)).status, 200);
    }
    assert_eq!(backend.records().len(), 1);
    assert_eq!(envoy.counter("wechat_gate.deduplicated"), 2);
}

#[test]
fn dedupe_seconds_zero_forwards_every_retry() {
    let backend = Backend::start();
    let envoy = gated(
        backend.port,
        safe_config(json!({"dedupe_seconds": 0, "safe_mode": null})),
    )
    .start();
    let message = text_message("again", 9009);
    for nonce in ["1", "2"] {
        let query = signed(TOKEN, now(), nonce, &[]);
        let r = envoy.post(&query, &message, LISTED);
        assert_eq!(r.status, 200);
    }
    assert_eq!(backend.records().len(), 2);
}

#[test]
fn a_retry_after_a_failed_forward_reaches_the_backend() {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let backend = Backend::replying(move |_| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::status(500, "db down")
        } else {
            Reply::success()
        }
    });
    let envoy = gated(backend.port, safe_config(json!({"safe_mode": null}))).start();
    let message = text_message("deliver me", 16);
    let mut answers = Vec::new();
    for nonce in ["1", "2", "3"] {
        let query = signed(TOKEN, now(), nonce, &[]);
        let r = envoy.post(&query, &message, LISTED);
        answers.push((r.status, r.body_text()));
    }
    assert_eq!(
        answers,
        [
            (500, "db down".to_string()),
            (200, "success".to_string()),
            (200, "success".to_string())
        ]
    );
    assert_eq!(
        backend.records().len(),
        2,
        "the retry after the 500 was delivered"
    );
    assert_eq!(envoy.counter("wechat_gate.deduplicated"), 1);
}

#[test]
fn a_replayed_safe_mode_push_never_reaches_the_backend_again() {
    let backend = Backend::start();
    let envoy = gated(backend.port, safe_config(json!({"dedupe_seconds": 2})))
        .workers(2)
        .start();
    let sent_at = now();
    let p = push(&text_message("sealed once", 5001), &nonce());
    assert_eq!(envoy.push(&p).status, 200);
    assert_eq!(backend.records().len(), 1);
    // An exact copy at once, the query with another (validly encrypted) body, and an
    // exact copy after the retry window.
    assert_eq!(envoy.push(&p).body_text(), "success");
    let other = push(&text_message("another body", 5002), &p.nonce);
    let swapped = p.with_body(other.body);
    assert_eq!(envoy.push(&swapped).body_text(), "success");
    wait_past(sent_at, 4);
    assert_eq!(envoy.push(&p).body_text(), "success");
    assert_eq!(backend.records().len(), 1, "only the first use arrived");
    assert_eq!(envoy.counter("wechat_gate.replayed"), 3);
}

#[test]
fn after_a_backend_5xx_wechats_retry_is_delivered_but_the_old_query_carries_nothing() {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let backend = Backend::replying(move |_| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::status(503, "busy")
        } else {
            Reply::success()
        }
    });
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    let message = text_message("try me twice", 5101);
    let first = push(&message, &nonce());
    assert_eq!(envoy.push(&first).status, 503);
    // The backend had the first try: its query, with another (validly encrypted)
    // body, is a replay, never a second request.
    let forged = push(&text_message("a forged body", 5102), &first.nonce);
    let reused = first.with_body(forged.body);
    assert_eq!(envoy.push(&reused).body_text(), "success");
    assert_eq!(backend.records().len(), 1);
    // WeChat's own retry comes with a new query: delivered.
    assert_eq!(envoy.push(&push(&message, &nonce())).status, 200);
    assert_eq!(backend.records().len(), 2, "the retry was delivered");
    assert_eq!(envoy.counter("wechat_gate.replayed"), 1);
}
