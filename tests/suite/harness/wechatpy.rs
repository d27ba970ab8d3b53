//! wechatpy 1.8.18, the independent Python SDK (installed from PyPI into .venv by
//! scripts/ensure-wechatpy.sh), through tests/data/wechatpy_bridge.py: it encrypts
//! pushes and opens the gate's sealed replies.

use super::safe_mode::{Push, AES_KEY, APPID};
use super::{requests::TOKEN, MANIFEST_DIR};
use gate::xml::element;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new(PathBuf::from(MANIFEST_DIR).join("scripts/ensure-wechatpy.sh"))
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

/// Runs the bridge with `args`, `stdin` on its stdin: its stdout, or its stderr.
pub fn wechatpy(args: &[&str], stdin: &str) -> Result<String, String> {
    use std::io::Write;
    let bridge = PathBuf::from(MANIFEST_DIR).join("tests/data/wechatpy_bridge.py");
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
/// push's timestamp and nonce.
pub fn open_with_wechatpy(envelope: &str, p: &Push) -> Result<String, String> {
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

/// What wechatpy seals: the ciphertext (or a JSON push's whole body) and its
/// `msg_signature`.
pub struct Sealed {
    pub body: String,
    pub msg_signature: String,
}

/// Runs a bridge command that answers JSON with `body_key` and `msg_signature`.
fn sealed_by(
    command: &str,
    account: &str,
    plaintext: &str,
    nonce: &str,
    timestamp: &str,
    body_key: &str,
) -> Sealed {
    let out = wechatpy(
        &[command, TOKEN, AES_KEY, account, nonce, timestamp],
        plaintext,
    )
    .unwrap_or_else(|e| panic!("wechatpy {command}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("the bridge answers JSON");
    let field = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {out}"))
            .to_string()
    };
    Sealed {
        body: field(body_key),
        msg_signature: field("msg_signature"),
    }
}

/// A Mini Program's JSON push (`{"ToUserName","Encrypt"}`) of `message`, sealed with
/// wechatpy's cipher and signature for the suite's AppID.
pub fn wechatpy_json_push(message: &str, nonce: &str, timestamp: &str) -> Sealed {
    sealed_by("encrypt-json", APPID, message, nonce, timestamp, "body")
}

/// `plaintext` encrypted by wechatpy.enterprise for `corpid` (a push's `Encrypt` or a
/// handshake's `echostr`), with its `msg_signature`.
pub fn wechatpy_wecom_encrypt(
    corpid: &str,
    plaintext: &str,
    nonce: &str,
    timestamp: &str,
) -> Sealed {
    sealed_by(
        "wecom-encrypt",
        corpid,
        plaintext,
        nonce,
        timestamp,
        "encrypt",
    )
}

/// Opens a sealed reply with wechatpy: `command` is `decrypt-json` (a JSON envelope,
/// for `account`'s AppID) or `wecom-decrypt` (for a CorpID); the envelope's own
/// MsgSignature, TimeStamp and Nonce are checked.
pub fn open_envelope_with_wechatpy(
    command: &str,
    account: &str,
    envelope: &str,
) -> Result<String, String> {
    let fields = gate::message::Message::read(
        envelope.as_bytes(),
        gate::message::Format::of(envelope.as_bytes()),
    )
    .map_err(|e| format!("unreadable envelope ({e}): {envelope}"))?;
    let get = |k: &str| {
        fields
            .get(k)
            .ok()
            .flatten()
            .map(str::to_string)
            .ok_or_else(|| format!("no {k} in {envelope}"))
    };
    let (signature, timestamp, nonce) = (get("MsgSignature")?, get("TimeStamp")?, get("Nonce")?);
    wechatpy(
        &[
            command, TOKEN, AES_KEY, account, &signature, &timestamp, &nonce,
        ],
        envelope,
    )
}

/// wechatpy pointed at the gate's API role (tests/data/wechatpy_api_bridge.py) with
/// `args`: what it got, as JSON, or its error.
pub fn wechatpy_api(args: &[&str]) -> Result<serde_json::Value, String> {
    let bridge = PathBuf::from(MANIFEST_DIR).join("tests/data/wechatpy_api_bridge.py");
    let out = Command::new(python())
        .arg(bridge)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_str(&stdout).map_err(|e| format!("not JSON ({e}): {stdout}"))
}
