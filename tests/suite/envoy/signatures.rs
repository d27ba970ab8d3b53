//! Signatures made by other implementations are accepted: wechatpy's vectors, and
//! Python's hashlib sent by curl; accounts on one listener each use their own token.

use crate::harness::backend::Backend;
use crate::harness::config::{gate_config, gated, EnvoyConfig, Gate};
use crate::harness::now;
use crate::harness::requests::{nonce, signed, LISTED, TOKEN};
use crate::harness::vectors::vectors;
use serde_json::json;
use std::process::Command;

#[test]
fn a_wechatpy_vector_is_echoed_and_each_account_on_a_listener_uses_its_own_token() {
    // The first valid handshake vector made by wechatpy (another implementation), on its
    // own path with its own token (timestamps in the vectors are old: tolerance 0), beside
    // the main account: two gates in one filter chain, each guarding its own path.
    let h = vectors()
        .handshake
        .into_iter()
        .find(|h| h.valid)
        .expect("a valid vector");
    let backend = Backend::start();
    let envoy = EnvoyConfig::new(backend.port)
        .gate(Gate::new("wechat_gate", gate_config(json!({}))))
        .gate(Gate::new(
            "wechat_gate_vector",
            json!({"path": "/vector", "token": h.token, "timestamp_tolerance_seconds": 0, "source": {"allow": ["127.0.0.2"]}}),
        ))
        .start();
    let q = gate::query::encode_query(&[
        ("signature", &h.signature),
        ("timestamp", &h.timestamp),
        ("nonce", &h.nonce),
        ("echostr", &h.echostr),
    ]);
    let r = envoy.send("GET", &format!("/vector?{q}"), &[], b"", LISTED);
    assert_eq!((r.status, r.body_text()), (200, h.echostr));
    // Each path is judged with its own account's token.
    let fresh_vector = signed(&h.token, now(), "1", &[("echostr", "e")]);
    let fresh_main = signed(TOKEN, now(), &nonce(), &[("echostr", "e")]);
    for (path, query) in [("/wechat", &fresh_vector), ("/vector", &fresh_main)] {
        let r = envoy.send("GET", &format!("{path}?{query}"), &[], b"", LISTED);
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (401, "wechat-gate: signature: signature does not match\n"),
            "{path}"
        );
    }
    let r = envoy.send("GET", &format!("/wechat?{fresh_main}"), &[], b"", LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "e"));
}

#[test]
fn a_handshake_signed_by_pythons_hashlib_and_sent_by_curl_is_echoed() {
    let backend = Backend::start();
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    // Signed now, by Python's hashlib, and sent by curl from 127.0.0.2.
    let py = "import hashlib,sys,time; t=str(int(time.time())); n='31337'; \
              print(hashlib.sha1(''.join(sorted([sys.argv[1],t,n])).encode()).hexdigest(), t, n)";
    let out = Command::new("python3")
        .args(["-c", py, TOKEN])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let parts: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(parts.len(), 3, "python3 printed {text:?}");
    let url = format!(
        "http://127.0.0.1:{}/wechat?signature={}&timestamp={}&nonce={}&echostr=curl-echo",
        envoy.port, parts[0], parts[1], parts[2]
    );
    let out = Command::new("curl")
        .args(["-sS", "--interface", LISTED, "-w", " %{http_code}", &url])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "curl-echo 200");
}
