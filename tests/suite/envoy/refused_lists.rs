//! A callback IP list from the API with an entry broader than the bound (`/16` IPv4,
//! `/48` IPv6) is refused whole: `0.0.0.0/0` or `127.0.0.3/0` would admit every
//! source. The last good list stays, the refusal is counted each time and logged once
//! per failure streak, and a good list is taken again as soon as WeChat serves one.

use crate::harness::backend::Backend;
use crate::harness::config::{EnvoyConfig, Gate};
use crate::harness::mock_api::{token_of, MockApi};
use crate::harness::requests::TOKEN;
use crate::harness::wait_until;
use serde_json::json;
use std::time::Duration;

const APPID: &str = "wx0123456789abcdef";
const SECRET: &str = "AppS3cretForTests0001";
const REFUSED_LINE: &str = "is broader than /16 (IPv4) or /48 (IPv6): the list is refused";

#[test]
fn a_list_with_a_too_broad_entry_is_refused_and_the_last_good_one_kept() {
    let api = MockApi::start(SECRET, &["--appid", APPID, "--callback-ip", "127.0.0.2"]);
    let backend = Backend::start();
    let gate = Gate::new(
        "wechat_gate",
        json!({"path": "/wechat", "appid": APPID, "token": TOKEN, "source": {"wechat_api": {
            "secret": {"env": "WECHAT_APPSECRET"}, "refresh_seconds": 1,
            "upstreams": [{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}]
        }}}),
    );
    let envoy = EnvoyConfig::new(backend.port)
        .gate(gate)
        .vm_env("WECHAT_APPSECRET", SECRET)
        .cluster("wechat_api", api.port)
        .workers(2)
        .start();
    assert!(
        wait_until(Duration::from_secs(10), || envoy.post_from("127.0.0.2")
            == 200)
        .is_some(),
        "{}",
        envoy.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(3), || envoy.post_from("127.0.0.3")
            == 403)
        .is_some()
    );

    for broad in [
        &["127.0.0.2", "0.0.0.0/0"][..],
        &["127.0.0.3/0"],
        &["127.0.0.2", "::/0"],
    ] {
        api.set_callback_ips(broad);
        let fetched = |e: &crate::harness::envoy::Envoy| {
            e.counter("wechat_gate.allowlist.refresh_ok")
                + e.counter("wechat_gate.allowlist.list_refused")
        };
        // Three more fetches of the broad list, whatever became of them.
        let before = fetched(&envoy);
        assert!(
            wait_until(Duration::from_secs(15), || fetched(&envoy) >= before + 3).is_some(),
            "{broad:?}: no fetch:\n{}",
            envoy.log_text()
        );
        assert_eq!(
            envoy.post_from("127.0.0.3"),
            403,
            "{broad:?} was installed: every source is admitted"
        );
        assert_eq!(
            envoy.post_from("127.0.0.2"),
            200,
            "{broad:?}: the last good list is kept"
        );
    }
    assert!(envoy.counter("wechat_gate.allowlist.list_refused") >= 9);
    assert!(envoy.counter("wechat_gate.allowlist.refresh_failed") >= 9);
    // One streak of refusals (no good list in between): logged once (a warning;
    // the repeats at debug), naming the entry.
    let log = envoy.log_text();
    let warned = log
        .lines()
        .filter(|l| l.contains("][warning][") && l.contains(REFUSED_LINE))
        .count();
    assert_eq!(warned, 1, "logged once per streak:\n{log}");
    assert!(log.contains("\"0.0.0.0/0\" is broader"), "{log}");

    // WeChat serves a good list again: it is taken at the next try.
    api.set_callback_ips(&["127.0.0.3"]);
    assert!(
        wait_until(Duration::from_secs(10), || envoy.post_from("127.0.0.3")
            == 200)
        .is_some(),
        "{}",
        envoy.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(3), || envoy.post_from("127.0.0.2")
            == 403)
        .is_some()
    );
    let log = envoy.log_text();
    let access_token = token_of(&api.stable_token(APPID, SECRET, false));
    assert!(!log.contains(SECRET) && !log.contains(&access_token));
    for crash in ["panicked", "critical", "Function: proxy_on"] {
        assert!(!log.contains(crash), "{crash} in the log");
    }
}
