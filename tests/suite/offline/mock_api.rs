//! `wechat-gate mock-api`, run as a process and driven over HTTP: WeChat's token and
//! callback IP endpoints, the run-time controls and fault injection.

use crate::harness::cli::cli;
use crate::harness::mock_api::{token_of, MockApi};
use crate::harness::wait_until;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub(super) const APPID: &str = "wxTEST";
pub(super) const SECRET: &str = "SECRET";

/// mock-api for the account `APPID`, with `extra` flags.
pub(super) fn start(extra: &[&str]) -> MockApi {
    MockApi::start(SECRET, &[&["--appid", APPID][..], extra].concat())
}

pub(super) fn errcode_of(reply: &Value) -> i64 {
    reply["errcode"]
        .as_i64()
        .unwrap_or_else(|| panic!("no errcode in {reply}"))
}

pub(super) fn assert_secrets_not_printed(out: &str, tokens: &[String]) {
    assert_eq!(out.lines().count(), 1, "only the listening line: {out:?}");
    assert!(!out.contains(SECRET), "the secret was printed");
    for t in tokens {
        assert!(!out.contains(t.as_str()), "a token was printed");
    }
}

#[test]
fn stable_token_is_shared_until_forced_and_guards_the_ip_lists() {
    let api = start(&[
        "--callback-ip",
        "101.226.103.0/25",
        "--callback-ip",
        "203.205.239.82",
        "--callback-ip",
        "240e:e1:a900:50::/64",
    ]);
    let t1 = a_shared_token_opens_both_ip_lists(&api);
    let t2 = force_refresh_replaces_the_token(&api, &t1);
    refusals_leave_the_current_token_alone(&api, &t2);
    let not_found = api.call("GET", "/cgi-bin/nothing", b"").expect("response");
    assert_eq!(not_found.status, 404);
    assert_eq!(
        serde_json::from_slice::<Value>(&not_found.body).expect("json"),
        json!({"errcode": -1, "errmsg": "not found"})
    );
    assert_eq!(
        api.calls(),
        json!({"stable_token": 8, "token": 0, "getcallbackip": 5, "get_api_domain_ip": 2, "callback_check": 0,
               "refused_token": 4})
    );
    let out = api.finish();
    assert_secrets_not_printed(&out, &[t1, t2]);
}

/// Two stable_token calls get the same token, which opens both IP lists.
fn a_shared_token_opens_both_ip_lists(api: &MockApi) -> String {
    let first = api.stable_token(APPID, SECRET, false);
    let t1 = token_of(&first);
    assert_eq!(first["expires_in"], 7200);
    let again = api.stable_token(APPID, SECRET, false);
    assert_eq!(token_of(&again), t1, "the same token while it lives");
    let remaining = again["expires_in"].as_u64().expect("expires_in");
    assert!((7190..=7200).contains(&remaining), "{remaining}");

    assert_eq!(
        api.callback_ips(&t1),
        json!({"ip_list": ["101.226.103.0/25", "203.205.239.82", "240e:e1:a900:50::/64"]})
    );
    assert_eq!(
        api.get(&format!("/cgi-bin/get_api_domain_ip?access_token={t1}")),
        json!({"ip_list": ["101.89.47.18", "101.91.34.103", "240e:e1:a900:50::18"]})
    );
    t1
}

/// `force_refresh` issues a new token; the old one gets 40001, none 41001.
fn force_refresh_replaces_the_token(api: &MockApi, t1: &str) -> String {
    let forced = api.stable_token(APPID, SECRET, true);
    let t2 = token_of(&forced);
    assert_ne!(t2, t1, "force_refresh issues a new token");
    assert_eq!(forced["expires_in"], 7200);
    let stale = api.callback_ips(t1);
    assert_eq!(errcode_of(&stale), 40001, "{stale}");
    assert_eq!(
        stale["errmsg"],
        "invalid credential, access_token is invalid or not latest"
    );
    assert_eq!(
        errcode_of(&api.get(&format!("/cgi-bin/get_api_domain_ip?access_token={t1}"))),
        40001
    );
    assert!(api.callback_ips(&t2)["ip_list"].is_array());
    let missing = json!({"errcode": 41001, "errmsg": "access_token missing"});
    assert_eq!(api.get("/cgi-bin/getcallbackip"), missing);
    assert_eq!(api.get("/cgi-bin/getcallbackip?access_token="), missing);
    t2
}

