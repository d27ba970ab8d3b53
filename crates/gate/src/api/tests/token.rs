//! When a call uses the shared token, waits, fetches or fails; the fetch itself:
//! failing over, failing with WeChat's advice, forcing a refresh only for the token
//! WeChat refused and only within the budget.

use super::{config, NOW, REAL, SECRET};
use crate::api::token::{
    decide, lease_seconds, leased, FetchStep, TokenFetch, TokenNow, FAILED_FETCH_HOLD_SECONDS,
};
use crate::token::state::{RefreshState, FORCE_REFRESH_PER_DAY};

fn with_token(token: &str) -> RefreshState {
    RefreshState {
        token: Some(token.into()),
        token_valid_until: NOW + 100,
        ..RefreshState::default()
    }
}

fn failed_at(at: i64) -> RefreshState {
    RefreshState {
        token_failed_at: at,
        token_failure: Some("WeChat answered errcode 40164".into()),
        ..RefreshState::default()
    }
}

#[test]
fn a_usable_token_is_used_but_never_the_refused_one() {
    let s = with_token(REAL);
    assert_eq!(decide(&s, NOW, None, NOW), TokenNow::Use(REAL.into()));
    assert_eq!(
        decide(&s, NOW, Some("OLD"), NOW),
        TokenNow::Use(REAL.into())
    );
    assert_eq!(decide(&s, NOW, Some(REAL), NOW), TokenNow::Fetch);
    // Expired: fetched again.
    assert_eq!(decide(&s, NOW + 100, None, NOW), TokenNow::Fetch);
}

#[test]
fn with_no_token_a_call_fetches_or_waits_for_the_lease_holder() {
    let none = RefreshState::default();
    assert_eq!(decide(&none, NOW, None, NOW), TokenNow::Fetch);
    let leased = RefreshState {
        token_lease_until: NOW + 1,
        ..with_token(REAL)
    };
    assert_eq!(decide(&leased, NOW, Some(REAL), NOW), TokenNow::Wait);
    assert_eq!(
        decide(&leased, NOW + 1, Some(REAL), NOW),
        TokenNow::Fetch,
        "lease over"
    );
}

#[test]
fn a_failure_fails_the_calls_that_waited_for_it_and_holds_off_new_fetches() {
    // Newer than the wait: told at once, lease or not.
    assert!(
        matches!(decide(&failed_at(NOW), NOW, None, NOW - 1), TokenNow::Fail(d) if d.contains("40164"))
    );
    let leased = RefreshState {
        token_lease_until: NOW + 5,
        ..failed_at(NOW)
    };
    assert!(matches!(decide(&leased, NOW, None, NOW), TokenNow::Fail(_)));
    // Older than the wait: a new call is failed for the hold-off, then fetches.
    let old = failed_at(NOW - 1);
    assert!(matches!(decide(&old, NOW, None, NOW), TokenNow::Fail(_)));
    let end = NOW - 1 + FAILED_FETCH_HOLD_SECONDS;
    assert_eq!(decide(&old, end, None, end), TokenNow::Fetch);
    // A good token is used whatever failed before.
    let both = RefreshState {
        token: Some(REAL.into()),
        token_valid_until: NOW + 100,
        ..failed_at(NOW)
    };
    assert_eq!(
        decide(&both, NOW, None, NOW - 1),
        TokenNow::Use(REAL.into())
    );
}

#[test]
fn the_lease_drops_only_the_refused_token() {
    let api = &config().api;
    let s = with_token(REAL);
    let taken = leased(&s, api, NOW, Some(REAL));
    assert_eq!(taken.token, None);
    assert_eq!(taken.token_lease_until, NOW + lease_seconds(api));
    let kept = leased(&s, api, NOW, Some("OLDER"));
    assert_eq!(kept.token.as_deref(), Some(REAL));
    assert_eq!(leased(&s, api, NOW, None).token.as_deref(), Some(REAL));
    // Two upstreams, 5 s each, forced once: 20 s and a margin.
    assert_eq!(lease_seconds(api), 22);
}

