//! Safe mode's open path: base64 → AES → padding → length → appid
//! (`safe_mode::cipher::decrypt`), each layer reached with the ones before it made
//! valid; and whole pushes through `body::check`. A push whose `msg_signature`
//! the fuzzer did not compute with the token, or whose `Encrypt` was not sealed
//! with the account's key for its appid, must be refused.
#![no_main]

use aes::cipher::{BlockEncryptMut, KeyIvInit};
use arbitrary::Arbitrary;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::{alphabet, Engine};
use gate::body::{check, BodyPlan};
use gate::config::{self, Config};
use gate::message::Format;
use gate::safe_mode::cipher::{decrypt, encrypt, AesKey};
use gate::safe_mode::{envelope, QueryVerified, SafeModeQuery};
use gate::signature::{as_str, sign};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const OTHER_KEY: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";
const APPID: &str = "wx0123456789abcdef";
const TOKEN: &str = "tok";
const TS: &str = "1714036504";

#[derive(Arbitrary, Debug)]
enum Input {
    /// The `Encrypt` value as it comes.
    Encrypt(String),
    /// Ciphertext bytes, base64-encoded: AES and what follows see them.
    Ciphertext(Vec<u8>),
    /// A plaintext (no padding added) AES-encrypted under the key: the padding, the
    /// length field and the appid see it.
    Plaintext(Vec<u8>),
    /// A message sealed by `cipher::encrypt`: it must open to itself, for this appid
    /// only.
    RoundTrip {
        msg: Vec<u8>,
        prefix: [u8; 16],
        appid: String,
    },
    Push(Push),
}

#[derive(Arbitrary, Debug)]
struct Push {
    /// Which configuration (see `configs`).
    config: u8,
    json: bool,
    to: Option<String>,
    /// Inserted after the opening tag / brace of the envelope.
    before: String,
    /// Inserted before its end.
    after: String,
    sealed: Sealed,
    /// `None`: signed with the token over the Encrypt sent; else this string.
    msg_signature: Option<String>,
    nonce: String,
    prefix: [u8; 16],
}

#[derive(Arbitrary, Debug)]
enum Sealed {
    /// `cipher::encrypt` of this message with the account's key and appid.
    Genuine(Vec<u8>),
    /// The same with another key.
    OtherKey(Vec<u8>),
    /// For another appid.
    OtherAppid(Vec<u8>, String),
    /// Raw plaintext bytes under the account's key (see `Input::Plaintext`).
    Raw(Vec<u8>),
    /// Any text.
    Text(String),
}

fn key(text: &str) -> AesKey {
    AesKey::from_encoding_aes_key(text).expect("a valid key")
}

/// AES-256-CBC (iv = key[..16]) of `plain` padded with zeros to whole blocks, no
/// PKCS#7 added: the checks after decryption see `plain` as it is.
fn raw(key_text: &str, plain: &[u8]) -> String {
    // As WeChat decodes it: the last character's spare bits are ignored.
    let lenient = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let bytes = lenient.decode(format!("{key_text}=")).expect("a valid key");
    let mut data = plain.to_vec();
    data.resize(data.len().div_ceil(16).max(1) * 16, 0);
    let key: [u8; 32] = bytes.as_slice().try_into().expect("32 bytes");
    let iv: [u8; 16] = bytes[..16].try_into().expect("16 bytes");
    let cipher = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_vec_mut::<aes::cipher::block_padding::NoPadding>(&data);
    STANDARD.encode(cipher)
}

/// The configurations a push is checked against: official account decrypting or
/// verifying, a Mini Program (JSON pushes), no key (signature only), WeCom (any
/// token), a rotated key.
fn configs() -> &'static [Config] {
    static CONFIGS: OnceLock<Vec<Config>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let base = |extra: &str| {
            let json = format!(
                r#"{{"token": "{TOKEN}", "appid": "{APPID}", "source": {{"mode": "off"}}{extra}}}"#
            );
            config::parse(json.as_bytes(), &|_| None).expect("a fuzz config")
        };
        vec![
            base(&format!(
                r#", "safe_mode": {{"encoding_aes_key": "{KEY}", "decrypt": true}}"#
            )),
            base(&format!(r#", "safe_mode": {{"encoding_aes_key": "{KEY}"}}"#)),
            base(&format!(
                r#", "platform": "mini_program", "safe_mode": {{"encoding_aes_key": "{KEY}", "decrypt": true}}"#
            )),
            base(r#", "dedupe_seconds": 15"#),
            base(&format!(
                r#", "platform": "wecom", "safe_mode": {{"encoding_aes_key": "{KEY}", "decrypt": true}}"#
            )),
            base(&format!(
                r#", "safe_mode": {{"encoding_aes_key": ["{OTHER_KEY}", "{KEY}"], "decrypt": true}}"#
            )),
        ]
    })
}

