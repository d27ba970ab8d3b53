//! Safe mode's rules, one test each: whole pushes through [`crate::body::check`],
//! and sealed replies.

use super::*;
use crate::body::{check, BodyPlan, Checked};
use crate::config::Config;
use crate::message::{Format, Message};
use crate::rejection::{Reason, Rejection};
use crate::signature::{as_str, sign};
use cipher::AesKey;

const TOKEN: &str = "tok";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APPID: &str = "wx1234";
const TS: &str = "1714036504";
const NONCE: &str = "42";
const MESSAGE: &str = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>1714036504</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content><MsgId>99</MsgId></xml>";

fn config(safe_mode: &str, dedupe: u64) -> Config {
    let json = format!(
        r#"{{"token": "{TOKEN}", "appid": "{APPID}", "dedupe_seconds": {dedupe}, "source": {{"mode": "off"}}{safe_mode}}}"#
    );
    crate::config::parse(json.as_bytes(), &|_| None).expect("config")
}

fn decrypting() -> Config {
    config(
        &format!(r#", "safe_mode": {{"encoding_aes_key": "{KEY}", "decrypt": true}}"#),
        15,
    )
}

fn key() -> AesKey {
    AesKey::from_encoding_aes_key(KEY).expect("key")
}

/// A push as WeChat sends it: the body and its msg_signature.
fn safe_push(message: &str, token: &str) -> (String, SafeModeQuery) {
    let encrypt = cipher::encrypt(&key(), APPID, message.as_bytes(), &[7u8; 16]);
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    );
    let msg_signature = as_str(&sign(&[token, TS, NONCE, &encrypt])).to_string();
    (
        body,
        SafeModeQuery {
            msg_signature,
            timestamp: TS.into(),
            nonce: NONCE.into(),
            verified: QueryVerified::BySignature { token: 0 },
        },
    )
}

fn plan(config: &Config, safe: Option<SafeModeQuery>) -> BodyPlan {
    BodyPlan::for_push(config, safe).expect("the body is read")
}

fn reason(r: Result<Checked, Rejection>) -> Reason {
    r.expect_err("rejected").reason
}

#[test]
fn a_safe_push_is_verified_decrypted_and_identified() {
    let c = decrypting();
    let (body, safe) = safe_push(MESSAGE, TOKEN);
    let checked = check(body.as_bytes(), &plan(&c, Some(safe)), &c).expect("passes");
    assert_eq!(
        checked.body_for_backend.as_deref(),
        Some(MESSAGE.as_bytes())
    );
    assert!(checked.decrypted);
    assert_eq!(checked.sender.as_deref(), Some("o1"));
    assert_eq!(
        checked.identity,
        Message::read(MESSAGE.as_bytes(), Format::Xml)
            .expect("xml")
            .retry_identity()
    );
}

