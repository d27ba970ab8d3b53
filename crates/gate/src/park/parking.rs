//! Parking one push: a place reserved with one CAS on the index, then the record
//! written into its slot. Two workers parking at once each get their own place (the
//! loser of the CAS reads again and reserves the next); a push that gets no place
//! is answered as under `pass`, never lost.

use super::index::{Index, Refused};
use super::record::{ParkedPush, Slot};
use super::{count, parked_now, Area, Effect, NotParked, Note, Outcome, Parcel, ParkStep};
use super::{SharedData, ATTEMPTS};
use crate::metrics::Counter;

/// The first try of a parked push comes this long after it was parked: Envoy has
/// just failed to deliver it.
pub const FIRST_TRY_AFTER_MS: u64 = 1_000;

/// What the reservation came to.
enum Reserved {
    At { seq: u64, ring: u32, count: u64 },
    Full { parked: u64, say: bool },
    Unreadable,
}

impl Area {
    /// Parks `parcel` at `now_ms`: [`Outcome::Parked`], or the reason the caller
    /// answers as under `pass`.
    pub fn park(&self, parcel: Parcel, now_ms: u64, store: &mut impl SharedData) -> ParkStep {
        if self.limits.max_messages == 0 {
            return not_parked(NotParked::Off, Vec::new());
        }
        let next_try = now_ms.saturating_add(FIRST_TRY_AFTER_MS);
        let record = match ParkedPush::new(parcel, 0, &self.account, now_ms, next_try) {
            Ok(r) if r.encoded_len() <= self.limits.max_bytes => r,
            Ok(_) => return self.refused_for_room(store),
            Err(unfit) => {
                let why = NotParked::Unfit(unfit);
                return not_parked(
                    why,
                    vec![count(Counter::ParkFull), Effect::Note(Note::Unfit(unfit))],
                );
            }
        };
        let len = record.encoded_len();
        match self.reserve(len, store) {
            Some(Reserved::At {
                seq,
                ring,
                count: n,
            }) => {
                let record = ParkedPush { seq, ..record };
                if self.write_slot(&record, ring, store) {
                    return ParkStep {
                        outcome: Outcome::Parked,
                        effects: vec![count(Counter::Parked), parked_now(n)],
                    };
                }
                // The place stays reserved and is given up by the redeliverer: a
                // number is never handed out twice, so a given-up mark can never
                // refuse a later push.
                unavailable()
            }
            Some(Reserved::Full { parked, say }) => self.full(parked, say),
            Some(Reserved::Unreadable) | None => unavailable(),
        }
    }

    /// Takes the next place for `len` bytes (or notes the area full, once a burst).
    fn reserve(&self, len: u64, store: &mut impl SharedData) -> Option<Reserved> {
        let mut reserved = None;
        store.update(&self.index_key(), ATTEMPTS, &mut |value| {
            let Some(index) = Index::decode(value) else {
                reserved = Some(Reserved::Unreadable);
                return None;
            };
            match index.reserve(len, &self.limits) {
                Ok((next, seq)) => {
                    reserved = Some(Reserved::At {
                        seq,
                        ring: next.ring,
                        count: next.count(),
                    });
                    Some(next.encode())
                }
                Err(Refused::Full) => {
                    let noted = index.refuse();
                    reserved = Some(Reserved::Full {
                        parked: index.count(),
                        say: noted.is_some(),
                    });
                    noted.map(|i| i.encode())
                }
            }
        })?;
        reserved
    }

    /// A record larger than the whole byte bound: refused for room, like a full area.
    fn refused_for_room(&self, store: &mut impl SharedData) -> ParkStep {
        let mut said = None;
        let _ = store.update(&self.index_key(), ATTEMPTS, &mut |value| {
            let index = Index::decode(value)?;
            let noted = index.refuse();
            said = Some((index.count(), noted.is_some()));
            noted.map(|i| i.encode())
        });
        let (parked, say) = said.unwrap_or((0, false));
        self.full(parked, say)
    }

    fn full(&self, parked: u64, say: bool) -> ParkStep {
        let mut effects = vec![count(Counter::ParkFull)];
        if say {
            effects.push(Effect::Note(Note::Full {
                parked,
                max_messages: self.limits.max_messages,
                max_bytes: self.limits.max_bytes,
            }));
        }
        not_parked(NotParked::Full, effects)
    }

    /// Writes the record into its reserved slot, unless the redeliverer gave the slot
    /// up meanwhile (then the push is not parked).
    fn write_slot(&self, record: &ParkedPush, ring: u32, store: &mut impl SharedData) -> bool {
        let value = record.encode();
        let seq = record.seq;
        let written =
            store.update(
                &self.slot_key(seq, ring),
                ATTEMPTS,
                &mut |current| match Slot::decode(current) {
                    Slot::GivenUp(s) if s == seq => None,
                    _ => Some(value.clone()),
                },
            );
        written == Some(true)
    }
}

fn not_parked(why: NotParked, effects: Vec<Effect>) -> ParkStep {
    ParkStep {
        outcome: Outcome::Pass(why),
        effects,
    }
}

fn unavailable() -> ParkStep {
    not_parked(
        NotParked::Unavailable,
        vec![count(Counter::ParkFull), Effect::Note(Note::Unavailable)],
    )
}
