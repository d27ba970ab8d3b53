//! mock-api's API-role faults and token controls, driven directly (no Envoy): a token
//! rotated or expired under traffic, stable_token handing back a stale token, an
//! endpoint busy for its first calls, calls read and never answered, connections refused,
//! and a backup mock-api that answers when the primary is gone.

use super::mock_api::{errcode_of, raw_exchange, start, APPID, SECRET};
use crate::harness::mock_api::{token_of, MockApi};
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn user_info(api: &MockApi, token: &str) -> Value {
    api.get(&format!(
        "/cgi-bin/user/info?access_token={token}&openid=o1"
    ))
}

#[test]
fn a_rotated_token_gets_40001_and_an_expired_one_42001() {
    let api = start(&[]);
    let t1 = token_of(&api.stable_token(APPID, SECRET, false));
    api.rotate_token();
    assert_eq!(errcode_of(&user_info(&api, &t1)), 40001);
    let t2 = token_of(&api.stable_token(APPID, SECRET, false));
    assert_ne!(t1, t2, "stable_token hands out the rotated-in token");
    assert_eq!(user_info(&api, &t2)["subscribe"], 1);

    api.expire_token();
    let expired = json!({"errcode": 42001, "errmsg": "access_token expired"});
    assert_eq!(user_info(&api, &t2), expired);
    assert_eq!(user_info(&api, &t2), expired, "until a new one is fetched");
    let t3 = token_of(&api.stable_token(APPID, SECRET, false));
    assert_ne!(t3, t2, "an expired token is not handed out");
    assert_eq!(user_info(&api, &t3)["subscribe"], 1);
    assert_eq!(errcode_of(&user_info(&api, &t2)), 40001);
    assert_eq!(api.count("refused_token"), 4);
    assert_eq!(api.count("stable_token"), 3, "controls are not calls");
}

#[test]
fn stale_stable_hands_back_the_replaced_token_until_forced() {
    let api = start(&[]);
    let t1 = token_of(&api.stable_token(APPID, SECRET, false));
    let t2 = token_of(&api.classic_token(APPID, SECRET));
    api.set_faults(json!({"stale_stable": 2}));
    assert_eq!(
        token_of(&api.stable_token(APPID, SECRET, false)),
        t1,
        "stale"
    );
    assert_eq!(errcode_of(&user_info(&api, &t1)), 40001, "and refused");
    let forced = token_of(&api.stable_token(APPID, SECRET, true));
    assert!(
        forced != t1 && forced != t2,
        "force_refresh issues a new one"
    );
    assert_eq!(
        token_of(&api.stable_token(APPID, SECRET, false)),
        t2,
        "the second stale answer: the token force_refresh replaced"
    );
    assert_eq!(token_of(&api.stable_token(APPID, SECRET, false)), forced);
    assert_eq!(user_info(&api, &forced)["subscribe"], 1);
}

#[test]
fn busy_answers_minus_one_for_the_first_calls_of_an_endpoint() {
    let api = start(&[]);
    let token = token_of(&api.stable_token(APPID, SECRET, false));
    api.set_faults(json!({"busy": {"custom_send": 1, "user_info": 2}}));
    let target = format!("/cgi-bin/message/custom/send?access_token={token}");
    let body = br#"{"touser":"o1","msgtype":"text","text":{"content":"x"}}"#;
    assert_eq!(
        api.json("POST", &target, body),
        json!({"errcode": -1, "errmsg": "system error"})
    );
    assert_eq!(api.json("POST", &target, body)["errcode"], 0);
    assert_eq!(api.messages().len(), 1, "a busy answer kept nothing");
    assert_eq!(errcode_of(&user_info(&api, &token)), -1);
    assert_eq!(errcode_of(&user_info(&api, &token)), -1);
    assert_eq!(user_info(&api, &token)["subscribe"], 1);
    assert_eq!((api.count("custom_send"), api.count("user_info")), (2, 3));
    let r = api
        .call("POST", "/__faults", br#"{"busy":{"custom_sends":1}}"#)
        .expect("a response");
    assert_eq!(r.status, 400, "an unknown endpoint is refused");
}

/// Sends `raw` on a new connection; what a read within `wait` gets.
fn send_and_read(port: u16, raw: &[u8], wait: Duration) -> (TcpStream, std::io::Result<usize>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("timeout");
    stream.write_all(raw).expect("write");
    let mut buf = [0u8; 256];
    let read = stream.read(&mut buf);
    (stream, read)
}

// The only wait with no event to end it: that nothing comes is shown by a read that
// times out, kept short.
#[test]
fn hang_reads_the_call_and_never_answers() {
    let api = start(&[]);
    let token = token_of(&api.stable_token(APPID, SECRET, false));
    api.set_faults(json!({"hangs": {"custom_send": 1}, "hang": 1}));
    let body = r#"{"touser":"o1"}"#;
    let raw = format!(
        "POST /cgi-bin/message/custom/send?access_token={token} HTTP/1.1\r\nhost: x\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let wait = Duration::from_millis(500);
    for hung in ["hang (any endpoint)", "hangs (custom_send)"] {
        let (stream, read) = send_and_read(api.port, raw.as_bytes(), wait);
        match read {
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "{hung}: {e}"
            ),
            Ok(n) => panic!("{hung}: {n} bytes came, or the connection closed"),
        }
        drop(stream);
    }
    assert_eq!(api.count("custom_send"), 2, "hung calls are calls");
    assert!(api.messages().is_empty());
    let sent = api.json(
        "POST",
        &format!("/cgi-bin/message/custom/send?access_token={token}"),
        body.as_bytes(),
    );
    assert_eq!(sent["errcode"], 0, "then answered");
}

#[test]
fn refuse_closes_connections_before_reading() {
    let api = start(&[]);
    api.set_faults(json!({"refuse": 1}));
    let refused = raw_exchange(api.port, b"GET /__calls HTTP/1.1\r\nhost: x\r\n\r\n");
    match refused {
        Ok(bytes) => assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes)),
        Err(e) => assert_ne!(e.kind(), ErrorKind::WouldBlock, "not closed: {e}"),
    }
    assert_eq!(
        api.calls(),
        json!({"stable_token": 0, "token": 0, "getcallbackip": 0, "get_api_domain_ip": 0,
               "callback_check": 0, "refused_connections": 1})
    );
    token_of(&api.stable_token(APPID, SECRET, false));
}

#[test]
fn a_backup_answers_when_the_primary_is_stopped() {
    let primary = start(&[]);
    let backup = start(&[]);
    let token = token_of(&primary.stable_token(APPID, SECRET, false));
    assert_eq!(errcode_of(&user_info(&backup, &token)), 40001);
    backup.set_token(&token);
    let port = primary.port;
    primary.finish();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens where the primary was"
    );
    assert_eq!(
        user_info(&backup, &token)["subscribe"],
        1,
        "the primary's token"
    );
    assert_eq!(token_of(&backup.stable_token(APPID, SECRET, false)), token);
    let r = backup
        .call("POST", "/__token", br#"{"access_token":""}"#)
        .expect("a response");
    assert_eq!(r.status, 400);
}
