//! mock-api's API-role calls, driven directly (no Envoy): user/info, the message calls,
//! media upload and download, getticket, the two `sns` calls, and the access-token
//! check they all make.

use super::mock_api::{assert_secrets_not_printed, errcode_of, raw_exchange, start, APPID, SECRET};
use crate::harness::mock_api::{media_form, media_id_of, media_pattern, token_of, MockApi};
use serde_json::{json, Value};

fn user_info(api: &MockApi, token: &str) -> Value {
    api.get(&format!(
        "/cgi-bin/user/info?access_token={token}&openid=oUSER1&lang=en"
    ))
}

fn custom_send(api: &MockApi, token: &str, body: &Value) -> Value {
    api.json(
        "POST",
        &format!("/cgi-bin/message/custom/send?access_token={token}"),
        body.to_string().as_bytes(),
    )
}

#[test]
fn every_token_bearing_call_checks_the_token() {
    let api = start(&[]);
    let t1 = token_of(&api.stable_token(APPID, SECRET, false));
    let info = user_info(&api, &t1);
    assert_eq!(
        (
            &info["subscribe"],
            &info["openid"],
            &info["nickname"],
            &info["language"]
        ),
        (
            &json!(1),
            &json!("oUSER1"),
            &json!("mock user"),
            &json!("en")
        ),
        "{info}"
    );
    let targets = [
        "/cgi-bin/user/info?openid=o1",
        "/cgi-bin/ticket/getticket?type=jsapi",
        "/cgi-bin/media/get?media_id=x",
    ];
    for target in targets {
        let missing = api.get(target);
        assert_eq!(
            missing,
            json!({"errcode": 41001, "errmsg": "access_token missing"}),
            "{target}"
        );
    }
    let t2 = token_of(&api.stable_token(APPID, SECRET, true));
    for target in targets {
        let rotated = api.get(&format!("{target}&access_token={t1}"));
        assert_eq!(
            rotated,
            json!({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}),
            "{target}"
        );
    }
    let send = custom_send(&api, &t1, &json!({"touser": "o1"}));
    assert_eq!(errcode_of(&send), 40001);
    api.expire_token();
    let expired = json!({"errcode": 42001, "errmsg": "access_token expired"});
    assert_eq!(user_info(&api, &t2), expired);
    assert_eq!(custom_send(&api, &t2, &json!({"touser": "o1"})), expired);
    assert!(api.messages().is_empty(), "refused calls keep no message");
    let counts = api.calls();
    assert_eq!(counts["refused_token"], 9, "{counts}");
    assert_eq!(counts["user_info"], 4, "{counts}");
    assert_eq!(counts["custom_send"], 2, "{counts}");
    assert_eq!(
        (&counts["getticket_jsapi"], &counts["media_get"]),
        (&json!(2), &json!(2)),
        "{counts}"
    );
    assert_secrets_not_printed(&api.finish(), &[t1, t2]);
}

#[test]
fn message_calls_keep_their_bodies_in_order() {
    let api = start(&[]);
    let token = token_of(&api.stable_token(APPID, SECRET, false));
    let text = json!({"touser": "o1", "msgtype": "text", "text": {"content": "你好"}});
    assert_eq!(
        custom_send(&api, &token, &text),
        json!({"errcode": 0, "errmsg": "ok"})
    );
    let wecom =
        json!({"touser": "zhangsan", "msgtype": "text", "agentid": 1, "text": {"content": "hi"}});
    assert_eq!(
        api.json(
            "POST",
            &format!("/cgi-bin/message/send?access_token={token}"),
            wecom.to_string().as_bytes()
        ),
        json!({"errcode": 0, "errmsg": "ok", "invaliduser": ""})
    );
    let image = json!({"touser": "o2", "msgtype": "image", "image": {"media_id": "M"}});
    custom_send(&api, &token, &image);
    assert_eq!(
        api.messages(),
        vec![
            json!({"endpoint": "custom_send", "body": text}),
            json!({"endpoint": "wecom_message_send", "body": wecom}),
            json!({"endpoint": "custom_send", "body": image}),
        ]
    );
    let target = format!("/cgi-bin/message/custom/send?access_token={token}");
    assert_eq!(
        api.json("POST", &target, b"{not json"),
        json!({"errcode": 47001, "errmsg": "data format error"})
    );
    assert_eq!(errcode_of(&api.get(&target)), 43002);
    assert_eq!(api.messages().len(), 3);
    assert_eq!(api.count("custom_send"), 4);
    assert_eq!(api.count("wecom_message_send"), 1);
}

