//! A signed query carries one push: a replay is answered `success` without the
//! backend, a first use that never reached the backend may be used again, and with
//! the freshness check off nothing is remembered.

use crate::harness::backend::Backend;
use crate::harness::envoy::{gate_config, gated};
use crate::harness::requests::{nonce, signed, text_xml, LISTED, TOKEN};
use crate::harness::{now, wait_past};
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
