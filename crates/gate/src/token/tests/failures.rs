//! The machine driven through a fake proxy ([`super::fake`]) when WeChat or the host
//! fails: failover, refused tokens, the backoff, refused lists, what is logged.

use super::fake::*;
use crate::exchange::Level;
use crate::metrics::Counter;
use crate::token::plan::Call;
use crate::token::wechat_api::ApiFailure;
use crate::token::{Ask, Effect, Event, Kept, Note, MAX_REPLY_BYTES};
use serde_json::json;

#[test]
fn a_failed_call_fails_over_to_the_next_upstream() {
    let mut proxy = Proxy::at(T0);
    let mut w = Worker::new(api(json!({})));
    w.tick(&mut proxy);
    let effects = w.reply(&mut proxy, None, "");
    assert_eq!(
        notes(&effects),
        [&Note::CallFailed {
            call: Call::Token {
                upstream: 0,
                force: false
            },
            cluster: "wechat_api".into(),
            failure: ApiFailure::Transport
        }]
    );
    assert_eq!(
        (w.last_path().as_str(), w.last_cluster()),
        ("/cgi-bin/stable_token", "wechat_api_dr")
    );
    let (_, call) = w.calls.last().expect("call");
    assert_eq!(call.header(":authority"), Some("api2.weixin.qq.com"));
    w.ok(&mut proxy, TOKEN_REPLY);
    assert_eq!(w.last_cluster(), "wechat_api_dr");
    // The last upstream failing too ends the fetch, the lease released.
    let effects = w.reply(&mut proxy, Some(502), "");
    assert!(effects.contains(&Effect::Count(Counter::RefreshFailed)));
    assert!(w.in_flight.is_none());
    let state = proxy.state(&w.refresh);
    assert_eq!((state.failures, state.lease_until), (1, 0));
}

#[test]
fn a_failed_list_call_fails_over_with_the_token_it_has() {
    let mut proxy = Proxy::at(T0);
    let mut w = fetched(&mut proxy);
    proxy.now += 3600;
    w.tick(&mut proxy);
    assert!(w.last_path().starts_with("/cgi-bin/getcallbackip"));
    w.reply(&mut proxy, Some(503), "");
    assert_eq!(w.last_cluster(), "wechat_api_dr");
    assert!(w.last_path().starts_with("/cgi-bin/getcallbackip"));
    assert_eq!(w.count_calls("/cgi-bin/stable_token"), 1);
}

#[test]
fn a_call_the_host_refuses_is_logged_and_the_next_upstream_tried() {
    let mut proxy = Proxy::at(T0);
    proxy.refuse_calls = 1;
    let mut w = Worker::new(api(json!({})));
    let effects = w.tick(&mut proxy);
    assert_eq!(
        notes(&effects).first().map(|n| (n.level(), n.to_string())),
        Some((
            Level::Warn,
            "callback IP list: cannot call cluster wechat_api (BadArgument): is it defined?"
                .to_string()
        ))
    );
    assert_eq!(w.calls.len(), 1);
    assert_eq!(w.last_cluster(), "wechat_api_dr");
}

#[test]
fn a_token_wechat_refuses_is_dropped_and_a_new_one_fetched() {
    for code in [40001, 40014, 42001] {
        let mut proxy = Proxy::at(T0);
        let mut w = Worker::new(api(json!({})));
        w.tick(&mut proxy);
        w.ok(&mut proxy, TOKEN_REPLY);
        let effects = w.ok(&mut proxy, &errcode_reply(code));
        assert_eq!(proxy.state(&w.refresh).token, None, "{code}");
        assert!(
            notes(&effects).iter().any(|n| n
                .to_string()
                .ends_with("the token is dropped and a new one fetched")),
            "{code}: {effects:?}"
        );
        // Renewed on the same upstream, forced (never forced before today).
        assert_eq!(w.last_cluster(), "wechat_api");
        let (_, call) = w.calls.last().expect("call");
        let body: serde_json::Value =
            serde_json::from_slice(call.body.as_deref().unwrap_or_default()).expect("json");
        assert_eq!(body["force_refresh"], true, "{code}");
        w.ok(
            &mut proxy,
            r#"{"access_token":"ACCESS-TOKEN-2","expires_in":7200}"#,
        );
        let state = proxy.state(&w.refresh);
        assert_eq!(state.usable_token(T0), Some("ACCESS-TOKEN-2"));
        assert_eq!(state.last_forced_token_at, T0);
        assert!(installs(&w.ok(&mut proxy, LIST_REPLY)), "{code}");
    }
}

#[test]
fn an_operators_errcode_keeps_the_token() {
    let mut proxy = Proxy::at(T0);
    let mut w = Worker::new(api(json!({})));
    w.tick(&mut proxy);
    w.ok(&mut proxy, TOKEN_REPLY);
    let effects = w.ok(&mut proxy, &errcode_reply(40164));
    assert_eq!(proxy.state(&w.refresh).usable_token(T0), Some(TOKEN));
    assert!(notes(&effects)
        .iter()
        .any(|n| n.to_string().contains("IP whitelist")));
    assert_eq!(w.last_cluster(), "wechat_api_dr");
    assert!(w.last_path().starts_with("/cgi-bin/getcallbackip"));
}

