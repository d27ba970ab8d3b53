//! A fetch on this worker: the tick that installs a newer shared list and tries the
//! lease, the walk's calls made one after the other ([`FetchPlan`]), and each reply
//! read and judged.

use super::note::Note;
use super::plan::{Call, FetchPlan, Next};
use super::shared_list::{decode_shared_list, encode_shared_list};
use super::state::RefreshState;
use super::turn::{Ask, Cas, Effect, Shared, Slot, Turn};
use super::txn::Txn;
use super::wechat_api::{self, ApiCall, ApiFailure, CallbackIps};
use super::{Clock, Fetch, Refresh, Waiting, MAX_REPLY_BYTES};
use crate::config::TokenApi;
use crate::metrics::Counter;

impl Refresh {
    /// Reads the shared list; then, from a tick, tries the lease.
    pub(super) fn read_list(&mut self, then_lease: bool) -> Turn {
        self.waiting = Waiting::List { then_lease };
        Turn::asking(Ask::Read(Slot::List))
    }

    pub(super) fn on_list(&mut self, then_lease: bool, value: Option<Shared>) -> Turn {
        let mut turn = self.pick_up(value);
        if !then_lease {
            return turn;
        }
        // Envoy answers every call (a timeout is an answer), but never wait forever.
        let lease = i64::try_from(self.lease_seconds()).unwrap_or(i64::MAX);
        let now = self.clock.unix;
        if self
            .fetch
            .as_ref()
            .is_some_and(|f| now.saturating_sub(f.started_at) > lease)
        {
            turn.note(Note::NoAnswer);
            self.fetch = None;
        }
        if self.fetch.is_some() {
            return turn;
        }
        turn.then(self.transact(Txn::Lease))
    }

    /// Installs the shared list if it changed since this worker last looked (also
    /// right after a reconfiguration, so a new root context does not start blind).
    fn pick_up(&mut self, value: Option<Shared>) -> Turn {
        let Some(Shared {
            bytes: Some(bytes),
            cas,
        }) = value
        else {
            return Turn::default();
        };
        if cas.is_some() && cas == self.list_cas {
            return Turn::default();
        }
        self.list_cas = cas;
        let Some(list) = decode_shared_list(&bytes) else {
            return Turn::default();
        };
        self.has_list = true;
        Turn {
            effects: vec![Effect::Install(list)],
            ask: None,
        }
    }

    /// The lease is taken: the walk begins, from the token if none is usable.
    pub(super) fn start_fetch(&mut self, state: &RefreshState) -> Turn {
        let now = self.clock.unix;
        let token = state.usable_token(now).is_some();
        let force_allowed = self.api.token_api == TokenApi::Stable && state.may_force_token(now);
        let (plan, first) = FetchPlan::start(self.api.upstreams.len(), token, force_allowed);
        self.fetch = Some(Fetch {
            plan,
            call: first,
            call_id: None,
            started_at: now,
        });
        self.advance(Next::Call(first))
    }

    /// Goes on with the walk: the next call, or the end of the fetch.
    pub(super) fn advance(&mut self, next: Next) -> Turn {
        let now = self.clock.unix;
        let Some(fetch) = self.fetch.as_mut() else {
            return Turn::default();
        };
        match next {
            Next::Call(call) => {
                fetch.call = call;
                fetch.call_id = None;
                fetch.started_at = now;
                match call {
                    // The token is read from the state: another worker may have one.
                    Call::List { upstream } => self.transact(Txn::TokenFor { upstream }),
                    Call::Token { force, .. } => {
                        let call_out = self.token_call(force);
                        self.dispatch(call, call_out)
                    }
                }
            }
            Next::Done(ips) => {
                let upstream = fetch.plan.upstream();
                self.fetch = None;
                self.publish(ips, upstream)
            }
            Next::GaveUp(failure) => {
                self.fetch = None;
                self.transact(Txn::Failed { failure })
            }
        }
    }

    /// The list call on `upstream`, with the token the state holds.
    pub(super) fn call_list(&mut self, upstream: usize, token: Option<&str>) -> Turn {
        let call = Call::List { upstream };
        match token {
            Some(token) => self.dispatch(call, wechat_api::callback_ip_call(token)),
            None => self.call_failed(
                call,
                ApiFailure::Errcode {
                    code: 40001,
                    message: "no usable access token".into(),
                },
            ),
        }
    }

    fn token_call(&self, force: bool) -> ApiCall {
        let (appid, secret) = (&self.api.appid, self.api.secret.expose());
        match self.api.token_api {
            TokenApi::Stable => wechat_api::stable_token_call(appid, secret, force),
            TokenApi::Wecom => wechat_api::wecom_token_call(appid, secret),
            TokenApi::Classic => wechat_api::classic_token_call(appid, secret),
        }
    }

