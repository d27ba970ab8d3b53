//! The live WeChat callback IP list, end to end: Envoy 1.40 fetches the access token
//! and `getcallbackip` from `wechat-gate mock-api` through its own clusters, shares
//! the list across workers, refreshes it, fails over and keeps the last good list.

use crate::harness::backend::Backend;
use crate::harness::config::{EnvoyConfig, Gate};
use crate::harness::envoy::Envoy;
use crate::harness::mock_api::{token_of, MockApi};
use crate::harness::requests::{fresh, TOKEN};
use crate::harness::{closed_port, merged, now, wait_until};
use serde_json::json;
use std::time::Duration;

const APPID: &str = "wx0123456789abcdef";
const SECRET: &str = "AppS3cretForTests0001";

/// mock-api for the account, with `extra` flags.
fn mock(extra: &[&str]) -> MockApi {
    MockApi::start(SECRET, &[&["--appid", APPID][..], extra].concat())
}

/// A gate whose sources come from WeChat's list through `upstreams` (cluster names),
/// with the top-level keys of `api` set in `source.wechat_api` and of `source` in
/// `source`.
fn live_gate(upstreams: &[&str], api: serde_json::Value, source: serde_json::Value) -> Gate {
    let ups: Vec<serde_json::Value> = upstreams
        .iter()
        .map(|c| json!({"cluster": c, "authority": "api.weixin.qq.com"}))
        .collect();
    let wechat_api = merged(
        json!({"secret": {"env": "WECHAT_APPSECRET"}, "upstreams": ups}),
        api,
    );
    let src = merged(json!({"wechat_api": wechat_api}), source);
    Gate::new(
        "wechat_gate",
        json!({"path": "/wechat", "appid": APPID, "token": TOKEN, "source": src}),
    )
}

/// Envoy with `gate`, the API `clusters` and the AppSecret in the VM's environment.
fn start_envoy(backend: &Backend, gate: Gate, clusters: &[(&str, u16)], workers: u32) -> Envoy {
    let mut config = EnvoyConfig::new(backend.port)
        .gate(gate)
        .vm_env("WECHAT_APPSECRET", SECRET)
        .workers(workers);
    for (name, port) in clusters {
        config = config.cluster(name, *port);
    }
    config.start()
}

#[test]
fn live_list_is_enforced_promptly_and_fetched_once_by_four_workers() {
    let api = mock(&[
        "--callback-ip",
        "127.0.0.2",
        "--callback-ip",
        "10.20.0.0/16",
        "--callback-ip",
        "2001:db8::/48",
    ]);
    let backend = Backend::start();
    let envoy = start_envoy(
        &backend,
        live_gate(&["wechat_api"], json!({}), json!({})),
        &[("wechat_api", api.port)],
        4,
    );
    let traffic = post_from_four_clients_from_the_start(&envoy);
    assert!(
        traffic.loaded,
        "the list was not enforced within 10 s:\n{}",
        envoy.log_text()
    );
    assert_eq!(
        traffic.late_503, 0,
        "requests answered 503 after the list had loaded"
    );
    let per_worker = envoy.admin_text("/stats?filter=worker_.\\.downstream_cx_total");
    let busy = per_worker
        .lines()
        .filter(|l| {
            l.rsplit(": ")
                .next()
                .and_then(|n| n.trim().parse::<u64>().ok())
                > Some(0)
        })
        .count();
    assert_eq!(
        busy, 4,
        "the requests were spread over all four workers:\n{per_worker}"
    );
    assert_one_refresh_for_all_workers(&api, &envoy);
}

/// What the clients saw: whether any request was admitted, and how many of those
/// started after that were answered 503.
struct Traffic {
    loaded: bool,
    late_503: usize,
}

