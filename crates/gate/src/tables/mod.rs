//! The tables that recognise what the gate has already let through, pure: the host
//! keeps each table in shared data (so every worker sees it), split over shards,
//! each shard one value updated with compare-and-swap.
//!
//! - [`retry`]: the retry table, messages recently forwarded (by MsgId, or an event's
//!   sender and time), so WeChat's retries are answered without bothering the
//!   backend again.
//! - [`replay`]: the replay table, signed queries (`signature`, `timestamp`, `nonce`)
//!   already used, kept until their timestamp is no longer fresh, so a query seen once
//!   (an access log keeps full URLs) cannot carry a request to the backend again,
//!   whatever its body.
//!
//! This file is what both share: a shard's layout and how something is looked up,
//! recorded and forgotten in it. A shard is `floor ‖ (identity, stamp, expires_at)*`
//! (u64, u32, u32, big-endian; Unix seconds), at most `capacity` entries. `stamp` is
//! what ages an entry: a query's own timestamp, a message's time of forwarding.
//! Memory is bounded and never grows with traffic. When a shard is full, the entry
//! with the oldest stamp makes room and the shard's `floor` rises to that stamp:
//! anything stamped no later than the floor can no longer be told apart from
//! something forgotten, so it is refused ([`Lookup::TooOld`]) rather than let
//! through. Under a flood the accepted window shrinks from its old end; nothing
//! already used gets through again, and accounts with different tolerances sharing a
//! table do not crowd each other's fresh entries out.

pub mod replay;
pub mod retry;

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

const ENTRY_BYTES: usize = 16;
const FLOOR_BYTES: usize = 8;

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// [`retry`]: messages recently forwarded.
    Retry,
    /// [`replay`]: signed queries already used.
    Replay,
}

impl Table {
    pub fn shape(self) -> Shape {
        match self {
            Table::Retry => retry::SHAPE,
            Table::Replay => replay::SHAPE,
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
    /// Stamped no later than an entry a full shard had to drop: it cannot be told
    /// apart from one that was forgotten, so it must be refused.
    TooOld,
    /// Not seen: store `value` (expired entries dropped, this one added). `evicted`
    /// says the shard was full and its oldest entry made room.
    New { value: Vec<u8>, evicted: bool },
}

/// One entry: what it identifies, what ages it, when it is no longer needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub identity: u64,
    /// Unix seconds: a query's timestamp, or when a message was forwarded.
    pub stamp: u64,
    /// Unix seconds from which the entry may be dropped.
    pub expires_at: u64,
}

fn secs(t: u64) -> u32 {
    u32::try_from(t).unwrap_or(u32::MAX)
}

fn be<const N: usize>(bytes: Option<&[u8]>) -> Option<[u8; N]> {
    bytes?.try_into().ok()
}

/// One stored entry, read where it lies (no copy of the shard is decoded: a push
/// reads its shard once, in place, and writes the new value in one go).
#[derive(Clone, Copy)]
struct Stored<'a>(&'a [u8]);

impl Stored<'_> {
    fn identity(self) -> u64 {
        be::<8>(self.0.get(..8)).map_or(0, u64::from_be_bytes)
    }

    fn stamp(self) -> u32 {
        be::<4>(self.0.get(8..12)).map_or(0, u32::from_be_bytes)
    }

    fn expires_at(self) -> u32 {
        be::<4>(self.0.get(12..16)).map_or(0, u32::from_be_bytes)
    }
}

/// A shard's floor (0 when the value is too short to have one).
fn floor_of(stored: &[u8]) -> u32 {
    be::<4>(stored.get(..4)).map_or(0, u32::from_be_bytes)
}

/// A shard's whole entries; a damaged tail (not a whole entry) is ignored. Only
/// this layout is ever read: the host's keys carry its version.
fn entries(stored: &[u8]) -> impl Iterator<Item = Stored<'_>> {
    stored
        .get(FLOOR_BYTES..)
        .unwrap_or_default()
        .chunks_exact(ENTRY_BYTES)
        .map(Stored)
}

