//! When an API call may use the account's token, waits for one, or fetches one.
//! The token is the one in the account's shared refresh state
//! ([`crate::token::state::RefreshState`]), whichever role fetched it, so a callback
//! instance and an API instance of one account share one token and one fetch.
//!
//! A token WeChat refused is dropped from the state by the worker that takes the
//! fetch (the token lease, one per proxy); calls on every worker wait for a token
//! other than the refused one. A fetch that hands back the very token WeChat refused
//! asks `stable_token` for `force_refresh: true`, within WeChat's daily budget.

use crate::config::{TokenApi, WechatApi};
use crate::token::state::RefreshState;
use crate::token::wechat_api::{self, AccessToken, ApiFailure};

/// After a failed fetch, calls are answered 503 for this long without another fetch
/// (WeChat's token APIs have a daily quota).
pub const FAILED_FETCH_HOLD_SECONDS: i64 = 5;

/// What a call waiting since `since` does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenNow {
    /// Send the call with this token.
    Use(String),
    /// Take the token lease and fetch one.
    Fetch,
    /// Another worker is fetching: wait for its token.
    Wait,
    /// The fetch failed: answer 503 with this detail.
    Fail(String),
}

/// What a call that needs a token does, given the shared state at `now`; `refused`:
/// the token WeChat just refused for it; `since`: when it began to wait.
pub fn decide(state: &RefreshState, now: i64, refused: Option<&str>, since: i64) -> TokenNow {
    if let Some(token) = state.usable_token(now) {
        if Some(token) != refused {
            return TokenNow::Use(token.to_string());
        }
    }
    let failure = state.token_failure.clone().unwrap_or_default();
    if state.token_failure.is_some() && state.token_failed_at >= since {
        return TokenNow::Fail(failure);
    }
    // Another worker fetches a token: the API role's fetch, or the live list's while
    // it has none (it stores the token before it asks for the list).
    let list_fetching = now < state.lease_until && state.usable_token(now).is_none();
    if now < state.token_lease_until || list_fetching {
        return TokenNow::Wait;
    }
    if state.token_failure.is_some()
        && now
            < state
                .token_failed_at
                .saturating_add(FAILED_FETCH_HOLD_SECONDS)
    {
        return TokenNow::Fail(failure);
    }
    TokenNow::Fetch
}

/// Long enough for a fetch on every upstream, forced once: then another worker may
/// take the fetch over.
pub fn lease_seconds(api: &WechatApi) -> i64 {
    let calls = 2 * api.upstreams.len() as u64;
    i64::try_from(calls.saturating_mul(api.timeout_ms) / 1000 + 2).unwrap_or(i64::MAX)
}

/// The state with the token lease taken at `now`, and the refused token dropped.
pub fn leased(
    state: &RefreshState,
    api: &WechatApi,
    now: i64,
    refused: Option<&str>,
) -> RefreshState {
    let mut next = if refused.is_some() && state.token.as_deref() == refused {
        state.without_token()
    } else {
        state.clone()
    };
    next.token_lease_until = now.saturating_add(lease_seconds(api));
    next
}

/// May a fetch that handed back `fetched`, the token refused, force a new one?
pub fn should_force(
    state: &RefreshState,
    api: &WechatApi,
    now: i64,
    fetched: &str,
    refused: Option<&str>,
) -> bool {
    api.token_api == TokenApi::Stable && refused == Some(fetched) && state.may_force_token(now)
}

/// The state with a fetched token, the lease released and any failure forgotten.
pub fn fetched(state: &RefreshState, token: &AccessToken, now: i64, forced: bool) -> RefreshState {
    let mut next = state.with_token(token, now, forced);
    next.token_lease_until = 0;
    next.token_failure = None;
    next.token_failed_at = 0;
    next
}

/// The state after a failed fetch: callers waiting are told `detail`.
pub fn failed(state: &RefreshState, now: i64, detail: String) -> RefreshState {
    RefreshState {
        token_lease_until: 0,
        token_failed_at: now,
        token_failure: Some(detail),
        ..state.clone()
    }
}

/// One token fetch on one worker (it holds the token lease): the token call on each
/// upstream in turn, and once more forced when WeChat hands back the refused token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFetch {
    upstream: usize,
    force: bool,
    /// The token WeChat refused, which a fetch must not hand out again.
    refused: Option<String>,
}

/// What comes of a token call's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchStep {
    /// A token: store it ([`fetched`]); `forced` if it came from a forced refresh.
    Store { token: AccessToken, forced: bool },
    /// Make [`TokenFetch::request`] again (the next upstream, or forced).
    Again,
    /// No token: tell the callers this ([`failed`]).
    Failed(String),
}

impl TokenFetch {
    pub fn new(refused: Option<&str>) -> TokenFetch {
        TokenFetch {
            upstream: 0,
            force: false,
            refused: refused.map(str::to_string),
        }
    }

    /// Whether the call made now is a forced refresh (for the count).
    pub fn forcing(&self) -> bool {
        self.force
    }

    /// The token call for the current upstream; `None` if there is none.
    pub fn request(&self, api: &WechatApi) -> Option<crate::token::Outgoing> {
        let upstream = api.upstreams.get(self.upstream)?;
        let (appid, secret) = (api.appid.as_str(), api.secret.expose());
        let call = match api.token_api {
            TokenApi::Stable => wechat_api::stable_token_call(appid, secret, self.force),
            TokenApi::Classic => wechat_api::classic_token_call(appid, secret),
            TokenApi::Wecom => wechat_api::wecom_token_call(appid, secret),
        };
        Some(call.to(upstream, api.timeout_ms))
    }

    /// Judges the reply to [`TokenFetch::request`], with the shared state as it is
    /// now (for the forced-refresh budget).
    pub fn on_reply(
        &mut self,
        api: &WechatApi,
        state: &RefreshState,
        now: i64,
        status: Option<u32>,
        body: &[u8],
    ) -> FetchStep {
        match wechat_api::parse_token_reply(status, body) {
            Ok(token) if !self.force && self.refused.as_deref() == Some(token.value.as_str()) => {
                if should_force(state, api, now, &token.value, self.refused.as_deref()) {
                    self.force = true;
                    FetchStep::Again
                } else {
                    FetchStep::Failed(format!(
                        "WeChat hands back the token it refused, and the gate may not force \
                             a new one now (it asks stable_token's force_refresh at most {} \
                             times a day, {} s apart)",
                        crate::token::state::FORCE_REFRESH_PER_DAY,
                        crate::token::state::FORCE_REFRESH_EVERY_SECONDS
                    ))
                }
            }
            Ok(token) => FetchStep::Store {
                token,
                forced: self.force,
            },
            Err(ApiFailure::Errcode { code, message }) if code != -1 => {
                FetchStep::Failed(super::refusal::no_token_detail(Some(code), &message))
            }
            Err(_) => {
                self.upstream += 1;
                if self.upstream < api.upstreams.len() {
                    FetchStep::Again
                } else {
                    FetchStep::Failed(super::refusal::no_token_detail(None, ""))
                }
            }
        }
    }
}
