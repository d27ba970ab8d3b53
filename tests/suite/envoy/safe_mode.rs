//! Safe mode in a real Envoy, checked against wechatpy (the independent Python SDK):
//! pushes are verified and decrypted for a plaintext backend, its replies come back
//! sealed and open with wechatpy, tampered pushes never reach it, and the CLI speaks
//! safe mode as WeChat does.

use crate::harness::backend::{Backend, RawBackend, Reply};
use crate::harness::cli::{cli, Ran};
use crate::harness::config::{gated, streaming};
use crate::harness::envoy::Envoy;
use crate::harness::now;
use crate::harness::requests::{nonce, signed, LISTED, TOKEN};
use crate::harness::safe_mode::{
    encrypt_fresh, key, push, push_of, safe_config, text_message, verify_only_config, AES_KEY,
    APPID,
};
use crate::harness::wechatpy::{open_with_wechatpy, wechatpy};
use gate::safe_mode::cipher;
use gate::safe_mode::envelope;
use gate::xml::element;
use serde_json::json;

#[test]
fn an_encrypted_push_reaches_the_backend_as_plaintext_and_the_reply_opens_with_wechatpy() {
    let reply = "<xml><ToUserName><![CDATA[o_safe_user]]></ToUserName><FromUserName><![CDATA[gh_e2e]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[收到: 你好]]></Content></xml>";
    let backend = Backend::replying(move |_| Reply::ok(reply));
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    let message = text_message("你好, safe mode", 1001);
    let p = push(&message, "5150");

    let r = envoy.push(&p);
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
    // Held, the sender comes from the decrypted message; streamed, the headers left
    // before it could be read, and the unsigned query's openid is never used instead.
    let sender = (!streaming()).then_some("o_safe_user");
    assert_eq!(got.header("x-wechat-gate-openid"), sender);
    assert!(
        got.url.starts_with("/wechat?signature=")
            && got.url.contains("openid=o_safe_user")
            && !got.url.contains("encrypt_type")
            && !got.url.contains("msg_signature"),
        "the backend sees a plaintext push's query: {}",
        got.url
    );
    // Held headers: the gate sets the plaintext's own length before they go upstream.
    // Streamed, they left before it was known: the body goes on chunked, never under a
    // length a cut-short body could satisfy.
    let length = message.len().to_string();
    let framing = if streaming() {
        (None, Some("chunked"))
    } else {
        (Some(length.as_str()), None)
    };
    assert_eq!(
        (
            got.header("content-length"),
            got.header("transfer-encoding")
        ),
        framing,
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
    let backend = Backend::replying(move |_| Reply::ok(reply));
    let envoy = gated(backend.port, safe_config(json!({"dedupe_seconds": 0}))).start();
    let random = [0x41u8; 16];
    let message = text_message("hi", 7);
    let encrypt = cipher::encrypt(&key(), APPID, message.as_bytes(), &random);
    let mut prefixes = Vec::new();
    for nonce in ["1", "2"] {
        let p = push_of(&encrypt, "", nonce);
        let r = envoy.push(&p);
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
    let envoy = gated(backend.port, safe_config(json!({}))).start();
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
    let r = envoy.post(&query, &envelope, LISTED);
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
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    let message = text_message("tamper", 3003);

    // A wrong msg_signature.
    let mut p = push(&message, "1");
    p.query = p.query.replace("msg_signature=", "msg_signature=0");
    let r = envoy.push(&p);
    assert_eq!(r.status, 401);
    assert!(r.body_text().contains("msg_signature"), "{}", r.body_text());

    // Encrypt changed after signing.
    let p = push(&message, "2");
    let tampered = p.with_body(p.body.replacen("<![CDATA[", "<![CDATA[QUFB", 2));
    assert_eq!(envoy.push(&tampered).status, 401);

    // Correctly signed, but for another appid, or not ciphertext at all.
    for encrypt in [
        cipher::encrypt(&key(), "wxANOTHERAPP", message.as_bytes(), &[3u8; 16]),
        "bm90IGEgd2hvbGUgYmxvY2s=".to_string(),
    ] {
        let r = envoy.push(&push_of(&encrypt, "", "3"));
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
        assert_eq!(envoy.push(&good.with_body(body)).status, 400);
    }

    // The plain signature still applies.
    let mut p = push(&message, "5");
    p.query = p.query.replacen("signature=", "signature=0", 1);
    assert_eq!(envoy.push(&p).status, 401);

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
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    let r = envoy.push(&push_of(&encrypt_fresh(message), fields, "6"));
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
fn markup_a_user_typed_cannot_add_an_encrypt_element() {
    // Compat mode: the user's text, in CDATA, comes before the real Encrypt.
    assert_compat_push_is_decrypted(
        &text_message("how do I use <Encrypt> tags?", 17),
        "<Content><![CDATA[how do I use <Encrypt>x</Encrypt> tags?]]></Content>",
    );
}

#[test]
fn verify_only_safe_mode_forwards_the_message_still_encrypted() {
    let backend = Backend::start();
    let envoy = gated(backend.port, verify_only_config()).start();
    let p = push(&text_message("kept encrypted", 5005), "7");
    assert_eq!(envoy.push(&p).status, 200);
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
fn without_decrypt_only_verified_parts_of_a_compat_body_reach_the_backend() {
    let backend = Backend::start();
    let envoy = gated(backend.port, verify_only_config()).start();
    let message = text_message("GOOD", 18);
    let encrypt = encrypt_fresh(&message);
    // The plaintext fields beside Encrypt are not signed: changed in flight.
    let r = envoy.push(&push_of(
        &encrypt,
        "<Content><![CDATA[EVIL]]></Content>",
        "1",
    ));
    assert_eq!(r.status, 200);
    let body = String::from_utf8_lossy(&backend.records()[0].body).into_owned();
    assert!(!body.contains("EVIL"), "{body}");
    assert_eq!(
        envelope::extract_encrypt(body.as_bytes()).as_deref(),
        Ok(encrypt.as_str())
    );
}

#[test]
fn require_refuses_plaintext_pushes() {
    let backend = Backend::start();
    let envoy = gated(
        backend.port,
        safe_config(
            json!({"safe_mode": {"encoding_aes_key": AES_KEY, "decrypt": true, "require": true}}),
        ),
    )
    .start();
    let query = signed(TOKEN, now(), &nonce(), &[]);
    let r = envoy.post(&query, &text_message("plain", 6006), LISTED);
    assert_eq!(r.status, 400);
    assert!(
        r.body_text().contains("encrypt_type=aes"),
        "{}",
        r.body_text()
    );
    assert_eq!(
        envoy.push(&push(&text_message("ok", 6007), "9")).status,
        200
    );
    assert_eq!(backend.records().len(), 1);
}

#[test]
fn error_empty_and_success_replies_are_not_sealed() {
    let backend = Backend::replying(|r| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        if body.contains("want-500") {
            Reply::status(500, "<xml><Error>backend broke</Error></xml>")
        } else if body.contains("want-empty") {
            Reply::ok("")
        } else {
            Reply::ok("success")
        }
    });
    let envoy = gated(
        backend.port,
        safe_config(json!({"on_upstream_failure": "success"})),
    )
    .start();
    let r = envoy.push(&push(&text_message("want-500", 1), "1"));
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (500, "<xml><Error>backend broke</Error></xml>"),
        "a backend's own error is neither sealed nor turned into success"
    );
    let r = envoy.push(&push(&text_message("want-empty", 2), "2"));
    assert_eq!((r.status, r.body_text().as_str()), (200, ""));
    let r = envoy.push(&push(&text_message("anything", 3), "3"));
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.reply_encrypted"), 0);
    assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 0);
}

#[test]
fn in_safe_mode_the_openid_header_comes_from_the_decrypted_message() {
    let backend = Backend::start();
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    let mut p = push(&text_message("who am i", 19), "1");
    p.query = p
        .query
        .replace("openid=o_safe_user", "openid=o_someone_else");
    assert_eq!(envoy.push(&p).status, 200);
    assert_eq!(
        backend.records()[0].header("x-wechat-gate-openid"),
        (!streaming()).then_some("o_safe_user"),
        "never the query's openid"
    );
    // A message that names no sender gets no openid header, whatever the query says.
    let anonymous = "<xml><ToUserName><![CDATA[gh_e2e]]></ToUserName><CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[x]]></Event></xml>";
    let mut p = push(anonymous, "2");
    p.query = p
        .query
        .replace("openid=o_safe_user", "openid=o_forged_by_query");
    assert_eq!(envoy.push(&p).status, 200);
    assert_eq!(backend.records()[1].header("x-wechat-gate-openid"), None);
}

#[test]
fn a_safe_mode_body_over_max_body_bytes_is_413() {
    let backend = Backend::start();
    let envoy = gated(backend.port, safe_config(json!({"max_body_bytes": 512}))).start();
    let big = text_message(&"长".repeat(400), 12);
    let r = envoy.push(&push(&big, "1"));
    assert_eq!(r.status, 413);
    assert!(backend.records().is_empty());
}

/// A backend that answers every request with a chunked XML body followed by
/// trailers.
fn trailer_backend(reply: &'static str) -> RawBackend {
    RawBackend::start(move |conn, _request| {
        use std::io::Write;
        write!(
            conn.stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ntransfer-encoding: chunked\r\n\
             trailer: x-done\r\n\r\n{:x}\r\n{reply}\r\n0\r\nx-done: 1\r\n\r\n",
            reply.len()
        )?;
        conn.stream.flush()
    })
}

#[test]
fn a_reply_followed_by_trailers_is_still_sealed() {
    let reply = "<xml><Content><![CDATA[PLAINTEXT REPLY]]></Content></xml>";
    let backend = trailer_backend(reply);
    let envoy = gated(backend.port, safe_config(json!({})))
        .backend_trailers()
        .start();
    let p = push(&text_message("trailers", 21), "1");
    let r = envoy.push(&p);
    assert_eq!(r.status, 200);
    let body = r.body_text();
    assert!(
        !body.contains("PLAINTEXT"),
        "the reply went out unsealed: {body}"
    );
    assert_eq!(open_with_wechatpy(&body, &p).as_deref(), Ok(reply));
}

/// The CLI with the account's token and key in the environment.
fn safe_cli(args: &[&str]) -> Ran {
    cli(
        args,
        &[("WECHAT_TOKEN", TOKEN), ("WECHAT_AES_KEY", AES_KEY)],
    )
}

/// `wechat-gate send message` of "ping" in safe mode to the gate, with `extra` flags.
fn cli_send_safe(envoy: &Envoy, extra: &[&str]) -> Ran {
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
    safe_cli(&args)
}

#[test]
fn the_cli_sends_compat_mode_and_opens_the_sealed_reply() {
    let backend =
        Backend::replying(|_| Reply::ok("<xml><Content><![CDATA[pong]]></Content></xml>"));
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    let ran = cli_send_safe(&envoy, &["--compat"]);
    let text = ran.text();
    assert_eq!(ran.code, Some(0), "{text}");
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
    let backend = Backend::replying(move |_| Reply::ok(&forged));
    let envoy = gated(backend.port, verify_only_config()).start();
    let ran = cli_send_safe(&envoy, &[]);
    let text = ran.text();
    assert_eq!(ran.code, Some(1), "{text}");
    assert!(text.contains("not a valid sealed reply"), "{text}");
}
