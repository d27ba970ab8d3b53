//! The live callback IP list through the host: its calls go out from the tick (never
//! from `on_configure`), their replies come back to the root context by call id, and
//! the list it installs admits its sources. (Its refresh decisions are the core's.)

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
