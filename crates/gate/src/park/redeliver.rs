//! Redelivery: each worker's [`Redeliverer`] is fed its ticks and its calls'
//! answers; the one that holds the area's lease tries the oldest parked push when
//! it is due, one call at a time, and moves on at once after a 2xx.
//!
//! Every change is made with CAS on the small values and checked against the
//! push's number, so a worker whose lease ran out while its call was out (another
//! took over and tried the push again) can neither lose a push nor take one twice:
//! the 2xx that comes second finds the push gone and changes nothing.

use super::index::{Index, Lease, Leaving};
use super::record::{ParkedPush, Slot, REDELIVERED_HEADER};
use super::{count, parked_now, Area, Call, Effect, Note, SharedData};
use super::{ATTEMPTS, CALL_TIMEOUT_MS, GIVE_UP_AFTER_MS, LEASE_MS};
use crate::metrics::Counter;

/// The wait after the first failed try...
pub const FIRST_BACKOFF_MS: u64 = 1_000;
/// ...doubling per failed try up to this, each spread by ±20 %.
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// Pushes dropped (expired, or given up) in one event at most: each costs a few
/// hostcalls.
pub const DROPS_PER_EVENT: usize = 32;

/// How a try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The call's `:status`.
    Status(u32),
    /// No answer: a reset, a timeout, a call that could not be made.
    Failed,
}

/// Which try a call is: the push's number and its try. The host hands it back with
/// the call's answer, so an answer that comes too late for its try is told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TryId {
    pub seq: u64,
    pub attempt: u32,
}

/// The try a worker has out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    seq: u64,
    /// The area's ring when it was tried (fixed while the push is parked).
    ring: u32,
    len: u64,
    attempt: u32,
    parked_at_ms: u64,
    started_ms: u64,
}

/// One worker's part in redelivering one account's parked pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeliverer {
    worker: u64,
    in_flight: Option<InFlight>,
    /// The head slot found not holding its push, and since when: given up after
    /// [`GIVE_UP_AFTER_MS`].
    suspect: Option<(u64, u64)>,
}

/// The wait after `tries` failed tries, `jitter` in 0..=1000 spreading it over ±20 %.
pub fn backoff_ms(tries: u32, jitter: u32) -> u64 {
    let doubling = FIRST_BACKOFF_MS.saturating_mul(1u64 << tries.saturating_sub(1).min(20));
    let permille = 800 + u64::from(jitter.min(1000)) * 400 / 1000;
    doubling.min(MAX_BACKOFF_MS).saturating_mul(permille) / 1000
}

impl Redeliverer {
    /// `worker`: this worker's id in the lease, unique among the proxy's workers
    /// (random); 0 is read as 1, since 0 means nobody.
    pub fn new(worker: u64) -> Redeliverer {
        Redeliverer {
            worker: worker.max(1),
            in_flight: None,
            suspect: None,
        }
    }

    /// The try whose answer is awaited, if one is out.
    pub fn waiting_for(&self) -> Option<TryId> {
        self.in_flight.map(|f| TryId {
            seq: f.seq,
            attempt: f.attempt,
        })
    }

    /// A tick: the gauge from the index; then, if this worker may hold the lease and
    /// there is anything to do, the oldest push's drop or try.
    pub fn on_tick(
        &mut self,
        area: &Area,
        now_ms: u64,
        store: &mut impl SharedData,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        if let Some(f) = self.in_flight {
            if now_ms < f.started_ms.saturating_add(LEASE_MS) {
                return effects;
            }
            // Its answer is not coming (Envoy answers every call in time): the push
            // stays parked, tried again once its next try is due.
            self.in_flight = None;
        }
        let Some(index) = store
            .read(&area.index_key())
            .and_then(|v| Index::decode(&v))
        else {
            return effects;
        };
        effects.push(parked_now(index.count()));
        if index.count() == 0 {
            return effects;
        }
        let lease = store.read(&area.lease_key()).map(|v| Lease::decode(&v));
        if lease.is_some_and(|l| l.open_to(self.worker, now_ms)) {
            self.work(area, now_ms, store, &mut effects);
        }
        effects
    }

