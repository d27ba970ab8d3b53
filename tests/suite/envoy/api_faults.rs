//! The API role under faults and hostile callers, end to end: the primary domain down,
//! a POST whose answer never comes (504, sent once), callers outside `callers` (403),
//! path tricks under the prefix (400), a body over max_body_bytes (413), and the secret
//! and the real tokens in no response, log line, route or `/config_dump`.

use crate::harness::api::{
    assert_answered, assert_hidden, assert_refusal, builder, custom_text, response_text, rig, stat,
    Rig, OFFICIAL, OUTSIDER,
};
use crate::harness::mock_api::MockApi;
use crate::harness::wait_until;
use serde_json::json;
use std::time::{Duration, Instant};
use wechat::http1::client::Response;

fn user_info() -> String {
    format!("{}/cgi-bin/user/info?openid=oUser0001", OFFICIAL.path)
}

fn custom_send() -> String {
    format!("{}/cgi-bin/message/custom/send", OFFICIAL.path)
}

/// Calls to WeChat's API the mock got, tokens aside.
fn api_calls(mock: &MockApi) -> u64 {
    let calls = mock.calls();
    calls
        .as_object()
        .expect("/__calls is an object")
        .iter()
        .filter(|(k, _)| !["stable_token", "token", "gettoken"].contains(&k.as_str()))
        .filter_map(|(_, v)| v.as_u64())
        .sum()
}

/// Waits until the Envoy counter `name` is at least `n` (10 s at most).
fn wait_counter(rig: &Rig, name: &str, n: u64) {
    let reached = wait_until(Duration::from_secs(10), || rig.envoy.counter(name) >= n);
    assert!(
        reached.is_some(),
        "{name} < {n}: {:?}",
        rig.envoy.counters()
    );
}

#[test]
fn with_the_primary_down_every_call_is_answered_from_the_backup() {
    let mut rig = rig(OFFICIAL, json!({}));
    assert_answered(&rig.get(&user_info()));
    // WeChat's backup domain honours the primary's tokens.
    let token = OFFICIAL.real_token(rig.mock(OFFICIAL));
    rig.upstreams(OFFICIAL).backup.set_token(&token);
    rig.stop_primary(OFFICIAL);
    for i in 0..10 {
        assert_answered(&rig.get(&user_info()));
        let body = custom_text("oUser0001", &format!("via backup {i}"));
        assert_answered(&rig.post_json(&custom_send(), &body));
    }
    let backup = &rig.upstreams(OFFICIAL).backup;
    assert_eq!(backup.count("user_info"), 10, "{}", backup.calls());
    assert_eq!(backup.count("custom_send"), 10);
    assert_eq!(
        backup.count("stable_token"),
        0,
        "the token was the primary's"
    );
    assert_eq!(backup.messages().len(), 10);
    let counters = rig.envoy.counters();
    assert!(
        stat(&counters, "wechat_gate.api_failed_over") >= 1,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.api_calls.answered"),
        21,
        "{counters:?}"
    );
    assert_eq!(stat(&counters, "wechat_gate.api_calls.unanswered"), 0);
    assert_eq!(stat(&counters, "wechat_gate.api_token_retried"), 0);
}

#[test]
fn a_post_whose_answer_never_comes_is_answered_504_and_not_repeated() {
    let rig = rig(OFFICIAL, json!({"wechat_api": {"timeout_ms": 1000}}));
    let mock = rig.mock(OFFICIAL);
    mock.set_faults(json!({"hangs": {"custom_send": 1}}));
    let start = Instant::now();
    let r = rig.post_json(&custom_send(), &custom_text("oUser0001", "hung"));
    let took = start.elapsed();
    assert_refusal(&r, 504, 95040);
    assert!(
        took >= Duration::from_millis(900),
        "answered after {took:?}, before timeout_ms"
    );
    wait_counter(&rig, "wechat_gate.api_calls.unanswered", 1);
    // The next call is answered: the hung one was sent once, to the primary only.
    assert_answered(&rig.post_json(&custom_send(), &custom_text("oUser0001", "next")));
    assert_eq!(mock.count("custom_send"), 2, "{}", mock.calls());
    let backup = &rig.upstreams(OFFICIAL).backup;
    assert_eq!(backup.count("custom_send"), 0, "{}", backup.calls());
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.api_failed_over"),
        0,
        "{counters:?}"
    );
    assert_eq!(stat(&counters, "wechat_gate.api_calls.unanswered"), 1);
}

