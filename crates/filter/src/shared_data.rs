//! Read-modify-write of one shared-data value with compare-and-swap, written once:
//! the retry tables, the longest tolerance and parking go through it. (The token
//! machine, `gate::token`, reads and writes its values itself, with the same rule.)
//!
//! A set on a key that does not exist yet succeeds whatever CAS is passed, so two
//! workers could both "create" a value; [`update`] therefore seeds a missing key
//! first with a CAS no live value has, and then works on the key that exists.

use super::host::{Host, Refused, Shared};

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
pub fn read(host: &impl Host, key: &str) -> Option<Vec<u8>> {
    host.get_shared(key).ok()?.value
}

/// Reads `key` (seeded with `seed` if it is missing), lets `change` decide, and
/// writes its value if the key has not changed since: on a conflict the whole step
/// is tried again, at most `attempts` times. `None` if it never got through.
pub fn update<R>(
    host: &impl Host,
    key: &str,
    seed: &[u8],
    attempts: usize,
    mut change: impl FnMut(&[u8]) -> Change<R>,
) -> Option<R> {
    for _ in 0..attempts {
        let Shared { value, cas } = read_seeded(host, key, seed)?;
        match change(value.as_deref().unwrap_or_default()) {
            Change::Keep(result) => return Some(result),
            Change::Write(new, result) => match host.set_shared(key, &new, cas) {
                Ok(()) => return Some(result),
                Err(Refused::CAS_MISMATCH) => continue,
                Err(_) => return None,
            },
        }
    }
    None
}

/// The value and its CAS, seeding the key if it does not exist yet.
fn read_seeded(host: &impl Host, key: &str, seed: &[u8]) -> Option<Shared> {
    let shared = host.get_shared(key).ok()?;
    if shared.cas.is_some() {
        return Some(shared);
    }
    let _ = host.set_shared(key, seed, Some(ONLY_IF_ABSENT));
    host.get_shared(key).ok()
}
