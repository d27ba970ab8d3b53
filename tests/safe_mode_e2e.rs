//! Safe mode and WeChat's retries in a real Envoy 1.40, checked against wechatpy (the
//! independent Python SDK, installed from PyPI by scripts/ensure-wechatpy.sh): pushes
//! are verified and decrypted for a plaintext backend, its replies come back sealed
//! and open with wechatpy, tampered and repeated pushes never reach it, and Envoy's
//! own failures are answered `success`.

mod common;

use common::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use wechat_gate::gate::safe_mode::cipher::{self, AesKey};
use wechat_gate::gate::safe_mode::envelope;
use wechat_gate::gate::signature::{as_str, sign};
use wechat_gate::gate::xml::element;
use wechat_gate::kit::client::Response;

const TOKEN: &str = "safe-e2e-token";
const AES_KEY: &str = "GeuKYOtmlo3LsuufAkG+oPBZOZm/L42M6eGR8KhDGgE";
const APPID: &str = "wx5afe0e2e00000001";
const LISTED: &str = "127.0.0.2";

fn gate_config(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({
        "path": "/wechat",
        "appid": APPID,
        "token": TOKEN,
        "max_body_bytes": 16384,
        "source": {"allow": ["127.0.0.2"]},
        "safe_mode": {"encoding_aes_key": AES_KEY, "decrypt": true}
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn start(backend: &Backend, config: serde_json::Value, concurrency: u32) -> Envoy {
    Envoy::start(
        &envoy_yaml(backend.port, &[Gate::new("wechat_gate", config)], &[]),
        EnvoyOptions {
            concurrency,
            env: &[],
        },
    )
}

/// A gate with the key but `decrypt: false`: it verifies, the backend decrypts.
fn start_verify_only(backend: &Backend) -> Envoy {
    start(
        backend,
        gate_config(json!({"safe_mode": {"encoding_aes_key": AES_KEY}})),
        1,
    )
}

fn key() -> AesKey {
    AesKey::from_encoding_aes_key(AES_KEY).expect("key")
}

/// A safe-mode push as WeChat sends it: the query and the body.
struct Push {
    query: String,
    body: String,
    timestamp: String,
    nonce: String,
}

fn push_of(encrypt: &str, extra_fields: &str, nonce: &str) -> Push {
    let timestamp = now().to_string();
    let msg_signature = as_str(&sign(&[TOKEN, &timestamp, nonce, encrypt])).to_string();
    Push {
        query: signed(
            TOKEN,
            now(),
            nonce,
            &[
                ("openid", "o_safe_user"),
                ("encrypt_type", "aes"),
                ("msg_signature", &msg_signature),
            ],
        ),
        body: format!(
            "<xml>\n  <ToUserName><![CDATA[gh_e2e]]></ToUserName>{extra_fields}\n  <Encrypt><![CDATA[{encrypt}]]></Encrypt>\n</xml>"
        ),
        timestamp,
        nonce: nonce.to_string(),
    }
}

/// `message` encrypted by this crate with a fresh random prefix, as WeChat would.
fn encrypt_fresh(message: &str) -> String {
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random).expect("random");
    cipher::encrypt(&key(), APPID, message.as_bytes(), &random)
}

/// A push of `message`, encrypted as WeChat would.
fn push(message: &str, nonce: &str) -> Push {
    push_of(&encrypt_fresh(message), "", nonce)
}

fn send(envoy: &Envoy, p: &Push) -> Response {
    envoy.send(
        "POST",
        &format!("/wechat?{}", p.query),
        &[("content-type", b"text/xml")],
        p.body.as_bytes(),
        LISTED,
    )
}

fn text_message(content: &str, msg_id: u64) -> String {
    text_xml("o_safe_user", content, msg_id)
}

// ---------------------------------------------------------------- wechatpy

fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("scripts/ensure-wechatpy.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/ensure-wechatpy.sh runs");
        assert!(
            out.status.success(),
            "wechatpy could not be installed from PyPI; the safe-mode tests need it"
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

fn wechatpy(args: &[&str], stdin: &str) -> Result<String, String> {
    use std::io::Write;
    let bridge = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/wechatpy_bridge.py");
    let mut child = Command::new(python())
        .arg(bridge)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("python finishes");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Opens a sealed reply with wechatpy, checking its MsgSignature against the
/// request's timestamp and nonce.
fn open_with_wechatpy(envelope: &str, p: &Push) -> Result<String, String> {
    let signature = element(envelope.as_bytes(), "MsgSignature")
        .ok()
        .flatten()
        .ok_or_else(|| format!("no MsgSignature in {envelope}"))?;
    wechatpy(
        &[
            "decrypt",
            TOKEN,
            AES_KEY,
            APPID,
            &signature,
            &p.timestamp,
            &p.nonce,
        ],
        envelope,
    )
}

// ---------------------------------------------------------------- tests

#[test]
fn an_encrypted_push_reaches_the_backend_as_plaintext_and_the_reply_opens_with_wechatpy() {
    let reply = "<xml><ToUserName><![CDATA[o_safe_user]]></ToUserName><FromUserName><![CDATA[gh_e2e]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[收到: 你好]]></Content></xml>";
    let backend = Backend::replying(move |_| Reply::xml(reply));
    let envoy = start(&backend, gate_config(json!({})), 1);
    let message = text_message("你好, safe mode", 1001);
    let p = push(&message, "5150");

    let r = send(&envoy, &p);
    assert_eq!(r.status, 200, "{}", r.body_text());

    let records = backend.records();
    assert_eq!(records.len(), 1);
    let got = &records[0];
    assert_eq!(
        got.body,
        message.as_bytes(),
        "the backend gets the plaintext"
    );
    assert_eq!(got.header("x-wechat-gate-verified"), Some("1"));
    assert_eq!(got.header("x-wechat-gate-decrypted"), Some("1"));
    assert_eq!(got.header("x-wechat-gate-openid"), Some("o_safe_user"));
    assert!(
        got.url.starts_with("/wechat?signature=")
            && got.url.contains("openid=o_safe_user")
            && !got.url.contains("encrypt_type")
            && !got.url.contains("msg_signature"),
        "the backend sees a plaintext push's query: {}",
        got.url
    );
    // Held headers: the gate sets the plaintext's own length before they go upstream.
    assert_eq!(
        got.header("content-length"),
        Some(message.len().to_string().as_str()),
        "{:?}",
        got.headers
    );

    let envelope = r.body_text();
    assert_ne!(envelope, reply, "the reply is sealed");
    for field in ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"] {
        assert!(
            element(envelope.as_bytes(), field).ok().flatten().is_some(),
            "{field} in {envelope}"
        );
    }
    assert_eq!(
        element(envelope.as_bytes(), "TimeStamp"),
        Ok(Some(p.timestamp.clone()))
    );
    assert_eq!(
        element(envelope.as_bytes(), "Nonce"),
        Ok(Some(p.nonce.clone()))
    );
    assert_eq!(open_with_wechatpy(&envelope, &p).as_deref(), Ok(reply));
    assert_eq!(envoy.counter("wechat_gate.decrypted"), 1);
    assert_eq!(envoy.counter("wechat_gate.reply_encrypted"), 1);
}

#[test]
fn every_reply_gets_a_fresh_random_prefix_never_the_requests() {
    let reply = "<xml><Content>same</Content></xml>";
    let backend = Backend::replying(move |_| Reply::xml(reply));
    let envoy = start(&backend, gate_config(json!({"dedupe_seconds": 0})), 1);
    let random = [0x41u8; 16];
    let message = text_message("hi", 7);
    let encrypt = cipher::encrypt(&key(), APPID, message.as_bytes(), &random);
    let mut prefixes = Vec::new();
    for nonce in ["1", "2"] {
        let p = push_of(&encrypt, "", nonce);
        let r = send(&envoy, &p);
        assert_eq!(r.status, 200);
        let sealed = envelope::extract_encrypt(r.body_text().as_bytes()).expect("Encrypt");
        // The prefix is the first 16 bytes of the plaintext: decrypt the first block.
        let full = decrypt_raw(&sealed);
        prefixes.push(full[..16].to_vec());
    }
    assert_ne!(prefixes[0], random.to_vec(), "not the request's prefix");
    assert_ne!(prefixes[0], prefixes[1], "fresh for every reply");
}

/// AES-256-CBC decryption of an `Encrypt` value without any unpadding or checks.
fn decrypt_raw(encrypt: &str) -> Vec<u8> {
    use aes::cipher::{BlockDecryptMut, KeyIvInit};
    use base64::Engine;
    let engine = base64::engine::general_purpose::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::general_purpose::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true),
    );
    let key_bytes = engine.decode(format!("{AES_KEY}=")).expect("key");
    let mut data = engine.decode(encrypt).expect("base64");
    let dec = cbc::Decryptor::<aes::Aes256>::new_from_slices(&key_bytes, &key_bytes[..16])
        .expect("key size");
    dec.decrypt_padded_mut::<aes::cipher::block_padding::NoPadding>(&mut data)
        .expect("blocks")
        .to_vec()
}

#[test]
fn wechatpys_own_encrypted_push_is_accepted() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})), 1);
    let message = text_message("from wechatpy", 2002);
    let timestamp = now().to_string();
    let nonce = "80808";
    let envelope = wechatpy(
        &["encrypt", TOKEN, AES_KEY, APPID, nonce, &timestamp],
        &message,
    )
    .expect("wechatpy encrypts");
    let msg_signature = element(envelope.as_bytes(), "MsgSignature")
        .expect("readable")
        .expect("MsgSignature");
    let query = signed(
        TOKEN,
        timestamp.parse().expect("timestamp"),
        nonce,
        &[("encrypt_type", "aes"), ("msg_signature", &msg_signature)],
    );
    let r = envoy.send(
        "POST",
        &format!("/wechat?{query}"),
        &[],
        envelope.as_bytes(),
        LISTED,
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        r.body_text(),
        "success",
        "a success reply is passed as it is"
    );
    let records = backend.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].body, message.as_bytes());
}