#[test]
fn a_caller_outside_callers_is_refused_and_wechat_untouched() {
    let rig = rig(OFFICIAL, json!({}));
    let json_type = Some("application/json");
    let body = custom_text("oUser0001", "from outside").to_string();
    let token = format!(
        "{}/cgi-bin/token?grant_type=client_credential",
        OFFICIAL.path
    );
    let config = format!("{}/wechat-gate/jssdk-config?url=x", OFFICIAL.path);
    let attempts: [(&str, &str, Option<&str>, &[u8]); 4] = [
        ("GET", &user_info(), None, b""),
        ("POST", &custom_send(), json_type, body.as_bytes()),
        ("GET", &token, None, b""),
        ("GET", &config, None, b""),
    ];
    for (method, target, content_type, body) in attempts {
        let r = rig.call_from(OUTSIDER, method, target, content_type, body);
        assert_refusal(&r, 403, 94030);
    }
    for mock in [rig.mock(OFFICIAL), &rig.upstreams(OFFICIAL).backup] {
        assert_eq!(api_calls(mock), 0, "{}", mock.calls());
    }
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.api_calls.refused"),
        4,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.api_stand_in"),
        0,
        "{counters:?}"
    );
    rig.assert_sink_untouched(&[OFFICIAL.secret]);
}

/// Paths under the prefix the gate must not send to WeChat.
const TRICKS: [&str; 12] = [
    "/cgi-bin/../cgi-bin/user/info",
    "/../mp/cgi-bin/user/info",
    "/cgi-bin/..",
    "/cgi-bin/%2e%2e/user/info",
    "/cgi-bin/%2E%2E/user/info",
    "//cgi-bin/user/info",
    "/cgi-bin//user/info",
    "/cgi-bin%2fuser/info",
    "/cgi-bin/./user/info",
    "/cgi-bin/user%5cinfo",
    "/cgi-bin/user/info;x=1",
    "/cgi-bin/user/in%00fo",
];

#[test]
fn path_tricks_under_the_prefix_are_refused_and_never_sent() {
    let rig = rig(OFFICIAL, json!({}));
    for trick in TRICKS {
        let r = rig.get(&format!("{}{trick}?openid=o1", OFFICIAL.path));
        assert_eq!(r.status, 400, "{trick}: {}", r.body_text());
        assert_refusal(&r, 400, 94000);
    }
    // A POST's refusal is the same.
    let r = rig.post_json(
        &format!("{}/cgi-bin/message/%2e%2e/custom/send", OFFICIAL.path),
        &custom_text("o1", "x"),
    );
    assert_refusal(&r, 400, 94000);
    for mock in [rig.mock(OFFICIAL), &rig.upstreams(OFFICIAL).backup] {
        assert_eq!(api_calls(mock), 0, "{}", mock.calls());
    }
    assert_eq!(
        rig.envoy.counter("wechat_gate.api_calls.refused"),
        TRICKS.len() as u64 + 1
    );
    rig.assert_sink_untouched(&[OFFICIAL.secret]);
}

