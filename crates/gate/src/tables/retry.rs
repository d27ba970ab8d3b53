//! The retry table: messages recently forwarded (by MsgId, or an event's sender and
//! time), so that WeChat's retries of a push (it sends one again when it has no
//! answer within 5 s, three times) are answered `success` without bothering the
//! backend again. Kept for `dedupe_seconds` after forwarding.

use super::{Entry, Shape};

/// Recently forwarded messages: 64 × 256 = 16,384 in the window (256 KiB).
pub const SHAPE: Shape = Shape {
    shards: 64,
    capacity: 256,
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