#[test]
fn tampered_pushes_never_reach_the_backend() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})), 1);
    let message = text_message("tamper", 3003);

    // A wrong msg_signature.
    let mut p = push(&message, "1");
    p.query = p.query.replace("msg_signature=", "msg_signature=0");
    let r = send(&envoy, &p);
    assert_eq!(r.status, 401);
    assert!(r.body_text().contains("msg_signature"), "{}", r.body_text());

    // Encrypt changed after signing.
    let p = push(&message, "2");
    let tampered = Push {
        body: p.body.replacen("<![CDATA[", "<![CDATA[QUFB", 2),
        ..p
    };
    assert_eq!(send(&envoy, &tampered).status, 401);

    // Correctly signed, but for another appid, or not ciphertext at all.
    for encrypt in [
        cipher::encrypt(&key(), "wxANOTHERAPP", message.as_bytes(), &[3u8; 16]),
        "bm90IGEgd2hvbGUgYmxvY2s=".to_string(),
    ] {
        let r = send(&envoy, &push_of(&encrypt, "", "3"));
        assert_eq!(r.status, 401, "{}", r.body_text());
        assert!(r.body_text().contains("decrypt"), "{}", r.body_text());
    }

    // No Encrypt, two of them, an unclosed one.
    let good = push(&message, "4");
    for body in [
        "<xml><ToUserName>gh</ToUserName></xml>".to_string(),
        good.body.replace("</xml>", "<Encrypt>x</Encrypt></xml>"),
        good.body.replace("]]></Encrypt>", ""),
    ] {
        let p = Push {
            body,
            query: good.query.clone(),
            timestamp: good.timestamp.clone(),
            nonce: good.nonce.clone(),
        };
        assert_eq!(send(&envoy, &p).status, 400);
    }

    // The plain signature still applies.
    let mut p = push(&message, "5");
    p.query = p.query.replacen("signature=", "signature=0", 1);
    assert_eq!(send(&envoy, &p).status, 401);

    assert!(backend.records().is_empty(), "{:?}", backend.records());
    assert_eq!(envoy.counter("wechat_gate.rejected.msg_signature"), 2);
    assert_eq!(envoy.counter("wechat_gate.rejected.decrypt"), 2);
    assert_eq!(envoy.counter("wechat_gate.rejected.malformed"), 3);
    assert_eq!(envoy.counter("wechat_gate.forwarded"), 0);
}

