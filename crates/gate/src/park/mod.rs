//! Parking: a verified push that Envoy could not deliver and that the gate answered
//! `success` (`on_upstream_failure: success`) is kept in the proxy's shared data and
//! redelivered by the gate itself, since WeChat, told `success`, never sends it
//! again. Pure like the rest of the core: shared data comes in through
//! [`SharedData`] (the host's one door for it), time and jitter as arguments, and
//! what to do comes out as [`Effect`]s (a call to make, counts, notes).
//!
//! **What is parked** ([`record`]): what the backend would have got (POST, path and
//! query, the headers as they went upstream with the gate's own, the body:
//! the plaintext under `decrypt`), the cluster and authority of its route, the
//! account, when it was parked, its tries so far and when it is next tried.
//!
//! **The area** ([`index`]), one per account (the configuration's `name`), shared by
//! Envoy's workers and surviving reconfiguration (shared data does; an Envoy
//! restart empties it), under keys `wechat_gate.park.v1.<account>.`:
//! - `index`: head and tail sequence numbers (the parked pushes are `head..tail`,
//!   oldest first), the ring size, the bytes the records take: a few dozen bytes.
//! - `<n>`: slot `n`, the push numbered `seq` with `seq % ring == n`; at most `ring`
//!   slots (≤ [`MAX_MESSAGES`]) ever exist, and a slot left is emptied.
//! - `lease`: which worker redelivers, until when, and not before when.
//!
//! Parking reserves a place with one CAS on the index, then writes the record into
//! its slot; taking the oldest moves the head with one CAS on the index, then empties
//! its slot. No value holding several pushes is ever rewritten.
//!
//! **Bounds**: at most `park.max_messages` pushes, and at most [`Limits::max_bytes`]
//! bytes of records: 64 × `max_body_bytes` (the room for 64 pushes of the largest
//! size a push may have), but never under 8 MiB (with the default 64 KiB: 8 MiB,
//! some 4,000 typical pushes of a couple of KiB, more than the default 1,000) nor
//! over 64 MiB. A push that finds the
//! area full, or parking off (`max_messages: 0`), is not parked: the caller answers
//! it as under `on_upstream_failure: pass`, so WeChat's own retries carry it
//! ([`Outcome::Pass`]).
//!
//! **Redelivery** ([`redeliver`]): one worker at a time (the lease), oldest first, to
//! the push's own cluster and authority, each try marked
//! `x-wechat-gate-redelivered: <try>`; after a failed try (not 2xx, no answer) the
//! push waits about 1 s, doubling to about 30 s, ±20 % jitter. A 2xx forgets it; a
//! push parked `park.max_seconds` ago is dropped, counted and logged once per burst.
//! Delivery is at least once: a push that may have reached the backend before Envoy
//! gave up is parked too, and a try whose answer is lost is tried again.

pub mod index;
pub mod record;
pub mod redeliver;
mod wire;

mod parking;
#[cfg(test)]
mod tests;

pub use record::{Parcel, ParkedPush, Unfit, REDELIVERED_HEADER};
pub use redeliver::{backoff_ms, Answer, Redeliverer, TryId};

use crate::config::Config;
use crate::metrics::{Counter, Gauge};
use std::fmt;

/// The largest `park.max_messages`: the most slots an area may have.
pub const MAX_MESSAGES: u32 = crate::config::MAX_PARK_MAX_MESSAGES;
/// The byte bound is room for this many pushes of `max_body_bytes`...
pub const BODIES_IN_BYTE_BOUND: u64 = 64;
/// ...but never less than this (room for the default 1,000 pushes of several KiB,
/// so that with ordinary pushes the count, not the bytes, is what fills up)...
pub const MIN_MAX_BYTES: u64 = 8 << 20;
/// ...nor more than this.
pub const MAX_MAX_BYTES: u64 = 64 << 20;
/// A redelivery call's timeout: WeChat's own 5 s, what a backend answers a push in.
pub const CALL_TIMEOUT_MS: u64 = 5_000;
/// The lease outlives a call by this much before another worker may take over.
pub const LEASE_MARGIN_MS: u64 = 5_000;
/// A slot reserved and still not written this long after the redeliverer first
/// found it so (its parker failed to write it) is given up.
pub const GIVE_UP_AFTER_MS: u64 = 2_000;
/// CAS attempts on a contended value before giving up.
pub const ATTEMPTS: usize = 8;

/// How long a redeliverer holds the lease for one call.
pub const LEASE_MS: u64 = CALL_TIMEOUT_MS + LEASE_MARGIN_MS;

/// The bounds parking works within, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// 0: parking is off.
    pub max_messages: u32,
    pub max_bytes: u64,
    pub max_seconds: u64,
}

impl Limits {
    pub fn of(config: &Config) -> Limits {
        Limits {
            max_messages: config.park.max_messages.min(MAX_MESSAGES),
            max_bytes: config
                .max_body_bytes
                .saturating_mul(BODIES_IN_BYTE_BOUND)
                .clamp(MIN_MAX_BYTES, MAX_MAX_BYTES),
            max_seconds: config.park.max_seconds,
        }
    }
}

/// The proxy's shared data as parking uses it: the host's one door for it.
pub trait SharedData {
    /// The value under `key` (empty if there is none); `None` if the host refused.
    fn read(&mut self, key: &str) -> Option<Vec<u8>>;
    /// Read-modify-write with CAS: reads `key` (a missing key reads as empty), asks
    /// `change` what to write (`None`: leave it), and writes that only if the key has
    /// not changed since; on a conflict all again, at most `attempts` times.
    /// `Some(true)`: written; `Some(false)`: `change` left it; `None`: never got
    /// through (the host refused, or the key stayed contended).
    fn update(
        &mut self,
        key: &str,
        attempts: usize,
        change: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Option<bool>;
}

/// One account's parking area: where it lives and its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    /// The configuration's `name` (letters, digits, `_`, `-`: safe in a key).
    pub account: String,
    pub limits: Limits,
    prefix: String,
}