/// Four clients keep posting from the start, two from a listed source and two from
/// an unlisted one, until 200 requests have started after the first admission (or
/// 10 s pass). The list arrives on one worker's tick (about 100 ms on an idle
/// machine) and on the others' within their next tick; a worker that has not ticked
/// since looks in shared data before refusing, so once any request has been
/// admitted, no request started after that may be answered 503.
fn post_from_four_clients_from_the_start(envoy: &Envoy) -> Traffic {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let loaded = AtomicBool::new(false);
    let after = AtomicUsize::new(0);
    let late_503 = AtomicUsize::new(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (loaded, after, late_503) = (&loaded, &after, &late_503);
            s.spawn(move || {
                while after.load(Ordering::SeqCst) < 200 && std::time::Instant::now() < deadline {
                    let started_after = loaded.load(Ordering::SeqCst);
                    let source = if t % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
                    let status = envoy.post_from(source);
                    if status == 200 {
                        loaded.store(true, Ordering::SeqCst);
                    }
                    if started_after {
                        after.fetch_add(1, Ordering::SeqCst);
                        if status == 503 {
                            late_503.fetch_add(1, Ordering::SeqCst);
                        }
                        let expected = if source == "127.0.0.2" { 200 } else { 403 };
                        assert!(status == expected || status == 503, "{source}: {status}");
                    }
                }
            });
        }
    });
    Traffic {
        loaded: loaded.load(Ordering::SeqCst),
        late_503: late_503.load(Ordering::SeqCst),
    }
}

/// One token call and one list call for the whole Envoy, and the list's gauges and
/// log line.
fn assert_one_refresh_for_all_workers(api: &MockApi, envoy: &Envoy) {
    assert_eq!(
        api.count("stable_token"),
        1,
        "one token call per refresh: {}",
        api.calls()
    );
    assert_eq!(
        api.count("getcallbackip"),
        1,
        "one list call per refresh: {}",
        api.calls()
    );
    assert_eq!(api.count("token"), 0);
    assert_eq!(envoy.counter("wechat_gate.allowlist.refresh_ok"), 1);
    let by_account = envoy.counters_by_account();
    let stat = |name: &str| {
        by_account
            .get(&(APPID.to_string(), name.to_string()))
            .copied()
    };
    assert_eq!(
        stat("wechat_gate.allowlist.entries"),
        Some(3),
        "{by_account:?}"
    );
    let last = stat("wechat_gate.allowlist.last_success_unix").unwrap_or(0) as i64;
    assert!((now() - last).abs() < 30, "last_success_unix {last}");
    assert!(envoy
        .log_text()
        .contains("callback IP list: 3 entries from cluster wechat_api"));
}

#[test]
fn a_changed_list_takes_effect_at_the_next_refresh() {
    let api = mock(&["--callback-ip", "127.0.0.2"]);
    let backend = Backend::start();
    let gate = live_gate(&["wechat_api"], json!({"refresh_seconds": 2}), json!({}));
    let envoy = start_envoy(&backend, gate, &[("wechat_api", api.port)], 4);
    assert!(
        wait_until(Duration::from_secs(2), || envoy.post_from("127.0.0.2")
            == 200)
        .is_some()
    );
    // Every worker has its copy within a tick or two.
    assert!(
        wait_until(Duration::from_secs(2), || envoy.post_from("127.0.0.3")
            == 403)
        .is_some()
    );
    api.set_callback_ips(&["127.0.0.3"]);
    let took = wait_until(Duration::from_secs(5), || {
        envoy.post_from("127.0.0.3") == 200
    });
    assert!(
        took.is_some(),
        "the new list was not picked up:\n{}",
        envoy.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(2), || envoy.post_from("127.0.0.2")
            == 403)
        .is_some()
    );
    // Over several refreshes, four workers still make exactly one list call each time.
    assert!(wait_until(Duration::from_secs(15), || {
        envoy.counter("wechat_gate.allowlist.refresh_ok") >= 3
    })
    .is_some());
    let refreshes = envoy.counter("wechat_gate.allowlist.refresh_ok");
    assert!(refreshes >= 3, "{refreshes} refreshes");
    let list_calls = api.count("getcallbackip");
    assert!(
        list_calls == refreshes || list_calls == refreshes + 1, // one may be in flight
        "{list_calls} getcallbackip calls for {refreshes} refreshes"
    );
    // A token is reused between refreshes: fewer token calls than list calls.
    assert!(
        api.count("stable_token") < api.count("getcallbackip"),
        "{}",
        api.calls()
    );
}