/// A compat-mode push (plaintext `fields` beside `Encrypt`) of `message` reaches the
/// backend as the decrypted message.
fn assert_compat_push_is_decrypted(message: &str, fields: &str) {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})), 1);
    let r = send(&envoy, &push_of(&encrypt_fresh(message), fields, "6"));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(backend.records()[0].body, message.as_bytes());
}

#[test]
fn compat_mode_bodies_are_verified_and_decrypted_too() {
    assert_compat_push_is_decrypted(
        &text_message("compat", 4004),
        "\n  <FromUserName><![CDATA[o_safe_user]]></FromUserName><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[compat]]></Content><MsgId>4004</MsgId>",
    );
}

#[test]
fn verify_only_safe_mode_forwards_the_message_still_encrypted() {
    let backend = Backend::start();
    let envoy = start_verify_only(&backend);
    let p = push(&text_message("kept encrypted", 5005), "7");
    assert_eq!(send(&envoy, &p).status, 200);
    let records = backend.records();
    assert_eq!(
        envelope::extract_encrypt(&records[0].body),
        envelope::extract_encrypt(p.body.as_bytes()),
        "the same Encrypt, for the backend to decrypt"
    );
    assert_eq!(
        element(&records[0].body, "ToUserName"),
        Ok(Some("gh_e2e".to_string()))
    );
    assert!(
        records[0].url.contains("encrypt_type=aes"),
        "{}",
        records[0].url
    );
    assert_eq!(records[0].header("x-wechat-gate-decrypted"), None);
    assert_eq!(records[0].header("x-wechat-gate-verified"), Some("1"));
}

