//! The gate's tables ([`crate::dedupe`]) in shared data, so that a retry or a replay
//! landing on another worker is still recognised.

use crate::dedupe::{self, Lookup, Shape};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use std::sync::atomic::{AtomicBool, Ordering};

/// Tries before giving up on a contended shard.
const ATTEMPTS: usize = 8;

/// A set on a missing key succeeds whatever CAS is passed, so two workers could both
/// create a shard: each is seeded empty first with a CAS no live value has.
const ONLY_IF_ABSENT: Option<u32> = Some(u32::MAX);

/// One table: its shared-data keys and its shape.
pub struct SharedTable {
    /// Shard `n` lives at `<prefix>.<n>`; the prefix names the layout's version.
    prefix: &'static str,
    shape: Shape,
}

/// Messages recently forwarded (WeChat's retries).
pub const MESSAGES: SharedTable = SharedTable {
    prefix: "wechat_gate.dedupe.v2",
    shape: dedupe::MESSAGES,
};

/// Signed queries already used (replays).
pub const QUERIES: SharedTable = SharedTable {
    prefix: "wechat_gate.replay.v1",
    shape: dedupe::QUERIES,
};

/// What a lookup found, as the HTTP context acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Recorded now; `evicted` when a full shard made room for it.
    New {
        evicted: bool,
    },
    Duplicate,
    /// Older than what a full shard forgot: refuse it.
    TooOld,
    /// The shard stayed contended or shared data failed: nothing was recorded.
    Unrecorded,
}

impl SharedTable {
    fn shard_key(&self, identity: u64) -> String {
        format!("{}.{}", self.prefix, self.shape.shard_of(identity))
    }

    /// Looks `identity` up at `now`; when it is new, records it until `expires_at`.
    pub fn check_and_record(&self, identity: u64, now: u64, expires_at: u64) -> Seen {
        let key = self.shard_key(identity);
        for _ in 0..ATTEMPTS {
            let Some((stored, cas)) = read_shard(&key) else {
                return Seen::Unrecorded;
            };
            let stored = stored.unwrap_or_default();
            match dedupe::check_and_record(&stored, identity, now, expires_at, self.shape) {
                Lookup::Duplicate => return Seen::Duplicate,
                Lookup::TooOld => return Seen::TooOld,
                Lookup::New { value, evicted } => {
                    match hostcalls::set_shared_data(&key, Some(&value), cas) {
                        Ok(()) => return Seen::New { evicted },
                        Err(Status::CasMismatch) => continue,
                        Err(_) => return Seen::Unrecorded,
                    }
                }
            }
        }
        Seen::Unrecorded
    }

    /// Forgets `identity` (its forward failed), so that WeChat's retry is delivered.
    pub fn forget(&self, identity: u64) {
        let key = self.shard_key(identity);
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
}

/// True the first time a table had to make room in this VM: the operator is told once.
pub fn first_eviction_in_this_vm() -> bool {
    static TOLD: AtomicBool = AtomicBool::new(false);
    !TOLD.swap(true, Ordering::Relaxed)
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