#[test]
fn a_body_over_max_body_bytes_is_refused_413_and_one_at_the_limit_sent() {
    let rig = rig(OFFICIAL, json!({"max_body_bytes": 4096}));
    let body_of = |len: usize| {
        let skeleton = custom_text("oUser0001", "").to_string();
        custom_text("oUser0001", &"x".repeat(len - skeleton.len())).to_string()
    };
    let (at, over) = (body_of(4096), body_of(4097));
    assert_eq!((at.len(), over.len()), (4096, 4097));
    let post = |body: &str| {
        rig.call_from(
            crate::harness::api::CALLER,
            "POST",
            &custom_send(),
            Some("application/json"),
            body.as_bytes(),
        )
    };
    assert_refusal(&post(&over), 413, 94130);
    assert_answered(&post(&at));
    assert_eq!(rig.mock(OFFICIAL).count("custom_send"), 1);
    assert_eq!(rig.envoy.counter("wechat_gate.api_calls.refused"), 1);
    rig.assert_sink_untouched(&[OFFICIAL.secret]);
}

/// Every kind of call and refusal, the token rotated and a failover on the way: the
/// secret and each real token WeChat issued are in no response (headers or body), no
/// line of Envoy's log (the gate's at trace), nothing the route's cluster got, and not
/// in `/config_dump`.
#[test]
fn the_secret_and_the_real_tokens_are_in_no_response_log_route_or_dump() {
    // The gate's own lines at every level (Envoy's other components at info).
    let mut rig = builder()
        .account(OFFICIAL, json!({"wechat_api": {"timeout_ms": 1000}}))
        .log_levels("info", "wasm:trace")
        .start();
    let mut seen: Vec<Response> = Vec::new();
    let p = OFFICIAL.path;
    seen.push(rig.get(&format!("{p}/cgi-bin/token?grant_type=client_credential")));
    let stable = json!({"grant_type": "client_credential", "appid": OFFICIAL.appid});
    seen.push(rig.post_json(&format!("{p}/cgi-bin/stable_token"), &stable));
    seen.push(rig.get(&user_info()));
    let mut tokens = vec![OFFICIAL.real_token(rig.mock(OFFICIAL))];
    rig.mock(OFFICIAL).rotate_token();
    seen.push(rig.post_json(&custom_send(), &custom_text("o1", "after rotation")));
    tokens.push(OFFICIAL.real_token(rig.mock(OFFICIAL)));
    seen.push(rig.get(&format!("{p}/cgi-bin/ticket/getticket?type=jsapi")));
    seen.push(rig.get(&format!(
        "{p}/wechat-gate/jssdk-config?url=https%3A%2F%2Fa.example%2F"
    )));
    seen.push(rig.get(&format!(
        "{p}/sns/oauth2/access_token?code=c1&grant_type=authorization_code"
    )));
    seen.push(rig.get(&format!("{p}/wechat-gate/nothing-here")));
    seen.push(rig.call_from(OUTSIDER, "GET", &user_info(), None, b""));
    seen.push(rig.get(&format!("{p}/cgi-bin/%2e%2e/user/info")));
    rig.mock(OFFICIAL)
        .set_faults(json!({"hangs": {"custom_send": 1}}));
    seen.push(rig.post_json(&custom_send(), &custom_text("o1", "hung")));
    rig.stop_primary(OFFICIAL);
    seen.push(rig.get(&user_info()));
    tokens.push(OFFICIAL.real_token(&rig.upstreams(OFFICIAL).backup));
    let statuses: Vec<u16> = seen.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200, 200, 404, 403, 400, 504, 200],
        "{:#?}",
        seen.iter().map(response_text).collect::<Vec<_>>()
    );
    let responses: String = seen.iter().map(response_text).collect();
    let log = rig.envoy.log_text();
    let dump = ["/config_dump", "/config_dump?include_eds"]
        .map(|p| rig.envoy.admin_text(p))
        .concat();
    assert!(
        dump.contains(OFFICIAL.secret_env),
        "the dump holds the gate's config, naming the variable only"
    );
    let mut secrets = vec![("the AppSecret", OFFICIAL.secret)];
    secrets.extend(tokens.iter().map(|t| ("a real token", t.as_str())));
    assert_hidden(
        &secrets,
        &[
            ("a response", &responses),
            ("Envoy's log", &log),
            ("/config_dump", &dump),
        ],
    );
    let all: Vec<&str> = secrets.iter().map(|(_, s)| *s).collect();
    rig.assert_sink_untouched(&all);
}