/// A shard value: `floor`, then `kept` as they are, then `added`.
fn encode<'a>(
    floor: u32,
    kept: impl Iterator<Item = Stored<'a>>,
    count: usize,
    added: Option<Entry>,
) -> Vec<u8> {
    let mut value = Vec::with_capacity(FLOOR_BYTES + (count + 1) * ENTRY_BYTES);
    value.extend_from_slice(&floor.to_be_bytes());
    value.extend_from_slice(&[0; 4]);
    for entry in kept {
        value.extend_from_slice(entry.0);
    }
    if let Some(e) = added {
        value.extend_from_slice(&e.identity.to_be_bytes());
        value.extend_from_slice(&secs(e.stamp).to_be_bytes());
        value.extend_from_slice(&secs(e.expires_at).to_be_bytes());
    }
    value
}

/// Looks `entry.identity` up in a shard's stored value at `now` (Unix seconds);
/// when it is not there (or has expired), returns the value that records `entry`.
pub fn check_and_record(stored: &[u8], entry: Entry, now: u64, shape: Shape) -> Lookup {
    let now = secs(now);
    let live = |e: &Stored<'_>| e.expires_at() > now;
    let mut count = 0usize;
    for e in entries(stored).filter(live) {
        if e.identity() == entry.identity {
            return Lookup::Duplicate;
        }
        count += 1;
    }
    let mut floor = floor_of(stored);
    let stamp = secs(entry.stamp);
    if stamp <= floor {
        return Lookup::TooOld;
    }
    // Full: the entries with the oldest stamps make room (the earliest recorded
    // among equals, the new entry last), and the floor rises to the newest stamp
    // dropped. One place is normally wanted; more when the shape has shrunk.
    let excess = (count + 1).saturating_sub(shape.capacity);
    let mut dropped = vec![false; if excess > 0 { count + 1 } else { 0 }];
    for _ in 0..excess {
        let candidates = entries(stored)
            .filter(live)
            .map(Stored::stamp)
            .chain(std::iter::once(stamp))
            .enumerate()
            .filter(|(i, _)| !dropped.get(*i).copied().unwrap_or(true));
        let Some((i, oldest)) = candidates.min_by_key(|&(i, stamp)| (stamp, i)) else {
            break;
        };
        if let Some(d) = dropped.get_mut(i) {
            *d = true;
        }
        floor = floor.max(oldest);
    }
    let is_dropped = |i: usize| dropped.get(i).copied().unwrap_or(false);
    let kept = entries(stored)
        .filter(live)
        .enumerate()
        .filter(|&(i, _)| !is_dropped(i))
        .map(|(_, e)| e);
    let added = (!is_dropped(count)).then_some(entry);
    Lookup::New {
        value: encode(floor, kept, count, added),
        evicted: excess > 0,
    }
}

