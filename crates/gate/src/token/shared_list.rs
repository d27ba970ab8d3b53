//! The callback list as the fetching worker publishes it in shared data, for every
//! worker of every instance of the account to install.

use super::wechat_api::CallbackIps;
use crate::allowlist::{parse_block, CallbackAllowlist};
use serde::{Deserialize, Serialize};

/// The callback list as the fetching worker publishes it in shared data for the
/// others: the usable entries as WeChat sent them, and when.
#[derive(Serialize, Deserialize)]
struct SharedList {
    entries: Vec<String>,
    fetched_at: i64,
}

/// The shared value for a list fetched at `now`.
pub fn encode_shared_list(ips: &CallbackIps, now: i64) -> Option<Vec<u8>> {
    serde_json::to_vec(&SharedList {
        entries: ips.entries.clone(),
        fetched_at: now,
    })
    .ok()
}

/// The list in a shared value, written by any worker (of any version): `None` when
/// it does not parse or holds no usable entry.
pub fn decode_shared_list(bytes: &[u8]) -> Option<CallbackAllowlist> {
    let shared = serde_json::from_slice::<SharedList>(bytes).ok()?;
    let blocks: Vec<_> = shared
        .entries
        .iter()
        .filter_map(|e| parse_block(e).ok())
        .collect();
    (!blocks.is_empty()).then(|| CallbackAllowlist::from_blocks(blocks))
}
