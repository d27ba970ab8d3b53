//! Several filter instances of one account (one AppID) in one Envoy: the demo's Open
//! Platform pair, or one account on two paths. Their token and callback IP list are
//! one per proxy whatever each instance's `refresh_seconds`, `timeout_ms`, `token_api`
//! or secret: mock-api counts the calls WeChat would get, and they must follow one
//! instance's schedule (the shortest `refresh_seconds`), never the sum of the two
//! taking the refresh from each other.

use crate::harness::backend::Backend;
use crate::harness::config::{EnvoyConfig, Gate};
use crate::harness::mock_api::MockApi;
use crate::harness::requests::TOKEN;
use crate::harness::wait_until;
use serde_json::json;
use std::time::{Duration, Instant};

const APPID: &str = "wx0123456789abcdef";
const SECRET: &str = "AppS3cretForTests0001";
/// The shortest `refresh_seconds` of the instances below: it sets the schedule.
const REFRESH: u64 = 2;
/// The window the calls are counted over.
const WINDOW: Duration = Duration::from_secs(10);

/// A gate named `name` on `path` for the account, with `wechat_api` merged into
/// `source.wechat_api`.
fn instance(name: &str, path: &str, wechat_api: serde_json::Value) -> Gate {
    let mut api = json!({
        "secret": {"env": "WECHAT_APPSECRET"},
        "upstreams": [{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}]
    });
    if let (Some(a), Some(extra)) = (api.as_object_mut(), wechat_api.as_object()) {
        a.extend(extra.clone());
    }
    Gate::new(
        name,
        json!({"path": path, "appid": APPID, "token": TOKEN, "source": {"wechat_api": api}}),
    )
}

/// Calls per endpoint made during `WINDOW`, once the first list has loaded.
struct Counted {
    list: u64,
    tokens: u64,
}

/// Envoy (two workers) with the two instances; waits for the first list, then counts
/// the calls mock-api gets over `WINDOW`.
fn count_calls(a: Gate, b: Gate) -> Counted {
    let api = MockApi::start(SECRET, &["--appid", APPID, "--callback-ip", "127.0.0.2"]);
    let backend = Backend::start();
    let envoy = EnvoyConfig::new(backend.port)
        .gate(a)
        .gate(b)
        .vm_env("WECHAT_APPSECRET", SECRET)
        .cluster("wechat_api", api.port)
        .workers(2)
        .start();
    assert!(
        wait_until(Duration::from_secs(10), || envoy
            .counter("wechat_gate.allowlist.refresh_ok")
            >= 1)
        .is_some(),
        "no list loaded:\n{}",
        envoy.log_text()
    );
    let tokens = |api: &MockApi| api.count("stable_token") + api.count("token");
    let (list0, tokens0) = (api.count("getcallbackip"), tokens(&api));
    let start = Instant::now();
    // Counting over a bounded window is the assertion: nothing to wait for but time.
    while start.elapsed() < WINDOW {
        std::thread::sleep(Duration::from_millis(200));
    }
    let counted = Counted {
        list: api.count("getcallbackip") - list0,
        tokens: tokens(&api) - tokens0,
    };
    eprintln!(
        "{} getcallbackip and {} token calls in {} s: {}",
        counted.list,
        counted.tokens,
        WINDOW.as_secs(),
        api.calls()
    );
    let log = envoy.log_text();
    for crash in ["panicked", "critical", "Function: proxy_on"] {
        assert!(!log.contains(crash), "{crash} in the log");
    }
    counted
}

/// One instance's schedule: a list every `REFRESH` s (a tick, up to a second, late),
/// so `WINDOW / REFRESH` calls, give or take one at either end.
fn assert_one_schedule(counted: &Counted) {
    let expected = WINDOW.as_secs() / REFRESH;
    assert!(
        counted.list + 1 >= WINDOW.as_secs() / (REFRESH + 1) && counted.list <= expected + 1,
        "{} getcallbackip calls in {} s: one instance's schedule (every {REFRESH} s) makes {expected}",
        counted.list,
        WINDOW.as_secs()
    );
}

#[test]
fn two_instances_of_one_account_with_different_settings_refresh_on_one_schedule() {
    let a = instance(
        "gate_a",
        "/wechat",
        json!({"refresh_seconds": REFRESH, "timeout_ms": 1000, "token_api": "stable"}),
    );
    let b = instance(
        "gate_b",
        "/wechat-b",
        json!({"refresh_seconds": REFRESH + 3, "timeout_ms": 2500, "token_api": "classic"}),
    );
    let counted = count_calls(a, b);
    assert_one_schedule(&counted);
    assert_eq!(
        counted.tokens, 0,
        "the account's one token is reused by both instances while it lives"
    );
}

#[test]
fn two_instances_of_one_account_with_different_secrets_do_not_storm() {
    // One of them holds a stale AppSecret (the other was updated after a reset): the
    // token the good one fetched serves both, and the stale one's failures back off.
    let a = instance("gate_a", "/wechat", json!({"refresh_seconds": REFRESH}));
    let b = instance(
        "gate_b",
        "/wechat-b",
        json!({"refresh_seconds": REFRESH, "secret": "StaleAppS3cret000000"}),
    );
    let counted = count_calls(a, b);
    assert_one_schedule(&counted);
    assert!(
        counted.tokens <= 1,
        "{} token calls: the token is shared, a refused secret is not retried at tick rate",
        counted.tokens
    );
}
