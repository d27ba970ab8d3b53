//! npm's `wechat-api` (node-webot), the second independent SDK of the API role's tests,
//! installed by scripts/ensure-node-sdk.sh (`npm ci` in tests/sdk/node) and run through
//! tests/sdk/node/bridge.js. It fetches its own token from its API prefix, so the gate's
//! stand-in answer is what it runs on.

use super::MANIFEST_DIR;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// tests/sdk/node with its node_modules installed (the tests fail if npm cannot).
fn sdk_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new(PathBuf::from(MANIFEST_DIR).join("scripts/ensure-node-sdk.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/ensure-node-sdk.sh runs");
        assert!(
            out.status.success(),
            "npm's wechat-api could not be installed (scripts/ensure-node-sdk.sh); the API \
             role's SDK tests need Node.js 20+ with npm"
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// The bridge with `args`: what the SDK got, as JSON, or its error.
pub fn node_sdk(args: &[&str]) -> Result<serde_json::Value, String> {
    let dir = sdk_dir();
    let out = Command::new("node")
        .arg(dir.join("bridge.js"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_str(&stdout).map_err(|e| format!("not JSON ({e}): {stdout}"))
}
