//! The replay table: signed queries (`signature`, `timestamp`, `nonce`) already
//! used, kept until their timestamp is no longer fresh on any gate of the proxy, so
//! that a query seen once (an access log keeps full URLs) cannot carry a request to
//! the backend again, whatever its body. A used query is answered like a retry.

use super::{be, Entry, Shape};
use crate::signature::HexDigest;

/// Used signed queries: 8,192 × 32 = 262,144 (4 MiB), each kept for the longest
/// `timestamp_tolerance_seconds` of the proxy's gates ([`longest_tolerance`]) + 6 s
/// after its timestamp. At the default 300 s that
/// holds about 850 pushes/s sustained (262,144 / 306 s); a worker reads and writes one
/// shard of at most 520 bytes per push (small shards: a push's cost does not grow
/// with what the table holds).
pub const SHAPE: Shape = Shape {
    shards: 8192,
    capacity: 32,
};

/// A verified signed query (`signature`, `timestamp`, `nonce`), for the replay
/// table: it may carry one request while its timestamp is fresh. `None` when
/// `timestamp_tolerance_seconds` is 0 (a query is then valid forever, and no table
/// could remember it that long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryUse {
    /// From the verified signature (a SHA-1 of the token, timestamp and nonce).
    pub identity: u64,
    /// The query's timestamp, Unix seconds.
    pub timestamp: u64,
    /// Unix seconds from which the query is stale anyway on every worker of this
    /// gate: `timestamp + tolerance + 1`, plus [`CLOCK_SLACK_SECONDS`].
    pub expires_at: u64,
}

/// How far one worker's clock may lag another's (the tick clock is up to a second
/// old): a query is remembered this much longer than it can be fresh anywhere.
pub const CLOCK_SLACK_SECONDS: u64 = 5;

/// When a query stamped `timestamp` is stale everywhere under `tolerance`.
fn stale_from(timestamp: u64, tolerance: u64) -> u64 {
    timestamp
        .saturating_add(tolerance)
        .saturating_add(1 + CLOCK_SLACK_SECONDS)
}

impl QueryUse {
    /// The use of a query whose verified signature is `signature`.
    pub fn of(signature: &HexDigest, timestamp: i64, tolerance: u64) -> Option<QueryUse> {
        if tolerance == 0 {
            return None;
        }
        let hex = std::str::from_utf8(signature.get(..16)?).ok()?;
        let timestamp = u64::try_from(timestamp).ok()?;
        Some(QueryUse {
            identity: u64::from_str_radix(hex, 16).ok()?,
            timestamp,
            expires_at: stale_from(timestamp, tolerance),
        })
    }

    /// Its entry in the replay table, aged by its timestamp and kept until no gate
    /// of the proxy could take that timestamp as fresh: the table is every gate's,
    /// and gates that share a token (one account on two routes) share its
    /// identities, so a query used under a short tolerance must not lapse while a
    /// longer one still accepts it. `longest_tolerance` is the longest of the
    /// proxy's gates as this worker last read it (0: unknown); never shorter than
    /// this gate's own.
    pub fn entry(&self, longest_tolerance: u64) -> Entry {
        Entry {
            identity: self.identity,
            stamp: self.timestamp,
            expires_at: self
                .expires_at
                .max(stale_from(self.timestamp, longest_tolerance)),
        }
    }
}

/// The longest `timestamp_tolerance_seconds` of the gates sharing the replay table,
/// as stored beside it (u64, big-endian; missing or damaged: 0). Each gate raises it
/// to its own tolerance when configured, and each worker reads it from its tick, so a
/// push costs no extra shared-data operation. It never falls while the proxy runs: a
/// gate removed or shortened leaves the table remembering queries longer than needed
/// (bounded all the same), never shorter.
pub fn longest_tolerance(stored: &[u8]) -> u64 {
    be::<8>(stored.get(..8)).map_or(0, u64::from_be_bytes)
}

/// The value that raises the stored longest tolerance to `tolerance`; `None` when it
/// is at least that long already.
pub fn raise_longest_tolerance(stored: &[u8], tolerance: u64) -> Option<Vec<u8>> {
    (tolerance > longest_tolerance(stored)).then(|| tolerance.to_be_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_tolerance_only_ever_rises() {
        assert_eq!(longest_tolerance(b""), 0);
        assert_eq!(longest_tolerance(b"abc"), 0, "damaged: unknown");
        let t = raise_longest_tolerance(b"", 2).expect("raised from nothing");
        assert_eq!(longest_tolerance(&t), 2);
        let t = raise_longest_tolerance(&t, 300).expect("raised");
        assert_eq!(longest_tolerance(&t), 300);
        assert_eq!(raise_longest_tolerance(&t, 300), None);
        assert_eq!(
            raise_longest_tolerance(&t, 2),
            None,
            "a shorter one never lowers it"
        );
        assert_eq!(raise_longest_tolerance(b"", 0), None);
    }

    #[test]
    fn the_query_table_holds_what_its_doc_says() {
        assert_eq!(SHAPE.entries(), 262_144);
        assert_eq!(SHAPE.entries() / 306, 856);
    }
}