impl Area {
    pub fn of(config: &Config) -> Area {
        Area::new(&config.name, Limits::of(config))
    }

    pub fn new(account: &str, limits: Limits) -> Area {
        Area {
            account: account.to_string(),
            limits,
            prefix: format!("wechat_gate.park.v1.{account}."),
        }
    }

    pub fn index_key(&self) -> String {
        format!("{}index", self.prefix)
    }

    pub fn lease_key(&self) -> String {
        format!("{}lease", self.prefix)
    }

    pub fn slot_key(&self, seq: u64, ring: u32) -> String {
        format!("{}{}", self.prefix, seq % u64::from(ring.max(1)))
    }
}

/// What parking a push came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Parked: answer WeChat `success`, the gate redelivers it.
    Parked,
    /// Not parked: answer as under `on_upstream_failure: pass` (Envoy's own 5xx), so
    /// that WeChat tries again.
    Pass(NotParked),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotParked {
    /// `park.max_messages` is 0.
    Off,
    /// No room (by count or by bytes).
    Full,
    /// It can never be parked (see [`Unfit`]).
    Unfit(Unfit),
    /// Shared data refused, stayed contended, or holds an index this build cannot
    /// read.
    Unavailable,
}

/// Parking's answer: the outcome for the caller, and the effects to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkStep {
    pub outcome: Outcome,
    pub effects: Vec<Effect>,
}

/// One thing for the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Make this call, and hand its outcome to [`Redeliverer::on_answer`] with its
    /// [`Call::id`] (a call the host cannot make at all: at once, as
    /// [`Answer::Failed`]).
    Dispatch(Call),
    Count(Counter),
    Set(Gauge, u64),
    Note(Note),
}

/// A redelivery: `dispatch_http_call(cluster, headers, body, timeout)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Call {
    pub id: TryId,
    pub cluster: String,
    /// `:method`, `:path`, `:authority` first, the push's headers, the try's mark.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

impl fmt::Debug for Call {
    /// Where it goes, never what it carries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("id", &self.id)
            .field("cluster", &self.cluster)
            .field("headers", &self.headers.len())
            .field("body_bytes", &self.body.len())
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// A log line. None carries a push's body, headers or path (the sender's OpenID,
/// the message); the burst notes are said once per burst by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The first push of a burst that found the area full.
    Full {
        parked: u64,
        max_messages: u32,
        max_bytes: u64,
    },
    /// A push that can never be parked.
    Unfit(Unfit),
    /// Shared data failed a push's parking.
    Unavailable,
    /// The first push of a burst dropped for age.
    Expired { max_seconds: u64, tries: u32 },
    /// A parked value that could not be read was dropped.
    Unreadable { seq: u64 },
    /// A try failed (`status` `None`: no answer); the push waits `retry_ms`.
    TryFailed {
        seq: u64,
        attempt: u32,
        status: Option<u32>,
        retry_ms: u64,
    },
}

impl Note {
    pub fn level(&self) -> crate::exchange::Level {
        use crate::exchange::Level;
        match self {
            Note::TryFailed { .. } => Level::Debug,
            Note::Full { .. } | Note::Unfit(_) | Note::Unavailable => Level::Warn,
            Note::Expired { .. } | Note::Unreadable { .. } => Level::Error,
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Full {
                parked,
                max_messages,
                max_bytes,
            } => write!(
                f,
                "parking is full ({parked} pushes parked; park.max_messages {max_messages}, \
                 {max_bytes} bytes): a push Envoy could not deliver is answered as under \
                 `pass` so WeChat retries it; counted in wechat_gate.park_full, not logged \
                 again until a push is parked"
            ),
            Note::Unfit(why) => write!(
                f,
                "a push Envoy could not deliver cannot be parked ({}): answered as under `pass`",
                match why {
                    Unfit::TooLarge => "its path or headers are over the parking bounds",
                    Unfit::NotText => "a header is not text",
                    Unfit::NoRoute => "no cluster, authority or path to redeliver it to",
                }
            ),
            Note::Unavailable => f.write_str(
                "a push Envoy could not deliver could not be parked (shared data refused or \
                 stayed contended): answered as under `pass`",
            ),
            Note::Expired { max_seconds, tries } => write!(
                f,
                "a parked push was dropped undelivered after park.max_seconds ({max_seconds} s, \
                 {tries} tries): is the backend down? counted in wechat_gate.park_expired, not \
                 logged again until a push is redelivered"
            ),
            Note::Unreadable { seq } => write!(
                f,
                "parked push {seq} could not be read and was dropped; counted in \
                 wechat_gate.park_expired"
            ),
            Note::TryFailed {
                seq,
                attempt,
                status,
                retry_ms,
            } => write!(
                f,
                "redelivery {attempt} of parked push {seq} failed ({}); next try in {retry_ms} ms",
                match status {
                    Some(s) => format!("the backend answered {s}"),
                    None => "no answer".to_string(),
                }
            ),
        }
    }
}

/// Sets the gauge of pushes parked now.
fn parked_now(count: u64) -> Effect {
    Effect::Set(Gauge::ParkedNow, count)
}

fn count(counter: Counter) -> Effect {
    Effect::Count(counter)
}
