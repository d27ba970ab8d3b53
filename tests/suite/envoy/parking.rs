//! Parking (`on_upstream_failure: success`, `park`): a verified push Envoy could not
//! deliver is answered `success`, kept in shared data and redelivered by the gate,
//! marked `x-wechat-gate-redelivered: <try>`, once the backend is back; with no room,
//! Envoy's own failure goes to WeChat, which retries.

use crate::harness::backend::{Backend, Reply};
use crate::harness::config::{gated, streaming};
use crate::harness::envoy::Envoy;
use crate::harness::requests::{fresh, LISTED};
use crate::harness::safe_mode::{push, safe_config, text_message};
use crate::harness::{closed_port, merged, wait_until};
use serde_json::json;
use std::time::Duration;

/// The suite's plaintext account with the top-level keys of `extra` set.
fn plaintext(extra: serde_json::Value) -> serde_json::Value {
    merged(safe_config(json!({"safe_mode": null})), extra)
}

/// Waits until the backend has `n` requests (parking's first try is about a second
/// after a push, its backoff at most half a minute).
fn wait_for(backend: &Backend, n: usize) -> Vec<crate::harness::backend::Recorded> {
    let got = wait_until(Duration::from_secs(40), || backend.records().len() >= n);
    assert!(got.is_some(), "the backend got {:?}", backend.bodies());
    backend.records()
}

/// Waits until the gate's gauge `parked_now` reads `n`.
fn wait_parked_now(envoy: &Envoy, n: u64) {
    let got = wait_until(Duration::from_secs(10), || {
        envoy.counter("wechat_gate.parked_now") == n
    });
    assert!(
        got.is_some(),
        "parked_now {}",
        envoy.counter("wechat_gate.parked_now")
    );
}

#[test]
fn pushes_answered_success_while_the_backend_is_down_reach_it_once_it_is_back() {
    let port = closed_port();
    let envoy = gated(port, plaintext(json!({}))).workers(2).start();
    let sent: Vec<String> = (0..5)
        .map(|i| text_message(&format!("parked {i}"), 700 + i))
        .collect();
    for body in &sent {
        let r = envoy.post(&fresh(), body, LISTED);
        assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    }
    assert_eq!(envoy.counter("wechat_gate.parked"), 5);
    wait_parked_now(&envoy, 5);
    let backend = Backend::start_on(port);
    let records = wait_for(&backend, 5);
    // Each exactly once, oldest first, as the backend would have had it, marked.
    assert_eq!(backend.bodies(), sent);
    for r in &records {
        assert_eq!(r.method, "POST");
        assert!(r.url.starts_with("/wechat?signature="), "{}", r.url);
        assert_eq!(r.header("x-wechat-gate-verified"), Some("1"));
        assert_eq!(r.header("x-wechat-gate-redelivered"), Some("1"));
    }
    wait_parked_now(&envoy, 0);
    assert_eq!(envoy.counter("wechat_gate.redelivered"), 5);
    // Nothing more comes: each was forgotten on its 2xx.
    let _more = wait_until(Duration::from_secs(3), || backend.records().len() > 5);
    assert_eq!(backend.records().len(), 5, "{:?}", backend.bodies());
}

#[test]
fn a_decrypted_push_is_redelivered_in_plaintext_with_the_gates_headers() {
    let port = closed_port();
    let envoy = gated(port, safe_config(json!({}))).start();
    let message = text_message("sealed, parked", 710);
    let r = envoy.push(&push(&message, "1"));
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    let backend = Backend::start_on(port);
    let records = wait_for(&backend, 1);
    assert_eq!(records[0].body_text(), message);
    assert_eq!(records[0].header("x-wechat-gate-decrypted"), Some("1"));
    if streaming() {
        // As it went upstream: its headers went on before the body was read, so
        // without the unsigned openid and with the query as WeChat sent it.
        assert_eq!(records[0].header("x-wechat-gate-openid"), None);
    } else {
        let openid = records[0].header("x-wechat-gate-openid");
        assert_eq!(openid, Some("o_safe_user"));
        assert!(
            !records[0].url.contains("msg_signature"),
            "{}",
            records[0].url
        );
    }
}

#[test]
fn with_the_parking_area_full_envoys_failure_goes_to_wechat_to_retry() {
    let port = closed_port();
    let envoy = gated(port, plaintext(json!({"park": {"max_messages": 2}}))).start();
    for i in 0..2 {
        let r = envoy.post(&fresh(), &text_message("fits", 720 + i), LISTED);
        assert_eq!(r.status, 200);
    }
    let r = envoy.post(&fresh(), &text_message("no room", 722), LISTED);
    assert_eq!(r.status, 503, "{}", r.body_text());
    assert_eq!(envoy.counter("wechat_gate.park_full"), 1);
    assert_eq!(envoy.counter("wechat_gate.parked"), 2);
    // WeChat's retry of it, a new signed query, is not taken for a duplicate.
    let backend = Backend::start_on(port);
    let r = envoy.post(&fresh(), &text_message("no room", 722), LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    wait_for(&backend, 3);
}

#[test]
fn with_parking_off_a_push_answered_success_is_not_parked() {
    let port = closed_port();
    let envoy = gated(port, plaintext(json!({"park": {"max_messages": 0}}))).start();
    let r = envoy.post(&fresh(), &text_message("lost", 730), LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 1);
    assert_eq!(envoy.counter("wechat_gate.parked"), 0);
}

#[test]
fn a_push_the_slow_backend_got_too_late_is_delivered_again_marked() {
    // The route times out at 5 s; the backend answers a first try after 6 s and a
    // redelivery at once. Delivery is at least once: it has the push twice.
    let backend = Backend::replying(|r| match r.header("x-wechat-gate-redelivered") {
        Some(_) => Reply::success(),
        None => Reply::success().after(Duration::from_secs(6)),
    });
    let envoy = gated(backend.port, plaintext(json!({}))).start();
    let r = envoy.post(&fresh(), &text_message("slow", 740), LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    let records = wait_for(&backend, 2);
    assert_eq!(records[0].header("x-wechat-gate-redelivered"), None);
    assert_eq!(records[1].header("x-wechat-gate-redelivered"), Some("1"));
    assert_eq!(records[0].body, records[1].body);
}

#[test]
fn a_push_parked_longer_than_max_seconds_is_dropped_and_counted() {
    let port = closed_port();
    let envoy = gated(port, plaintext(json!({"park": {"max_seconds": 2}}))).start();
    let r = envoy.post(&fresh(), &text_message("too old", 750), LISTED);
    assert_eq!(r.status, 200);
    let dropped = wait_until(Duration::from_secs(15), || {
        envoy.counter("wechat_gate.park_expired") == 1
    });
    assert!(dropped.is_some(), "{}", envoy.log_text());
    wait_parked_now(&envoy, 0);
    // Back now, the backend gets nothing.
    let backend = Backend::start_on(port);
    let _late = wait_until(Duration::from_secs(3), || !backend.records().is_empty());
    assert!(backend.records().is_empty(), "{:?}", backend.bodies());
}
