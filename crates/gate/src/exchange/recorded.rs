//! What an exchange records in the retry and replay tables ([`crate::tables`]):
//! a verified request's signed query as used (a second use is a replay, answered
//! like a retry), a push's message as forwarded (WeChat's retry is answered
//! `success`), and what it forgets again when the request never reached the backend.

use super::{now_u64, Circumstances, Effect, Exchange, Flow, Note, Proxy, Step};
use crate::metrics::Counter;
use crate::rejection::{Reason, Rejection};
use crate::tables::replay::QueryUse;
use crate::tables::{retry, Seen, Table};

/// The table entries a request made: its signed query (replays) and its message
/// (WeChat's retries). Forgotten again unless the request reached the backend, so
/// that WeChat's own second try does.
#[derive(Default)]
pub(super) struct Recorded {
    query: Option<u64>,
    message: Option<u64>,
}

impl Recorded {
    pub(super) fn forget(&mut self, proxy: &mut impl Proxy) {
        if let Some(identity) = self.query.take() {
            proxy.forget(Table::Replay, identity);
        }
        if let Some(identity) = self.message.take() {
            proxy.forget(Table::Retry, identity);
        }
    }

    /// Forgets the message only: WeChat's retry (a new query) must be delivered.
    pub(super) fn forget_message(&mut self, proxy: &mut impl Proxy) {
        if let Some(identity) = self.message.take() {
            proxy.forget(Table::Retry, identity);
        }
    }

    /// Keeps both for good: the message reached the backend.
    pub(super) fn keep(&mut self) {
        *self = Recorded::default();
    }
}

impl Exchange {
    /// Records a verified request's signed query as used. `Err` answers the request: it
    /// was used before (a replay, answered like a retry) or can no longer be checked.
    /// `Ok` holds what goes with the request whatever becomes of it.
    pub(super) fn check_replay(
        &mut self,
        ctx: Circumstances<'_>,
        query: QueryUse,
        proxy: &mut impl Proxy,
    ) -> Result<Vec<Effect>, Step> {
        let entry = query.entry(ctx.longest_tolerance);
        match proxy.record(Table::Replay, entry, now_u64(ctx)) {
            Seen::New { evicted } => {
                self.recorded.query = Some(query.identity);
                Ok(if evicted {
                    vec![
                        Effect::Count(Counter::ReplayEvicted),
                        Effect::Note(Note::ReplayTableFull),
                    ]
                } else {
                    Vec::new()
                })
            }
            Seen::Duplicate => Err(Step::new(Flow::Pause)
                .with(Effect::Count(Counter::Replayed))
                .with(Effect::Note(Note::Replayed))
                .success()),
            Seen::TooOld => Err(self.reject(
                Rejection::new(
                    Reason::Stale,
                    "the timestamp is older than the table of used queries reaches back: it \
                     cannot be checked for replay",
                ),
                proxy,
            )),
            Seen::Unrecorded => Ok(vec![
                Effect::Count(Counter::ReplayUnrecorded),
                Effect::Note(Note::ReplayUnrecorded),
            ]),
        }
    }

    /// Records the push's signed query as used, if it has one not yet recorded.
    pub(super) fn record_query(
        &mut self,
        ctx: Circumstances<'_>,
        query: Option<QueryUse>,
        proxy: &mut impl Proxy,
    ) -> Result<Vec<Effect>, Step> {
        match query {
            Some(query) => self.check_replay(ctx, query, proxy),
            None => Ok(Vec::new()),
        }
    }

    /// Records a message against WeChat's retries; answers it if it is one.
    pub(super) fn check_retry(
        &mut self,
        ctx: Circumstances<'_>,
        identity: u64,
        proxy: &mut impl Proxy,
    ) -> Option<Step> {
        let now = now_u64(ctx);
        let entry = retry::entry(identity, now, ctx.config.dedupe_seconds);
        match proxy.record(Table::Retry, entry, now) {
            Seen::Duplicate => {
                // The message itself was delivered: its query stays used.
                self.recorded.keep();
                Some(
                    Step::new(Flow::Pause)
                        .with(Effect::Count(Counter::Deduplicated))
                        .with(Effect::Note(Note::Deduplicated {
                            window_seconds: ctx.config.dedupe_seconds,
                        }))
                        .success(),
                )
            }
            Seen::New { .. } => {
                self.recorded.message = Some(identity);
                None
            }
            Seen::TooOld | Seen::Unrecorded => None,
        }
    }
}