    /// The answer to this worker's try `id`. A 2xx forgets the push and goes on with
    /// the next; anything else schedules its next try. An answer to a try given up
    /// already changes nothing.
    pub fn on_answer(
        &mut self,
        area: &Area,
        id: TryId,
        answer: Answer,
        now_ms: u64,
        jitter: u32,
        store: &mut impl SharedData,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.waiting_for() != Some(id) {
            return effects;
        }
        let Some(f) = self.in_flight.take() else {
            return effects;
        };
        match answer {
            Answer::Status(s) if (200..300).contains(&s) => {
                if let Some(n) = self.leave(area, f.seq, f.len, Leaving::Delivered, store) {
                    effects.extend([count(Counter::Redelivered), parked_now(n.0)]);
                }
                self.work(area, now_ms, store, &mut effects);
            }
            _ => {
                let retry = now_ms.saturating_add(backoff_ms(f.attempt, jitter));
                let seq = f.seq;
                let key = area.slot_key(seq, f.ring);
                let _ = store.update(&key, ATTEMPTS, &mut |value| {
                    let mut push = Slot::decode(value).holds(seq)?.clone();
                    push.next_try_ms = retry;
                    Some(push.encode())
                });
                let status = match answer {
                    Answer::Status(s) => Some(s),
                    Answer::Failed => None,
                };
                effects.push(Effect::Note(Note::TryFailed {
                    seq,
                    attempt: f.attempt,
                    status,
                    retry_ms: retry.saturating_sub(now_ms),
                }));
                self.leave_lease(area, retry.min(expiry(area, f.parked_at_ms)), store);
            }
        }
        effects
    }

    /// Holding the lease: drops what is too old or was never written, then tries the
    /// oldest push if it is due; leaves the lease when there is nothing to do yet.
    fn work(
        &mut self,
        area: &Area,
        now_ms: u64,
        store: &mut impl SharedData,
        effects: &mut Vec<Effect>,
    ) {
        if !self.take_lease(area, now_ms, store) {
            return;
        }
        for _ in 0..DROPS_PER_EVENT {
            let Some(index) = store
                .read(&area.index_key())
                .and_then(|v| Index::decode(&v))
            else {
                break;
            };
            if index.count() == 0 {
                self.leave_lease(area, 0, store);
                return;
            }
            let seq = index.head;
            let slot = store
                .read(&area.slot_key(seq, index.ring))
                .map_or(Slot::Empty, |v| Slot::decode(&v));
            let Some(push) = slot.holds(seq).filter(|p| p.account == area.account) else {
                match self.give_up(area, seq, index.ring, &slot, now_ms, store) {
                    Some(dropped) => effects.extend(dropped),
                    None => return,
                }
                continue;
            };
            self.suspect = None;
            let len = push.encoded_len();
            if now_ms >= expiry(area, push.parked_at_ms) {
                effects.extend(self.expire(area, push, len, store));
                continue;
            }
            if push.next_try_ms > now_ms {
                let not_before = push.next_try_ms.min(expiry(area, push.parked_at_ms));
                self.leave_lease(area, not_before, store);
                return;
            }
            match self.try_push(area, push, index.ring, now_ms, store) {
                Some(call) => effects.push(Effect::Dispatch(call)),
                // It left meanwhile, or could not be marked: the next tick looks again.
                None => self.leave_lease(area, now_ms, store),
            }
            return;
        }
        // More to drop than one event does: the next tick goes on.
        self.leave_lease(area, now_ms, store);
    }

    /// Marks the push tried (before the call: a lost answer still counts the try)
    /// and puts the call out; `None` if the push has left meanwhile.
    fn try_push(
        &mut self,
        area: &Area,
        push: &ParkedPush,
        ring: u32,
        now_ms: u64,
        store: &mut impl SharedData,
    ) -> Option<Call> {
        let seq = push.seq;
        let key = area.slot_key(seq, ring);
        let mut tried = None;
        store
            .update(&key, ATTEMPTS, &mut |value| {
                let mut p = Slot::decode(value).holds(seq)?.clone();
                p.tries = p.tries.saturating_add(1);
                // If the answer is lost, not before the lease has run out.
                p.next_try_ms = now_ms.saturating_add(LEASE_MS);
                let value = p.encode();
                tried = Some(p);
                Some(value)
            })
            .filter(|&written| written)?;
        let p = tried?;
        self.in_flight = Some(InFlight {
            seq,
            ring,
            len: p.encoded_len(),
            attempt: p.tries,
            parked_at_ms: p.parked_at_ms,
            started_ms: now_ms,
        });
        Some(call(p, seq))
    }

    /// The oldest push is too old: it leaves, counted, the first of a burst logged.
    fn expire(
        &mut self,
        area: &Area,
        push: &ParkedPush,
        len: u64,
        store: &mut impl SharedData,
    ) -> Vec<Effect> {
        match self.leave(area, push.seq, len, Leaving::Expired, store) {
            Some((n, first)) => {
                let mut effects = vec![count(Counter::ParkExpired), parked_now(n)];
                if first {
                    effects.push(Effect::Note(Note::Expired {
                        max_seconds: area.limits.max_seconds,
                        tries: push.tries,
                    }));
                }
                effects
            }
            None => Vec::new(),
        }
    }