#[test]
fn require_refuses_plaintext_pushes() {
    let backend = Backend::start();
    let envoy = start(
        &backend,
        gate_config(
            json!({"safe_mode": {"encoding_aes_key": AES_KEY, "decrypt": true, "require": true}}),
        ),
        1,
    );
    let query = signed(TOKEN, now(), &nonce(), &[]);
    let r = envoy.send(
        "POST",
        &format!("/wechat?{query}"),
        &[],
        text_message("plain", 6006).as_bytes(),
        LISTED,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.body_text().contains("encrypt_type=aes"),
        "{}",
        r.body_text()
    );
    assert_eq!(
        send(&envoy, &push(&text_message("ok", 6007), "9")).status,
        200
    );
    assert_eq!(backend.records().len(), 1);
}

#[test]
fn error_empty_and_success_replies_are_not_sealed() {
    let backend = Backend::replying(|r| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        if body.contains("want-500") {
            Reply {
                status: 500,
                body: b"<xml><Error>backend broke</Error></xml>".to_vec(),
                delay: Duration::ZERO,
            }
        } else if body.contains("want-empty") {
            Reply::xml("")
        } else {
            Reply::xml("success")
        }
    });
    let envoy = start(
        &backend,
        gate_config(json!({"on_upstream_failure": "success"})),
        1,
    );
    let r = send(&envoy, &push(&text_message("want-500", 1), "1"));
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (500, "<xml><Error>backend broke</Error></xml>"),
        "a backend's own error is neither sealed nor turned into success"
    );
    let r = send(&envoy, &push(&text_message("want-empty", 2), "2"));
    assert_eq!((r.status, r.body_text().as_str()), (200, ""));
    let r = send(&envoy, &push(&text_message("anything", 3), "3"));
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.reply_encrypted"), 0);
    assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 0);
}

#[test]
fn retries_of_a_forwarded_message_are_answered_success_without_the_backend() {
    let backend = Backend::start();
    // Two workers: a retry may land on either, and the table is shared.
    let envoy = start(&backend, gate_config(json!({"safe_mode": null})), 2);
    let post = |body: &str, nonce: &str| {
        let query = signed(TOKEN, now(), nonce, &[]);
        envoy.send(
            "POST",
            &format!("/wechat?{query}"),
            &[],
            body.as_bytes(),
            LISTED,
        )
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

    let bodies: Vec<String> = backend
        .records()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        bodies,
        [message, other, event("k1"), event("k2")],
        "each message reached the backend once"
    );
    assert_eq!(envoy.counter("wechat_gate.deduplicated"), 6);
    assert_eq!(envoy.counter("wechat_gate.forwarded"), 4);
}

