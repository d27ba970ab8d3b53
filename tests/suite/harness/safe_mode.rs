//! Safe mode (AES) as WeChat does it: the account's key and AppID, a gate that
//! decrypts, and pushes whose `Encrypt` is signed by `msg_signature`.

use super::config::gate_config;
use super::envoy::Envoy;
use super::requests::{signed, text_xml, LISTED, TOKEN};
use super::{merged, now};
use gate::safe_mode::cipher::{self, AesKey};
use gate::signature::{as_str, sign};
use serde_json::json;
use wechat::http1::client::Response;

pub const AES_KEY: &str = "GeuKYOtmlo3LsuufAkG+oPBZOZm/L42M6eGR8KhDGgE";
pub const APPID: &str = "wx5afe0e2e00000001";
/// A CorpID as WeCom shows it: the suite's WeCom app seals its messages for it.
pub const CORPID: &str = "ww5afe0e2e0000c0de";

/// The account in safe mode: its AppID, a 16 KiB body limit, one listed source
/// (127.0.0.2) and `decrypt: true`, with the top-level keys of `extra` set.
pub fn safe_config(extra: serde_json::Value) -> serde_json::Value {
    let safe = json!({
        "appid": APPID,
        "max_body_bytes": 16384,
        "source": {"allow": ["127.0.0.2"]},
        "safe_mode": {"encoding_aes_key": AES_KEY, "decrypt": true}
    });
    merged(gate_config(safe), extra)
}

/// `decrypt: false`: the gate verifies, the backend decrypts.
pub fn verify_only_config() -> serde_json::Value {
    safe_config(json!({"safe_mode": {"encoding_aes_key": AES_KEY}}))
}

pub fn key() -> AesKey {
    AesKey::from_encoding_aes_key(AES_KEY).expect("key")
}

/// The text message `content` from the safe-mode user `o_safe_user`.
pub fn text_message(content: &str, msg_id: u64) -> String {
    text_xml("o_safe_user", content, msg_id)
}

/// A safe-mode push as WeChat sends it: the query and the body.
#[derive(Clone)]
pub struct Push {
    pub query: String,
    pub body: String,
    pub timestamp: String,
    pub nonce: String,
}

impl Push {
    /// The same query (and its timestamp and nonce) carrying `body`.
    pub fn with_body(&self, body: String) -> Push {
        Push {
            body,
            ..self.clone()
        }
    }
}

/// A push of the ciphertext `encrypt` with plaintext `extra_fields` beside it.
pub fn push_of(encrypt: &str, extra_fields: &str, nonce: &str) -> Push {
    // One reading of the clock for both signatures: two could straddle a second.
    let at = now();
    let timestamp = at.to_string();
    let msg_signature = as_str(&sign(&[TOKEN, &timestamp, nonce, encrypt])).to_string();
    Push {
        query: signed(
            TOKEN,
            at,
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
pub fn encrypt_fresh(message: &str) -> String {
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random).expect("random");
    cipher::encrypt(&key(), APPID, message.as_bytes(), &random)
}

/// A push of `message`, encrypted as WeChat would.
pub fn push(message: &str, nonce: &str) -> Push {
    push_of(&encrypt_fresh(message), "", nonce)
}

impl Envoy {
    /// Sends the push from the listed source.
    pub fn push(&self, p: &Push) -> Response {
        self.post(&p.query, &p.body, LISTED)
    }
}
