//! The retry table: messages recently forwarded (by MsgId, or an event's sender and
//! time), so that WeChat's retries of a push (it sends one again when it has no
//! answer within 5 s, three times) are answered `success` without bothering the
//! backend again. Kept for `dedupe_seconds` after forwarding.

use super::{Entry, Shape};

/// Recently forwarded messages: 1,024 × 32 = 32,768 in the window (512 KiB), each
/// kept `dedupe_seconds`; a push reads and writes one shard of at most 520 bytes.
pub const SHAPE: Shape = Shape {
    shards: 1024,
    capacity: 32,
};

/// The entry of a message whose identity is `identity`, forwarded at `now` (Unix
/// seconds): aged by that time, kept `window_seconds` (`dedupe_seconds`).
pub fn entry(identity: u64, now: u64, window_seconds: u64) -> Entry {
    Entry {
        identity,
        stamp: now,
        expires_at: now.saturating_add(window_seconds),
    }
}
