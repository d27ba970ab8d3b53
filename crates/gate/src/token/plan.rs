//! The fetching worker's walk through one fetch: a token (if none is usable), then the
//! callback list, on one upstream after the other, with the errcode rules of
//! [`advice`]. Pure: [`super::Refresh`] feeds it each reply and makes the
//! call it names.

use super::wechat_api::{advice, AccessToken, Advice, ApiFailure, CallbackIps};

/// One call the fetching worker is to make (the walk's step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Get an access token from upstream `upstream` (`force`: stable_token's force_refresh).
    Token { upstream: usize, force: bool },
    /// Get the callback list from upstream `upstream` with the current token.
    List { upstream: usize },
}

impl Call {
    /// The index of the upstream it is made on.
    pub fn upstream(self) -> usize {
        match self {
            Call::Token { upstream, .. } | Call::List { upstream } => upstream,
        }
    }
}

/// What to do after a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Call(Call),
    /// The fetch is over with a list.
    Done(CallbackIps),
    /// Every upstream failed; the last failure says why.
    GaveUp(ApiFailure),
}

/// The fetching worker's walk: token (if none is usable) then list, on one upstream;
/// on failure the next upstream; `-1` is retried once on the same upstream; a token
/// WeChat calls bad or expired is renewed once (stable: `force_refresh` if allowed).
#[derive(Debug, Clone)]
pub struct FetchPlan {
    upstreams: usize,
    upstream: usize,
    force_allowed: bool,
    busy_retried: bool,
    token_renewed: bool,
    /// The token should be dropped (WeChat refused it).
    pub drop_token: bool,
    /// The token step asked for force_refresh (to record when it succeeds).
    pub forced: bool,
}

impl FetchPlan {
    /// Starts a fetch; `have_token`: a usable token is in the shared state.
    pub fn start(upstreams: usize, have_token: bool, force_allowed: bool) -> (FetchPlan, Call) {
        let plan = FetchPlan {
            upstreams: upstreams.max(1),
            upstream: 0,
            force_allowed,
            busy_retried: false,
            token_renewed: false,
            drop_token: false,
            forced: false,
        };
        let first = if have_token {
            Call::List { upstream: 0 }
        } else {
            Call::Token {
                upstream: 0,
                force: false,
            }
        };
        (plan, first)
    }

    pub fn upstream(&self) -> usize {
        self.upstream
    }

    /// After a token reply.
    pub fn after_token(&mut self, call: Call, result: &Result<AccessToken, ApiFailure>) -> Next {
        match result {
            Ok(_) => {
                self.drop_token = false;
                self.forced = matches!(call, Call::Token { force: true, .. });
                Next::Call(Call::List {
                    upstream: self.upstream,
                })
            }
            Err(failure) => self.after_failure(call, failure.clone()),
        }
    }

    /// After a list reply.
    pub fn after_list(&mut self, call: Call, result: Result<CallbackIps, ApiFailure>) -> Next {
        match result {
            Ok(ips) => Next::Done(ips),
            Err(failure @ ApiFailure::Errcode { code, .. }) if advice(code) == Advice::NewToken => {
                self.drop_token = true;
                if self.token_renewed {
                    return self.next_upstream(true, failure);
                }
                self.token_renewed = true;
                Next::Call(Call::Token {
                    upstream: self.upstream,
                    force: self.force_allowed,
                })
            }
            Err(failure) => self.after_failure(call, failure),
        }
    }

    fn after_failure(&mut self, call: Call, failure: ApiFailure) -> Next {
        if let ApiFailure::Errcode { code, .. } = failure {
            if advice(code) == Advice::Retry && !self.busy_retried {
                self.busy_retried = true;
                return Next::Call(call);
            }
        }
        self.next_upstream(matches!(call, Call::Token { .. }), failure)
    }

    /// Fails over to the next upstream, from the token if the token failed or was
    /// refused, else straight to the list.
    fn next_upstream(&mut self, token_failed: bool, failure: ApiFailure) -> Next {
        self.upstream += 1;
        self.busy_retried = false;
        if self.upstream >= self.upstreams {
            return Next::GaveUp(failure);
        }
        Next::Call(if token_failed || self.drop_token {
            Call::Token {
                upstream: self.upstream,
                force: false,
            }
        } else {
            Call::List {
                upstream: self.upstream,
            }
        })
    }
}