#[test]
fn the_backoff_doubles_is_capped_and_starts_again_after_a_good_list() {
    let mut proxy = Proxy::at(T0);
    let mut w = Worker::new(api(json!({"refresh_seconds": 60})));
    w.tick(&mut proxy);
    let mut delays = Vec::new();
    for _ in 0..8 {
        let effects = fail_fetch(&mut w, &mut proxy);
        let Some(Note::GaveUp { retry_seconds, .. }) = notes(&effects).last().copied() else {
            panic!("{effects:?}");
        };
        let delay = seconds_to_next_fetch(&mut w, &mut proxy);
        assert_eq!(*retry_seconds, delay, "the note tells the real delay");
        delays.push(delay);
    }
    assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
    w.ok(&mut proxy, TOKEN_REPLY);
    w.ok(&mut proxy, LIST_REPLY);
    assert_eq!(seconds_to_next_fetch(&mut w, &mut proxy), 60);
    fail_fetch(&mut w, &mut proxy);
    assert_eq!(seconds_to_next_fetch(&mut w, &mut proxy), 2);
}

#[test]
fn the_backoff_is_spread_by_the_jitter_within_a_fifth_either_way() {
    let mut spread = Vec::new();
    for jitter in [0, 500, 1000] {
        let mut proxy = Proxy::at(T0);
        proxy.jitter = jitter;
        let mut w = Worker::new(api(json!({})));
        w.tick(&mut proxy);
        for _ in 0..4 {
            fail_fetch(&mut w, &mut proxy);
            seconds_to_next_fetch(&mut w, &mut proxy);
        }
        fail_fetch(&mut w, &mut proxy);
        spread.push(seconds_to_next_fetch(&mut w, &mut proxy));
    }
    assert_eq!(spread, [25, 32, 38], "the fifth failure: 32 s ± 20 %");
}

#[test]
fn a_reply_larger_than_the_bound_is_not_read() {
    let mut proxy = Proxy::at(T0);
    let mut w = Worker::new(api(json!({})));
    w.tick(&mut proxy);
    let call_id = w.in_flight.take().expect("in flight");
    let turn = w.refresh.on(Event::Answered {
        call_id,
        body_size: MAX_REPLY_BYTES + 1,
        clock: proxy.clock(),
    });
    assert_eq!(turn.ask, Some(Ask::ReadReply { body_bytes: None }));
    let effects = w.feed(
        &mut proxy,
        Event::Reply {
            status: Some(200),
            body: Vec::new(),
        },
    );
    assert!(notes(&effects).iter().any(|n| matches!(
        n,
        Note::CallFailed {
            failure: ApiFailure::BadReply,
            ..
        }
    )));
    assert_eq!(w.last_cluster(), "wechat_api_dr");
}

#[test]
fn a_refused_list_is_counted_each_time_and_logged_once_per_streak() {
    let mut proxy = Proxy::at(T0);
    let mut w = Worker::new(api(json!({})));
    w.tick(&mut proxy);
    w.ok(&mut proxy, TOKEN_REPLY);
    let broad = r#"{"ip_list":["1.2.3.4","0.0.0.0/0"]}"#;
    let first = w.ok(&mut proxy, broad);
    let second = w.ok(&mut proxy, broad);
    for (effects, level) in [(&first, Level::Warn), (&second, Level::Debug)] {
        assert!(effects.contains(&Effect::Count(Counter::ListRefused)));
        let refused = notes(effects)
            .into_iter()
            .find(|n| matches!(n, Note::ListRefused { .. }))
            .expect("noted");
        assert_eq!(refused.level(), level, "{refused}");
    }
    let gave_up = notes(&second).last().copied().cloned().expect("note");
    assert!(matches!(
        gave_up,
        Note::GaveUp {
            kept: Kept::Static,
            ..
        }
    ));
    assert_eq!(gave_up.level(), Level::Debug);
    assert!(!installs(&w.effects));
}

#[test]
fn no_note_or_call_shown_in_debug_holds_the_secret_or_the_token() {
    let mut proxy = Proxy::at(T0);
    let mut w = Worker::new(api(json!({})));
    w.tick(&mut proxy);
    w.ok(&mut proxy, TOKEN_REPLY);
    w.ok(&mut proxy, &errcode_reply(40001));
    w.ok(&mut proxy, TOKEN_REPLY);
    w.ok(&mut proxy, &errcode_reply(40164));
    w.ok(&mut proxy, &errcode_reply(-1));
    fail_fetch(&mut w, &mut proxy);
    let shown = format!(
        "{} {:?} {:?} {:?}",
        w.notes()
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        w.effects,
        w.calls,
        w.asked
    );
    assert!(shown.contains("callback IP list"), "{shown}");
    for secret in [SECRET, TOKEN] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}
