//! The tables that recognise what the gate has already let through, pure: the host
//! keeps each table in shared data (so every worker sees it), split over shards,
//! each shard one value updated with compare-and-swap.
//!
//! - [`MESSAGES`]: messages recently forwarded (by MsgId, or an event's sender and
//!   time), so WeChat's retries are answered without bothering the backend again.
//! - [`QUERIES`]: signed queries (`signature`, `timestamp`, `nonce`) already used, kept
//!   until their timestamp is no longer fresh, so a query seen once (an access log
//!   keeps full URLs) cannot carry a request to the backend again, whatever its body.
//!
//! A shard is `floor ‖ (identity, expires_at)*`, all big-endian u64, at most
//! `capacity` entries. Memory is bounded and never grows with traffic. When a shard
//! is full, the entry closest to expiry makes room and the shard's `floor` rises to
//! that entry's expiry: anything that would expire no later than the floor can no
//! longer be told apart from something forgotten, so it is refused ([`Lookup::TooOld`])
//! rather than let through. Under a flood the accepted window shrinks from its old
//! end; nothing already used gets through again.

/// How a table is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Shared-data keys the table is split over.
    pub shards: u64,
    /// Entries one shard holds.
    pub capacity: usize,
}

impl Shape {
    /// Entries the whole table holds.
    pub const fn entries(self) -> u64 {
        self.shards * self.capacity as u64
    }

    /// The shard an identity lives in.
    pub fn shard_of(self, identity: u64) -> u64 {
        identity % self.shards.max(1)
    }
}

/// Recently forwarded messages: 64 × 256 = 16,384 in the window (256 KiB).
pub const MESSAGES: Shape = Shape {
    shards: 64,
    capacity: 256,
};

/// Used signed queries: 1,024 × 256 = 262,144 (4 MiB), each kept for
/// `timestamp_tolerance_seconds` after its timestamp. At the default 300 s that holds
/// about 870 pushes/s sustained (262,144 / 301 s); a worker reads and writes one
/// 4 KiB shard per push.
pub const QUERIES: Shape = Shape {
    shards: 1024,
    capacity: 256,
};

const ENTRY_BYTES: usize = 16;
const FLOOR_BYTES: usize = 8;

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Messages,
    Queries,
}

impl Table {
    pub fn shape(self) -> Shape {
        match self {
            Table::Messages => MESSAGES,
            Table::Queries => QUERIES,
        }
    }
}

/// What recording something in a table found, as the host reports it.
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

/// The outcome of looking something up in a shard's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Already in the table: answer it without the backend.
    Duplicate,
    /// Would expire no later than an entry a full shard had to drop: it cannot be told
    /// apart from one that was forgotten, so it must be refused.
    TooOld,
    /// Not seen: store `value` (expired entries dropped, this one added). `evicted`
    /// says the shard was full and its entry closest to expiry made room.
    New { value: Vec<u8>, evicted: bool },
}

/// A shard's stored value, decoded as far as it goes.
struct Shard {
    floor: u64,
    entries: Vec<(u64, u64)>,
}

fn be_u64(bytes: Option<&[u8]>) -> Option<u64> {
    Some(u64::from_be_bytes(bytes?.try_into().ok()?))
}

impl Shard {
    /// Decodes a stored value; a damaged tail (not a whole entry) is ignored. Only
    /// this layout is ever read: the host's keys carry its version.
    fn decode(stored: &[u8]) -> Shard {
        let floor = be_u64(stored.get(..FLOOR_BYTES)).unwrap_or(0);
        let entries = stored
            .get(FLOOR_BYTES..)
            .unwrap_or_default()
            .chunks_exact(ENTRY_BYTES)
            .filter_map(|e| Some((be_u64(e.get(..8))?, be_u64(e.get(8..))?)))
            .collect();
        Shard { floor, entries }
    }

    fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(FLOOR_BYTES + self.entries.len() * ENTRY_BYTES);
        value.extend_from_slice(&self.floor.to_be_bytes());
        for (id, expires) in &self.entries {
            value.extend_from_slice(&id.to_be_bytes());
            value.extend_from_slice(&expires.to_be_bytes());
        }
        value
    }
}

/// Looks `identity` up in a shard's stored value at `now` (Unix seconds); when it is
/// not there (or has expired), returns the value that records it until `expires_at`.
pub fn check_and_record(
    stored: &[u8],
    identity: u64,
    now: u64,
    expires_at: u64,
    shape: Shape,
) -> Lookup {
    let mut shard = Shard::decode(stored);
    shard.entries.retain(|&(_, expires)| expires > now);
    if shard.entries.iter().any(|&(id, _)| id == identity) {
        return Lookup::Duplicate;
    }
    if expires_at <= shard.floor {
        return Lookup::TooOld;
    }
    shard.entries.push((identity, expires_at));
    let mut evicted = false;
    while shard.entries.len() > shape.capacity {
        // Full: the entry closest to expiry goes (the earliest recorded among equals).
        let Some((oldest, expires)) = shard
            .entries
            .iter()
            .enumerate()
            .min_by_key(|&(i, &(_, expires))| (expires, i))
            .map(|(i, &(_, expires))| (i, expires))
        else {
            break;
        };
        shard.entries.remove(oldest);
        shard.floor = shard.floor.max(expires);
        evicted = true;
    }
    Lookup::New {
        value: shard.encode(),
        evicted,
    }
}

