//! The refresh's shared state (`token::state`, `token::plan`): the `RefreshState` and the
//! published list as any worker (of any version) may have left them in shared data,
//! decoded the way the host does, then driven through every transition with any
//! clock and reply. Nothing panics (overflow included); a lease is never in the past
//! of the time it was taken at, and holds off the other workers while it lasts.
#![no_main]

use arbitrary::Arbitrary;
use gate::token::plan::{Call, FetchPlan, Next};
use gate::token::shared_list::decode_shared_list;
use gate::token::state::{backoff_seconds, Instance, RefreshState};
use gate::token::wechat_api::{parse_callback_ip_reply, AccessToken, ApiFailure};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    /// The shared state's bytes (JSON when another worker wrote it).
    state: Vec<u8>,
    /// The shared list's bytes.
    list: Vec<u8>,
    now: i64,
    config: u64,
    lease_seconds: u64,
    refresh_seconds: u64,
    jitter: u32,
    token: String,
    expires_in: u64,
    forced: bool,
    upstreams: u8,
    replies: Vec<Reply>,
}

#[derive(Arbitrary, Debug)]
enum Reply {
    Token(Result<(), i64>),
    List(Result<(), i64>),
    Transport,
}

fn failure(code: i64) -> ApiFailure {
    ApiFailure::Errcode {
        code,
        message: String::new(),
    }
}

fuzz_target!(|i: Input| {
    let _ = decode_shared_list(&i.list);
    // As the host reads it: what does not parse starts afresh.
    let state: RefreshState = serde_json::from_slice(&i.state).unwrap_or_default();
    let now = i.now;
    let instance = Instance {
        refresh_seconds: i.refresh_seconds,
        settings: i.config,
    };
    let _ = state.is_due(now, &instance);
    let _ = state.next_due(&instance);
    let leased = state.leased(now, i.lease_seconds);
    assert!(leased.lease_until >= now);
    // Taken, the lease holds off every other worker, whatever its settings (unless it
    // is empty, or the clock is at the end of time and the lease saturates to now).
    assert!(!leased.is_due(now, &instance) || i.lease_seconds == 0 || leased.lease_until == now);
    let token = AccessToken {
        value: i.token.clone(),
        expires_in: i.expires_in,
    };
    let with = state.with_token(&token, now, i.forced);
    // A new token is usable at once (unless its life, added to the clock, passes the
    // end of time and saturates).
    let fits = i64::try_from(i.expires_in)
        .ok()
        .and_then(|e| now.checked_add(e))
        .is_some();
    if i.expires_in > 0 && !i.token.is_empty() && fits {
        assert_eq!(with.usable_token(now), Some(i.token.as_str()));
    }
    assert_eq!(with.without_token().usable_token(now), None);
    let _ = state.may_force_token(now);
    let ok = state.succeeded(now);
    assert!(ok.lease_until == 0 && ok.failures == 0 && ok.tried.is_empty());
    // A good list holds off every instance until its interval from now has passed.
    assert!(ok.next_due(&instance) >= now.saturating_add(1) || i.refresh_seconds == 0 || now == 0);
    let failed = state.failed(now, i.jitter, i.config);
    // The settings that failed wait for the backoff (at least a second).
    assert!(failed.next_due(&instance) > now || now == i64::MAX);
    assert!(failed.tried.len() <= state.tried.len().max(4));
    let (noted, _) = failed.note_refusal();
    assert!(noted.refusal_logged && !noted.note_refusal().1);
    let delay = backoff_seconds(state.failures, i.refresh_seconds, i.jitter);
    assert!(delay >= 1);
    // The state goes back to shared data as JSON and reads again as itself.
    for s in [&leased, &with, &ok, &failed, &noted] {
        let json = serde_json::to_vec(s).expect("a state encodes");
        assert_eq!(
            &serde_json::from_slice::<RefreshState>(&json).expect("reads"),
            s
        );
    }
    // One fetch, walked through the replies given.
    let upstreams = usize::from(i.upstreams % 8);
    walk(
        upstreams,
        state.usable_token(now).is_some(),
        state.may_force_token(now),
        &i.replies,
    );
});

/// One fetch's walk across `upstreams`, with `replies` in turn.
fn walk(upstreams: usize, have: bool, force_allowed: bool, replies: &[Reply]) {
    let (mut plan, mut call) = FetchPlan::start(upstreams, have, force_allowed);
    let list = br#"{"ip_list": ["1.2.3.4", "10.0.0.0/16"]}"#;
    for (calls, reply) in replies.iter().enumerate() {
        assert!(calls < 64, "a fetch walks a bounded number of calls");
        assert!(plan.upstream() < upstreams.max(1));
        let next = match (call, reply) {
            (Call::Token { .. }, Reply::Token(r) | Reply::List(r)) => {
                let result = r
                    .map(|()| AccessToken {
                        value: "T".into(),
                        expires_in: 7200,
                    })
                    .map_err(failure);
                plan.after_token(call, &result)
            }
            (Call::List { .. }, Reply::Token(r) | Reply::List(r)) => {
                let result = match r {
                    Ok(()) => parse_callback_ip_reply(Some(200), list),
                    Err(code) => Err(failure(*code)),
                };
                plan.after_list(call, result)
            }
            (Call::Token { .. }, Reply::Transport) => {
                plan.after_token(call, &Err(ApiFailure::Transport))
            }
            (Call::List { .. }, Reply::Transport) => {
                plan.after_list(call, Err(ApiFailure::Transport))
            }
        };
        match next {
            Next::Call(c) => call = c,
            Next::Done(_) | Next::GaveUp(_) => break,
        }
    }
}