#[test]
fn retries_of_an_encrypted_message_are_recognised_after_decryption() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})), 1);
    let message = text_message("encrypted retry", 8008);
    // WeChat re-encrypts (a new random prefix) and re-signs each retry.
    for nonce in ["1", "2", "3"] {
        assert_eq!(send(&envoy, &push(&message, nonce)).status, 200);
    }
    assert_eq!(backend.records().len(), 1);
    assert_eq!(envoy.counter("wechat_gate.deduplicated"), 2);
}

#[test]
fn dedupe_seconds_zero_forwards_every_retry() {
    let backend = Backend::start();
    let envoy = start(
        &backend,
        gate_config(json!({"dedupe_seconds": 0, "safe_mode": null})),
        1,
    );
    let message = text_message("again", 9009);
    for nonce in ["1", "2"] {
        let query = signed(TOKEN, now(), nonce, &[]);
        let r = envoy.send(
            "POST",
            &format!("/wechat?{query}"),
            &[],
            message.as_bytes(),
            LISTED,
        );
        assert_eq!(r.status, 200);
    }
    assert_eq!(backend.records().len(), 2);
}

#[test]
fn a_backend_slower_than_the_route_timeout_yields_success() {
    // The harness's route timeout is 5 s; this backend takes 6.
    let backend = Backend::replying(|_| Reply {
        status: 200,
        body: b"<xml>late</xml>".to_vec(),
        delay: Duration::from_secs(6),
    });
    let envoy = start(&backend, gate_config(json!({})), 1);
    let r = send(&envoy, &push(&text_message("slow", 10), "1"));
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 1);
}

/// A plaintext push through a gate (config `extra`) whose backend is on `port`.
/// A plaintext push to a gate whose backend is on `port`; the Envoy, the answer and
/// the push's query.
fn plain_push_to(port: u16, extra: serde_json::Value, content: &str) -> (Envoy, Response, String) {
    let mut config = gate_config(json!({"safe_mode": null}));
    if let (Some(c), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    let envoy = Envoy::start(
        &envoy_yaml(port, &[Gate::new("wechat_gate", config)], &[]),
        EnvoyOptions::default(),
    );
    let query = signed(TOKEN, now(), &nonce(), &[]);
    let r = envoy.send(
        "POST",
        &format!("/wechat?{query}"),
        &[],
        text_message(content, 11).as_bytes(),
        LISTED,
    );
    (envoy, r, query)
}

#[test]
fn a_refused_connection_yields_success_and_pass_leaves_envoys_reply() {
    // A port nothing listens on: Envoy's own 503.
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    for (mode, want) in [("success", 200), ("pass", 503)] {
        let (envoy, r, query) = plain_push_to(
            dead_port,
            json!({"on_upstream_failure": mode}),
            "nobody home",
        );
        assert_eq!(r.status, want, "{mode}: {}", r.body_text());
        if mode == "success" {
            assert_eq!(r.body_text(), "success");
            assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 1);
        } else {
            assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 0);
            // Never sent: the query was not used, so WeChat's second try with it is
            // tried again (not taken for a replay).
            let again = envoy.send(
                "POST",
                &format!("/wechat?{query}"),
                &[],
                text_message("nobody home", 11).as_bytes(),
                LISTED,
            );
            assert_eq!(again.status, 503, "{}", again.body_text());
            assert_eq!(envoy.counter("wechat_gate.replayed"), 0);
        }
    }
}

#[test]
fn a_safe_mode_body_over_max_body_bytes_is_413() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({"max_body_bytes": 512})), 1);
    let big = text_message(&"长".repeat(400), 12);
    let r = send(&envoy, &push(&big, "1"));
    assert_eq!(r.status, 413);
    assert!(backend.records().is_empty());
}