/// The shard value without `identity`: something whose forward failed is forgotten,
/// so that WeChat's retry reaches the backend. `None` when it was not there.
pub fn forget(stored: &[u8], identity: u64) -> Option<Vec<u8>> {
    let mut shard = Shard::decode(stored);
    let before = shard.entries.len();
    shard.entries.retain(|&(id, _)| id != identity);
    (shard.entries.len() != before).then(|| shard.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Shape = Shape {
        shards: 4,
        capacity: 8,
    };

    fn record_until(stored: &[u8], id: u64, now: u64, expires_at: u64) -> Vec<u8> {
        match check_and_record(stored, id, now, expires_at, SMALL) {
            Lookup::New { value, .. } => value,
            other => panic!("{id} was expected to be new, not {other:?}"),
        }
    }

    fn record(stored: &[u8], id: u64, now: u64) -> Vec<u8> {
        record_until(stored, id, now, now + 15)
    }

    #[test]
    fn a_forgotten_entry_is_new_again() {
        let t = record(&record(b"", 7, 1000), 8, 1000);
        let t = forget(&t, 7).expect("was there");
        assert_eq!(t.len(), FLOOR_BYTES + ENTRY_BYTES);
        assert!(matches!(
            check_and_record(&t, 7, 1001, 1016, SMALL),
            Lookup::New { .. }
        ));
        assert_eq!(
            check_and_record(&t, 8, 1001, 1016, SMALL),
            Lookup::Duplicate
        );
        assert_eq!(forget(&t, 9), None);
    }

    #[test]
    fn an_entry_seen_before_it_expires_is_a_duplicate() {
        let t = record(b"", 7, 1000);
        assert_eq!(
            check_and_record(&t, 7, 1014, 1029, SMALL),
            Lookup::Duplicate
        );
        assert!(matches!(
            check_and_record(&t, 8, 1001, 1016, SMALL),
            Lookup::New { .. }
        ));
    }

    #[test]
    fn after_it_expires_it_is_new_again_and_the_old_entry_is_dropped() {
        let t = record(b"", 7, 1000);
        let t2 = record(&t, 7, 1015);
        assert_eq!(t2.len(), FLOOR_BYTES + ENTRY_BYTES, "replaced, not kept");
        assert_eq!(
            check_and_record(&t2, 7, 1020, 1035, SMALL),
            Lookup::Duplicate
        );
    }

    #[test]
    fn a_full_shard_stays_bounded_keeps_the_newest_and_says_it_evicted() {
        let mut t = Vec::new();
        for id in 0..SMALL.capacity as u64 {
            t = record_until(&t, id, 1000, 2000 + id);
        }
        let Lookup::New { value, evicted } = check_and_record(&t, 99, 1000, 3000, SMALL) else {
            panic!("new");
        };
        assert!(evicted);
        assert_eq!(value.len(), FLOOR_BYTES + SMALL.capacity * ENTRY_BYTES);
        assert_eq!(
            check_and_record(&value, 99, 1001, 3000, SMALL),
            Lookup::Duplicate
        );
        assert_eq!(
            check_and_record(&value, 1, 1001, 2001, SMALL),
            Lookup::Duplicate,
            "only the entry closest to expiry went"
        );
    }

    #[test]
    fn what_a_full_shard_dropped_is_refused_never_taken_for_new() {
        let mut t = Vec::new();
        for id in 0..=SMALL.capacity as u64 {
            t = record_until(&t, id, 1000, 2000 + id);
        }
        // Entry 0 (expiring at 2000) made room: used again, it cannot be recognised,
        // so it is refused; so is anything that would expire as early.
        assert_eq!(check_and_record(&t, 0, 1001, 2000, SMALL), Lookup::TooOld);
        assert_eq!(check_and_record(&t, 500, 1001, 1999, SMALL), Lookup::TooOld);
        // Fresher ones still come in.
        assert!(matches!(
            check_and_record(&t, 501, 1001, 2001, SMALL),
            Lookup::New { .. }
        ));
        // The floor stays with the shard.
        assert!(matches!(
            check_and_record(&forget(&t, 5).expect("there"), 0, 1001, 2000, SMALL),
            Lookup::TooOld
        ));
    }

    #[test]
    fn a_damaged_shard_value_is_read_as_far_as_it_goes() {
        let mut t = record(b"", 7, 1000);
        t.extend_from_slice(b"xyz");
        assert_eq!(
            check_and_record(&t, 7, 1001, 1016, SMALL),
            Lookup::Duplicate
        );
        for damaged in [&b""[..], b"abc", b"\0\0\0\0\0\0\0\0xyz"] {
            assert!(matches!(
                check_and_record(damaged, 7, 1001, 1016, SMALL),
                Lookup::New { .. }
            ));
        }
    }

    #[test]
    fn identities_spread_over_every_shard() {
        for shape in [MESSAGES, QUERIES] {
            let mut seen = vec![false; shape.shards as usize];
            for id in 0..20_000u64 {
                seen[shape.shard_of(id.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as usize] = true;
            }
            assert!(seen.iter().all(|&s| s));
        }
    }

    #[test]
    fn the_query_table_holds_what_its_doc_says() {
        assert_eq!(QUERIES.entries(), 262_144);
        assert_eq!(QUERIES.entries() / 301, 870);
    }
}
