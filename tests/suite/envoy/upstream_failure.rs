//! When Envoy itself fails a forwarded push (the route's timeout, a refused or reset
//! connection), `on_upstream_failure: success` answers `success` for WeChat not to
//! retry into the same failure; `pass` leaves Envoy's own answer.

use crate::harness::backend::{Backend, RawBackend, Reply};
use crate::harness::config::gated;
use crate::harness::envoy::Envoy;
use crate::harness::requests::{fresh, LISTED};
use crate::harness::safe_mode::{push, safe_config, text_message};
use crate::harness::{closed_port, merged};
use serde_json::json;
use std::time::Duration;
use wechat::http1::client::Response;

#[test]
fn a_backend_slower_than_the_route_timeout_yields_success() {
    // The harness's route timeout is 5 s; this backend takes 6.
    let backend = Backend::replying(|_| Reply::ok("<xml>late</xml>").after(Duration::from_secs(6)));
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    let r = envoy.push(&push(&text_message("slow", 10), "1"));
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 1);
}

/// A plaintext push to a gate (config `extra`) whose backend is on `port`; the
/// Envoy, the answer and the push's query.
fn plain_push_to(port: u16, extra: serde_json::Value, content: &str) -> (Envoy, Response, String) {
    let config = merged(safe_config(json!({"safe_mode": null})), extra);
    let envoy = gated(port, config).start();
    let query = fresh();
    let r = envoy.post(&query, &text_message(content, 11), LISTED);
    (envoy, r, query)
}

#[test]
fn a_refused_connection_yields_success() {
    // A port nothing listens on: Envoy's own 503.
    let (envoy, r, _) = plain_push_to(
        closed_port(),
        json!({"on_upstream_failure": "success"}),
        "nobody home",
    );
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "success"),
        "{}",
        r.body_text()
    );
    assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 1);
}

#[test]
fn with_pass_a_refused_connection_keeps_envoys_503_and_leaves_the_query_unused() {
    let (envoy, r, query) = plain_push_to(
        closed_port(),
        json!({"on_upstream_failure": "pass"}),
        "nobody home",
    );
    assert_eq!(r.status, 503, "{}", r.body_text());
    assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 0);
    // Never sent: the query was not used, so WeChat's second try with it is tried
    // again (not taken for a replay).
    let again = envoy.post(&query, &text_message("nobody home", 11), LISTED);
    assert_eq!(again.status, 503, "{}", again.body_text());
    assert_eq!(envoy.counter("wechat_gate.replayed"), 0);
}

#[test]
fn a_backend_that_resets_the_connection_yields_success() {
    // Reads the request, then closes the connection without a word: Envoy's own 503.
    let backend =
        RawBackend::start(|conn, _request| conn.stream.shutdown(std::net::Shutdown::Both));
    let (envoy, r, _) = plain_push_to(backend.port, json!({}), "reset");
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 1);
}
