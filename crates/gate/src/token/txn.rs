//! Read-modify-write of the shared [`RefreshState`] with CAS: read it, decide, write it
//! if nobody wrote since; on a conflict read again, a bounded number of times. Each
//! [`Txn`] says what it changes and what the fetch does once it is settled.

use super::note::Note;
use super::plan::Next;
use super::state::RefreshState;
use super::turn::{Ask, Cas, Effect, Shared, Slot, Turn, Written};
use super::wechat_api::{AccessToken, ApiFailure, CallbackIps};
use super::{Refresh, Waiting};
use crate::metrics::{Counter, Gauge};

/// Tries of a transaction that must get through (one for the lease: a conflict means
/// another worker has just taken it).
const ATTEMPTS: u8 = 8;

/// A transaction on the shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Txn {
    /// Take the fetch lease, if a fetch is due and nobody holds it.
    Lease,
    /// Read the token for a list call on `upstream` (no change).
    TokenFor { upstream: usize },
    /// Keep a new token, then go on.
    KeepToken {
        token: AccessToken,
        forced: bool,
        next: Next,
    },
    /// Drop the token WeChat refused, then go on.
    DropToken { next: Next },
    /// Remember a refused list (logged once per failure streak), then go on.
    Refused {
        upstream: usize,
        failure: ApiFailure,
        next: Next,
    },
    /// The fetch got a good list from `upstream`.
    Succeeded { ips: CallbackIps, upstream: usize },
    /// Every upstream failed.
    Failed { failure: ApiFailure },
}

/// A transaction's write, of `after` over `before`, asked of the host.
pub(super) struct StateWrite {
    txn: Txn,
    /// Tries left, this one included.
    attempts: u8,
    before: RefreshState,
    after: RefreshState,
}

/// How a transaction ended.
pub(super) enum Settled {
    /// Written: the state as read, and as written.
    Wrote(RefreshState, RefreshState),
    /// Nothing to change in the state as read.
    Kept(RefreshState),
    /// Not read, not written, or conflicts every time.
    Failed,
}

impl Refresh {
    /// Starts `txn`: reads the state.
    pub(super) fn transact(&mut self, txn: Txn) -> Turn {
        let attempts = if matches!(txn, Txn::Lease) {
            1
        } else {
            ATTEMPTS
        };
        self.read_state(txn, attempts)
    }

    fn read_state(&mut self, txn: Txn, attempts: u8) -> Turn {
        self.waiting = Waiting::StateRead { txn, attempts };
        Turn::asking(Ask::Read(Slot::State))
    }

    pub(super) fn on_state_read(&mut self, txn: Txn, attempts: u8, value: Option<Shared>) -> Turn {
        let Some(Shared { bytes, cas }) = value else {
            return self.settle(txn, Settled::Failed);
        };
        // A state that does not parse (written by another version) is started afresh,
        // under the same CAS, rather than blocking every fetch forever.
        let before: RefreshState = bytes
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let Some(after) = self.change(&txn, &before) else {
            return self.settle(txn, Settled::Kept(before));
        };
        let Ok(value) = serde_json::to_vec(&after) else {
            return self.settle(txn, Settled::Failed);
        };
        let cas = cas.map_or(Cas::Absent, Cas::Is);
        self.waiting = Waiting::StateWrite(Box::new(StateWrite {
            txn,
            attempts,
            before,
            after,
        }));
        Turn::asking(Ask::Write {
            slot: Slot::State,
            value,
            cas,
        })
    }

    pub(super) fn on_state_written(&mut self, write: StateWrite, outcome: Written) -> Turn {
        let StateWrite {
            txn,
            attempts,
            before,
            after,
        } = write;
        match outcome {
            Written::Done => self.settle(txn, Settled::Wrote(before, after)),
            Written::CasMismatch if attempts > 1 => self.read_state(txn, attempts - 1),
            Written::CasMismatch | Written::Failed => self.settle(txn, Settled::Failed),
        }
    }

    /// The state `txn` makes of `state`; `None`: leave it.
    fn change(&self, txn: &Txn, state: &RefreshState) -> Option<RefreshState> {
        let now = self.clock.unix;
        match txn {
            Txn::Lease => state
                .is_due(now, &self.instance)
                .then(|| state.leased(now, self.lease_seconds())),
            Txn::TokenFor { .. } => None,
            Txn::KeepToken { token, forced, .. } => Some(state.with_token(token, now, *forced)),
            Txn::DropToken { .. } => Some(state.without_token()),
            Txn::Refused { .. } => Some(state.note_refusal().0),
            Txn::Succeeded { .. } => Some(state.succeeded(now)),
            Txn::Failed { .. } => {
                Some(state.failed(now, self.clock.jitter, self.instance.settings))
            }
        }
    }

    /// What follows a settled transaction.
    fn settle(&mut self, txn: Txn, settled: Settled) -> Turn {
        match txn {
            Txn::Lease => match settled {
                Settled::Wrote(_, leased) => self.start_fetch(&leased),
                Settled::Kept(_) | Settled::Failed => Turn::default(),
            },
            Txn::TokenFor { upstream } => {
                let state = match settled {
                    Settled::Wrote(state, _) | Settled::Kept(state) => state,
                    Settled::Failed => RefreshState::default(),
                };
                self.call_list(upstream, state.usable_token(self.clock.unix))
            }
            Txn::KeepToken { next, .. } | Txn::DropToken { next } => self.advance(next),
            Txn::Refused {
                upstream,
                failure,
                next,
            } => {
                let first = match settled {
                    Settled::Wrote(before, _) => !before.refusal_logged,
                    Settled::Kept(_) | Settled::Failed => true,
                };
                let mut turn = Turn::default();
                turn.note(Note::ListRefused {
                    cluster: self.cluster(upstream),
                    failure,
                    kept: self.kept(),
                    first,
                });
                turn.then(self.after_list_reply(next))
            }
            Txn::Succeeded { ips, upstream } => self.published(ips, upstream),
            Txn::Failed { failure } => {
                let now = self.clock.unix;
                let retry_seconds = match settled {
                    Settled::Wrote(_, s) => s.next_due(&self.instance).max(now).saturating_sub(now),
                    Settled::Kept(_) | Settled::Failed => 0,
                };
                let mut turn = Turn::default();
                turn.note(Note::GaveUp {
                    failure,
                    kept: self.kept(),
                    retry_seconds,
                });
                turn.push(Effect::Count(Counter::RefreshFailed));
                turn
            }
        }
    }

    /// A good list is published and the state says so: the log, the stats, and the
    /// list installed here as every worker installs it.
    fn published(&mut self, ips: CallbackIps, upstream: usize) -> Turn {
        let mut turn = Turn::default();
        if !ips.skipped.is_empty() {
            turn.note(Note::Skipped {
                entries: ips.skipped,
            });
        }
        let entries = ips.entries.len();
        turn.note(Note::Published {
            entries,
            cluster: self.cluster(upstream),
            refresh_seconds: self.api.refresh_seconds,
        });
        turn.push(Effect::Count(Counter::RefreshOk));
        turn.push(Effect::Gauge(
            Gauge::AllowlistEntries,
            u64::try_from(entries).unwrap_or(0),
        ));
        turn.push(Effect::Gauge(
            Gauge::AllowlistLastSuccessUnix,
            u64::try_from(self.clock.unix).unwrap_or(0),
        ));
        turn.then(self.read_list(false))
    }
}
