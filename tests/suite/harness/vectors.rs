//! tests/data/wechat_vectors.json: signatures and safe-mode pushes made with wechatpy,
//! an independent SDK (see tests/data/README.md).

use serde::Deserialize;

#[derive(Deserialize)]
pub struct Vectors {
    pub handshake: Vec<Handshake>,
    pub safe_mode: Vec<SafeMode>,
}

#[derive(Deserialize)]
pub struct Handshake {
    pub token: String,
    pub timestamp: String,
    pub nonce: String,
    pub echostr: String,
    pub signature: String,
    pub valid: bool,
    pub why: Option<String>,
}

#[derive(Deserialize)]
pub struct SafeMode {
    pub token: String,
    pub encoding_aes_key: String,
    pub appid: String,
    pub timestamp: String,
    pub nonce: String,
    pub random_prefix: String,
    pub plaintext: String,
    pub encrypt: String,
    pub msg_signature: String,
    pub post_query: std::collections::BTreeMap<String, String>,
    pub post_body: String,
    pub reply_envelope: String,
    pub valid: bool,
    pub why: Option<String>,
}

pub fn vectors() -> Vectors {
    let path = format!("{}/tests/data/wechat_vectors.json", super::MANIFEST_DIR);
    let text = std::fs::read(path).expect("tests/data/wechat_vectors.json");
    serde_json::from_slice(&text).expect("vectors parse")
}