    /// The head slot does not hold its push: reserved and not written yet (wait),
    /// never written (given up after [`GIVE_UP_AFTER_MS`], so its parker may not
    /// write it any more), or unreadable (dropped, counted). `None`: wait, holding
    /// the lease.
    fn give_up(
        &mut self,
        area: &Area,
        seq: u64,
        ring: u32,
        slot: &Slot,
        now_ms: u64,
        store: &mut impl SharedData,
    ) -> Option<Vec<Effect>> {
        let since = match self.suspect {
            Some((s, since)) if s == seq => since,
            _ => {
                self.suspect = Some((seq, now_ms));
                now_ms
            }
        };
        if now_ms < since.saturating_add(GIVE_UP_AFTER_MS) {
            // The lease is kept meanwhile (it outlasts the wait, and this worker
            // ticks again before then): were it left, the next worker would begin
            // its own wait, and workers taking turns could wait for ever.
            return None;
        }
        let key = area.slot_key(seq, ring);
        let marked = store.update(&key, ATTEMPTS, &mut |value| {
            match Slot::decode(value).holds(seq) {
                // Written meanwhile: it is there after all.
                Some(p) if p.account == area.account => None,
                _ => Some(Slot::given_up(seq)),
            }
        });
        match marked {
            Some(true) => {}
            // Written meanwhile: the next round finds it.
            Some(false) => return Some(Vec::new()),
            None => return None,
        }
        self.suspect = None;
        let unreadable = matches!(slot, Slot::Unreadable) || slot.holds(seq).is_some();
        let how = if unreadable {
            Leaving::Expired
        } else {
            Leaving::GivenUp
        };
        let Some((n, _)) = self.leave(area, seq, 0, how, store) else {
            return Some(Vec::new());
        };
        Some(match unreadable {
            true => vec![
                count(Counter::ParkExpired),
                parked_now(n),
                Effect::Note(Note::Unreadable { seq }),
            ],
            false => vec![parked_now(n)],
        })
    }

    /// Push `seq` leaves the area if it is still the oldest, and its slot is emptied.
    /// `Some((parked now, first expiry of a burst))` if this call took it out.
    fn leave(
        &self,
        area: &Area,
        seq: u64,
        len: u64,
        how: Leaving,
        store: &mut impl SharedData,
    ) -> Option<(u64, bool)> {
        let mut left = None;
        let mut ring = 0;
        let took = store.update(&area.index_key(), ATTEMPTS, &mut |value| {
            let index = Index::decode(value)?;
            ring = index.ring;
            let (next, first) = index.drop_head(seq, len, how)?;
            left = Some((next.count(), first));
            Some(next.encode())
        });
        if took != Some(true) {
            return None;
        }
        // Its slot emptied if it still holds it (a given-up mark stays until reused).
        let _ = store.update(&area.slot_key(seq, ring), ATTEMPTS, &mut |value| {
            Slot::decode(value).holds(seq).map(|_| Vec::new())
        });
        left
    }

    /// Takes or renews the lease for one call's time.
    fn take_lease(&self, area: &Area, now_ms: u64, store: &mut impl SharedData) -> bool {
        let until = now_ms.saturating_add(LEASE_MS);
        // One try: a conflict means another worker just took it.
        let taken = store.update(&area.lease_key(), 1, &mut |value| {
            let lease = Lease::decode(value);
            lease
                .open_to(self.worker, now_ms)
                .then(|| lease.taken(self.worker, until).encode())
        });
        taken == Some(true)
    }

    /// Leaves the lease (if still held) with nothing to do before `not_before_ms`.
    fn leave_lease(&self, area: &Area, not_before_ms: u64, store: &mut impl SharedData) {
        let _ = store.update(&area.lease_key(), ATTEMPTS, &mut |value| {
            Lease::decode(value)
                .left_by(self.worker, not_before_ms)
                .map(|l| l.encode())
        });
    }
}

/// When a push parked at `parked_at_ms` is dropped.
fn expiry(area: &Area, parked_at_ms: u64) -> u64 {
    parked_at_ms.saturating_add(area.limits.max_seconds.saturating_mul(1000))
}

/// The call that redelivers push `seq` as try `push.tries`.
fn call(push: ParkedPush, seq: u64) -> Call {
    let id = TryId {
        seq,
        attempt: push.tries,
    };
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), push.path),
        (":authority".to_string(), push.authority),
    ];
    headers.extend(push.headers);
    // Framed by its length, as the push was: a backend that reads a body only by its
    // content-length (as some WSGI servers do) gets all of it.
    headers.push(("content-length".to_string(), push.body.len().to_string()));
    headers.push((REDELIVERED_HEADER.to_string(), push.tries.to_string()));
    Call {
        id,
        cluster: push.cluster,
        headers,
        body: push.body,
        timeout_ms: CALL_TIMEOUT_MS,
    }
}