#[test]
fn the_aes_key_never_shows_in_config_dump_or_logs() {
    let backend = Backend::start();
    let config = gate_config(json!({
        "token": {"env": "E2E_TOKEN"},
        "safe_mode": {"encoding_aes_key": {"env": "E2E_AES_KEY"}, "decrypt": true}
    }));
    let envoy = Envoy::start(
        &envoy_yaml(
            backend.port,
            &[Gate::new("wechat_gate", config)],
            &["E2E_TOKEN", "E2E_AES_KEY"],
        ),
        EnvoyOptions {
            concurrency: 1,
            env: &[("E2E_TOKEN", TOKEN), ("E2E_AES_KEY", AES_KEY)],
        },
    );
    assert_eq!(send(&envoy, &push(&text_message("s", 13), "1")).status, 200);
    let mut bad = push(&text_message("s", 14), "2");
    bad.query = bad.query.replace("msg_signature=", "msg_signature=0");
    assert_eq!(send(&envoy, &bad).status, 401);
    let dump = envoy.admin_text("/config_dump");
    let log = envoy.log_text();
    for secret in [AES_KEY, TOKEN] {
        assert!(!dump.contains(secret), "config_dump shows a secret");
        assert!(!log.contains(secret), "the log shows a secret");
    }
}

fn cli(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wechat-gate"))
        .args(args)
        .env("WECHAT_TOKEN", TOKEN)
        .env("WECHAT_AES_KEY", AES_KEY)
        .output()
        .expect("wechat-gate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `wechat-gate send message` of "ping" in safe mode to the gate, with `extra` flags.
fn cli_send_safe(envoy: &Envoy, extra: &[&str]) -> (Option<i32>, String) {
    let url = format!("http://127.0.0.1:{}/wechat", envoy.port);
    let mut args = vec![
        "send",
        "message",
        &url,
        "--text",
        "ping",
        "--source",
        LISTED,
        "--safe-mode",
        "--appid",
        APPID,
    ];
    args.extend_from_slice(extra);
    cli(&args)
}

#[test]
fn the_cli_sends_compat_mode_and_opens_the_sealed_reply() {
    let backend =
        Backend::replying(|_| Reply::xml("<xml><Content><![CDATA[pong]]></Content></xml>"));
    let envoy = start(&backend, gate_config(json!({})), 1);
    let (code, text) = cli_send_safe(&envoy, &["--compat"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("-- the reply, signature checked and decrypted:\n<xml><Content><![CDATA[pong]]></Content></xml>"),
        "{text}"
    );
    let records = backend.records();
    assert_eq!(records.len(), 1);
    let body = String::from_utf8_lossy(&records[0].body);
    assert!(
        body.contains("<Content><![CDATA[ping]]></Content>") && !body.contains("Encrypt"),
        "{body}"
    );
}

#[test]
fn the_cli_refuses_a_reply_whose_seal_does_not_check() {
    // A verify-only gate passes the backend's reply as it is: here a forged envelope.
    let forged = envelope::reply_envelope(
        "not-the-token",
        "1",
        "2",
        &cipher::encrypt(&key(), APPID, b"<xml>forged</xml>", &[0u8; 16]),
    );
    let backend = Backend::replying(move |_| Reply::xml(&forged));
    let envoy = start_verify_only(&backend);
    let (code, text) = cli_send_safe(&envoy, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("not a valid sealed reply"), "{text}");
}

#[test]
fn without_allow_on_headers_stop_iteration_pushes_are_streamed_and_delivered() {
    let backend = Backend::start();
    let envoy = Envoy::start(
        &envoy_yaml(
            backend.port,
            &[Gate::new("wechat_gate", gate_config(json!({}))).without_header_hold()],
            &[],
        ),
        EnvoyOptions::default(),
    );
    // Each is held a moment, probed, and let go: decrypted, delivered, answered.
    for i in 0..3 {
        let message = text_message(&format!("streamed {i}"), 1500 + i);
        let r = send(&envoy, &push(&message, &nonce()));
        assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
        let last = backend.records().pop().expect("delivered");
        assert_eq!(String::from_utf8_lossy(&last.body), message);
    }
    assert_eq!(envoy.counter("wechat_gate.rejected.body_timeout"), 0);
    assert!(
        wait_until(Duration::from_secs(5), || envoy
            .log_text()
            .contains("reads push bodies in stream mode"))
        .is_some(),
        "the gate says once which mode it uses"
    );
    // From then on a push is streamed at once, and a forged one never completes.
    let p = push(&text_message("forged", 1600), &nonce());
    let forged = p
        .body
        .replacen("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A", 1);
    let r = send(&envoy, &Push { body: forged, ..p });
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert_eq!(backend.records().len(), 3);
}

#[test]
fn with_allow_on_headers_stop_iteration_pushes_are_held() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})), 1);
    assert_eq!(
        send(&envoy, &push(&text_message("held", 1700), &nonce())).status,
        200
    );
    assert!(wait_until(Duration::from_secs(5), || envoy
        .log_text()
        .contains("reads push bodies in hold mode"))
    .is_some());
}