#[test]
fn when_the_primary_cluster_is_down_the_disaster_recovery_cluster_serves() {
    let api = mock(&["--callback-ip", "127.0.0.2"]);
    let backend = Backend::start();
    let gate = live_gate(
        &["wechat_api", "wechat_api_dr"],
        json!({"timeout_ms": 1000}),
        json!({}),
    );
    let envoy = start_envoy(
        &backend,
        gate,
        &[("wechat_api", closed_port()), ("wechat_api_dr", api.port)],
        1,
    );
    assert!(
        wait_until(Duration::from_secs(4), || envoy.post_from("127.0.0.2")
            == 200)
        .is_some(),
        "{}",
        envoy.log_text()
    );
    let log = envoy.log_text();
    // A refused connection comes back from Envoy as its own 503 local reply.
    assert!(
        log.contains("access token from cluster wechat_api failed: HTTP status 503"),
        "{log}"
    );
    assert!(log.contains("entries from cluster wechat_api_dr"), "{log}");
    assert_eq!(
        envoy.counter("wechat_gate.allowlist.refresh_failed"),
        0,
        "failover is not a failed refresh"
    );
}

#[test]
fn every_api_fault_keeps_the_last_good_list() {
    let api = mock(&["--callback-ip", "127.0.0.2"]);
    let backend = Backend::start();
    let gate = live_gate(
        &["wechat_api"],
        json!({"refresh_seconds": 1, "timeout_ms": 500}),
        json!({}),
    );
    let envoy = start_envoy(&backend, gate, &[("wechat_api", api.port)], 2);
    assert!(
        wait_until(Duration::from_secs(2), || envoy.post_from("127.0.0.2")
            == 200)
        .is_some()
    );

    let faults = [
        (
            json!({"fail": 100, "errcode": -1}),
            "WeChat is busy, retrying",
        ),
        (json!({"fail": 100, "errcode": 40164}), "errcode 40164"),
        (json!({"fail": 100, "errcode": 45009}), "errcode 45009"),
        (json!({"fail": 100, "errcode": 40125}), "errcode 40125"),
        (json!({"garbage": 100}), "not the JSON expected"),
        // Envoy answers a dropped connection or a timeout itself (503 / 504).
        (json!({"drop": 100}), "failed: HTTP status 50"),
        (json!({"delay_ms": 1500}), "failed: HTTP status 504"),
    ];
    for (fault, logged) in faults {
        let failed_before = envoy.counter("wechat_gate.allowlist.refresh_failed");
        api.set_faults(fault.clone());
        let failed = wait_until(Duration::from_secs(12), || {
            envoy.counter("wechat_gate.allowlist.refresh_failed") > failed_before
        });
        assert!(
            failed.is_some(),
            "{fault}: no failed refresh counted:\n{}",
            envoy.log_text()
        );
        // Verified traffic from the known address is never refused meanwhile.
        for _ in 0..3 {
            assert_eq!(envoy.post_from("127.0.0.2"), 200, "{fault}");
        }
        assert_eq!(envoy.post_from("127.0.0.3"), 403, "{fault}");
        let log = envoy.log_text();
        assert!(
            log.contains(logged),
            "{fault}: the log does not say {logged:?}"
        );
        api.set_faults(json!({}));
    }
    let log = envoy.log_text();
    assert!(
        log.contains("IP whitelist"),
        "40164 names what the operator must do"
    );
    assert!(
        log.contains("daily quota of this API"),
        "45009 names what the operator must do"
    );
    for crash in ["panicked", "critical", "Function: proxy_on"] {
        assert!(!log.contains(crash), "{crash} in the log");
    }
    // And once WeChat answers again, the list is refreshed.
    let ok_before = envoy.counter("wechat_gate.allowlist.refresh_ok");
    assert!(wait_until(Duration::from_secs(30), || envoy
        .counter("wechat_gate.allowlist.refresh_ok")
        > ok_before)
    .is_some());
}