fn token_reply(token: &str) -> Vec<u8> {
    format!(r#"{{"access_token":"{token}","expires_in":7200}}"#).into_bytes()
}

fn body_of(fetch: &TokenFetch) -> serde_json::Value {
    let out = fetch.request(&config().api).expect("an upstream");
    serde_json::from_slice(out.body.as_deref().expect("a body")).expect("json")
}

#[test]
fn a_fetch_fails_over_on_transport_and_fails_after_the_last_upstream() {
    let api = &config().api;
    let s = RefreshState::default();
    let mut fetch = TokenFetch::new(None);
    let out = fetch.request(api).expect("an upstream");
    assert_eq!(
        (out.cluster.as_str(), out.header(":path")),
        ("a", Some("/cgi-bin/stable_token"))
    );
    assert_eq!(body_of(&fetch)["force_refresh"], false);
    assert_eq!(body_of(&fetch)["secret"], SECRET);
    assert_eq!(fetch.on_reply(api, &s, NOW, None, b""), FetchStep::Again);
    assert_eq!(fetch.request(api).expect("b").cluster, "b");
    let last = fetch.on_reply(api, &s, NOW, Some(503), b"no healthy upstream");
    assert!(
        matches!(&last, FetchStep::Failed(d) if d.contains("could not be reached")),
        "{last:?}"
    );
    assert!(fetch.request(api).is_none());
}

#[test]
fn a_fetch_refused_by_wechat_fails_with_its_advice() {
    let api = &config().api;
    let s = RefreshState::default();
    let mut fetch = TokenFetch::new(None);
    let reply = br#"{"errcode":40164,"errmsg":"invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist rid: 1"}"#;
    let step = fetch.on_reply(api, &s, NOW, Some(200), reply);
    let FetchStep::Failed(detail) = step else {
        panic!("{step:?}");
    };
    assert!(
        detail.contains("40164") && detail.contains("add 203.0.113.7"),
        "{detail}"
    );
    let step = TokenFetch::new(None).on_reply(
        api,
        &s,
        NOW,
        Some(200),
        br#"{"errcode":40125,"errmsg":"invalid appsecret"}"#,
    );
    assert!(
        matches!(&step, FetchStep::Failed(d) if d.contains("40125") && !d.contains(SECRET)),
        "{step:?}"
    );
}

#[test]
fn a_fetch_stores_a_new_token_unforced() {
    let api = &config().api;
    let mut fetch = TokenFetch::new(Some("OLD"));
    let step = fetch.on_reply(
        api,
        &RefreshState::default(),
        NOW,
        Some(200),
        &token_reply(REAL),
    );
    let FetchStep::Store { token, forced } = step else {
        panic!("{step:?}");
    };
    assert_eq!((token.value.as_str(), forced), (REAL, false));
}

#[test]
fn the_refused_token_handed_back_forces_a_refresh_within_the_budget() {
    let api = &config().api;
    let s = RefreshState::default();
    let mut fetch = TokenFetch::new(Some("OLD"));
    assert_eq!(
        fetch.on_reply(api, &s, NOW, Some(200), &token_reply("OLD")),
        FetchStep::Again
    );
    assert!(fetch.forcing());
    assert_eq!(body_of(&fetch)["force_refresh"], true);
    assert_eq!(fetch.request(api).expect("a").cluster, "a");
    let step = fetch.on_reply(api, &s, NOW, Some(200), &token_reply(REAL));
    assert!(matches!(step, FetchStep::Store { forced: true, ref token } if token.value == REAL));
    // Without a refused token, the same token is simply stored.
    let step = TokenFetch::new(None).on_reply(api, &s, NOW, Some(200), &token_reply("OLD"));
    assert!(matches!(step, FetchStep::Store { forced: false, .. }));
}

#[test]
fn no_forced_refresh_once_the_budget_is_spent_or_on_the_classic_api() {
    let api = &config().api;
    let spent = RefreshState {
        forced_today: FORCE_REFRESH_PER_DAY,
        forced_day: NOW.div_euclid(86_400),
        last_forced_token_at: NOW - 3600,
        ..RefreshState::default()
    };
    let recent = RefreshState {
        forced_today: 1,
        forced_day: NOW.div_euclid(86_400),
        last_forced_token_at: NOW - 1,
        ..RefreshState::default()
    };
    for s in [spent, recent] {
        let mut fetch = TokenFetch::new(Some("OLD"));
        let step = fetch.on_reply(api, &s, NOW, Some(200), &token_reply("OLD"));
        assert!(matches!(step, FetchStep::Failed(_)), "{step:?}");
        assert!(!fetch.forcing());
    }
    let mut v = super::base();
    v["wechat_api"]["token_api"] = serde_json::json!("classic");
    let classic = super::parse(&v).expect("valid").api;
    let mut fetch = TokenFetch::new(Some("OLD"));
    let step = fetch.on_reply(
        &classic,
        &RefreshState::default(),
        NOW,
        Some(200),
        &token_reply("OLD"),
    );
    assert!(matches!(step, FetchStep::Failed(_)), "{step:?}");
    let out = fetch.request(&classic).expect("an upstream");
    assert_eq!(out.header(":method"), Some("GET"));
}