/// A wrong appid, secret, grant or body gets WeChat's errcode, and `current` lives on.
fn refusals_leave_the_current_token_alone(api: &MockApi, current: &str) {
    let refused = api.stable_token("wxOTHER", SECRET, false);
    assert_eq!(
        refused,
        json!({"errcode": 40013, "errmsg": "invalid appid"})
    );
    let refused = api.stable_token(APPID, "WRONG", false);
    assert_eq!(
        refused,
        json!({"errcode": 40125, "errmsg": "invalid appsecret"})
    );
    let bad_grant = json!({"grant_type": "password", "appid": APPID, "secret": SECRET});
    assert_eq!(
        api.json(
            "POST",
            "/cgi-bin/stable_token",
            bad_grant.to_string().as_bytes()
        ),
        json!({"errcode": 40002, "errmsg": "invalid grant_type"})
    );
    assert_eq!(
        api.json("POST", "/cgi-bin/stable_token", b"{not json"),
        json!({"errcode": 47001, "errmsg": "data format error"})
    );
    assert_eq!(token_of(&api.stable_token(APPID, SECRET, false)), current);
}

#[test]
fn classic_token_replaces_the_previous_one_on_every_call() {
    let api = start(&["--token-ttl", "600"]);
    let first = api.classic_token(APPID, SECRET);
    let t1 = token_of(&first);
    assert_eq!(first["expires_in"], 600);
    let t2 = token_of(&api.classic_token(APPID, SECRET));
    assert_ne!(t1, t2);
    assert_eq!(errcode_of(&api.callback_ips(&t1)), 40001);
    assert_eq!(
        api.callback_ips(&t2),
        json!({"ip_list": ["127.0.0.1"]}),
        "the default list"
    );

    // A stable_token call shares the classic one while it lives.
    assert_eq!(token_of(&api.stable_token(APPID, SECRET, false)), t2);

    assert_eq!(
        errcode_of(&api.classic_token("wxOTHER", SECRET)),
        40013,
        "wrong appid"
    );
    assert_eq!(
        errcode_of(&api.classic_token(APPID, "WRONG")),
        40125,
        "wrong secret"
    );
    assert_eq!(
        errcode_of(&api.get(&format!("/cgi-bin/token?appid={APPID}&secret={SECRET}"))),
        40002,
        "missing grant_type"
    );
    assert_eq!(
        errcode_of(&api.get(&format!(
            "/cgi-bin/token?grant_type=authorization_code&appid={APPID}&secret={SECRET}"
        ))),
        40002
    );
    assert_eq!(
        api.callback_ips(&t2)["ip_list"],
        json!(["127.0.0.1"]),
        "refusals do not invalidate"
    );
    assert_eq!(
        api.calls(),
        json!({"stable_token": 1, "token": 6, "getcallbackip": 3, "get_api_domain_ip": 0, "callback_check": 0,
               "refused_token": 1})
    );
    let out = api.finish();
    assert_secrets_not_printed(&out, &[t1, t2]);
}

#[test]
fn an_expired_token_gets_42001_and_stable_token_issues_a_new_one() {
    let api = start(&["--token-ttl", "1"]);
    let first = api.stable_token(APPID, SECRET, false);
    let t1 = token_of(&first);
    assert_eq!(first["expires_in"], 1);
    let expired = json!({"errcode": 42001, "errmsg": "access_token expired"});
    assert!(
        wait_until(Duration::from_secs(5), || api.callback_ips(&t1) == expired).is_some(),
        "never expired"
    );
    let t2 = token_of(&api.stable_token(APPID, SECRET, false));
    assert_ne!(t1, t2);
    assert_eq!(api.callback_ips(&t2)["ip_list"], json!(["127.0.0.1"]));
    assert_eq!(
        errcode_of(&api.callback_ips(&t1)),
        40001,
        "no longer the latest"
    );
}