    /// Asks the host to make `call` on its upstream.
    fn dispatch(&mut self, call: Call, api_call: ApiCall) -> Turn {
        let Some(upstream) = self.api.upstreams.get(call.upstream()) else {
            return self.call_failed(call, ApiFailure::Transport);
        };
        let outgoing = api_call.to(upstream, self.api.timeout_ms);
        self.waiting = Waiting::Dispatch;
        Turn::asking(Ask::Dispatch(outgoing))
    }

    pub(super) fn on_dispatched(&mut self, result: Result<u32, String>) -> Turn {
        let Some(fetch) = self.fetch.as_mut() else {
            return Turn::default();
        };
        match result {
            Ok(call_id) => {
                fetch.call_id = Some(call_id);
                Turn::default()
            }
            Err(reason) => {
                let call = fetch.call;
                let mut turn = Turn::default();
                turn.note(Note::CannotCall {
                    cluster: self.cluster(call.upstream()),
                    reason,
                });
                turn.then(self.call_failed(call, ApiFailure::Transport))
            }
        }
    }

    /// A call that failed, or could not be made: logged, and the walk goes on.
    fn call_failed(&mut self, call: Call, failure: ApiFailure) -> Turn {
        let mut turn = Turn::default();
        turn.note(self.call_note(call, failure.clone()));
        let Some(fetch) = self.fetch.as_mut() else {
            return turn;
        };
        let next = match call {
            Call::Token { .. } => fetch.plan.after_token(call, &Err(failure)),
            Call::List { .. } => fetch.plan.after_list(call, Err(failure)),
        };
        turn.then(self.advance(next))
    }

    pub(super) fn on_answered(&mut self, call_id: u32, body_size: usize, clock: Clock) -> Turn {
        if self
            .fetch
            .as_ref()
            .is_none_or(|f| f.call_id != Some(call_id))
        {
            // Not this worker's call, or one given up.
            return Turn::default();
        }
        self.clock = clock;
        self.waiting = Waiting::Reply;
        Turn::asking(Ask::ReadReply {
            body_bytes: (body_size <= MAX_REPLY_BYTES).then_some(body_size),
        })
    }

    pub(super) fn on_reply(&mut self, status: Option<u32>, body: &[u8]) -> Turn {
        let Some(fetch) = self.fetch.as_mut() else {
            return Turn::default();
        };
        fetch.call_id = None;
        let call = fetch.call;
        let mut turn = Turn::default();
        match call {
            Call::Token { force, .. } => {
                let result = wechat_api::parse_token_reply(status, body);
                let next = fetch.plan.after_token(call, &result);
                match result {
                    Ok(token) => {
                        turn.push(Effect::Count(Counter::TokenFetches));
                        if force {
                            turn.push(Effect::Count(Counter::TokenForced));
                        }
                        turn.then(self.transact(Txn::KeepToken {
                            token,
                            forced: force,
                            next,
                        }))
                    }
                    Err(failure) => {
                        turn.note(self.call_note(call, failure));
                        turn.then(self.advance(next))
                    }
                }
            }
            Call::List { upstream } => {
                let result = wechat_api::parse_callback_ip_reply(status, body);
                let failure = result.as_ref().err().cloned();
                let next = fetch.plan.after_list(call, result);
                match failure {
                    Some(failure) if failure.is_refused_list() => {
                        turn.push(Effect::Count(Counter::ListRefused));
                        turn.then(self.transact(Txn::Refused {
                            upstream,
                            failure,
                            next,
                        }))
                    }
                    Some(failure) => {
                        turn.note(self.call_note(call, failure));
                        turn.then(self.after_list_reply(next))
                    }
                    None => self.after_list_reply(next),
                }
            }
        }
    }

    /// After a list reply: a token WeChat refused is dropped before the walk goes on.
    pub(super) fn after_list_reply(&mut self, next: Next) -> Turn {
        if self.fetch.as_ref().is_some_and(|f| f.plan.drop_token) {
            return self.transact(Txn::DropToken { next });
        }
        self.advance(next)
    }

    fn call_note(&self, call: Call, failure: ApiFailure) -> Note {
        Note::CallFailed {
            call,
            cluster: self.cluster(call.upstream()),
            failure,
        }
    }

    /// The fetch is over with a list: published for every worker, then recorded.
    fn publish(&mut self, ips: CallbackIps, upstream: usize) -> Turn {
        let value = encode_shared_list(&ips, self.clock.unix);
        let txn = Txn::Succeeded { ips, upstream };
        match value {
            Some(value) => {
                self.waiting = Waiting::ListWrite { txn };
                Turn::asking(Ask::Write {
                    slot: Slot::List,
                    value,
                    cas: Cas::Any,
                })
            }
            None => self.transact(txn),
        }
    }
}
