//! Attacks on the platforms in a real Envoy, each sealed by wechatpy as the platform
//! would seal it: what an observer of one request must never get from the gate.

use crate::harness::backend::Backend;
use crate::harness::config::{gate_config, gated};
use crate::harness::now;
use crate::harness::requests::{nonce, LISTED};
use crate::harness::safe_mode::{
    encrypt_fresh, push, push_of, safe_config, text_message, AES_KEY, CORPID,
};
use crate::harness::wechatpy::wechatpy_wecom_encrypt;
use gate::query::encode_query;
use serde_json::json;

/// The suite's account as a WeCom app, decrypting.
fn wecom_config() -> serde_json::Value {
    gate_config(json!({
        "platform": "wecom",
        "path": "/wecom",
        "appid": CORPID,
        "safe_mode": {"encoding_aes_key": AES_KEY, "decrypt": true}
    }))
}

/// WeCom's query: `msg_signature`, `timestamp`, `nonce`, no `signature`.
fn wecom_query(msg_signature: &str, timestamp: &str, nonce: &str) -> String {
    encode_query(&[
        ("msg_signature", msg_signature),
        ("timestamp", timestamp),
        ("nonce", nonce),
    ])
}

/// Safe mode is there for callbacks over plain HTTP: whoever sees a WeCom push on the
/// wire has its query (msg_signature over token, timestamp, nonce and Encrypt) and
/// its Encrypt, which are exactly a handshake's query and echostr. Sent back as a
/// GET, the gate must not decrypt the message for them.
#[test]
fn a_wecom_push_seen_on_the_wire_is_never_decrypted_for_whoever_replays_it_as_a_handshake() {
    let backend = Backend::start();
    let envoy = gated(backend.port, wecom_config()).start();
    let secret = format!(
        "<xml><ToUserName><![CDATA[{CORPID}]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[the salary list]]></Content><MsgId>9901</MsgId><AgentID>1000002</AgentID></xml>",
        now()
    );
    let (timestamp, n) = (now().to_string(), nonce());
    let sealed = wechatpy_wecom_encrypt(CORPID, &secret, &n, &timestamp);
    let query = wecom_query(&sealed.msg_signature, &timestamp, &n);
    let body = format!(
        "<xml><ToUserName><![CDATA[{CORPID}]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        sealed.body
    );
    // WeCom's push, delivered.
    let r = envoy.send(
        "POST",
        &format!("/wecom?{query}"),
        &[("content-type", b"text/xml")],
        body.as_bytes(),
        LISTED,
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(backend.bodies(), vec![secret.clone()]);
    // The observer's GET: the same query, the Encrypt as echostr.
    let handshake = format!(
        "/wecom?{query}&{}",
        encode_query(&[("echostr", &sealed.body)])
    );
    let r = envoy.send("GET", &handshake, &[], b"", LISTED);
    assert!(
        !r.body_text().contains("the salary list"),
        "the gate decrypted a push for a GET: {} {}",
        r.status,
        r.body_text()
    );
    // Its query is used: a replay, whatever the method, answered like a retry.
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.replayed"), 1);
    assert_eq!(envoy.counter("wechat_gate.handshake"), 0);
}

/// A handshake URL is what access logs keep. Its `msg_signature` signs the `echostr`
/// exactly as a push's signs its `Encrypt`: sent again it is a replay (answered
/// `success`, not decrypted again), and posted with the `echostr` as `Encrypt` it
/// never reaches the backend as a verified, decrypted push.
#[test]
fn a_wecom_handshake_url_is_answered_once_and_never_carries_a_push() {
    let backend = Backend::start();
    let envoy = gated(backend.port, wecom_config()).start();
    let (timestamp, n) = (now().to_string(), nonce());
    let sealed = wechatpy_wecom_encrypt(CORPID, "5927782489442352", &n, &timestamp);
    let query = wecom_query(&sealed.msg_signature, &timestamp, &n);
    let handshake = format!(
        "/wecom?{query}&{}",
        encode_query(&[("echostr", &sealed.body)])
    );
    let r = envoy.send("GET", &handshake, &[], b"", LISTED);
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "5927782489442352")
    );
    // The same URL again, from a log.
    let r = envoy.send("GET", &handshake, &[], b"", LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    // Its query and echostr as a push.
    let body = format!(
        "<xml><ToUserName><![CDATA[{CORPID}]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        sealed.body
    );
    let r = envoy.send(
        "POST",
        &format!("/wecom?{query}"),
        &[("content-type", b"text/xml")],
        body.as_bytes(),
        LISTED,
    );
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert!(
        backend.records().is_empty(),
        "a handshake's query carried its echostr to the backend: {:?}",
        backend.bodies()
    );
    assert_eq!(envoy.counter("wechat_gate.handshake"), 1);
    assert_eq!(envoy.counter("wechat_gate.replayed"), 2);
    assert_eq!(envoy.counter("wechat_gate.forwarded"), 0);
}

/// A decrypted push must be a message of its platform's format (XML; a Mini
/// Program's may be JSON). Whatever else decrypts under a valid `msg_signature` (a
/// WeCom handshake's token sealed as a push, text, JSON to an Official Account) is
/// refused `400 malformed` and never reaches the backend.
#[test]
fn a_decrypted_push_that_is_not_a_message_of_its_platform_never_reaches_the_backend() {
    let backend = Backend::start();
    let envoy = gated(backend.port, wecom_config()).start();
    let (timestamp, n) = (now().to_string(), nonce());
    let sealed = wechatpy_wecom_encrypt(CORPID, "5927782489442352", &n, &timestamp);
    let body = format!("<xml><Encrypt><![CDATA[{}]]></Encrypt></xml>", sealed.body);
    let r = envoy.send(
        "POST",
        &format!(
            "/wecom?{}",
            wecom_query(&sealed.msg_signature, &timestamp, &n)
        ),
        &[("content-type", b"text/xml")],
        body.as_bytes(),
        LISTED,
    );
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert!(
        r.body_text().starts_with("wechat-gate: malformed:"),
        "{}",
        r.body_text()
    );
    assert!(backend.records().is_empty(), "{:?}", backend.bodies());
    assert_eq!(envoy.counter("wechat_gate.rejected.malformed"), 1);

    let backend = Backend::start();
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    for plaintext in [
        "just some text",
        r#"{"ToUserName":"gh_e2e","FromUserName":"o_safe_user","CreateTime":1,"MsgType":"text","Content":"json","MsgId":1}"#,
    ] {
        let r = envoy.push(&push_of(&encrypt_fresh(plaintext), "", &nonce()));
        assert_eq!(r.status, 400, "{plaintext}: {}", r.body_text());
        assert!(
            r.body_text().starts_with("wechat-gate: malformed:"),
            "{}",
            r.body_text()
        );
    }
    // A message is delivered as ever.
    let message = text_message("a message", 6101);
    assert_eq!(envoy.push(&push(&message, &nonce())).status, 200);
    assert_eq!(backend.bodies(), [message]);
    assert_eq!(envoy.counter("wechat_gate.rejected.malformed"), 2);
}