fn push(p: Push) {
    let configs = configs();
    let index = usize::from(p.config) % configs.len();
    let config = &configs[index];
    let (encrypt, genuine) = match &p.sealed {
        Sealed::Genuine(m) => (encrypt(&key(KEY), APPID, m, &p.prefix), true),
        Sealed::OtherKey(m) => (encrypt(&key(OTHER_KEY), APPID, m, &p.prefix), index == 5),
        Sealed::OtherAppid(m, a) => (encrypt(&key(KEY), a, m, &p.prefix), a == APPID),
        Sealed::Raw(plain) => (raw(KEY, plain), false),
        Sealed::Text(t) => (t.clone(), false),
    };
    let format = if p.json { Format::Json } else { Format::Xml };
    let mut body = envelope::push_body_in(format, p.to.as_deref(), &encrypt);
    let open = if p.json { 1 } else { 5 };
    body.insert_str(open, &p.before);
    let close = body.len() - if p.json { 1 } else { 6 };
    body.insert_str(close, &p.after);
    let signed = as_str(&sign(&[TOKEN, TS, &p.nonce, &encrypt])).to_string();
    let msg_signature = p.msg_signature.unwrap_or_else(|| signed.clone());
    let wecom = index == 4;
    let safe = SafeModeQuery {
        msg_signature: msg_signature.clone(),
        timestamp: TS.into(),
        nonce: p.nonce.clone(),
        verified: if wecom {
            QueryVerified::ByBody
        } else {
            QueryVerified::BySignature { token: 0 }
        },
    };
    let Some(plan) = BodyPlan::for_push(config, Some(safe)) else {
        panic!("a safe-mode push's body is always read");
    };
    let result = check(body.as_bytes(), &plan, config);
    let has_key = config.safe_mode.is_some();
    let passes_checks = msg_signature == signed && (genuine || !has_key);
    if let Ok(checked) = &result {
        assert!(
            passes_checks,
            "a push passed that the fuzzer did not seal and sign: {body:?} {checked:?}"
        );
        if checked.decrypted {
            let (Sealed::Genuine(m) | Sealed::OtherKey(m) | Sealed::OtherAppid(m, _)) = &p.sealed
            else {
                panic!("decrypted what was not sealed");
            };
            assert_eq!(checked.body_for_backend.as_deref(), Some(m.as_slice()));
        }
    }
}

fuzz_target!(|input: Input| {
    let k = key(KEY);
    match input {
        Input::Encrypt(text) => {
            let _ = decrypt(&k, APPID, &text);
        }
        Input::Ciphertext(bytes) => {
            let _ = decrypt(&k, APPID, &STANDARD.encode(bytes));
        }
        Input::Plaintext(plain) => {
            if let Ok(msg) = decrypt(&k, APPID, &raw(KEY, &plain)) {
                // Whatever opens holds the message right after the 20-byte header, and
                // ends with the appid and its padding.
                assert!(msg.len() + 20 + APPID.len() <= plain.len());
                assert_eq!(plain.get(20..20 + msg.len()), Some(msg.as_slice()));
            }
        }
        Input::RoundTrip { msg, prefix, appid } => {
            let sealed = encrypt(&k, &appid, &msg, &prefix);
            assert_eq!(decrypt(&k, &appid, &sealed).as_deref(), Ok(msg.as_slice()));
            if appid != APPID {
                assert!(decrypt(&k, APPID, &sealed).is_err());
            }
            assert!(decrypt(&key(OTHER_KEY), &appid, &sealed).is_err());
        }
        Input::Push(p) => push(p),
    }
});
