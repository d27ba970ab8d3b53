//! The table of recently forwarded messages, for answering WeChat's retries without
//! bothering the backend again. Pure: the host keeps the table in shared data (so
//! every worker sees it) split over [`SHARDS`] keys, each a bounded list of
//! `(identity, expires_at)` pairs, and updates a shard with compare-and-swap.
//!
//! Memory is bounded: at most `SHARDS × SHARD_CAPACITY` entries of 16 bytes (256 KiB).
//! When a shard is full the entry closest to expiry makes room, so under a flood the
//! window shrinks rather than the memory growing.

/// Shared-data keys the table is split over.
pub const SHARDS: u64 = 64;
/// Entries one shard holds: 64 × 256 = 16,384 messages in the window.
pub const SHARD_CAPACITY: usize = 256;
const ENTRY_BYTES: usize = 16;

/// The shard an identity lives in.
pub fn shard_of(identity: u64) -> u64 {
    identity % SHARDS
}

/// The outcome of looking a message up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Forwarded within the window: answer it without the backend.
    Duplicate,
    /// Not seen: store this shard value (expired entries dropped, this one added).
    New(Vec<u8>),
}

/// Looks `identity` up in a shard's stored value at `now` (Unix seconds); when it is
/// not there (or has expired), returns the value that records it until `now + ttl`.
/// A stored value that is not a whole number of entries is read as far as it goes.
pub fn check_and_record(stored: &[u8], identity: u64, now: u64, ttl: u64) -> Lookup {
    let mut live: Vec<(u64, u64)> = stored
        .chunks_exact(ENTRY_BYTES)
        .filter_map(|e| {
            let id = u64::from_be_bytes(e.get(..8)?.try_into().ok()?);
            let expires = u64::from_be_bytes(e.get(8..)?.try_into().ok()?);
            Some((id, expires))
        })
        .filter(|&(_, expires)| expires > now)
        .collect();
    if live.iter().any(|&(id, _)| id == identity) {
        return Lookup::Duplicate;
    }
    live.push((identity, now.saturating_add(ttl)));
    // Full: the entry closest to expiry goes (the earliest recorded among equals).
    while live.len() > SHARD_CAPACITY {
        let Some(oldest) = live
            .iter()
            .enumerate()
            .min_by_key(|&(i, &(_, expires))| (expires, i))
            .map(|(i, _)| i)
        else {
            break;
        };
        live.remove(oldest);
    }
    let mut value = Vec::with_capacity(live.len() * ENTRY_BYTES);
    for (id, expires) in live {
        value.extend_from_slice(&id.to_be_bytes());
        value.extend_from_slice(&expires.to_be_bytes());
    }
    Lookup::New(value)
}

/// The shard value without `identity`: a message whose forward failed is forgotten,
/// so that WeChat's retry reaches the backend. `None` when it was not there.
pub fn forget(stored: &[u8], identity: u64) -> Option<Vec<u8>> {
    let mut found = false;
    let mut value = Vec::with_capacity(stored.len());
    for entry in stored.chunks_exact(ENTRY_BYTES) {
        if entry.get(..8) == Some(&identity.to_be_bytes()[..]) {
            found = true;
        } else {
            value.extend_from_slice(entry);
        }
    }
    found.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_message_is_new_again() {
        let t = record(&record(b"", 7, 1000), 8, 1000);
        let t = forget(&t, 7).expect("was there");
        assert_eq!(t.len(), 16);
        assert!(matches!(check_and_record(&t, 7, 1001, 15), Lookup::New(_)));
        assert_eq!(check_and_record(&t, 8, 1001, 15), Lookup::Duplicate);
        assert_eq!(forget(&t, 9), None);
    }

    fn record(stored: &[u8], id: u64, now: u64) -> Vec<u8> {
        match check_and_record(stored, id, now, 15) {
            Lookup::New(v) => v,
            Lookup::Duplicate => panic!("{id} was not expected to be a duplicate"),
        }
    }

    #[test]
    fn a_message_seen_within_the_window_is_a_duplicate() {
        let t = record(b"", 7, 1000);
        assert_eq!(check_and_record(&t, 7, 1014, 15), Lookup::Duplicate);
        assert!(matches!(check_and_record(&t, 8, 1001, 15), Lookup::New(_)));
    }

    #[test]
    fn after_the_window_it_is_new_again_and_the_old_entry_is_dropped() {
        let t = record(b"", 7, 1000);
        let t2 = record(&t, 7, 1015);
        assert_eq!(t2.len(), 16, "the expired entry is replaced, not kept");
        assert_eq!(check_and_record(&t2, 7, 1020, 15), Lookup::Duplicate);
    }

    #[test]
    fn a_full_shard_stays_bounded_and_keeps_the_newest() {
        // All recorded within one window, so none has expired: the oldest make room.
        let mut t = Vec::new();
        let n = SHARD_CAPACITY as u64 + 50;
        for id in 0..n {
            let now = 1000 + id / 100;
            t = record(&t, id, now);
        }
        assert_eq!(t.len(), SHARD_CAPACITY * 16);
        let now = 1000 + n / 100;
        assert_eq!(check_and_record(&t, n - 1, now, 15), Lookup::Duplicate);
        assert!(matches!(check_and_record(&t, 0, now, 15), Lookup::New(_)));
    }

    #[test]
    fn a_damaged_shard_value_is_read_as_far_as_it_goes() {
        let mut t = record(b"", 7, 1000);
        t.extend_from_slice(b"xyz");
        assert_eq!(check_and_record(&t, 7, 1001, 15), Lookup::Duplicate);
        assert!(matches!(
            check_and_record(b"abc", 7, 1001, 15),
            Lookup::New(_)
        ));
    }

    #[test]
    fn identities_spread_over_every_shard() {
        let mut seen = [false; SHARDS as usize];
        for id in 0..1000u64 {
            let shard = shard_of(id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            seen[shard as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
