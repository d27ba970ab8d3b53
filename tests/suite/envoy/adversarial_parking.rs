//! Adversarial tests of parking (issue 22), through a real Envoy: nothing unverified
//! is parked or redelivered, a client's forged gate headers never ride on a
//! redelivery, two accounts on one Envoy each redeliver their own to their own
//! route's cluster, a reconfiguration that turns parking off still redelivers what was
//! parked, and no secret or message content reaches Envoy's log.

use crate::harness::backend::{Backend, Recorded, Reply};
use crate::harness::config::{EnvoyConfig, Gate};
use crate::harness::envoy::Envoy;
use crate::harness::requests::{fresh, nonce, signed, LISTED, TOKEN};
use crate::harness::safe_mode::{push, safe_config, text_message, AES_KEY};
use crate::harness::{closed_port, merged, now, wait_until};
use serde_json::json;
use std::time::Duration;

fn plaintext(extra: serde_json::Value) -> serde_json::Value {
    merged(safe_config(json!({"safe_mode": null})), extra)
}

fn wait_for(backend: &Backend, n: usize) -> Vec<Recorded> {
    let got = wait_until(Duration::from_secs(40), || backend.records().len() >= n);
    assert!(got.is_some(), "the backend got {:?}", backend.bodies());
    backend.records()
}

fn wait_parked_now(envoy: &Envoy, n: u64) {
    let got = wait_until(Duration::from_secs(15), || {
        envoy.counter("wechat_gate.parked_now") == n
    });
    assert!(
        got.is_some(),
        "parked_now {}",
        envoy.counter("wechat_gate.parked_now")
    );
}

/// Nothing more than `n` comes within 3 s.
fn no_more_than(backend: &Backend, n: usize) {
    let _more = wait_until(Duration::from_secs(3), || backend.records().len() > n);
    assert_eq!(backend.records().len(), n, "{:?}", backend.bodies());
}

fn post_with(envoy: &Envoy, query: &str, body: &str, headers: &[(&str, &[u8])]) -> (u16, String) {
    let mut all: Vec<(&str, &[u8])> = vec![("content-type", b"text/xml")];
    all.extend_from_slice(headers);
    let r = envoy.send(
        "POST",
        &format!("/wechat?{query}"),
        &all,
        body.as_bytes(),
        LISTED,
    );
    (r.status, r.body_text())
}

#[test]
fn client_forged_gate_headers_never_ride_on_a_redelivery() {
    let port = closed_port();
    let envoy = EnvoyConfig::new(port)
        .gate(Gate::new("wechat_gate", plaintext(json!({}))))
        .start();
    let body = text_message("forged headers", 9100);
    let forged: [(&str, &[u8]); 7] = [
        ("x-wechat-gate-redelivered", b"7"),
        ("x_wechat_gate_redelivered", b"8"),
        ("X-Wechat-Gate-Verified", b"forged"),
        ("x_wechat_gate_verified", b"forged"),
        ("x-wechat-gate-openid", b"o_forged"),
        ("x_wechat_gate_decrypted", b"1"),
        ("x-wechat-gate-authorizer-appid", b"wxforged"),
    ];
    let answer = post_with(&envoy, &fresh(), &body, &forged);
    assert_eq!(answer, (200, "success".to_string()));
    assert_eq!(envoy.counter("wechat_gate.parked"), 1);
    let backend = Backend::start_on(port);
    let records = wait_for(&backend, 1);
    let r = &records[0];
    let gate: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(n, _)| {
            let n = n.to_ascii_lowercase().replace('_', "-");
            n.starts_with("x-wechat-gate-")
        })
        .cloned()
        .collect();
    let mut names: Vec<String> = gate.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    names.sort();
    assert_eq!(
        names,
        // The query has no openid: none but the gate's two, each once.
        vec!["x-wechat-gate-redelivered", "x-wechat-gate-verified"],
        "{gate:?}"
    );
    assert_eq!(r.header("x-wechat-gate-redelivered"), Some("1"));
    assert_eq!(r.header("x-wechat-gate-verified"), Some("1"));
    wait_parked_now(&envoy, 0);
    no_more_than(&backend, 1);
}

