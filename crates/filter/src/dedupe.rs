//! The gate's tables ([`gate::tables`]) in shared data, so that a retry or a
//! replay landing on another worker is still recognised.

use super::host::Host;
use super::shared_data::{self, Change};
use gate::tables::{self, replay, Entry, Lookup, Seen, Table};

/// Tries before giving up on a contended shard.
const ATTEMPTS: usize = 8;

/// Shard `n` of a table lives at `<prefix>.<n>`; the prefix names the layout's version.
pub(crate) fn shard_key(table: Table, identity: u64) -> String {
    let prefix = match table {
        Table::Retry => "wechat_gate.dedupe.v4",
        Table::Replay => "wechat_gate.replay.v3",
    };
    format!("{prefix}.{}", table.shape().shard_of(identity))
}

/// Looks `entry` up at `now`; when it is new, records it.
pub fn record(host: &impl Host, table: Table, entry: Entry, now: u64) -> Seen {
    if cfg!(feature = "attribution-no-replay-table") && table == Table::Replay
        || cfg!(feature = "attribution-no-retry-table") && table == Table::Retry
    {
        return Seen::New { evicted: false };
    }
    let key = shard_key(table, entry.identity);
    shared_data::update(
        host,
        &key,
        &[],
        ATTEMPTS,
        |stored| match tables::check_and_record(stored, entry, now, table.shape()) {
            Lookup::Duplicate => Change::Keep(Seen::Duplicate),
            Lookup::TooOld => Change::Keep(Seen::TooOld),
            Lookup::New { value, evicted } => Change::Write(value, Seen::New { evicted }),
        },
    )
    .unwrap_or(Seen::Unrecorded)
}

/// Forgets `identity` (its forward failed), so that WeChat's retry is delivered.
pub fn forget(host: &impl Host, table: Table, identity: u64) {
    let key = shard_key(table, identity);
    let _ = shared_data::update(host, &key, &[], ATTEMPTS, |stored| {
        match tables::forget(stored, identity) {
            Some(value) => Change::Write(value, ()),
            None => Change::Keep(()),
        }
    });
}

/// Where the proxy's longest tolerance lives, beside the table of used queries.
const LONGEST_TOLERANCE_KEY: &str = "wechat_gate.replay.v2.longest_tolerance";

/// Raises the proxy's longest tolerance to `tolerance` if it is shorter (one read
/// when it is not); the longest as it then stands, `None` if shared data failed.
pub fn raise_longest_tolerance(host: &impl Host, tolerance: u64) -> Option<u64> {
    shared_data::update(host, LONGEST_TOLERANCE_KEY, &[], ATTEMPTS, |stored| {
        match replay::raise_longest_tolerance(stored, tolerance) {
            Some(value) => Change::Write(value, tolerance),
            None => Change::Keep(replay::longest_tolerance(stored)),
        }
    })
}
