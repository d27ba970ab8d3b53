//! One call: the request the gate makes (the token or the secret in the query, the
//! caller's other parameters kept, the body byte for byte), and WeChat's reply (or
//! Envoy's for it) judged.

use super::{config, config_on, REAL, SECRET};
use crate::api::call::{Call, Next, Reply};
use crate::api::route::{route, Route};
use crate::api::{Answer, Outcome};
use crate::config::ApiConfig;
use crate::token::Outgoing;

fn call_for(c: &ApiConfig, method: &str, path: &str, content_type: Option<&str>) -> Call {
    let route = route(
        c,
        method,
        path.as_bytes(),
        Some("10.0.0.1".parse().expect("ip")),
    );
    let Route::Call(target) = route else {
        panic!("{path}: {route:?}");
    };
    Call::new(target, content_type.map(str::to_string))
}

fn sent(c: &ApiConfig, call: &mut Call, token: &str) -> Outgoing {
    call.request(&c.api, Some(token)).expect("an upstream")
}

fn path(out: &Outgoing) -> &str {
    out.header(":path").expect("a :path")
}

/// The `:path`'s path and its query's pairs, decoded.
fn pairs(out: &Outgoing) -> (String, Vec<(String, String)>) {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .expect("utf-8")
            .into_owned()
    };
    let (p, q) = path(out).split_once('?').expect("a query");
    let pairs = q
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect();
    (p.to_string(), pairs)
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn json_reply(status: u32, body: &str) -> Reply {
    Reply {
        status: Some(status),
        content_type: Some("application/json; encoding=utf-8".into()),
        disposition: None,
        body: body.as_bytes().to_vec(),
    }
}

/// Envoy's own text reply.
fn envoy(status: u32, text: &str) -> Reply {
    Reply {
        status: Some(status),
        content_type: Some("text/plain".into()),
        disposition: None,
        body: text.as_bytes().to_vec(),
    }
}

fn answer(next: Next) -> Answer {
    match next {
        Next::Answer { answer, .. } => answer,
        other => panic!("not an answer: {other:?}"),
    }
}

fn errcode_of(a: &Answer) -> i64 {
    let v: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
    v["errcode"].as_i64().expect("an errcode")
}

#[test]
fn the_real_token_replaces_whatever_the_caller_sent_once() {
    let c = config();
    let mut call = call_for(
        &c,
        "GET",
        "/wechat-api/mp/cgi-bin/user/info?openid=o1&access_token=STAND_IN&lang=zh_CN&access_token=x2",
        None,
    );
    let out = sent(&c, &mut call, REAL);
    assert_eq!(
        pairs(&out),
        (
            "/cgi-bin/user/info".to_string(),
            owned(&[("access_token", REAL), ("openid", "o1"), ("lang", "zh_CN")])
        )
    );
    assert_eq!(out.cluster, "a");
    assert_eq!(out.header(":authority"), Some("api.weixin.qq.com"));
    assert_eq!(out.header(":method"), Some("GET"));
    assert_eq!(out.body, None);

    let mut bare = call_for(&c, "GET", "/wechat-api/mp/cgi-bin/get_api_domain_ip", None);
    assert_eq!(
        pairs(&sent(&c, &mut bare, REAL)),
        (
            "/cgi-bin/get_api_domain_ip".to_string(),
            owned(&[("access_token", REAL)])
        )
    );
}

#[test]
fn sns_calls_carry_the_appid_and_secret_and_no_token() {
    let c = config_on("mini_program");
    let mut call = call_for(
        &c,
        "GET",
        "/wechat-api/mp/sns/jscode2session?appid=wxOTHER&js_code=CODE&secret=guess&access_token=t&grant_type=authorization_code",
        None,
    );
    assert!(!call.needs_token());
    let out = call.request(&c.api, None).expect("an upstream");
    let expected = owned(&[
        ("appid", super::APPID),
        ("secret", SECRET),
        ("js_code", "CODE"),
        ("grant_type", "authorization_code"),
    ]);
    assert_eq!(
        pairs(&out),
        ("/sns/jscode2session".to_string(), expected.clone())
    );
    // A token handed to it by mistake is not sent either.
    let out = call.request(&c.api, Some(REAL)).expect("an upstream");
    assert_eq!(pairs(&out).1, expected);
}

