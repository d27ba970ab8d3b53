//! wechatpy 1.8.18, the independent Python SDK (installed from PyPI into .venv by
//! scripts/ensure-wechatpy.sh), through tests/data/wechatpy_bridge.py: it encrypts
//! pushes and opens the gate's sealed replies.

use super::safe_mode::{Push, AES_KEY, APPID};
use super::{requests::TOKEN, MANIFEST_DIR};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use wechat_gate::gate::xml::element;

fn python() -> &'static PathBuf {
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
