//! The API role's token, end to end: one fetch for four workers under load, a token
//! rotated at WeChat mid-traffic (every caller still answered, each call executed once),
//! a stale stable_token answer forcing a refresh, an expired token, WeChat busy, and one
//! token per proxy for a callback instance and an api instance of the same account.

use crate::harness::api::{
    assert_answered, builder, custom_text, json_of, rig, stat, Rig, OFFICIAL,
};
use crate::harness::config::Gate;
use crate::harness::requests::TOKEN;
use crate::harness::wait_until;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn user_info() -> String {
    format!(
        "{}/cgi-bin/user/info?openid=oUser0001&lang=zh_CN",
        OFFICIAL.path
    )
}

fn custom_send() -> String {
    // The caller's own access_token is replaced by the real one whatever it is.
    format!(
        "{}/cgi-bin/message/custom/send?access_token=whatever",
        OFFICIAL.path
    )
}

/// Waits until the Envoy counter `name` is at least `n` (10 s at most).
fn wait_counter(rig: &Rig, name: &str, n: u64) {
    let reached = wait_until(Duration::from_secs(10), || rig.envoy.counter(name) >= n);
    assert!(
        reached.is_some(),
        "{name} did not reach {n}: {:?}",
        rig.envoy.counters()
    );
}

#[test]
fn four_workers_and_two_hundred_calls_fetch_one_token() {
    let rig = builder().account(OFFICIAL, json!({})).workers(4).start();
    let answered = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..25 {
                    // A new connection each: Envoy spreads them over its workers.
                    assert_answered(&rig.get(&user_info()));
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(answered.load(Ordering::SeqCst), 200);
    let calls = rig.mock(OFFICIAL).calls();
    assert_eq!(
        calls["stable_token"], 1,
        "one token for the whole proxy: {calls}"
    );
    assert_eq!(calls["token"], 0, "{calls}");
    assert_eq!(calls["user_info"], 200, "{calls}");
    let busy = rig
        .envoy
        .admin_text("/stats?filter=worker_.\\.downstream_cx_total")
        .lines()
        .filter(|l| {
            l.rsplit(": ")
                .next()
                .and_then(|n| n.trim().parse::<u64>().ok())
                > Some(0)
        })
        .count();
    assert_eq!(busy, 4, "the calls were spread over the four workers");
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.token_fetches"),
        1,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.api_calls.answered"),
        200,
        "{counters:?}"
    );
}

#[test]
fn a_token_rotated_at_wechat_mid_traffic_is_invisible_to_callers() {
    let rig = builder().account(OFFICIAL, json!({})).workers(2).start();
    let sent = AtomicUsize::new(0);
    let rotated = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (rig, sent, rotated) = (&rig, &sent, &rotated);
            s.spawn(move || {
                for i in 0..30 {
                    let n = sent.fetch_add(1, Ordering::SeqCst);
                    let body = custom_text("oUser0001", &format!("m-{t}-{i}"));
                    let r = rig.post_json(&custom_send(), &body);
                    assert_answered(&r);
                    // Rotated once, by the thread whose call is the 40th.
                    if n == 40 && rotated.fetch_add(1, Ordering::SeqCst) == 0 {
                        rig.mock(OFFICIAL).rotate_token();
                    }
                }
            });
        }
    });
    assert_eq!(rotated.load(Ordering::SeqCst), 1);
    let calls = rig.mock(OFFICIAL).calls();
    assert!(
        calls["refused_token"].as_u64() >= Some(1),
        "calls met the old token: {calls}"
    );
    assert_eq!(
        calls["stable_token"], 2,
        "one fetch after the rotation: {calls}"
    );
    // Every message arrived exactly once: a call refused for its token was not executed,
    // and was sent again once.
    let messages = rig.mock(OFFICIAL).messages();
    let mut contents: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["body"]["text"]["content"].as_str())
        .collect();
    contents.sort_unstable();
    contents.dedup();
    assert_eq!(contents.len(), 120, "{messages:?}");
    assert_eq!(messages.len(), 120, "no message twice");
    wait_counter(&rig, "wechat_gate.api_token_retried", 1);
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.token_fetches"),
        2,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.token_forced"),
        0,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.api_calls.answered"),
        120,
        "{counters:?}"
    );
}