#[test]
fn the_body_and_content_type_go_as_they_came() {
    let c = config();
    let body: Vec<u8> = (0..=255u8).chain(*b"--boundary\r\n\0").collect();
    let mut call = call_for(
        &c,
        "POST",
        "/wechat-api/mp/cgi-bin/media/upload?type=image",
        Some("multipart/form-data; boundary=boundary"),
    );
    call.set_body(body.clone());
    let out = sent(&c, &mut call, REAL);
    assert_eq!(out.body.as_deref(), Some(body.as_slice()));
    assert_eq!(out.header(":method"), Some("POST"));
    assert_eq!(
        out.header("content-type"),
        Some("multipart/form-data; boundary=boundary")
    );
    assert_eq!(out.headers.len(), 4, "{:?}", out.headers);
}

#[test]
fn a_refused_token_is_replaced_once_and_the_second_answer_goes_to_the_caller() {
    let c = config();
    for code in [40001, 40014, 42001] {
        let mut call = call_for(&c, "GET", "/wechat-api/mp/cgi-bin/user/info?openid=o", None);
        sent(&c, &mut call, REAL);
        let refused = json_reply(200, &format!(r#"{{"errcode":{code},"errmsg":"invalid"}}"#));
        assert_eq!(
            call.on_reply(&c.api, &refused, super::NOW),
            Next::NewToken,
            "{code}"
        );
        assert_eq!(call.refused_token(), Some(REAL));
        let out = sent(&c, &mut call, "NEW-TOKEN");
        assert_eq!(
            pairs(&out).1,
            owned(&[("access_token", "NEW-TOKEN"), ("openid", "o")])
        );
        assert_eq!(call.refused_token(), None);
        let second = answer(call.on_reply(&c.api, &refused, super::NOW));
        assert_eq!(second.status, 200);
        assert_eq!(second.outcome, Outcome::Errcode);
        assert_eq!(
            second.body, refused.body,
            "WeChat's second answer, as it is"
        );
    }
}

#[test]
fn a_call_not_sent_fails_over_then_is_unreachable() {
    let c = config();
    for text in [
        "no healthy upstream",
        "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
    ] {
        let mut call = call_for(&c, "GET", "/wechat-api/mp/cgi-bin/user/info", None);
        sent(&c, &mut call, REAL);
        assert_eq!(call.on_reply(&c.api, &envoy(503, text), 0), Next::FailOver, "{text}");
        assert_eq!(sent(&c, &mut call, REAL).cluster, "b");
        let last = answer(call.on_reply(&c.api, &envoy(503, text), 0));
        assert_eq!((last.status, errcode_of(&last)), (502, 95020), "{text}");
        assert_eq!(last.outcome, Outcome::Unanswered);
        assert!(call.request(&c.api, Some(REAL)).is_none(), "no upstream left");
    }
}

#[test]
fn a_call_sent_then_broken_or_unanswered_is_never_repeated() {
    let c = config();
    let broken = envoy(
        503,
        "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
    );
    let reset = Reply::default();
    for (reply, status, errcode) in [
        (broken, 502, 95020),
        (reset, 502, 95020),
        (envoy(504, "upstream request timeout"), 504, 95040),
    ] {
        let mut call = call_for(
            &c,
            "POST",
            "/wechat-api/mp/cgi-bin/message/custom/send",
            None,
        );
        sent(&c, &mut call, REAL);
        let a = answer(call.on_reply(&c.api, &reply, 0));
        assert_eq!((a.status, errcode_of(&a)), (status, errcode), "{reply:?}");
        assert_eq!(a.outcome, Outcome::Unanswered);
    }
}

#[test]
fn wechats_own_replies_are_passed_on() {
    let c = config();
    let mut call = call_for(&c, "GET", "/wechat-api/mp/cgi-bin/user/info", None);
    sent(&c, &mut call, REAL);
    let busy = json_reply(503, r#"{"errcode":-1,"errmsg":"system error"}"#);
    let a = answer(call.on_reply(&c.api, &busy, 0));
    assert_eq!((a.status, a.body.clone()), (503, busy.body.clone()));
    assert_eq!(a.outcome, Outcome::Errcode);
    assert_eq!(
        a.headers,
        vec![(
            "content-type",
            "application/json; encoding=utf-8".to_string()
        )]
    );
    let mut call = call_for(&c, "GET", "/wechat-api/mp/cgi-bin/user/info", None);
    sent(&c, &mut call, REAL);
    let ok = json_reply(200, r#"{"errcode":0,"errmsg":"ok","openid":"o"}"#);
    assert_eq!(
        answer(call.on_reply(&c.api, &ok, 0)).outcome,
        Outcome::Answered
    );
}

#[test]
fn media_keeps_its_type_and_disposition() {
    let c = config();
    let mut call = call_for(
        &c,
        "GET",
        "/wechat-api/mp/cgi-bin/media/get?media_id=m",
        None,
    );
    sent(&c, &mut call, REAL);
    let image: Vec<u8> = vec![0xff, 0xd8, 0xff, 0xe0, b'{', 0, 1];
    let reply = Reply {
        status: Some(200),
        content_type: Some("image/jpeg".into()),
        disposition: Some(r#"attachment; filename="m.jpg""#.into()),
        body: image.clone(),
    };
    let a = answer(call.on_reply(&c.api, &reply, 0));
    assert_eq!(a.status, 200);
    assert_eq!(a.body, image);
    assert_eq!(a.outcome, Outcome::Answered);
    assert_eq!(
        a.headers,
        vec![
            ("content-type", "image/jpeg".to_string()),
            (
                "content-disposition",
                r#"attachment; filename="m.jpg""#.to_string()
            ),
        ]
    );
}

#[test]
fn neither_a_call_nor_its_request_shows_a_token_or_the_secret() {
    let c = config();
    let mut call = call_for(
        &c,
        "GET",
        "/wechat-api/mp/cgi-bin/user/info?access_token=CALLERS",
        None,
    );
    let out = sent(&c, &mut call, REAL);
    call.on_reply(&c.api, &json_reply(200, r#"{"errcode":40001}"#), 0);
    for text in [format!("{call:?}"), format!("{out:?}")] {
        assert!(!text.contains(REAL) && !text.contains("CALLERS"), "{text}");
    }
    let c = config_on("mini_program");
    let mut call = call_for(
        &c,
        "GET",
        "/wechat-api/mp/sns/jscode2session?js_code=c",
        None,
    );
    let out = call.request(&c.api, None).expect("an upstream");
    assert!(
        pairs(&out).1.contains(&("secret".into(), SECRET.into())),
        "the secret is sent"
    );
    for text in [format!("{call:?}"), format!("{out:?}")] {
        assert!(!text.contains(SECRET), "{text}");
    }
}

#[test]
fn a_users_oauth_calls_go_as_the_caller_wrote_them_and_are_never_retried() {
    let c = config();
    for p in ["/sns/userinfo", "/sns/auth", "/sns/oauth2/refresh_token"] {
        let query = "access_token=USER_TOKEN&openid=o1&lang=zh_CN";
        let mut call = call_for(&c, "GET", &format!("/wechat-api/mp{p}?{query}"), None);
        assert!(!call.needs_token(), "{p}");
        let out = call.request(&c.api, None).expect("an upstream");
        assert_eq!(path(&out), format!("{p}?{query}"));
        assert!(!format!("{out:?}{}", path(&out)).contains(REAL));
        assert!(!path(&out).contains(SECRET));
        // WeChat refusing the user's token is the caller's to handle: passed on.
        let refused = Reply {
            status: Some(200),
            content_type: Some("application/json".into()),
            disposition: None,
            body: br#"{"errcode":40001,"errmsg":"invalid credential"}"#.to_vec(),
        };
        match call.on_reply(&c.api, &refused, 1_700_000_000) {
            Next::Answer { answer, .. } => assert_eq!(answer.outcome, Outcome::Errcode),
            other => panic!("{p}: {other:?}"),
        }
    }
}
