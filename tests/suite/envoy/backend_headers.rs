//! What the backend receives: only verified POSTs, with the gate's own headers
//! (forged ones removed in every spelling, by the gate and by the shipped config's
//! routes), and other paths untouched.

use crate::harness::backend::{Backend, WsgiBackend};
use crate::harness::config::{demo_env, gate_config, gated, shipped_demo_yaml};
use crate::harness::envoy::Envoy;
use crate::harness::requests::{nonce, signed, text_xml, LISTED, TOKEN, UNLISTED};
use crate::harness::{closed_port, now};
use serde_json::json;
use std::collections::BTreeMap;

#[test]
fn backend_receives_only_verified_posts_with_the_gates_headers() {
    let backend = Backend::start();
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    let forged: [(&str, &[u8]); 3] = [
        ("x-wechat-gate-verified", b"0"),
        ("X-WeChat-Gate-OpenID", b"o_attacker"),
        ("x-wechat-gate-anything", b"1"),
    ];
    let body = text_xml("o_real_user", "hi", 7);
    let query = signed(TOKEN, now(), &nonce(), &[("openid", "o_real_user")]);

    // Forged, replayed, unlisted, wrong-method requests, each carrying forged headers.
    for (method, target, source) in [
        (
            "POST",
            format!(
                "/wechat?{}",
                signed("guess", now(), "1", &[("openid", "o_attacker")])
            ),
            LISTED,
        ),
        (
            "POST",
            format!("/wechat?{}", signed(TOKEN, now() - 3600, "1", &[])),
            LISTED,
        ),
        ("POST", format!("/wechat?{query}"), UNLISTED),
        ("PUT", format!("/wechat?{query}"), LISTED),
        (
            "GET",
            format!(
                "/wechat?{}",
                signed(TOKEN, now(), &nonce(), &[("echostr", "5")])
            ),
            LISTED,
        ),
    ] {
        let r = envoy.send(method, &target, &forged, body.as_bytes(), source);
        assert_ne!(r.body_text(), "success", "{method} {target}");
    }
    // The one verified POST.
    let r = envoy.send(
        "POST",
        &format!("/wechat?{query}"),
        &forged,
        body.as_bytes(),
        LISTED,
    );
    assert_eq!(r.status, 200);

    let seen = backend.records();
    assert_eq!(
        seen.len(),
        1,
        "only the verified POST may reach the backend: {seen:?}"
    );
    let only = &seen[0];
    assert_eq!(only.method, "POST");
    assert_eq!(only.body, body.as_bytes());
    let gate: Vec<(String, String)> = only.gate_headers().into_iter().collect();
    assert_eq!(
        gate,
        [
            (
                "x-wechat-gate-openid".to_string(),
                "o_real_user".to_string()
            ),
            ("x-wechat-gate-verified".to_string(), "1".to_string())
        ]
    );
}

#[test]
fn other_paths_pass_through_untouched() {
    let backend = Backend::start();
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    for (method, target) in [
        ("DELETE", "/other?signature=nonsense"),
        ("GET", "/wechat/extra"),
        ("PUT", "/wechatx"),
    ] {
        let r = envoy.send(
            method,
            target,
            &[("x-wechat-gate-verified", b"spoof")],
            b"",
            UNLISTED,
        );
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "success"),
            "{method} {target}"
        );
    }
    let seen = backend.records();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].url, "/other?signature=nonsense");
    assert_eq!(seen[0].method, "DELETE");
    assert_eq!(
        seen[0].header("x-wechat-gate-verified"),
        Some("spoof"),
        "untouched means untouched"
    );
    assert_eq!(envoy.counter("wechat_gate.passed_through"), 3);

    // A route where the filter is disabled by typed_per_filter_config: the filter does not run.
    let r = envoy.send("GET", "/unguarded/x", &[], b"", UNLISTED);
    assert_eq!(r.status, 200);
    assert_eq!(envoy.counter("wechat_gate.passed_through"), 3);
    assert_eq!(backend.records().len(), 4);
}

/// Forged gate headers in every spelling a CGI-style backend folds into one variable.
const FORGED_GATE_HEADERS: [(&str, &[u8]); 4] = [
    ("x_wechat_gate_verified", b"forged"),
    ("x_wechat_gate_openid", b"o_victim"),
    ("X-Wechat_Gate-Decrypted", b"1"),
    ("x-wechat-gate-verified", b"forged"),
];

#[test]
fn underscore_spellings_of_the_gates_headers_never_reach_a_cgi_style_backend() {
    // Envoy's default keeps headers with underscores: the gate itself must remove them.
    let backend = WsgiBackend::start();
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    let query = signed(TOKEN, now(), &nonce(), &[("openid", "o_real")]);
    let mut headers = FORGED_GATE_HEADERS.to_vec();
    headers.push(("content-type", b"text/xml"));
    let body = text_xml("o_real", "hi", 9001);
    let r = envoy.send(
        "POST",
        &format!("/wechat?{query}"),
        &headers,
        body.as_bytes(),
        LISTED,
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        WsgiBackend::gate_variables(&r),
        BTreeMap::from([
            (
                "HTTP_X_WECHAT_GATE_OPENID".to_string(),
                "o_real".to_string()
            ),
            ("HTTP_X_WECHAT_GATE_VERIFIED".to_string(), "1".to_string()),
        ]),
        "only the gate's own values, once each"
    );
}

#[test]
fn the_shipped_config_drops_underscore_headers_on_every_route() {
    let backend = WsgiBackend::start();
    let yaml = shipped_demo_yaml(backend.port, closed_port());
    let envoy = Envoy::start(&yaml, 1, &demo_env(TOKEN));
    // A route the gate does not guard: only Envoy's own header rules protect it.
    let r = envoy.send("GET", "/healthz", &FORGED_GATE_HEADERS, b"", UNLISTED);
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(WsgiBackend::gate_variables(&r), BTreeMap::new());
    assert!(
        envoy
            .admin_text("/stats?filter=dropped_headers_with_underscores")
            .contains("dropped_headers_with_underscores: 3"),
        "{}",
        envoy.admin_text("/stats?filter=underscores")
    );
}
