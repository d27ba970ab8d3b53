//! The API role against callers that do odd things with the query, the body's framing
//! and the prefix: every `access_token` (however spelled) and every `appid`/`secret` on
//! the sns calls is the gate's, a chunked body arrives byte for byte, a path that only
//! starts like the prefix is not the gate's, a forged x-forwarded-for makes no caller,
//! a token fetch that hangs does not fail the call, and callers whose bodies stall send
//! nothing to WeChat and hold up no one.

use crate::harness::api::{
    assert_answered, custom_text, json_of, rig, stat, CALLER, MINI, OFFICIAL,
};
use serde_json::json;

#[test]
fn every_access_token_the_caller_sends_is_replaced_however_spelled() {
    let rig = rig(OFFICIAL, json!({}));
    let p = OFFICIAL.path;
    for query in [
        "access_token=a&openid=o1&access_token=b",
        "openid=o1&access_token=",
        "access%5Ftoken=bogus&openid=o1",
        "ACCESS_TOKEN=upper&openid=o1",
    ] {
        let r = rig.get(&format!("{p}/cgi-bin/user/info?{query}"));
        let v = json_of(&r);
        assert!(
            r.status == 200 && v.get("errcode").is_none(),
            "{query}: WeChat got a token that was not the gate's: {v}"
        );
        assert_eq!(v["openid"], "o1", "{query}: {v}");
    }
    let calls = rig.mock(OFFICIAL).calls();
    assert_eq!(calls["refused_token"], json!(null), "{calls}");
    let counters = rig.envoy.counters();
    assert_eq!(stat(&counters, "wechat_gate.api_token_retried"), 0);
}

#[test]
fn the_sns_calls_get_the_gates_appid_and_secret_whatever_the_caller_sent() {
    let rig = rig(MINI, json!({}));
    let p = MINI.path;
    for query in [
        "appid=wxNotThisOne&secret=wrong&js_code=c1&grant_type=authorization_code",
        "js_code=c2&grant_type=authorization_code&secret=a&secret=b",
        "secr%65t=wrong&app%69d=wxNotThisOne&js_code=c3&grant_type=authorization_code",
    ] {
        let r = rig.get(&format!("{p}/sns/jscode2session?{query}"));
        let v = assert_answered(&r);
        assert!(
            v["openid"]
                .as_str()
                .is_some_and(|o| o.starts_with("oMockc")),
            "{query}: {v}"
        );
    }
    // No token was fetched for them.
    assert_eq!(rig.mock(MINI).count("stable_token"), 0);
}

#[test]
fn a_chunked_body_reaches_wechat_byte_for_byte() {
    let rig = rig(OFFICIAL, json!({}));
    let body = custom_text("oUser0001", "chunked 分块 \u{1F600}").to_string();
    let (a, b) = body.as_bytes().split_at(17);
    let mut raw = format!(
        "POST {}/cgi-bin/message/custom/send HTTP/1.1\r\nhost: gate\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        OFFICIAL.path
    )
    .into_bytes();
    for part in [a, b] {
        raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        raw.extend_from_slice(part);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let r = rig.envoy.send_raw(&raw, CALLER).expect("a response");
    assert_answered(&r);
    let messages = rig.mock(OFFICIAL).messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["body"].to_string(), body);
    rig.assert_sink_untouched(&[OFFICIAL.secret]);
}

#[test]
fn a_path_that_only_starts_like_the_prefix_is_not_the_gates() {
    // The route covers /wechat-api/mp*, the gate only /wechat-api/mp on a segment
    // boundary: /wechat-api/mpx/... goes to the route's own cluster, untouched.
    let rig = rig(OFFICIAL, json!({}));
    let target = format!("{}x/cgi-bin/message/custom/send", OFFICIAL.path);
    let r = rig.call_from(CALLER, "POST", &target, Some("application/json"), b"{}");
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    let heads = rig.sink.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with(&format!("POST {target} ")),
        "{}",
        heads[0]
    );
    assert!(!heads[0].contains("access_token"), "{}", heads[0]);
    assert_eq!(rig.mock(OFFICIAL).count("custom_send"), 0);
    assert_eq!(rig.envoy.counter("wechat_gate.api_calls.refused"), 0);
}

#[test]
fn a_forwarded_for_header_does_not_make_an_outsider_a_caller() {
    let rig = rig(OFFICIAL, json!({}));
    let target = format!("{}/cgi-bin/user/info?openid=o1", OFFICIAL.path);
    for forged in ["127.0.0.1", "127.0.0.1, 127.0.0.1", "10.1.2.3"] {
        let r = rig.envoy.send(
            "GET",
            &target,
            &[
                ("x-forwarded-for", forged.as_bytes()),
                ("x-real-ip", b"127.0.0.1"),
            ],
            b"",
            crate::harness::api::OUTSIDER,
        );
        crate::harness::api::assert_refusal(&r, 403, 94030);
    }
    assert_eq!(rig.mock(OFFICIAL).count("user_info"), 0);
}

#[test]
fn a_token_fetch_that_hangs_is_given_up_and_the_call_still_answered() {
    let rig = rig(OFFICIAL, json!({"wechat_api": {"timeout_ms": 1000}}));
    // The primary reads the first stable_token call and never answers it: a token
    // fetch is no call of the caller's, so the gate may ask again (the next upstream).
    let primary = rig.mock(OFFICIAL);
    primary.set_faults(json!({"hangs": {"stable_token": 1}}));
    let r = rig.get(&format!("{}/cgi-bin/user/info?openid=o1", OFFICIAL.path));
    let calls = (primary.calls(), rig.upstreams(OFFICIAL).backup.calls());
    assert_eq!(r.status, 200, "{}: {calls:?}", r.body_text());
    assert_answered(&r);
}

#[test]
fn callers_whose_bodies_stall_reach_no_one_and_hold_up_no_call() {
    use std::io::Write;
    let rig = rig(OFFICIAL, json!({}));
    let target = format!("{}/cgi-bin/message/custom/send", OFFICIAL.path);
    // 64 calls that send their headers and 10 of their 100 bytes of body, then stall.
    let stalled: Vec<std::net::TcpStream> = (0..64)
        .map(|_| {
            let mut c =
                std::net::TcpStream::connect(("127.0.0.1", rig.envoy.port)).expect("connect");
            let head = format!(
                "POST {target} HTTP/1.1\r\nhost: gate\r\ncontent-type: application/json\r\n\
                 content-length: 100\r\n\r\n{{\"touser\":"
            );
            c.write_all(head.as_bytes()).expect("write");
            c
        })
        .collect();
    // A whole call meanwhile is answered by WeChat at once.
    let body = custom_text("o1", "through the stalled crowd");
    assert_answered(&rig.post_json(&target, &body));
    let mock = rig.mock(OFFICIAL);
    assert_eq!(mock.count("custom_send"), 1, "{}", mock.calls());
    assert_eq!(mock.messages().len(), 1);
    // The stalled calls reached neither WeChat nor (with a body) the route's cluster.
    rig.assert_sink_untouched(&[]);
    drop(stalled);
    assert_eq!(mock.count("custom_send"), 1, "{}", mock.calls());
}
