//! Read-modify-write of one shared-data value with compare-and-swap, written once:
//! the retry tables and the longest tolerance go through it. (The token machine,
//! `gate::token`, reads and writes its values itself, with the same rule.)
//!
//! A set on a key that does not exist yet succeeds whatever CAS is passed, so two
//! workers could both "create" a value; [`update`] therefore seeds a missing key
//! first with a CAS no live value has, and then works on the key that exists.

use super::proxy::{self, Write};

/// A CAS value no stored entry carries: a set with it succeeds only on a missing key.
pub const ONLY_IF_ABSENT: u32 = u32::MAX;

/// What a change makes of the value it was shown.
pub enum Change<R> {
    /// Store this, and return `R` once it is stored.
    Write(Vec<u8>, R),
    /// Leave the value as it is and return `R`.
    Keep(R),
}

/// The value under `key` (`None` if missing or the host refuses).
pub fn read(key: &str) -> Option<Vec<u8>> {
    proxy::shared_get(key)?.0
}

/// Reads `key` (seeded with `seed` if it is missing), lets `change` decide, and
/// writes its value if the key has not changed since: on a conflict the whole step
/// is tried again, at most `attempts` times. `None` if it never got through.
pub fn update<R>(
    key: &str,
    seed: &[u8],
    attempts: usize,
    mut change: impl FnMut(&[u8]) -> Change<R>,
) -> Option<R> {
    for _ in 0..attempts {
        let (value, cas) = read_seeded(key, seed)?;
        match change(value.as_deref().unwrap_or_default()) {
            Change::Keep(result) => return Some(result),
            Change::Write(new, result) => match proxy::shared_set(key, &new, cas) {
                Write::Done => return Some(result),
                Write::CasMismatch => continue,
                Write::Failed => return None,
            },
        }
    }
    None
}

/// The value and its CAS, seeding the key if it does not exist yet.
fn read_seeded(key: &str, seed: &[u8]) -> Option<(Option<Vec<u8>>, Option<u32>)> {
    let (value, cas) = proxy::shared_get(key)?;
    if cas.is_some() {
        return Some((value, cas));
    }
    let _ = proxy::shared_set(key, seed, Some(ONLY_IF_ABSENT));
    proxy::shared_get(key)
}
