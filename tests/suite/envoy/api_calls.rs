//! The API role's own answers and its calls' edges, end to end: the stand-in tokens
//! (WeChat never asked), large media both ways through Envoy's buffers, the ticket cache
//! and its refresh before expiry, the gate's 404s, and WeChat unreachable or refusing
//! the token (502, 503 with WeChat's advice) without a call sent twice.

use crate::harness::api::{
    assert_answered, assert_refusal, custom_text, json_of, rig, stat, Rig, CALLER, MINI, OFFICIAL,
    STAND_IN,
};
use crate::harness::mock_api::{media_form, media_pattern};
use serde_json::json;
use wechat::http1::client::Response;

fn user_info() -> String {
    format!("{}/cgi-bin/user/info?openid=oUser0001", OFFICIAL.path)
}

fn custom_send() -> String {
    format!("{}/cgi-bin/message/custom/send", OFFICIAL.path)
}

#[test]
fn token_requests_get_the_stand_in_and_never_reach_wechat() {
    let rig = rig(OFFICIAL, json!({}));
    let p = OFFICIAL.path;
    let classic = rig.get(&format!(
        "{p}/cgi-bin/token?grant_type=client_credential&appid={}&secret=anything",
        OFFICIAL.appid
    ));
    let body = json!({"grant_type": "client_credential", "appid": OFFICIAL.appid,
                      "secret": "anything", "force_refresh": true});
    let stable = rig.post_json(&format!("{p}/cgi-bin/stable_token"), &body);
    for r in [&classic, &stable] {
        assert_eq!(r.status, 200, "{}", r.body_text());
        assert!(r
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")));
        assert_eq!(
            json_of(r),
            json!({"access_token": STAND_IN, "expires_in": 7200})
        );
    }
    let calls = rig.mock(OFFICIAL).calls();
    assert_eq!(calls["token"], 0, "{calls}");
    assert_eq!(calls["refused_token"], json!(null), "{calls}");
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.api_stand_in"),
        2,
        "{counters:?}"
    );
    assert_eq!(stat(&counters, "wechat_gate.token_forced"), 0);
    rig.assert_sink_untouched(&[OFFICIAL.secret]);
}

#[test]
fn large_media_goes_up_and_comes_down_whole() {
    let rig = rig(OFFICIAL, json!({}));
    // Down: 3.5 MB, over three times Envoy's default buffer (and under the test
    // client's 4 MiB).
    let size = 3_500_000;
    let id = rig.mock(OFFICIAL).plant_media_of_size(size, "big.bin");
    let r = rig.get(&format!(
        "{}/cgi-bin/media/get?media_id={id}",
        OFFICIAL.path
    ));
    assert_eq!(r.status, 200);
    assert!(
        r.body == media_pattern(size),
        "{} bytes differ",
        r.body.len()
    );
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"big.bin\"")
    );
    // Up and back: 3.5 MB in a multipart form, as the SDKs send it.
    let image = media_pattern(size);
    let back = upload(&rig, "photo.jpg", "image/jpeg", &image);
    assert!(
        back.body == image,
        "the upload came back as {} bytes",
        back.body.len()
    );
    assert_eq!(back.header("content-type"), Some("image/jpeg"));
    // Up: 9 MiB of video, under WeChat's 10 MB and max_body_bytes (the mock reads the
    // whole form, or refuses it).
    let video = media_pattern(9 * 1024 * 1024);
    let (content_type, form) = media_form("clip.mp4", "video/mp4", &video);
    assert_answered(&rig.call_from(
        CALLER,
        "POST",
        &format!("{}/cgi-bin/media/upload?type=video", OFFICIAL.path),
        Some(&content_type),
        &form,
    ));
    assert_eq!(rig.mock(OFFICIAL).count("media_upload"), 2);
    rig.assert_sink_untouched(&[OFFICIAL.secret]);
}

/// Uploads `bytes` as `filename` through the gate and downloads them back.
fn upload(rig: &Rig, filename: &str, content_type: &str, bytes: &[u8]) -> Response {
    let (form_type, form) = media_form(filename, content_type, bytes);
    let up = rig.call_from(
        CALLER,
        "POST",
        &format!("{}/cgi-bin/media/upload?type=image", OFFICIAL.path),
        Some(&form_type),
        &form,
    );
    let v = assert_answered(&up);
    let media_id = v["media_id"].as_str().expect("a media_id");
    rig.get(&format!(
        "{}/cgi-bin/media/get?media_id={media_id}",
        OFFICIAL.path
    ))
}