#[test]
fn nothing_unverified_replayed_or_retried_is_parked_while_the_backend_is_down() {
    let port = closed_port();
    let envoy = EnvoyConfig::new(port)
        .gate(Gate::new("wechat_gate", plaintext(json!({}))))
        .start();
    let good = text_message("the one real push", 9200);
    let query = fresh();
    assert_eq!(
        post_with(&envoy, &query, &good, &[]),
        (200, "success".to_string())
    );
    // The same query again, another body: a replay, answered without the backend.
    let evil = text_message("replayed query, other body", 9201);
    let (status, _) = post_with(&envoy, &query, &evil, &[]);
    assert_eq!(status, 200);
    // WeChat's retry of the parked push (same MsgId, new query) within dedupe_seconds.
    let (status, _) = post_with(&envoy, &fresh(), &good, &[]);
    assert_eq!(status, 200);
    // A forged signature.
    let forged = signed("not-the-token", now(), &nonce(), &[]);
    let forged_body = text_message("forged signature", 9202);
    let (status, _) = post_with(&envoy, &forged, &forged_body, &[]);
    assert!(status >= 400, "a forged signature: {status}");
    // A stale timestamp.
    let stale = signed(TOKEN, now() - 3600, &nonce(), &[]);
    let (status, _) = post_with(&envoy, &stale, &text_message("stale", 9203), &[]);
    assert!(status >= 400, "a stale timestamp: {status}");
    // A handshake while the backend is down: answered by the gate, nothing parked.
    let r = envoy.handshake(TOKEN, "echo-me");
    assert_eq!((r.status, r.body_text().as_str()), (200, "echo-me"));
    // An unlisted source.
    let r = envoy.send(
        "POST",
        &format!("/wechat?{}", fresh()),
        &[("content-type", b"text/xml")],
        text_message("unlisted", 9204).as_bytes(),
        "127.0.0.3",
    );
    assert!(r.status >= 400, "unlisted: {}", r.status);
    assert_eq!(envoy.counter("wechat_gate.parked"), 1);
    wait_parked_now(&envoy, 1);
    let backend = Backend::start_on(port);
    let records = wait_for(&backend, 1);
    assert_eq!(records[0].body_text(), good);
    no_more_than(&backend, 1);
}

/// Envoy with `gates`, routing `/wechat2` to cluster `backend2` on `port2` and the
/// rest to `backend` on `port`.
fn two_routes(port: u16, port2: u16, gates: Vec<Gate>) -> Envoy {
    let mut config = EnvoyConfig::new(port).cluster("backend2", port2).workers(2);
    for g in gates {
        config = config.gate(g);
    }
    let yaml = config.yaml();
    let default_route = "              - match: { prefix: \"/\" }";
    assert!(yaml.contains(default_route), "{yaml}");
    let yaml = yaml.replacen(
        default_route,
        "              - match: { prefix: \"/wechat2\" }\n                \
         route: { cluster: backend2, timeout: 5s }\n              - match: { prefix: \"/\" }",
        1,
    );
    Envoy::start(&yaml, 2, &[])
}

fn post_to(envoy: &Envoy, path: &str, body: &str) -> (u16, String) {
    let r = envoy.send(
        "POST",
        &format!("{path}?{}", fresh()),
        &[("content-type", b"text/xml")],
        body.as_bytes(),
        LISTED,
    );
    (r.status, r.body_text())
}

fn two_accounts_each_redeliver_to_their_own_cluster(name_a: &str, name_b: &str) {
    let (port, port2) = (closed_port(), closed_port());
    let a = Gate::new("gate_a", plaintext(json!({"name": name_a})));
    let b = Gate::new(
        "gate_b",
        plaintext(json!({"name": name_b, "path": "/wechat2"})),
    );
    let envoy = two_routes(port, port2, vec![a, b]);
    let to_a: Vec<String> = (0..3)
        .map(|i| text_message(&format!("account a {i}"), 9300 + i))
        .collect();
    let to_b: Vec<String> = (0..3)
        .map(|i| text_message(&format!("account b {i}"), 9400 + i))
        .collect();
    for (x, y) in to_a.iter().zip(&to_b) {
        assert_eq!(post_to(&envoy, "/wechat", x), (200, "success".into()));
        assert_eq!(post_to(&envoy, "/wechat2", y), (200, "success".into()));
    }
    assert_eq!(envoy.counter("wechat_gate.parked"), 6);
    let backend = Backend::start_on(port);
    let backend2 = Backend::start_on(port2);
    wait_for(&backend, 3);
    wait_for(&backend2, 3);
    no_more_than(&backend, 3);
    no_more_than(&backend2, 3);
    let mut got_a = backend.bodies();
    got_a.sort();
    let mut got_b = backend2.bodies();
    got_b.sort();
    assert_eq!(got_a, to_a);
    assert_eq!(got_b, to_b);
    for r in backend2.records() {
        assert!(r.url.starts_with("/wechat2?"), "{}", r.url);
        assert_eq!(r.header("x-wechat-gate-redelivered"), Some("1"));
    }
    assert_eq!(envoy.vm_failures(), Vec::<String>::new());
}

