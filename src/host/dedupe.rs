//! The recently-forwarded table ([`crate::dedupe`]) in shared data, so that a retry
//! landing on another worker is still recognised.

use crate::dedupe::{self, Lookup};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

/// Tries before giving up on a contended shard (and forwarding: never refuse on it).
const ATTEMPTS: usize = 4;

/// True if the message was forwarded within `ttl` seconds; otherwise records it.
pub fn seen_before(identity: u64, now: u64, ttl: u64) -> bool {
    let key = format!("wechat_gate.dedupe.{}", dedupe::shard_of(identity));
    for _ in 0..ATTEMPTS {
        let Ok((stored, cas)) = hostcalls::get_shared_data(&key) else {
            return false;
        };
        match dedupe::check_and_record(stored.as_deref().unwrap_or_default(), identity, now, ttl) {
            Lookup::Duplicate => return true,
            Lookup::New(value) => match hostcalls::set_shared_data(&key, Some(&value), cas) {
                Ok(()) => return false,
                Err(Status::CasMismatch) => continue,
                Err(_) => return false,
            },
        }
    }
    log::debug!("dedupe shard {key} stayed contended; forwarding unrecorded");
    false
}