#[test]
fn tickets_come_from_the_cache_until_300_s_before_they_expire() {
    let rig = rig(OFFICIAL, json!({}));
    let ticket = |rig: &Rig| {
        let r = rig.get(&format!(
            "{}/cgi-bin/ticket/getticket?type=jsapi",
            OFFICIAL.path
        ));
        let v = assert_answered(&r);
        assert_eq!(v["errmsg"], "ok", "WeChat's reply shape: {v}");
        v["ticket"].as_str().expect("a ticket").to_string()
    };
    let first = ticket(&rig);
    assert_eq!(ticket(&rig), first, "the second from the cache");
    assert_eq!(rig.mock(OFFICIAL).count("getticket_jsapi"), 1);
    // A ticket that lives 200 s is already within 300 s of its expiry: fetched each time.
    let rig = crate::harness::api::rig(OFFICIAL, json!({}));
    rig.mock(OFFICIAL)
        .set_faults(json!({"ticket_expires_in": 200}));
    let (a, b) = (ticket(&rig), ticket(&rig));
    assert_ne!(a, b);
    assert_eq!(rig.mock(OFFICIAL).count("getticket_jsapi"), 2);
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.ticket_fetches"),
        2,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.ticket_hits"),
        0,
        "{counters:?}"
    );
}

#[test]
fn the_gates_own_endpoints_refuse_what_they_do_not_serve() {
    let rig = crate::harness::api::builder()
        .account(OFFICIAL, json!({}))
        .account(MINI, json!({}))
        .start();
    let p = OFFICIAL.path;
    assert_refusal(
        &rig.get(&format!("{p}/wechat-gate/jssdk-config")),
        400,
        94000,
    );
    assert_refusal(&rig.get(&format!("{p}/wechat-gate/other")), 404, 94040);
    let mini = format!(
        "{}/wechat-gate/jssdk-config?url=https%3A%2F%2Fa.example%2F",
        MINI.path
    );
    assert_refusal(&rig.get(&mini), 404, 94040);
    assert_eq!(rig.envoy.counter("wechat_gate.api_calls.refused"), 3);
    rig.assert_sink_untouched(&[OFFICIAL.secret, MINI.secret]);
}

#[test]
fn no_token_to_be_had_is_a_503_with_wechats_advice_and_no_call() {
    for (code, advice) in [
        (40164, "whitelist"),
        (89503, "confirm"),
        (40125, "AppSecret"),
    ] {
        let rig = rig(OFFICIAL, json!({}));
        for mock in [rig.mock(OFFICIAL), &rig.upstreams(OFFICIAL).backup] {
            mock.set_faults(json!({"errcodes": {"stable_token": code}}));
        }
        let r = rig.get(&user_info());
        assert_refusal(&r, 503, 95030);
        let errmsg = json_of(&r)["errmsg"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(errmsg.contains(&code.to_string()), "{code}: {errmsg}");
        assert!(
            errmsg.to_lowercase().contains(&advice.to_lowercase()),
            "{code}: the advice ({advice}) in {errmsg}"
        );
        assert_eq!(rig.mock(OFFICIAL).count("user_info"), 0);
        assert_eq!(rig.envoy.counter("wechat_gate.api_calls.unanswered"), 1);
        let log = rig.envoy.log_text();
        assert!(
            log.lines()
                .any(|l| l.contains("no access token for mp") && l.contains(&code.to_string())),
            "{code}: no log line says why there is no token"
        );
    }
}

#[test]
fn wechat_unreachable_is_a_502_and_a_broken_call_is_not_repeated() {
    let mut rig = rig(OFFICIAL, json!({}));
    assert_answered(&rig.get(&user_info()));
    // The connection breaks after the call was sent: not sent again, anywhere.
    rig.mock(OFFICIAL).set_faults(json!({"drop": 1}));
    let r = rig.post_json(&custom_send(), &custom_text("oUser0001", "dropped"));
    assert_refusal(&r, 502, 95020);
    assert_eq!(rig.mock(OFFICIAL).count("custom_send"), 1);
    assert_eq!(rig.upstreams(OFFICIAL).backup.count("custom_send"), 0);
    // Every upstream refuses the connection (the primary is gone, the backup closes
    // every new one unread): nothing was sent.
    rig.stop_primary(OFFICIAL);
    rig.upstreams(OFFICIAL)
        .backup
        .set_faults(json!({"refuse": 1000}));
    assert_refusal(&rig.get(&user_info()), 502, 95020);
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.api_calls.unanswered"),
        2,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.api_calls.answered"),
        1,
        "{counters:?}"
    );
}