#[test]
fn without_decrypt_only_the_verified_parts_of_the_body_go_on() {
    let c = config(
        &format!(r#", "safe_mode": {{"encoding_aes_key": "{KEY}"}}"#),
        15,
    );
    let (body, safe) = safe_push(MESSAGE, TOKEN);
    let p = plan(&c, Some(safe));
    assert!(!p.decrypt);
    // Compat-mode fields beside Encrypt are not covered by msg_signature: dropped.
    let compat = body.replace("</xml>", "<Content>forged</Content></xml>");
    let checked = check(compat.as_bytes(), &p, &c).expect("passes");
    assert!(!checked.decrypted);
    let forwarded =
        String::from_utf8(checked.body_for_backend.clone().expect("rebuilt")).expect("utf-8");
    assert!(
        forwarded.starts_with("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[")
    );
    assert!(!forwarded.contains("forged"), "{forwarded}");
    assert_eq!(
        envelope::extract_encrypt(forwarded.as_bytes()),
        envelope::extract_encrypt(body.as_bytes())
    );
    assert!(
        checked.identity.is_some(),
        "still decrypted to find the MsgId"
    );
}

#[test]
fn a_wrong_msg_signature_is_401() {
    let c = decrypting();
    let (body, safe) = safe_push(MESSAGE, "another-token");
    assert_eq!(
        reason(check(body.as_bytes(), &plan(&c, Some(safe)), &c)),
        Reason::MsgSignature
    );
    let (body, safe) = safe_push(MESSAGE, TOKEN);
    let tampered = body.replacen("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A", 1);
    assert_eq!(
        reason(check(tampered.as_bytes(), &plan(&c, Some(safe)), &c)),
        Reason::MsgSignature
    );
}

#[test]
fn a_missing_repeated_or_malformed_encrypt_is_400() {
    let c = decrypting();
    let (_, safe) = safe_push(MESSAGE, TOKEN);
    for body in [
        "<xml><ToUserName>gh_1</ToUserName></xml>",
        "<xml><Encrypt>a</Encrypt><Encrypt>a</Encrypt></xml>",
        "<xml><Encrypt><![CDATA[abc</Encrypt></xml>",
        "",
    ] {
        assert_eq!(
            reason(check(body.as_bytes(), &plan(&c, Some(safe.clone())), &c)),
            Reason::Malformed,
            "{body}"
        );
    }
}

#[test]
fn a_plaintext_that_is_not_a_message_is_400_whether_handed_on_or_not() {
    let verify_only = config(
        &format!(r#", "safe_mode": {{"encoding_aes_key": "{KEY}"}}"#),
        15,
    );
    for c in [decrypting(), verify_only] {
        for plaintext in [
            "4872341879287",
            "<xml>",
            "",
            r#"{"MsgId":1}"#,
            "<xml/>",
            "<xml></xml>",
            "<html><body>hi</body></html>",
            "<xml><ToUserName>gh_1</ToUserName><Content>hi</Content></xml>",
        ] {
            let (body, safe) = safe_push(plaintext, TOKEN);
            let r = check(body.as_bytes(), &plan(&c, Some(safe)), &c);
            assert_eq!(reason(r.clone()), Reason::Malformed, "{plaintext:?}");
            assert!(r.expect_err("refused").detail.contains("not a message"));
        }
    }
}

#[test]
fn a_correctly_signed_body_that_does_not_decrypt_is_401_decrypt() {
    let c = decrypting();
    let other_app = cipher::encrypt(&key(), "wxOTHER", MESSAGE.as_bytes(), &[1u8; 16]);
    for encrypt in [other_app.as_str(), "bm90IGJsb2Nrcw==", "!!!"] {
        let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
        let safe = SafeModeQuery {
            msg_signature: as_str(&sign(&[TOKEN, TS, NONCE, encrypt])).to_string(),
            timestamp: TS.into(),
            nonce: NONCE.into(),
            verified: QueryVerified::BySignature { token: 0 },
        };
        assert_eq!(
            reason(check(body.as_bytes(), &plan(&c, Some(safe)), &c)),
            Reason::Decrypt,
            "{encrypt}"
        );
    }
}

#[test]
fn without_a_key_a_safe_push_is_verified_and_passed_on_as_its_encrypt_alone() {
    let c = config("", 15);
    let (body, safe) = safe_push(MESSAGE, TOKEN);
    let checked = check(body.as_bytes(), &plan(&c, Some(safe)), &c).expect("passes");
    let forwarded = checked.body_for_backend.expect("rebuilt");
    assert!(
        forwarded.starts_with(b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[")
    );
    // An outer ToUserName that is not an account id does not go on.
    let odd = body.replace("gh_1", "gh 1");
    let (_, safe) = safe_push(MESSAGE, TOKEN);
    let checked = check(odd.as_bytes(), &plan(&c, Some(safe)), &c).expect("passes");
    assert!(checked
        .body_for_backend
        .expect("rebuilt")
        .starts_with(b"<xml><Encrypt><![CDATA["));

    assert_eq!(checked.identity, None, "nothing verified identifies it");
    assert_eq!(checked.sender, None);
}

#[test]
fn compat_mode_bodies_pass_and_are_identified() {
    let c = decrypting();
    let (body, safe) = safe_push(MESSAGE, TOKEN);
    let compat = body.replace(
        "</xml>",
        "<FromUserName>o1</FromUserName><MsgId>99</MsgId></xml>",
    );
    let checked = check(compat.as_bytes(), &plan(&c, Some(safe)), &c).expect("passes");
    assert_eq!(
        checked.body_for_backend.as_deref(),
        Some(MESSAGE.as_bytes())
    );
}

fn seal(key: &AesKey) -> ReplySeal<'_> {
    ReplySeal {
        format: Format::Xml,
        token: TOKEN,
        key,
        appid: APPID,
        timestamp: TS,
        nonce: NONCE,
    }
}

#[test]
fn an_xml_reply_is_sealed_into_an_envelope_that_opens_again() {
    let k = key();
    let reply = "<xml><Content><![CDATA[回复]]></Content></xml>";
    let ReplyBody::Encrypted(envelope) = seal_reply(reply.as_bytes(), &seal(&k), &[9u8; 16]) else {
        panic!("encrypted");
    };
    let encrypt = envelope::extract_encrypt(envelope.as_bytes()).expect("Encrypt");
    let signature = crate::xml::element(envelope.as_bytes(), "MsgSignature")
        .expect("readable")
        .expect("present");
    assert_eq!(signature, as_str(&sign(&[TOKEN, TS, NONCE, &encrypt])));
    assert_eq!(
        cipher::decrypt(&k, APPID, &encrypt).expect("opens"),
        reply.as_bytes()
    );
}

#[test]
fn a_byte_order_mark_before_the_xml_is_dropped_and_the_reply_sealed() {
    let k = key();
    let ReplyBody::Encrypted(envelope) =
        seal_reply(b"\xef\xbb\xbf<xml>r</xml>", &seal(&k), &[2u8; 16])
    else {
        panic!("encrypted");
    };
    let encrypt = envelope::extract_encrypt(envelope.as_bytes()).expect("Encrypt");
    assert_eq!(
        cipher::decrypt(&k, APPID, &encrypt).expect("opens"),
        b"<xml>r</xml>"
    );
}

#[test]
fn empty_success_and_non_xml_replies_stay_as_they_are() {
    let k = key();
    for body in [&b""[..], b"success", b"  success\n", b"\n", b"ok"] {
        assert_eq!(seal_reply(body, &seal(&k), &[0u8; 16]), ReplyBody::AsIs);
    }
}