/// The shard value without `identity`: something whose forward failed is forgotten,
/// so that WeChat's retry reaches the backend. `None` when it was not there.
pub fn forget(stored: &[u8], identity: u64) -> Option<Vec<u8>> {
    let count = entries(stored).count();
    entries(stored).find(|e| e.identity() == identity)?;
    let kept = entries(stored).filter(|e| e.identity() != identity);
    Some(encode(floor_of(stored), kept, count, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Shape = Shape {
        shards: 4,
        capacity: 8,
    };

    /// An entry stamped `stamp`, kept until `expires_at`.
    fn at(identity: u64, stamp: u64, expires_at: u64) -> Entry {
        Entry {
            identity,
            stamp,
            expires_at,
        }
    }

    fn look(stored: &[u8], entry: Entry, now: u64) -> Lookup {
        check_and_record(stored, entry, now, SMALL)
    }

    fn put(stored: &[u8], entry: Entry, now: u64) -> Vec<u8> {
        match look(stored, entry, now) {
            Lookup::New { value, .. } => value,
            other => panic!("{entry:?} was expected to be new, not {other:?}"),
        }
    }

    /// A message forwarded at `now`, kept 15 s.
    fn msg(id: u64, now: u64) -> Entry {
        at(id, now, now + 15)
    }

    #[test]
    fn a_forgotten_entry_is_new_again() {
        let t = put(&put(b"", msg(7, 1000), 1000), msg(8, 1000), 1000);
        let t = forget(&t, 7).expect("was there");
        assert_eq!(t.len(), FLOOR_BYTES + ENTRY_BYTES);
        assert!(matches!(look(&t, msg(7, 1001), 1001), Lookup::New { .. }));
        assert_eq!(look(&t, msg(8, 1001), 1001), Lookup::Duplicate);
        assert_eq!(forget(&t, 9), None);
    }

    #[test]
    fn an_entry_seen_before_it_expires_is_a_duplicate() {
        let t = put(b"", msg(7, 1000), 1000);
        assert_eq!(look(&t, msg(7, 1014), 1014), Lookup::Duplicate);
        assert!(matches!(look(&t, msg(8, 1001), 1001), Lookup::New { .. }));
    }

    #[test]
    fn after_it_expires_it_is_new_again_and_the_old_entry_is_dropped() {
        let t = put(b"", msg(7, 1000), 1000);
        let t2 = put(&t, msg(7, 1015), 1015);
        assert_eq!(t2.len(), FLOOR_BYTES + ENTRY_BYTES, "replaced, not kept");
        assert_eq!(look(&t2, msg(7, 1020), 1020), Lookup::Duplicate);
    }

    #[test]
    fn a_full_shard_stays_bounded_keeps_the_newest_and_says_it_evicted() {
        let mut t = Vec::new();
        for id in 0..SMALL.capacity as u64 {
            t = put(&t, at(id, 900 + id, 2000), 1000);
        }
        let Lookup::New { value, evicted } = look(&t, at(99, 950, 3000), 1000) else {
            panic!("new");
        };
        assert!(evicted);
        assert_eq!(value.len(), FLOOR_BYTES + SMALL.capacity * ENTRY_BYTES);
        assert_eq!(look(&value, at(99, 950, 3000), 1001), Lookup::Duplicate);
        assert_eq!(
            look(&value, at(1, 901, 2000), 1001),
            Lookup::Duplicate,
            "only the oldest entry went"
        );
    }

    #[test]
    fn what_a_full_shard_dropped_is_refused_never_taken_for_new() {
        let mut t = Vec::new();
        for id in 0..=SMALL.capacity as u64 {
            t = put(&t, at(id, 900 + id, 2000), 1000);
        }
        // Entry 0 (stamped 900) made room: used again, it cannot be recognised, so it
        // is refused; so is anything stamped as early.
        assert_eq!(look(&t, at(0, 900, 2000), 1001), Lookup::TooOld);
        assert_eq!(look(&t, at(500, 899, 2000), 1001), Lookup::TooOld);
        // Later ones still come in.
        assert!(matches!(
            look(&t, at(501, 901, 2000), 1001),
            Lookup::New { .. }
        ));
        // The floor stays with the shard.
        assert_eq!(
            look(&forget(&t, 5).expect("there"), at(0, 900, 2000), 1001),
            Lookup::TooOld
        );
    }

    #[test]
    fn a_long_tolerance_filling_a_shard_does_not_crowd_out_fresh_queries() {
        // One account keeps queries for a day, another for 300 s, in one table.
        let now = 100_000;
        let mut t = Vec::new();
        for id in 0..SMALL.capacity as u64 {
            let ts = now - 80_000 + id;
            t = put(&t, at(id, ts, ts + 86_401), now);
        }
        // Fresh pushes of the short-tolerance account keep getting in, and what they
        // push out is the day-old entries, not each other.
        for id in 100..108 {
            t = put(&t, at(id, now, now + 301), now);
        }
        for id in 100..108 {
            assert_eq!(look(&t, at(id, now, now + 301), now), Lookup::Duplicate);
        }
    }

    #[test]
    fn a_damaged_shard_value_is_read_as_far_as_it_goes() {
        let mut t = put(b"", msg(7, 1000), 1000);
        t.extend_from_slice(b"xyz");
        assert_eq!(look(&t, msg(7, 1001), 1001), Lookup::Duplicate);
        for damaged in [&b""[..], b"abc", b"\0\0\0\0\0\0\0\0xyz"] {
            assert!(matches!(
                look(damaged, msg(7, 1001), 1001),
                Lookup::New { .. }
            ));
        }
    }

    /// The table as first written (each shard decoded into a list, changed, encoded
    /// again): the reference the in-place reading must agree with, byte for byte.
    mod model {
        use super::super::{be, secs, Entry, Lookup, Shape, ENTRY_BYTES, FLOOR_BYTES};

        fn decode(stored: &[u8]) -> (u32, Vec<(u64, u32, u32)>) {
            let floor = be::<4>(stored.get(..4)).map_or(0, u32::from_be_bytes);
            let entries = stored
                .get(FLOOR_BYTES..)
                .unwrap_or_default()
                .chunks_exact(ENTRY_BYTES)
                .map(|e| {
                    (
                        u64::from_be_bytes(be(e.get(..8)).unwrap()),
                        u32::from_be_bytes(be(e.get(8..12)).unwrap()),
                        u32::from_be_bytes(be(e.get(12..)).unwrap()),
                    )
                })
                .collect();
            (floor, entries)
        }

        fn encode(floor: u32, entries: &[(u64, u32, u32)]) -> Vec<u8> {
            let mut value = floor.to_be_bytes().to_vec();
            value.extend_from_slice(&[0; 4]);
            for (id, stamp, expires) in entries {
                value.extend_from_slice(&id.to_be_bytes());
                value.extend_from_slice(&stamp.to_be_bytes());
                value.extend_from_slice(&expires.to_be_bytes());
            }
            value
        }

        pub fn check_and_record(stored: &[u8], entry: Entry, now: u64, shape: Shape) -> Lookup {
            let (mut floor, mut entries) = decode(stored);
            let now = secs(now);
            entries.retain(|&(_, _, expires)| expires > now);
            if entries.iter().any(|&(id, _, _)| id == entry.identity) {
                return Lookup::Duplicate;
            }
            let stamp = secs(entry.stamp);
            if stamp <= floor {
                return Lookup::TooOld;
            }
            entries.push((entry.identity, stamp, secs(entry.expires_at)));
            let mut evicted = false;
            while entries.len() > shape.capacity {
                let (oldest, stamp) = entries
                    .iter()
                    .enumerate()
                    .min_by_key(|&(i, &(_, stamp, _))| (stamp, i))
                    .map(|(i, &(_, stamp, _))| (i, stamp))
                    .unwrap();
                entries.remove(oldest);
                floor = floor.max(stamp);
                evicted = true;
            }
            Lookup::New {
                value: encode(floor, &entries),
                evicted,
            }
        }

        pub fn forget(stored: &[u8], identity: u64) -> Option<Vec<u8>> {
            let (floor, mut entries) = decode(stored);
            let before = entries.len();
            entries.retain(|&(id, _, _)| id != identity);
            (entries.len() != before).then(|| encode(floor, &entries))
        }
    }

    #[test]
    fn the_in_place_reading_agrees_with_the_decoded_model_byte_for_byte() {
        // A small deterministic generator: few identities and close stamps, so that
        // duplicates, expiries, evictions and floors all happen; shapes that shrink
        // under a stored value too (more than one entry must go).
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for capacity in [0, 1, 2, 3, 8] {
            let mut stored: Vec<u8> = Vec::new();
            for step in 0..20_000u64 {
                let shape = Shape {
                    shards: 1,
                    capacity: if next(50) == 0 {
                        next(4) as usize
                    } else {
                        capacity
                    },
                };
                let now = 1000 + step / 20;
                if next(5) == 0 {
                    let id = next(24);
                    assert_eq!(forget(&stored, id), model::forget(&stored, id));
                    if let Some(v) = forget(&stored, id) {
                        stored = v;
                    }
                    continue;
                }
                let stamp = now - next(30);
                let entry = at(next(24), stamp, stamp + 1 + next(40));
                let got = check_and_record(&stored, entry, now, shape);
                assert_eq!(got, model::check_and_record(&stored, entry, now, shape));
                if let Lookup::New { value, .. } = got {
                    stored = value;
                }
            }
        }
    }

    #[test]
    fn identities_spread_over_every_shard() {
        for shape in [retry::SHAPE, replay::SHAPE] {
            let mut seen = vec![false; shape.shards as usize];
            for id in 0..20_000u64 {
                seen[shape.shard_of(id.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as usize] = true;
            }
            assert!(seen.iter().all(|&s| s));
        }
    }
}