#[test]
fn a_retry_after_a_failed_forward_reaches_the_backend() {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let backend = Backend::replying(move |_| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply {
                status: 500,
                body: b"db down".to_vec(),
                delay: Duration::ZERO,
            }
        } else {
            Reply::success()
        }
    });
    let envoy = start(&backend, gate_config(json!({"safe_mode": null})), 1);
    let message = text_message("deliver me", 16);
    let mut answers = Vec::new();
    for nonce in ["1", "2", "3"] {
        let query = signed(TOKEN, now(), nonce, &[]);
        let r = envoy.send(
            "POST",
            &format!("/wechat?{query}"),
            &[],
            message.as_bytes(),
            LISTED,
        );
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
fn markup_a_user_typed_cannot_add_an_encrypt_element() {
    // Compat mode: the user's text, in CDATA, comes before the real Encrypt.
    assert_compat_push_is_decrypted(
        &text_message("how do I use <Encrypt> tags?", 17),
        "<Content><![CDATA[how do I use <Encrypt>x</Encrypt> tags?]]></Content>",
    );
}

#[test]
fn without_decrypt_only_verified_parts_of_a_compat_body_reach_the_backend() {
    let backend = Backend::start();
    let envoy = start_verify_only(&backend);
    let message = text_message("GOOD", 18);
    let encrypt = encrypt_fresh(&message);
    // The plaintext fields beside Encrypt are not signed: changed in flight.
    let r = send(
        &envoy,
        &push_of(&encrypt, "<Content><![CDATA[EVIL]]></Content>", "1"),
    );
    assert_eq!(r.status, 200);
    let body = String::from_utf8_lossy(&backend.records()[0].body).into_owned();
    assert!(!body.contains("EVIL"), "{body}");
    assert_eq!(
        envelope::extract_encrypt(body.as_bytes()).as_deref(),
        Ok(encrypt.as_str())
    );
}

#[test]
fn in_safe_mode_the_openid_header_comes_from_the_decrypted_message() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})), 1);
    let mut p = push(&text_message("who am i", 19), "1");
    p.query = p
        .query
        .replace("openid=o_safe_user", "openid=o_someone_else");
    assert_eq!(send(&envoy, &p).status, 200);
    assert_eq!(
        backend.records()[0].header("x-wechat-gate-openid"),
        Some("o_safe_user")
    );
    // A message that names no sender gets no openid header, whatever the query says.
    let anonymous = "<xml><ToUserName><![CDATA[gh_e2e]]></ToUserName><CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[x]]></Event></xml>";
    let mut p = push(anonymous, "2");
    p.query = p
        .query
        .replace("openid=o_safe_user", "openid=o_forged_by_query");
    assert_eq!(send(&envoy, &p).status, 200);
    assert_eq!(backend.records()[1].header("x-wechat-gate-openid"), None);
}

#[test]
fn a_push_whose_body_stalls_gets_408() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})), 1);
    let p = push(&text_message("stall", 20), "1");
    let head = format!(
        "POST /wechat?{} HTTP/1.1\r\nhost: gate\r\ncontent-length: {}\r\n\r\n",
        p.query,
        p.body.len()
    );
    let partial = [head.as_bytes(), &p.body.as_bytes()[..10]].concat();
    // The deadline is 3 s, checked on a 1 s tick: before WeChat's 5 s and the route's.
    let r = envoy.send_raw(&partial, LISTED).expect("an answer");
    assert_eq!(r.status, 408, "{}", r.body_text());
    assert!(backend.records().is_empty());
}

/// A backend that answers every request with a chunked XML body followed by
/// trailers, on raw HTTP/1.1 (tiny_http cannot send trailers).
fn trailer_backend(reply: &'static str) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let thread = std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; length];
        let _ = reader.read_exact(&mut body);
        let mut out = stream;
        let _ = write!(
            out,
            "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ntransfer-encoding: chunked\r\n\
             trailer: x-done\r\n\r\n{:x}\r\n{reply}\r\n0\r\nx-done: 1\r\n\r\n",
            reply.len()
        );
        let _ = out.flush();
        std::thread::sleep(Duration::from_millis(500));
    });
    (port, thread)
}