fn upload(api: &MockApi, token: &str, kind: &str, filename: &str, bytes: &[u8]) -> Value {
    let (content_type, body) = media_form(filename, "image/png", bytes);
    let target = format!("/cgi-bin/media/upload?access_token={token}&type={kind}");
    let headers: &[(&str, &[u8])] = &[("content-type", content_type.as_bytes())];
    let r = api
        .call_with("POST", &target, headers, &body)
        .expect("a response");
    assert_eq!(r.status, 200, "{}", r.body_text());
    serde_json::from_slice(&r.body).expect("JSON")
}

fn media_get(api: &MockApi, token: &str, media_id: &str) -> wechat::http1::client::Response {
    api.call(
        "GET",
        &format!("/cgi-bin/media/get?access_token={token}&media_id={media_id}"),
        b"",
    )
    .expect("a response")
}

#[test]
fn media_uploads_and_downloads_byte_for_byte() {
    let api = start(&[]);
    let token = token_of(&api.stable_token(APPID, SECRET, false));
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let uploaded = upload(&api, &token, "image", "cat.png", &bytes);
    assert_eq!(uploaded["type"], "image", "{uploaded}");
    assert!(uploaded["created_at"]
        .as_u64()
        .is_some_and(|t| t > 1_700_000_000));
    let got = media_get(&api, &token, &media_id_of(&uploaded));
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(
        got.header("content-disposition"),
        Some("attachment; filename=\"cat.png\"")
    );
    assert!(got.body == bytes, "the same bytes");

    let unknown = media_get(&api, &token, "MOCKMEDIA_nothing");
    assert_eq!(
        serde_json::from_slice::<Value>(&unknown.body).expect("JSON"),
        json!({"errcode": 40007, "errmsg": "invalid media_id"})
    );
    assert_eq!(
        errcode_of(&upload(&api, &token, "gif", "a.gif", b"x")),
        40004
    );
    let at_limit = vec![7u8; 10 * 1024 * 1024];
    assert_eq!(
        upload(&api, &token, "video", "v.mp4", &at_limit)["type"],
        "video"
    );
    let over = vec![7u8; 10 * 1024 * 1024 + 1];
    assert_eq!(
        upload(&api, &token, "video", "v.mp4", &over),
        json!({"errcode": 40006, "errmsg": "invalid media size"})
    );
    let not_multipart = api.json(
        "POST",
        &format!("/cgi-bin/media/upload?access_token={token}&type=image"),
        b"{}",
    );
    assert_eq!(errcode_of(&not_multipart), 41005);
    assert_eq!((api.count("media_upload"), api.count("media_get")), (5, 2));
}

#[test]
fn planted_media_downloads_without_an_upload() {
    let api = start(&[]);
    let token = token_of(&api.stable_token(APPID, SECRET, false));
    let small = api.plant_media(b"%PDF-1.4 mock", "report.pdf", "application/pdf");
    let got = media_get(&api, &token, &small);
    assert_eq!(
        (got.header("content-type"), got.body.as_slice()),
        (Some("application/pdf"), &b"%PDF-1.4 mock"[..])
    );
    // Larger than the project's client reads: read raw, to the close.
    let size = 12 * 1024 * 1024 + 3;
    let large = api.plant_media_of_size(size, "big.bin");
    let raw = format!(
        "GET /cgi-bin/media/get?access_token={token}&media_id={large} HTTP/1.1\r\n\
         host: x\r\nconnection: close\r\n\r\n"
    );
    let got = raw_exchange(api.port, raw.as_bytes()).expect("the download");
    let head_end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&got[..head_end]);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    for line in [
        "content-type: application/octet-stream",
        "content-disposition: attachment; filename=\"big.bin\"",
    ] {
        assert!(head.contains(line), "{line} in {head}");
    }
    assert!(
        got[head_end + 4..] == media_pattern(size),
        "the pattern, {size} bytes"
    );
    assert_eq!(api.count("media_get"), 2, "planting is not a call");
    assert_eq!(api.count("media_upload"), 0);
}

