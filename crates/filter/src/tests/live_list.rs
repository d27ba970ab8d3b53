//! The live callback IP list through the host: its calls go out from the tick (never
//! from `on_configure`), their replies come back to the root context by call id, and
//! the list it installs admits its sources; through the root contexts of two workers on
//! one VM: the lease taken by one, the list it published installed by the other; a
//! failed call failing over to the next upstream; a backoff after every upstream failed;
//! a refused token fetched again. (The decisions are the core's, `gate::token`.)

use super::{Gate, ACCOUNT, TOKEN};

const SECRET: &str = "s3cret-app-secret";
const ACCESS_TOKEN: &str = "ACCESS_TOKEN_VALUE";

/// The pushes' source is on no static list: only the live list admits it.
fn live_config() -> String {
    format!(
        r#"{{"path": "/wechat", "name": "{ACCOUNT}", "token": "{TOKEN}", "appid": "wx1234",
            "source": {{"wechat_api": {{"secret": "{SECRET}", "upstreams": [
                {{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}}]}}}}}}"#
    )
}

#[test]
fn the_list_fetched_from_the_tick_admits_its_sources() {
    let mut gate = Gate::configured(&live_config());
    assert!(
        gate.host.state().calls.is_empty(),
        "no call from on_configure"
    );
    let (id, _) = gate.handshake("before");
    assert_eq!(gate.replies(id), [503], "no list yet");

    gate.tick();
    let token = r#"{"access_token": "ACCESS_TOKEN_VALUE", "expires_in": 7200}"#;
    let call = gate.answer_last_call(200, token);
    assert_eq!(call.cluster, "wechat_api");
    let call = gate.answer_last_call(200, r#"{"ip_list": ["127.0.0.2"]}"#);
    let path = call.headers.iter().find(|(n, _)| n == ":path");
    assert!(path.is_some_and(|(_, p)| p.starts_with("/cgi-bin/getcallbackip?")));
    assert!(call.body.is_none());

    let (id, _) = gate.handshake("after");
    assert_eq!(gate.replies(id), [200]);
    let state = gate.host.state();
    let leaked = |line: &String| line.contains(SECRET) || line.contains(ACCESS_TOKEN);
    assert!(!state.logs.iter().any(|(_, line)| leaked(line)));
}

/// `live_config` with two upstreams, `a` then `b`.
fn two_upstreams() -> String {
    live_config().replace(
        r#"{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}"#,
        r#"{"cluster": "a", "authority": "api.weixin.qq.com"},
           {"cluster": "b", "authority": "api2.weixin.qq.com"}"#,
    )
}

fn path_of(call: &crate::host::fake::Call) -> String {
    let path = call.headers.iter().find(|(n, _)| n == ":path");
    path.map(|(_, p)| p.clone()).unwrap_or_default()
}

fn calls(gate: &Gate) -> usize {
    gate.host.state().calls.len()
}

const TOKEN_REPLY: &str = r#"{"access_token": "ACCESS_TOKEN_VALUE", "expires_in": 7200}"#;

#[test]
fn one_worker_takes_the_lease_and_another_installs_the_list_it_published() {
    let host = crate::host::fake::FakeHost::at(super::NOW);
    let mut a = Gate::on(host.clone(), 1, &live_config());
    let mut b = Gate::on(host.clone(), 2, &live_config());
    a.tick();
    assert_eq!(calls(&a), 1, "a took the lease and called");
    b.tick();
    assert_eq!(calls(&b), 1, "b finds the lease taken: no call");
    a.answer_last_call(200, TOKEN_REPLY);
    a.answer_last_call(200, r#"{"ip_list": ["127.0.0.2"]}"#);
    b.tick();
    assert_eq!(calls(&b), 2, "b fetched nothing itself");
    let (id, _) = b.handshake("from b");
    assert_eq!(b.replies(id), [200], "b admits the list a published");
}

#[test]
fn a_failed_call_goes_to_the_next_upstream() {
    let mut gate = Gate::configured(&two_upstreams());
    gate.tick();
    let first = gate.answer_last_call(503, "busy");
    assert_eq!(first.cluster, "a");
    let next = gate
        .host
        .state()
        .calls
        .last()
        .cloned()
        .expect("a second call");
    assert_eq!(next.cluster, "b");
    assert_eq!(path_of(&next), path_of(&first), "the same call, elsewhere");
}

#[test]
fn after_every_upstream_failed_the_next_fetch_waits() {
    let mut gate = Gate::configured(&live_config());
    gate.tick();
    gate.answer_last_call(503, "busy");
    assert_eq!(calls(&gate), 1, "one upstream: no other to try");
    gate.host.advance(std::time::Duration::from_millis(500));
    gate.tick();
    assert_eq!(calls(&gate), 1, "backing off");
    gate.host.advance(std::time::Duration::from_secs(120));
    gate.tick();
    assert_eq!(calls(&gate), 2, "tried again after the backoff");
}

#[test]
fn a_token_wechat_refuses_is_dropped_and_fetched_again() {
    let mut gate = Gate::configured(&live_config());
    gate.tick();
    let token_call = gate.answer_last_call(200, TOKEN_REPLY);
    let token_path = path_of(&token_call);
    assert!(
        token_path.starts_with("/cgi-bin/stable_token"),
        "{token_path}"
    );
    gate.answer_last_call(200, r#"{"errcode": 40001, "errmsg": "invalid credential"}"#);
    // Whenever the next fetch goes, it asks for a token first: the refused one is gone.
    for _ in 0..200 {
        if calls(&gate) > 2 {
            break;
        }
        gate.host.advance(std::time::Duration::from_secs(1));
        gate.tick();
    }
    let next = gate
        .host
        .state()
        .calls
        .get(2)
        .cloned()
        .expect("a third call");
    assert_eq!(path_of(&next), token_path, "a token fetched again");
}