#[test]
fn a_reply_followed_by_trailers_is_still_sealed() {
    let reply = "<xml><Content><![CDATA[PLAINTEXT REPLY]]></Content></xml>";
    let (port, thread) = trailer_backend(reply);
    let yaml = envoy_yaml(port, &[Gate::new("wechat_gate", gate_config(json!({})))], &[])
        .replace(
            "  - name: backend\n    type: STATIC\n",
            "  - name: backend\n    type: STATIC\n    typed_extension_protocol_options:\n      \
             envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \
             \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        \
             explicit_http_config: { http_protocol_options: { enable_trailers: true } }\n",
        );
    assert!(
        yaml.contains("enable_trailers"),
        "the harness's cluster shape changed"
    );
    let envoy = Envoy::start(&yaml, EnvoyOptions::default());
    let p = push(&text_message("trailers", 21), "1");
    let r = send(&envoy, &p);
    let _ = thread.join();
    assert_eq!(r.status, 200);
    let body = r.body_text();
    assert!(
        !body.contains("PLAINTEXT"),
        "the reply went out unsealed: {body}"
    );
    assert_eq!(open_with_wechatpy(&body, &p).as_deref(), Ok(reply));
}

#[test]
fn a_backend_that_resets_the_connection_yields_success() {
    use std::io::Read;
    // Reads the request, then closes the connection without a word: Envoy's own 503.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let thread = std::thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    let (envoy, r, _) = plain_push_to(port, json!({}), "reset");
    let _ = thread.join();
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 1);
}

#[test]
fn a_replayed_safe_mode_push_never_reaches_the_backend_again() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({"dedupe_seconds": 2})), 2);
    let sent_at = now();
    let p = push(&text_message("sealed once", 5001), &nonce());
    assert_eq!(send(&envoy, &p).status, 200);
    assert_eq!(backend.records().len(), 1);
    // An exact copy at once, the query with another (validly encrypted) body, and an
    // exact copy after the retry window.
    assert_eq!(send(&envoy, &p).body_text(), "success");
    let other = push(&text_message("another body", 5002), &p.nonce);
    let swapped = Push {
        query: p.query.clone(),
        body: other.body,
        timestamp: p.timestamp.clone(),
        nonce: p.nonce.clone(),
    };
    assert_eq!(send(&envoy, &swapped).body_text(), "success");
    assert!(wait_until(Duration::from_secs(9), || now() >= sent_at + 4).is_some());
    assert_eq!(send(&envoy, &p).body_text(), "success");
    assert_eq!(backend.records().len(), 1, "only the first use arrived");
    assert_eq!(envoy.counter("wechat_gate.replayed"), 3);
}

#[test]
fn after_a_backend_5xx_wechats_retry_is_delivered_but_the_old_query_carries_nothing() {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let backend = Backend::replying(move |_| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply {
                status: 503,
                body: b"busy".to_vec(),
                delay: Duration::ZERO,
            }
        } else {
            Reply::success()
        }
    });
    let envoy = start(&backend, gate_config(json!({})), 1);
    let message = text_message("try me twice", 5101);
    let first = push(&message, &nonce());
    assert_eq!(send(&envoy, &first).status, 503);
    // The backend had the first try: its query, with another (validly encrypted)
    // body, is a replay, never a second request.
    let forged = push(&text_message("a forged body", 5102), &first.nonce);
    let reused = Push {
        query: first.query.clone(),
        body: forged.body,
        timestamp: first.timestamp.clone(),
        nonce: first.nonce.clone(),
    };
    assert_eq!(send(&envoy, &reused).body_text(), "success");
    assert_eq!(backend.records().len(), 1);
    // WeChat's own retry comes with a new query: delivered.
    assert_eq!(send(&envoy, &push(&message, &nonce())).status, 200);
    assert_eq!(backend.records().len(), 2, "the retry was delivered");
    assert_eq!(envoy.counter("wechat_gate.replayed"), 1);
}