#[test]
fn an_expired_token_is_replaced() {
    let api = mock(&["--callback-ip", "127.0.0.2", "--token-ttl", "3"]);
    let backend = Backend::start();
    let gate = live_gate(&["wechat_api"], json!({"refresh_seconds": 1}), json!({}));
    let envoy = start_envoy(&backend, gate, &[("wechat_api", api.port)], 1);
    assert!(
        wait_until(Duration::from_secs(2), || envoy.post_from("127.0.0.2")
            == 200)
        .is_some()
    );
    assert!(
        wait_until(Duration::from_secs(10), || api.count("stable_token") >= 3).is_some(),
        "the token was not renewed: {}",
        api.calls()
    );
    assert_eq!(
        envoy.counter("wechat_gate.allowlist.refresh_failed"),
        0,
        "{}",
        envoy.log_text()
    );
    assert_eq!(envoy.post_from("127.0.0.2"), 200);
}

#[test]
fn classic_and_stable_token_apis_each_hit_their_own_endpoint() {
    for (token_api, endpoint, other) in [
        ("classic", "token", "stable_token"),
        ("stable", "stable_token", "token"),
    ] {
        let api = mock(&["--callback-ip", "127.0.0.2"]);
        let backend = Backend::start();
        let gate = live_gate(&["wechat_api"], json!({"token_api": token_api}), json!({}));
        let envoy = start_envoy(&backend, gate, &[("wechat_api", api.port)], 1);
        assert!(
            wait_until(Duration::from_secs(2), || envoy.post_from("127.0.0.2")
                == 200)
            .is_some(),
            "{token_api}"
        );
        assert_eq!(
            (api.count(endpoint), api.count(other)),
            (1, 0),
            "{token_api}: {}",
            api.calls()
        );
    }
}

#[test]
fn before_the_first_list_deny_answers_503_and_allow_forwards() {
    for (mode, expected) in [("deny", 503), ("allow", 200)] {
        let api = mock(&["--callback-ip", "127.0.0.2", "--delay-ms", "3000"]);
        let backend = Backend::start();
        let gate = live_gate(
            &["wechat_api"],
            json!({}),
            json!({"when_unavailable": mode, "allow": ["127.0.0.4"]}),
        );
        let envoy = start_envoy(&backend, gate, &[("wechat_api", api.port)], 1);
        let r = envoy.post(&fresh(), "<xml/>", "127.0.0.2");
        assert_eq!(r.status, expected, "{mode}: {}", r.body_text());
        if mode == "deny" {
            assert!(r.header("retry-after").is_some());
            assert_eq!(envoy.counter("wechat_gate.rejected.unavailable"), 1);
        } else {
            assert_eq!(envoy.counter("wechat_gate.source_unverified"), 1);
        }
        assert_eq!(
            envoy.post_from("127.0.0.4"),
            200,
            "{mode}: static entries always work"
        );
        let loaded = wait_until(Duration::from_secs(10), || {
            envoy.counter("wechat_gate.allowlist.refresh_ok") >= 1
        });
        assert!(loaded.is_some(), "{mode}: {}", envoy.log_text());
        // At once: a worker that has not ticked since looks in shared data.
        assert_eq!(envoy.post_from("127.0.0.2"), 200, "{mode}");
        assert_eq!(
            envoy.post_from("127.0.0.3"),
            403,
            "{mode}: once loaded, the list is enforced"
        );
    }
}

#[test]
fn the_app_secret_and_the_access_token_never_show() {
    let api = mock(&["--callback-ip", "127.0.0.2"]);
    let backend = Backend::start();
    let envoy = start_envoy(
        &backend,
        live_gate(&["wechat_api"], json!({}), json!({})),
        &[("wechat_api", api.port)],
        2,
    );
    assert!(
        wait_until(Duration::from_secs(2), || envoy.post_from("127.0.0.2")
            == 200)
        .is_some()
    );
    let access_token = token_of(&api.stable_token(APPID, SECRET, false));
    assert!(access_token.len() > 8);
    for path in [
        "/config_dump",
        "/config_dump?include_eds",
        "/stats",
        "/clusters",
    ] {
        let text = envoy.admin_text(path);
        assert!(!text.contains(SECRET), "{path} shows the AppSecret");
        assert!(
            !text.contains(&access_token),
            "{path} shows the access token"
        );
    }
    let log = envoy.log_text();
    assert!(!log.contains(SECRET), "the log shows the AppSecret");
    assert!(
        !log.contains(&access_token),
        "the log shows the access token"
    );
}