#[test]
fn the_callback_list_changes_at_run_time() {
    let api = start(&["--callback-ip", "127.0.0.2"]);
    let token = token_of(&api.stable_token(APPID, SECRET, false));
    assert_eq!(api.callback_ips(&token)["ip_list"], json!(["127.0.0.2"]));

    let set = api.json(
        "POST",
        "/__callback_ips",
        br#"["1.2.3.4","10.0.0.0/8","2001:db8::/32"]"#,
    );
    assert_eq!(set, json!({"ok": true, "entries": 3}));
    assert_eq!(
        api.callback_ips(&token)["ip_list"],
        json!(["1.2.3.4", "10.0.0.0/8", "2001:db8::/32"])
    );
    let set = api.json("PUT", "/__callback_ips", br#"["127.0.0.3"]"#);
    assert_eq!(set, json!({"ok": true, "entries": 1}));

    for bad in [&br#"["1.2.3.4","not-an-ip"]"#[..], b"{\"a\":1}", b"1.2.3.4"] {
        let r = api.call("POST", "/__callback_ips", bad).expect("response");
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
        assert!(!r.body_text().is_empty());
    }
    let r = api
        .call("POST", "/__callback_ips", br#"["1.2.3.4","not-an-ip"]"#)
        .expect("response");
    assert!(r.body_text().contains("not-an-ip"), "{}", r.body_text());
    assert_eq!(
        api.callback_ips(&token)["ip_list"],
        json!(["127.0.0.3"]),
        "a bad list changes nothing"
    );
    assert_eq!(
        api.calls(),
        json!({"stable_token": 1, "token": 0, "getcallbackip": 3, "get_api_domain_ip": 0, "callback_check": 0}),
        "control calls are not counted"
    );
}

#[test]
fn fail_answers_the_errcode_for_the_first_calls() {
    let api = start(&["--fail", "2", "--fail-errcode", "45009"]);
    for _ in 0..2 {
        let r = api.stable_token(APPID, SECRET, false);
        assert_eq!(errcode_of(&r), 45009, "{r}");
        assert!(r.get("access_token").is_none());
    }
    let token = token_of(&api.stable_token(APPID, SECRET, false));
    assert!(api.callback_ips(&token)["ip_list"].is_array());
    assert_eq!(api.calls()["stable_token"], 3, "faulted calls count");

    let api = start(&["--fail", "1"]);
    assert_eq!(
        api.classic_token(APPID, SECRET),
        json!({"errcode": -1, "errmsg": "system error"})
    );
}

#[test]
fn garbage_answers_a_non_json_200_first() {
    let api = start(&["--garbage", "1"]);
    let r = api
        .call("GET", "/cgi-bin/getcallbackip?access_token=x", b"")
        .expect("response");
    assert_eq!((r.status, r.body_text().as_str()), (200, "<html>not json"));
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
    token_of(&api.stable_token(APPID, SECRET, false));
    assert_eq!(api.calls()["getcallbackip"], 1);
}

/// Sends `raw` and reads until the server closes: what came back, or the read error.
pub(super) fn raw_exchange(port: u16, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(raw)?;
    let mut got = Vec::new();
    stream.read_to_end(&mut got)?;
    Ok(got)
}

#[test]
fn drop_closes_the_connection_with_no_response() {
    let api = start(&["--drop", "2"]);
    // A keep-alive request: the close must come at once, not at an idle timeout (the
    // read timeout would turn a wait into WouldBlock).
    let dropped = raw_exchange(
        api.port,
        b"GET /cgi-bin/token?grant_type=client_credential HTTP/1.1\r\nhost: x\r\n\r\n",
    );
    match dropped {
        Ok(bytes) => assert!(
            bytes.is_empty(),
            "got {:?}",
            String::from_utf8_lossy(&bytes)
        ),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "no close: {e}"),
    }
    // The project's client sees an error, not a status line.
    assert!(api.call("GET", "/cgi-bin/getcallbackip", b"").is_err());
    // Control endpoints are never faulted, and faulted calls count.
    assert_eq!(
        api.calls(),
        json!({"stable_token": 0, "token": 1, "getcallbackip": 1, "get_api_domain_ip": 0, "callback_check": 0})
    );
    token_of(&api.classic_token(APPID, SECRET));
}

// Timing is only checked from below (the delay was applied): an upper bound would be
// a timing assertion that a loaded machine can break.
#[test]
fn delay_holds_each_call() {
    let api = start(&["--delay-ms", "300"]);
    let started = Instant::now();
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..4)
            .map(|_| s.spawn(|| api.stable_token(APPID, SECRET, false)))
            .collect();
        for c in calls {
            token_of(&c.join().expect("caller"));
        }
    });
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // Control endpoints answer while faults are set.
    assert_eq!(api.calls()["stable_token"], 4);
}