#[test]
fn a_stale_stable_token_forces_a_refresh_and_the_call_succeeds() {
    let rig = rig(OFFICIAL, json!({}));
    assert_answered(&rig.get(&user_info()));
    let mock = rig.mock(OFFICIAL);
    // WeChat replaces the token the gate holds, and its next normal stable_token answer
    // hands back the one it replaced: only force_refresh gets a good one.
    mock.set_faults(json!({"stale_stable": 1}));
    mock.rotate_token();
    assert_answered(&rig.get(&user_info()));
    let calls = mock.calls();
    assert_eq!(
        calls["user_info"], 3,
        "the refused call, sent again once: {calls}"
    );
    assert_eq!(calls["stable_token"], 3, "first, stale, forced: {calls}");
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.token_forced"),
        1,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.api_token_retried"),
        1,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.api_calls.answered"),
        2,
        "{counters:?}"
    );
    // Operators see the forced refresh, counted against WeChat's 20 a day.
    let forced = "forced a new one with stable_token force_refresh (1 today";
    assert!(
        rig.envoy.log_text().lines().any(|l| l.contains(forced)),
        "no log line for the forced refresh"
    );
}

#[test]
fn an_expired_token_is_fetched_again_and_the_call_retried_once() {
    let rig = rig(OFFICIAL, json!({}));
    assert_answered(&rig.get(&user_info()));
    rig.mock(OFFICIAL).expire_token();
    assert_answered(&rig.get(&user_info()));
    let calls = rig.mock(OFFICIAL).calls();
    assert_eq!(calls["user_info"], 3, "{calls}");
    assert_eq!(calls["stable_token"], 2, "{calls}");
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.api_token_retried"),
        1,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.token_forced"),
        0,
        "{counters:?}"
    );
}

#[test]
fn wechat_busy_is_answered_as_wechat_said_and_not_repeated() {
    let rig = rig(OFFICIAL, json!({}));
    rig.mock(OFFICIAL)
        .set_faults(json!({"busy": {"custom_send": 1}}));
    let r = rig.post_json(&custom_send(), &custom_text("oUser0001", "busy"));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        json_of(&r)["errcode"],
        -1,
        "WeChat's own answer: {}",
        r.body_text()
    );
    assert_answered(&rig.post_json(&custom_send(), &custom_text("oUser0001", "again")));
    let calls = rig.mock(OFFICIAL).calls();
    assert_eq!(calls["custom_send"], 2, "{calls}");
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.api_calls.errcode"),
        1,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.api_calls.answered"),
        1,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.api_token_retried"),
        0,
        "{counters:?}"
    );
}

#[test]
fn a_callback_instance_and_an_api_instance_of_one_account_share_one_token() {
    // The callback instance's live list (source.wechat_api) and the api instance call
    // the same mock-api for the same AppID.
    let [primary, _] = OFFICIAL.clusters();
    let callback = Gate::new(
        "gate_callback",
        json!({
            "path": "/wechat",
            "appid": OFFICIAL.appid,
            "token": TOKEN,
            "source": {"wechat_api": {
                "secret": {"env": OFFICIAL.secret_env},
                "upstreams": [{"cluster": primary, "authority": "api.weixin.qq.com"}]
            }}
        }),
    );
    let rig = builder()
        .gate(callback)
        .account(OFFICIAL, json!({}))
        .route_prefix("/")
        .workers(2)
        .start();
    let listed = wait_until(Duration::from_secs(10), || {
        rig.mock(OFFICIAL).count("getcallbackip") >= 1
    });
    assert!(listed.is_some(), "the callback instance fetched no list");
    for _ in 0..20 {
        assert_answered(&rig.get(&user_info()));
    }
    let calls = rig.mock(OFFICIAL).calls();
    assert_eq!(
        calls["stable_token"], 1,
        "one token for both roles: {calls}"
    );
    assert_eq!(calls["token"], 0, "{calls}");
    assert!(
        calls.get("refused_token").is_none(),
        "neither role's token was refused: {calls}"
    );
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.token_fetches"),
        1,
        "{counters:?}"
    );
    assert_eq!(rig.envoy.counter("wechat_gate.api_calls.answered"), 20);
}
