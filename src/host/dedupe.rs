//! The recently-forwarded table ([`crate::dedupe`]) in shared data, so that a retry
//! landing on another worker is still recognised.

use crate::dedupe::{self, Lookup};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

/// Tries before giving up on a contended shard (and forwarding: never refuse on it).
const ATTEMPTS: usize = 4;

/// A set on a missing key succeeds whatever CAS is passed, so two workers could both
/// create a shard: each is seeded empty first with a CAS no live value has.
const ONLY_IF_ABSENT: Option<u32> = Some(u32::MAX);

fn shard_key(identity: u64) -> String {
    format!("wechat_gate.dedupe.{}", dedupe::shard_of(identity))
}

/// The shard's value and CAS, seeding the key if it does not exist yet.
fn read_shard(key: &str) -> Option<(Option<Vec<u8>>, Option<u32>)> {
    let (value, cas) = hostcalls::get_shared_data(key).ok()?;
    if cas.is_some() {
        return Some((value, cas));
    }
    let _ = hostcalls::set_shared_data(key, Some(&[]), ONLY_IF_ABSENT);
    hostcalls::get_shared_data(key).ok()
}

/// True if the message was forwarded within `ttl` seconds; otherwise records it.
pub fn seen_before(identity: u64, now: u64, ttl: u64) -> bool {
    let key = shard_key(identity);
    for _ in 0..ATTEMPTS {
        let Some((stored, cas)) = read_shard(&key) else {
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

/// Forgets a message whose forward failed, so that WeChat's retry is delivered.
pub fn forget(identity: u64) {
    let key = shard_key(identity);
    for _ in 0..ATTEMPTS {
        let Ok((Some(stored), cas)) = hostcalls::get_shared_data(&key) else {
            return;
        };
        let Some(value) = dedupe::forget(&stored, identity) else {
            return;
        };
        match hostcalls::set_shared_data(&key, Some(&value), cas) {
            Err(Status::CasMismatch) => continue,
            _ => return,
        }
    }
}