#[test]
fn two_accounts_on_one_envoy_each_redeliver_their_own_to_their_own_cluster() {
    two_accounts_each_redeliver_to_their_own_cluster("acct_a", "acct_b");
}

#[test]
fn two_instances_with_one_name_on_two_clusters_redeliver_each_push_to_its_route() {
    two_accounts_each_redeliver_to_their_own_cluster("same", "same");
}

#[test]
fn parking_turned_off_by_reconfiguration_still_redelivers_what_was_parked() {
    let port = closed_port();
    let (envoy, ecds) = EnvoyConfig::new(port)
        .gate(Gate::new("wechat_gate", plaintext(json!({}))))
        .workers(2)
        .start_discovered();
    let sent: Vec<String> = (0..3)
        .map(|i| text_message(&format!("parked then off {i}"), 9500 + i))
        .collect();
    for body in &sent {
        assert_eq!(
            post_with(&envoy, &fresh(), body, &[]),
            (200, "success".into())
        );
    }
    wait_parked_now(&envoy, 3);
    ecds.reconfigure(
        &envoy,
        &Gate::new(
            "wechat_gate",
            plaintext(json!({"park": {"max_messages": 0}})),
        ),
    );
    let backend = Backend::start_on(port);
    let records = wait_for(&backend, 3);
    let mut got: Vec<String> = records.iter().map(|r| r.body_text()).collect();
    got.sort();
    assert_eq!(got, sent);
    no_more_than(&backend, 3);
}

#[test]
fn a_backend_answering_4xx_then_3xx_then_2xx_gets_the_push_until_2xx_marked_by_try() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let port = closed_port();
    let envoy = EnvoyConfig::new(port)
        .gate(Gate::new("wechat_gate", plaintext(json!({}))))
        .start();
    let body = text_message("refused twice", 9600);
    assert_eq!(
        post_with(&envoy, &fresh(), &body, &[]),
        (200, "success".into())
    );
    let n = AtomicUsize::new(0);
    let backend = Backend::replying_on(port, move |_| match n.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::status(400, "no"),
        1 => Reply::status(302, ""),
        _ => Reply::success(),
    });
    let records = wait_for(&backend, 3);
    let tries: Vec<_> = records
        .iter()
        .map(|r| r.header("x-wechat-gate-redelivered").map(str::to_string))
        .collect();
    assert_eq!(
        tries,
        vec![Some("1".into()), Some("2".into()), Some("3".into())]
    );
    wait_parked_now(&envoy, 0);
    no_more_than(&backend, 3);
    assert_eq!(envoy.counter("wechat_gate.redelivered"), 1);
}

#[test]
fn a_push_at_max_body_bytes_is_parked_and_redelivered_whole() {
    let port = closed_port();
    let envoy = EnvoyConfig::new(port)
        .gate(Gate::new(
            "wechat_gate",
            plaintext(json!({"max_body_bytes": 4096})),
        ))
        .start();
    let small = text_message("", 9700);
    let pad = 4096 - small.len();
    let body = text_message(&"x".repeat(pad), 9700);
    assert_eq!(body.len(), 4096);
    assert_eq!(
        post_with(&envoy, &fresh(), &body, &[]),
        (200, "success".into())
    );
    assert_eq!(envoy.counter("wechat_gate.parked"), 1);
    let backend = Backend::start_on(port);
    let records = wait_for(&backend, 1);
    assert_eq!(records[0].body_text(), body);
    assert_eq!(records[0].header("content-length"), Some("4096"));
}

#[test]
fn no_secret_nor_message_reaches_envoys_log_while_parking_and_redelivering() {
    let port = closed_port();
    let envoy = EnvoyConfig::new(port)
        .gate(Gate::new("wechat_gate", safe_config(json!({}))))
        .start();
    let message = text_message("TOPSECRETCONTENT", 9800);
    let r = envoy.push(&push(&message, "1"));
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    // A redelivery refused once, then taken.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n = AtomicUsize::new(0);
    let backend = Backend::replying_on(port, move |_| match n.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::status(500, "no"),
        _ => Reply::success(),
    });
    wait_for(&backend, 2);
    wait_parked_now(&envoy, 0);
    let log = envoy.log_text();
    assert!(
        log.contains("parking") || log.contains("redeliver"),
        "{log}"
    );
    for secret in [TOKEN, AES_KEY, "TOPSECRETCONTENT", "o_safe_user"] {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(hits.is_empty(), "{secret} in the log: {hits:#?}");
    }
}
