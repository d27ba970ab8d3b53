//! The suite's one harness: every helper a test module needs, written once.
//!
//! - `backend`: the recording backend.
//! - `mock_api`: `wechat-gate mock-api`, WeChat's API stand-in.
//! - `cli`: the `wechat-gate` CLI with a clean environment.
//! - `vectors`: tests/data/wechat_vectors.json.
//! - `process`: child processes killed on drop, and the banner that names their port.

pub mod backend;
pub mod cli;
pub mod mock_api;
pub mod process;
pub mod vectors;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
