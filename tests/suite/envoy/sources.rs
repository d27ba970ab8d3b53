//! Where a request may come from: the allowlist (addresses, CIDR blocks, IPv6), the
//! `report` and `off` modes, and headers that cannot fake the source.

use crate::harness::backend::Backend;
use crate::harness::config::{gate_config, gated};
use crate::harness::now;
use crate::harness::requests::{fresh, signed, LISTED, UNLISTED};
use serde_json::json;

#[test]
fn report_mode_counts_unlisted_sources_but_never_blocks_them() {
    let backend = Backend::start();
    let envoy = gated(
        backend.port,
        gate_config(json!({"source": {"mode": "report", "allow": ["127.0.0.2"]}})),
    )
    .start();
    assert_eq!(envoy.post(&fresh(), "<xml/>", UNLISTED).status, 200);
    assert_eq!(envoy.post(&fresh(), "<xml/>", LISTED).status, 200);
    assert_eq!(
        envoy
            .post(&signed("bad", now(), "1", &[]), "<xml/>", UNLISTED)
            .status,
        401
    );
    assert_eq!(envoy.counter("wechat_gate.source_report_only"), 1);
    assert_eq!(envoy.counter("wechat_gate.forwarded"), 2);
    assert!(envoy
        .log_text()
        .contains("report mode: forwarding a request from unlisted 127.0.0.3"));
}

#[test]
fn mode_off_checks_signatures_only() {
    let backend = Backend::start();
    let envoy = gated(
        backend.port,
        gate_config(json!({"source": {"mode": "off"}})),
    )
    .start();
    assert_eq!(envoy.post(&fresh(), "<xml/>", UNLISTED).status, 200);
    assert_eq!(
        envoy
            .post(&signed("bad", now(), "1", &[]), "<xml/>", UNLISTED)
            .status,
        401
    );
}

#[test]
fn forwarded_for_header_cannot_fake_the_source() {
    let backend = Backend::start();
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    let r = envoy.send(
        "POST",
        &format!("/wechat?{}", fresh()),
        &[
            ("x-forwarded-for", b"127.0.0.2"),
            ("x-real-ip", b"127.0.0.2"),
        ],
        b"<xml/>",
        UNLISTED,
    );
    assert_eq!(r.status, 403);
    assert!(backend.records().is_empty());
}

#[test]
fn ipv6_cidr_allowlist_admits_ipv4_mapped_and_cidr_sources() {
    let backend = Backend::start();
    let envoy = gated(
        backend.port,
        gate_config(json!({"source": {"allow": ["127.0.0.0/30", "2001:db8::/32"]}})),
    )
    .start();
    assert_eq!(envoy.post(&fresh(), "<xml/>", "127.0.0.3").status, 200);
    assert_eq!(envoy.post(&fresh(), "<xml/>", "127.0.0.4").status, 403);
}