#[test]
fn tickets_are_counted_per_type() {
    let api = start(&[]);
    let token = token_of(&api.stable_token(APPID, SECRET, false));
    let ticket = |kind: &str| {
        api.get(&format!(
            "/cgi-bin/ticket/getticket?access_token={token}&type={kind}"
        ))
    };
    let first = ticket("jsapi");
    assert_eq!(
        (&first["errcode"], &first["errmsg"], &first["expires_in"]),
        (&json!(0), &json!("ok"), &json!(7200)),
        "{first}"
    );
    assert!(
        first["ticket"].as_str().is_some_and(|t| t.len() > 40),
        "{first}"
    );
    assert_ne!(
        ticket("jsapi")["ticket"],
        first["ticket"],
        "each fetch a new ticket"
    );
    assert_eq!(ticket("wx_card")["errcode"], 0);
    assert_eq!(errcode_of(&ticket("other")), 40097);
    api.set_faults(json!({"ticket_expires_in": 310}));
    assert_eq!(ticket("wx_card")["expires_in"], 310);
    let counts = api.calls();
    assert_eq!(
        (
            &counts["getticket_jsapi"],
            &counts["getticket_wx_card"],
            &counts["getticket"]
        ),
        (&json!(2), &json!(2), &json!(1)),
        "{counts}"
    );
}

#[test]
fn sns_calls_take_the_secret_and_a_code() {
    let api = start(&[]);
    let session = |appid: &str, secret: &str, code: &str| {
        api.get(&format!(
            "/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code"
        ))
    };
    let ok = session(APPID, SECRET, "C1");
    assert_eq!(ok["openid"], "oMockC1", "{ok}");
    assert!(
        ok["session_key"].is_string() && ok.get("errcode").is_none(),
        "{ok}"
    );
    assert_eq!(errcode_of(&session(APPID, "WRONG", "C1")), 40125);
    assert_eq!(errcode_of(&session("wxOTHER", SECRET, "C1")), 40013);
    assert_eq!(
        session(APPID, SECRET, "bad"),
        json!({"errcode": 40029, "errmsg": "invalid code"})
    );
    let oauth = api.get(&format!(
        "/sns/oauth2/access_token?appid={APPID}&secret={SECRET}&code=C2&grant_type=authorization_code"
    ));
    assert_eq!(
        (&oauth["openid"], &oauth["scope"], &oauth["expires_in"]),
        (&json!("oMockC2"), &json!("snsapi_base"), &json!(7200)),
        "{oauth}"
    );
    let user_token = oauth["access_token"].as_str().expect("a user token");
    assert!(oauth["refresh_token"].is_string());
    assert_eq!(
        errcode_of(&user_info(&api, user_token)),
        40001,
        "a user's token is not the account's"
    );
    let counts = api.calls();
    assert_eq!(
        (&counts["jscode2session"], &counts["oauth2_access_token"]),
        (&json!(4), &json!(1)),
        "{counts}"
    );
    assert_eq!(counts["stable_token"], 0, "no account token was issued");
}

#[test]
fn wecom_message_send_takes_the_gettoken_token() {
    let api = start(&[]);
    let reply = api.get(&format!(
        "/cgi-bin/gettoken?corpid={APPID}&corpsecret={SECRET}"
    ));
    let token = token_of(&reply);
    let target = format!("/cgi-bin/message/send?access_token={token}");
    let sent = api.json("POST", &target, br#"{"touser":"@all","msgtype":"text"}"#);
    assert_eq!(sent["invaliduser"], "");
    api.rotate_token();
    assert_eq!(
        errcode_of(&api.json("POST", &target, br#"{"touser":"@all"}"#)),
        40001
    );
    assert_eq!(api.count("wecom_message_send"), 2);
    assert_eq!(api.count("gettoken"), 1);
}
