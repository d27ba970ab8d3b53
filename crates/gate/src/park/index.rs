//! The two small values that order and guard an account's parking area, each
//! rewritten whole with CAS: the [`Index`] (which pushes are parked, and how many
//! bytes they take) and the [`Lease`] (which worker redelivers, and from when there
//! is anything to do).

use super::wire::{Reader, Writer};
use super::Limits;

const INDEX: [u8; 2] = *b"WI";
const LEASE: [u8; 2] = *b"WL";

const EXPIRY_NOTED: u8 = 1;
const FULL_NOTED: u8 = 2;

/// The parked pushes are those numbered `head..tail`, oldest first, the push
/// numbered `seq` in slot `seq % ring`. `ring` is set when the area is empty
/// (from `max_messages`) and fixed while it is not, so a slot is reused only once
/// its push has left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Index {
    pub head: u64,
    pub tail: u64,
    pub ring: u32,
    /// What the parked pushes' records take; a slot reserved and never written
    /// counts until the area is next empty.
    pub bytes: u64,
    /// Notes said in the current burst (see [`Index::drop_head`], [`Index::refuse`]).
    pub(super) flags: u8,
}

/// Why a push was not given a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_messages` pushes are parked (or the ring, set under a larger bound, is
    /// full), or `max_bytes` would be passed.
    Full,
}

impl Index {
    /// A missing value (empty) is an empty area; `None`: a value this layout cannot
    /// read, which must not be written over (the pushes it orders would be lost).
    pub fn decode(value: &[u8]) -> Option<Index> {
        if value.is_empty() {
            return Some(Index::default());
        }
        let mut r = Reader::open(value, INDEX)?;
        let index = Index {
            head: r.u64()?,
            tail: r.u64()?,
            ring: r.u32()?,
            bytes: r.u64()?,
            flags: r.u8()?,
        };
        r.end()?;
        (index.head <= index.tail && index.count() <= u64::from(index.ring)).then_some(index)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(INDEX, 29);
        w.u64(self.head);
        w.u64(self.tail);
        w.u32(self.ring);
        w.u64(self.bytes);
        w.u8(self.flags);
        w.done()
    }

    /// Pushes parked (their slots reserved).
    pub fn count(&self) -> u64 {
        self.tail.saturating_sub(self.head)
    }

    /// The place for a record of `len` bytes: the index with it reserved, and its
    /// number.
    pub fn reserve(&self, len: u64, limits: &Limits) -> Result<(Index, u64), Refused> {
        let mut next = *self;
        if self.count() == 0 {
            // Empty: the ring follows the bound in force, and bytes left counted by
            // slots never written are free again.
            next.ring = limits.max_messages;
            next.bytes = 0;
        }
        let room = u64::from(limits.max_messages.min(next.ring));
        let bytes = next.bytes.saturating_add(len);
        if next.count() >= room || bytes > limits.max_bytes {
            return Err(Refused::Full);
        }
        let seq = next.tail;
        next.tail = next.tail.saturating_add(1);
        next.bytes = bytes;
        next.flags &= !FULL_NOTED;
        Ok((next, seq))
    }

    /// A refusal for room: the index to write if this is the first of its burst (the
    /// note is said once until a push is parked again).
    pub fn refuse(&self) -> Option<Index> {
        (self.flags & FULL_NOTED == 0).then_some(Index {
            flags: self.flags | FULL_NOTED,
            ..*self
        })
    }

    /// Push `seq` of `len` bytes leaves the area, if it is the oldest (else it has
    /// left already: nothing is taken twice). `delivered` ends a burst of expiries;
    /// `expired` asks whether this expiry is the first of its burst (to be logged).
    pub fn drop_head(&self, seq: u64, len: u64, how: Leaving) -> Option<(Index, bool)> {
        if self.count() == 0 || self.head != seq {
            return None;
        }
        let mut next = Index {
            head: seq.saturating_add(1),
            bytes: self.bytes.saturating_sub(len),
            ..*self
        };
        let first_expiry = how == Leaving::Expired && self.flags & EXPIRY_NOTED == 0;
        match how {
            Leaving::Delivered => next.flags &= !EXPIRY_NOTED,
            Leaving::Expired => next.flags |= EXPIRY_NOTED,
            Leaving::GivenUp => {}
        }
        if next.count() == 0 {
            next.bytes = 0;
        }
        Some((next, first_expiry))
    }
}

/// How a push leaves the area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// The backend answered 2xx.
    Delivered,
    /// `max_seconds` passed, or its value could not be read.
    Expired,
    /// Its slot was reserved and never written (its parker answered as under `pass`).
    GivenUp,
}

/// Who redelivers: one worker at a time, until `until_ms`; and, once it is free,
/// not before `not_before_ms` (the oldest push's next try, as its last holder left
/// it), so that the other workers look at one small value per tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lease {
    /// The holder's worker id (0: nobody).
    pub holder: u64,
    pub until_ms: u64,
    pub not_before_ms: u64,
}

impl Lease {
    /// A missing or unreadable lease is free: it only coordinates.
    pub fn decode(value: &[u8]) -> Lease {
        let read = Reader::open(value, LEASE).and_then(|mut r| {
            let lease = Lease {
                holder: r.u64()?,
                until_ms: r.u64()?,
                not_before_ms: r.u64()?,
            };
            r.end().map(|()| lease)
        });
        read.unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(LEASE, 24);
        w.u64(self.holder);
        w.u64(self.until_ms);
        w.u64(self.not_before_ms);
        w.done()
    }

    /// `worker` may take (or keep) it at `now_ms`: it holds it, or nobody does and
    /// there is something to do.
    pub fn open_to(&self, worker: u64, now_ms: u64) -> bool {
        let held = self.holder != 0 && now_ms < self.until_ms;
        match held {
            true => self.holder == worker,
            false => now_ms >= self.not_before_ms,
        }
    }

    /// Taken (or kept) by `worker` until `until_ms`.
    pub fn taken(&self, worker: u64, until_ms: u64) -> Lease {
        Lease {
            holder: worker,
            until_ms,
            not_before_ms: self.not_before_ms,
        }
    }

    /// Left by `worker` with nothing to do before `not_before_ms`, if it still holds
    /// it (another worker may have taken it once it ran out).
    pub fn left_by(&self, worker: u64, not_before_ms: u64) -> Option<Lease> {
        (self.holder == worker).then_some(Lease {
            holder: 0,
            until_ms: 0,
            not_before_ms,
        })
    }
}
