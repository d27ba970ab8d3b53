//! The suite's one harness: every helper a test module needs, written once.
//!
//! - `api`: the API role's rig (accounts, their mock-apis, the sink), refusals, secrets.
//! - `node_sdk`: npm's wechat-api, the SDK that fetches the gate's stand-in token.
//! - `config`: the Envoy config builder, the suite's account, the shipped demo config.
//! - `envoy`: the Envoy process.
//! - `backend`: the recording backend, the CGI-style and raw-HTTP backends, backend.py.
//! - `mock_api`: `wechat-gate mock-api`, WeChat's API stand-in.
//! - `cli`: the `wechat-gate` CLI with a clean environment.
//! - `requests`: the account, signed queries and the requests WeChat sends.
//! - `safe_mode`: safe-mode pushes; `wechatpy`: the independent SDK that opens replies.
//! - `vectors`: tests/data/wechat_vectors.json.
//! - `process`: child processes killed on drop, and the banner that names their port.

pub mod api;
pub mod backend;
pub mod cli;
pub mod config;
pub mod envoy;
pub mod mock_api;
pub mod node_sdk;
pub mod process;
pub mod requests;
pub mod safe_mode;
pub mod vectors;
pub mod wechatpy;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The repository's root (envoy/, target/, tests/data, docs/): the suite is a test of
/// crates/cli, two levels down.
pub const MANIFEST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Polls `check` every 50 ms until it is true or `limit` passes; returns the time taken.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Waits until the clock has moved `seconds` past `since` (Unix seconds).
pub fn wait_past(since: i64, seconds: i64) {
    let limit = Duration::from_secs(u64::try_from(seconds).unwrap_or(0) + 5);
    assert!(wait_until(limit, || now() >= since + seconds).is_some());
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A fresh directory under the system's temp dir, for one test's files.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wechat-gate-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `base` with the top-level keys of `extra` set (a shallow merge of JSON objects).
pub fn merged(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(b), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        b.extend(extra.clone());
    }
    base
}