#[test]
fn faults_change_at_run_time() {
    let api = start(&[]);
    let token = token_of(&api.stable_token(APPID, SECRET, false));

    assert_eq!(
        api.json("POST", "/__faults", br#"{"fail":1,"errcode":40164}"#),
        json!({"ok": true})
    );
    assert_eq!(errcode_of(&api.callback_ips(&token)), 40164);
    assert!(api.callback_ips(&token)["ip_list"].is_array());

    api.json(
        "POST",
        "/__faults",
        br#"{"drop":1,"garbage":1,"fail":1,"delay_ms":200}"#,
    );
    let started = Instant::now();
    assert!(
        api.call("GET", "/cgi-bin/getcallbackip", b"").is_err(),
        "drop first"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    let r = api
        .call("GET", "/cgi-bin/getcallbackip", b"")
        .expect("response");
    assert_eq!(r.body_text(), "<html>not json", "then garbage");
    assert_eq!(errcode_of(&api.callback_ips(&token)), -1, "then fail");
    let started = Instant::now();
    assert!(api.callback_ips(&token)["ip_list"].is_array());
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "delay stays"
    );

    // An empty object clears every fault.
    api.json("POST", "/__faults", b"{}");
    assert!(api.callback_ips(&token)["ip_list"].is_array());

    let r = api
        .call("POST", "/__faults", br#"{"fail":"many"}"#)
        .expect("response");
    assert_eq!(r.status, 400);
    let r = api
        .call("POST", "/__faults", br#"{"failures":1}"#)
        .expect("response");
    assert_eq!(r.status, 400, "unknown fields are refused");
    assert_eq!(api.calls()["getcallbackip"], 7);
}

#[test]
fn keep_alive_pipelining_and_chunked_bodies_work() {
    let api = start(&[]);
    let body =
        json!({"grant_type": "client_credential", "appid": APPID, "secret": SECRET}).to_string();
    let (a, b) = body.split_at(10);
    let raw = format!(
        "POST /cgi-bin/stable_token HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
         {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n\
         GET /__calls HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        a.len(),
        b.len()
    );
    let got = raw_exchange(api.port, raw.as_bytes()).expect("two responses");
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
    assert!(text.contains("\"access_token\":\"MOCK_"), "{text}");
    assert!(text.contains("\"stable_token\":1"), "{text}");
}

#[test]
fn a_bad_callback_ip_is_a_usage_error() {
    let out = cli(
        &[
            "mock-api",
            "--listen",
            "127.0.0.1:0",
            "--appid",
            APPID,
            "--callback-ip",
            "1.2.3.4",
            "--callback-ip",
            "10.0.0.0/33",
        ],
        &[("WECHAT_APPSECRET", SECRET)],
    );
    assert_eq!(out.code, Some(2));
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("10.0.0.0/33"), "{}", out.stderr);
    assert!(!out.stderr.contains(SECRET));
}

fn callback_check(api: &MockApi, token: &str, action: &str, operator: &str) -> Value {
    let body = json!({"action": action, "check_operator": operator}).to_string();
    api.json(
        "POST",
        &format!("/cgi-bin/callback/check?access_token={token}"),
        body.as_bytes(),
    )
}

#[test]
fn callback_check_resolves_and_pings_the_callback_url() {
    let api = start(&[]);
    let token = token_of(&api.stable_token(APPID, SECRET, false));
    let all = callback_check(&api, &token, "all", "DEFAULT");
    assert_eq!(
        all["dns"],
        json!([{"ip": "203.0.113.10", "real_operator": "UNICOM"},
               {"ip": "203.0.113.11", "real_operator": "CHINANET"}])
    );
    assert_eq!(
        all["ping"][1],
        json!({"ip": "203.0.113.11", "from_operator": "CHINANET", "package_loss": "0%", "time": "23.079ms"})
    );
    let ping = callback_check(&api, &token, "ping", "CAP");
    assert!(ping.get("dns").is_none(), "{ping}");
    assert_eq!(ping["ping"][0]["from_operator"], "CAP");
    let dns = callback_check(&api, &token, "dns", "UNICOM");
    assert!(dns.get("ping").is_none() && dns["dns"].is_array(), "{dns}");
    assert_eq!(
        errcode_of(&callback_check(&api, &token, "trace", "DEFAULT")),
        40202
    );
    assert_eq!(
        errcode_of(&callback_check(&api, &token, "all", "MOBILE")),
        40203
    );
    assert_eq!(
        errcode_of(&callback_check(&api, "stale", "all", "DEFAULT")),
        40001
    );
    let get = api.get(&format!("/cgi-bin/callback/check?access_token={token}"));
    assert_eq!(errcode_of(&get), 43002);

    api.json("POST", "/__faults", br#"{"unreachable":true}"#);
    let lost = callback_check(&api, &token, "all", "DEFAULT");
    assert_eq!(lost["ping"][0]["package_loss"], "100%");
    assert_eq!(lost["dns"].as_array().map(Vec::len), Some(2));
    api.json("POST", "/__faults", br#"{"no_dns":true}"#);
    let none = callback_check(&api, &token, "all", "DEFAULT");
    assert_eq!(none, json!({"dns": [], "ping": []}));
    assert_eq!(api.calls()["callback_check"], 9);
}

#[test]
fn errcodes_per_endpoint_answer_every_call_until_cleared() {
    let api = start(&[]);
    let token = token_of(&api.stable_token(APPID, SECRET, false));
    api.json(
        "POST",
        "/__faults",
        br#"{"errcodes":{"getcallbackip":89503,"callback_check":-1}}"#,
    );
    for _ in 0..2 {
        let r = api.callback_ips(&token);
        assert_eq!(errcode_of(&r), 89503, "{r}");
        assert!(
            r["errmsg"]
                .as_str()
                .is_some_and(|m| m.contains("管理员确认")),
            "{r}"
        );
    }
    assert_eq!(
        errcode_of(&callback_check(&api, &token, "all", "DEFAULT")),
        -1
    );
    let domain = api.get(&format!("/cgi-bin/get_api_domain_ip?access_token={token}"));
    assert!(
        domain["ip_list"].is_array(),
        "other endpoints answer: {domain}"
    );

    // 40164 names the address the call came from, as WeChat does.
    api.json(
        "POST",
        "/__faults",
        br#"{"errcodes":{"stable_token":40164}}"#,
    );
    let refused = api.stable_token(APPID, SECRET, false);
    assert_eq!(errcode_of(&refused), 40164);
    let msg = refused["errmsg"].as_str().expect("errmsg");
    assert!(
        msg.starts_with("invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist"),
        "{msg}"
    );

    let r = api
        .call("POST", "/__faults", br#"{"errcodes":{"getcallbackips":1}}"#)
        .expect("response");
    assert_eq!(r.status, 400, "an unknown endpoint is refused");
    api.json("POST", "/__faults", b"{}");
    assert!(api.callback_ips(&token)["ip_list"].is_array());
}
