//! Every case of the independent SDK's vectors (tests/data/wechat_vectors.json, made
//! with wechatpy) run through the same decision the filter makes inside Envoy.

use crate::harness::vectors::{vectors, SafeMode};
use gate::config;
use gate::request::{decide, Echostr, Reason, RequestHead, Sources, Verdict};
use gate::safe_mode::cipher::{self, AesKey};
use gate::safe_mode::envelope;
use gate::signature::{sign, signature_matches};

/// A gate for one vector's token: the vectors' timestamps are old, so freshness is
/// off; the source check is off (it has its own tests).
fn gate_for(token: &str) -> config::Config {
    let json = serde_json::json!({
        "path": "/wechat", "token": token, "timestamp_tolerance_seconds": 0,
        "source": {"mode": "off"}
    });
    config::parse(json.to_string().as_bytes(), &|_| None).expect("vector config")
}

fn encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn judge(cfg: &config::Config, method: &str, path: &str) -> Verdict {
    decide(
        &RequestHead {
            method: method.as_bytes(),
            path: Some(path.as_bytes()),
            source: Some(b"127.0.0.1:1"),
        },
        cfg,
        &Sources::fixed(cfg.source.allow.clone()),
        1_800_000_000,
    )
}

#[test]
fn every_handshake_vector_is_judged_as_the_independent_sdk_says() {
    let v = vectors();
    assert!(v.handshake.len() >= 20, "expected the full vector set");
    let (mut valid, mut invalid) = (0, 0);
    for h in &v.handshake {
        let cfg = gate_for(&h.token);
        let query = encode(&[
            ("signature", &h.signature),
            ("timestamp", &h.timestamp),
            ("nonce", &h.nonce),
            ("echostr", &h.echostr),
        ]);
        let verdict = judge(&cfg, "GET", &format!("/wechat?{query}"));
        if h.valid {
            valid += 1;
            assert!(
                matches!(&verdict, Verdict::Echo { echostr: Echostr::Plain(e), .. } if *e == h.echostr),
                "valid vector for token {} not echoed: {verdict:?}",
                h.token
            );
        } else {
            invalid += 1;
            let why = h.why.as_deref().unwrap_or("");
            let expected = if h.signature.is_empty() {
                Reason::Malformed
            } else {
                Reason::Signature
            };
            assert!(
                matches!(&verdict, Verdict::Reject(r) if r.reason == expected),
                "invalid vector ({why}) gave {verdict:?}"
            );
        }
    }
    assert!(valid > 0 && invalid > 0);
}

#[test]
fn every_safe_mode_push_carries_a_valid_plain_signature() {
    for s in vectors().safe_mode {
        let cfg = gate_for(&s.token);
        let pairs: Vec<(&str, &str)> = s
            .post_query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let verdict = judge(&cfg, "POST", &format!("/wechat?{}", encode(&pairs)));
        assert!(
            matches!(&verdict, Verdict::Forward { openid: Some(o), .. } if Some(o) == s.post_query.get("openid")),
            "{:?}: {verdict:?}",
            s.why
        );
    }
}

#[test]
fn every_safe_mode_msg_signature_is_judged_as_the_independent_sdk_says() {
    for s in vectors().safe_mode {
        let expected = sign(&[&s.token, &s.timestamp, &s.nonce, &s.encrypt]);
        // Judge what WeChat sends: the query's msg_signature (the "msg_signature wrong"
        // vector keeps the right one at the top level and the wrong one in the query).
        let sent = s
            .post_query
            .get("msg_signature")
            .expect("post_query.msg_signature");
        let matches = signature_matches(&expected, sent.as_bytes());
        // The one invalid vector whose msg_signature is right is wrong inside the
        // ciphertext (another appid): that is the decryption's business, not the signature's.
        let signature_should_match =
            s.valid || !s.why.as_deref().unwrap_or("").contains("msg_signature");
        assert_eq!(matches, signature_should_match, "{:?}", s.why);
        if s.valid {
            assert_eq!(sent, &s.msg_signature);
        }
    }
}

fn key(v: &SafeMode) -> AesKey {
    AesKey::from_encoding_aes_key(&v.encoding_aes_key).expect("key")
}

#[test]
fn every_valid_safe_mode_vector_decrypts_byte_exact() {
    let mut n = 0;
    for v in vectors().safe_mode.iter().filter(|v| v.valid) {
        assert_eq!(
            cipher::decrypt(&key(v), &v.appid, &v.encrypt).expect("decrypts"),
            v.plaintext.as_bytes()
        );
        n += 1;
    }
    assert!(n >= 10);
}

#[test]
fn encrypting_with_the_vectors_prefix_gives_the_same_bytes_and_envelope() {
    for v in vectors().safe_mode.iter().filter(|v| v.valid) {
        let prefix: [u8; 16] = v.random_prefix.as_bytes().try_into().expect("16 bytes");
        let e = cipher::encrypt(&key(v), &v.appid, v.plaintext.as_bytes(), &prefix);
        let envelope_encrypt =
            envelope::extract_encrypt(v.reply_envelope.as_bytes()).expect("envelope Encrypt");
        assert_eq!(e, envelope_encrypt);
        assert_eq!(
            envelope::reply_envelope(&v.token, &v.timestamp, &v.nonce, &e),
            v.reply_envelope
        );
    }
}

#[test]
fn the_pushed_body_carries_the_vectors_encrypt() {
    for v in vectors().safe_mode {
        assert_eq!(
            envelope::extract_encrypt(v.post_body.as_bytes()).expect("Encrypt"),
            v.encrypt,
            "{:?}",
            v.why
        );
    }
}

#[test]
fn a_message_for_another_appid_is_refused() {
    let v = vectors()
        .safe_mode
        .into_iter()
        .find(|v| v.why.as_deref().is_some_and(|w| w.contains("appid")))
        .expect("vector");
    assert_eq!(
        cipher::decrypt(&key(&v), &v.appid, &v.encrypt),
        Err(cipher::DecryptError::WrongAppid)
    );
}
