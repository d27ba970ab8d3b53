//! Adversarial round 3: the replay table whatever the method, the decrypted push's
//! format, secrets of the wrong type (the CLI's bounds: offline::cli_timeouts).
//!
//! Tests named `bug_…` document a defect and fail while it is there; the others pin
//! behaviour that held under attack.

use crate::harness::backend::Backend;
use crate::harness::config::{gate_config, gated, streaming};
use crate::harness::envoy::Envoy;
use crate::harness::merged;
use crate::harness::now;
use crate::harness::requests::{nonce, text_xml, LISTED, TOKEN};
use crate::harness::safe_mode::{
    key, push_of, safe_config, verify_only_config, AES_KEY, APPID, CORPID,
};
use gate::query::encode_query;
use gate::safe_mode::cipher;
use gate::signature::{as_str, sign};
use serde_json::json;
use std::io::{Read, Write};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use wechat::http1::client::Response;

fn sig(parts: &[&str]) -> String {
    as_str(&sign(parts)).to_string()
}

/// Every byte of `s` percent-encoded.
fn pct_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn answer(r: &Response) -> (u16, String) {
    (r.status, r.body_text())
}

/// The status of `method target` sent raw (a HEAD's answer has a length and no body).
fn raw_status(envoy: &Envoy, method: &str, target: &str, body: &str) -> u16 {
    let mut conn = envoy.connect(LISTED).expect("connect");
    let raw = format!(
        "{method} {target} HTTP/1.1\r\nhost: gate\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(raw.as_bytes()).expect("write");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = Vec::new();
    let _ = conn.read_to_end(&mut got);
    String::from_utf8_lossy(&got)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The gate's counters that are not 0.
fn nonzero(envoy: &Envoy) -> Vec<(String, u64)> {
    envoy
        .counters()
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .collect()
}

fn success() -> (u16, String) {
    (200, "success".to_string())
}

// ------------------------------------------------------------------ replays: spelling

/// Whatever spelling a used (signature, timestamp, nonce) comes in, as GET or POST, on
/// any look-alike of the path: either a replay (200 success, counted) or refused for
/// its form; never a second delivery.
#[test]
fn lookalikes_of_a_used_query_are_replays_or_refused_never_delivered() {
    let backend = Backend::start();
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    let (ts, n) = (now().to_string(), nonce());
    let s = sig(&[TOKEN, &ts, &n]);
    let q = format!("signature={s}&timestamp={ts}&nonce={n}");
    let first = text_xml("o_first", "first", 5001);
    assert_eq!(answer(&envoy.post(&q, &first, LISTED)), success());
    assert_eq!(backend.records().len(), 1);

    let evil = text_xml("o_evil", "evil", 5002);
    let replays = [
        ("/wechat", format!("nonce={n}&timestamp={ts}&signature={s}")),
        ("/wechat", format!("{q}&openid=o_evil&x=1")),
        ("/wechat", format!("&&{q}&")),
        ("/wechat", format!("{q}&encrypt_type=none")),
        (
            "/wechat",
            format!(
                "%73ignature={}&%74imestamp={}&%6eonce={}",
                pct_all(&s),
                pct_all(&ts),
                pct_all(&n)
            ),
        ),
        ("/wechat/", q.clone()),
        ("/wechat;jsessionid=1", q.clone()),
        ("/wechat//", q.clone()),
    ];
    for (path, query) in &replays {
        let r = envoy.send(
            "POST",
            &format!("{path}?{query}"),
            &[("content-type", b"text/xml")],
            evil.as_bytes(),
            LISTED,
        );
        assert_eq!(answer(&r), success(), "POST {path}?{query}");
        let r = envoy.send(
            "GET",
            &format!("{path}?{query}&echostr=%3Ch1%3Ephish"),
            &[],
            b"",
            LISTED,
        );
        assert_eq!(answer(&r), success(), "GET {path}?{query}");
    }
    // Refused for their form (never a second delivery, never an echo).
    let refused: Vec<(&str, String, u16)> = vec![
        (
            "POST",
            format!("signature={}&timestamp={ts}&nonce={n}", s.to_uppercase()),
            401,
        ),
        (
            "POST",
            format!("signature={s}&timestamp=%2B{ts}&nonce={n}"),
            400,
        ),
        (
            "POST",
            format!("signature={s}&timestamp=+{ts}&nonce={n}"),
            400,
        ),
        (
            "POST",
            format!("signature={s}&timestamp={ts}%20&nonce={n}"),
            400,
        ),
        (
            "POST",
            format!("signature={s}&timestamp=0{ts}&nonce={n}"),
            401,
        ),
        (
            "POST",
            format!("signature={s}&timestamp={ts}&nonce={n}%20"),
            401,
        ),
        (
            "POST",
            format!("signature=%20{s}&timestamp={ts}&nonce={n}"),
            401,
        ),
        ("POST", format!("{q}&nonce={n}"), 400),
        ("POST", format!("{q}&signature="), 400),
        ("GET", format!("{q}&echostr="), 400),
        ("GET", format!("{q}&echostr=a&echostr=b"), 400),
        ("HEAD", format!("{q}&echostr=x"), 405),
        ("OPTIONS", q.clone(), 405),
        ("PUT", q.clone(), 405),
    ];
    for (method, query, status) in &refused {
        let body = if *method == "POST" { evil.as_str() } else { "" };
        let got = raw_status(&envoy, method, &format!("/wechat?{query}"), body);
        assert_eq!(got, *status, "{method} {query}");
    }
    assert_eq!(backend.records().len(), 1, "{:?}", backend.bodies());
    assert_eq!(
        envoy.counter("wechat_gate.replayed"),
        2 * replays.len() as u64
    );
    assert_eq!(envoy.counter("wechat_gate.forwarded"), 1);
    assert_eq!(envoy.counter("wechat_gate.handshake"), 0);
}

/// `sha1(sort(parts).concat())` has no separators, so another split of the same
/// characters signs the same: nonce `00…0` with timestamp T and nonce `00…` with
/// timestamp `0T` carry one signature. Both verify, and the table keys on the
/// signature, so each is the other's replay, in either order.
#[test]
fn a_query_respelled_with_the_same_signature_is_still_its_replay() {
    let backend = Backend::start();
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    let ts = now().to_string();
    for (i, first_is_respelled) in [false, true].into_iter().enumerate() {
        let base = format!("00{}", nonce());
        let (n_orig, ts_orig) = (format!("{base}0"), ts.clone());
        let (n_alt, ts_alt) = (base.clone(), format!("0{ts}"));
        let s = sig(&[TOKEN, &ts_orig, &n_orig]);
        assert_eq!(
            s,
            sig(&[TOKEN, &ts_alt, &n_alt]),
            "the two spell one signature"
        );
        let orig = format!("signature={s}&timestamp={ts_orig}&nonce={n_orig}");
        let alt = format!("signature={s}&timestamp={ts_alt}&nonce={n_alt}");
        let (a, b) = if first_is_respelled {
            (alt, orig)
        } else {
            (orig, alt)
        };
        let r = envoy.post(&a, &text_xml("o_a", "one", 5100 + i as u64), LISTED);
        assert_eq!(answer(&r), success());
        let r = envoy.post(&b, &text_xml("o_b", "two", 5200 + i as u64), LISTED);
        assert_eq!(answer(&r), success());
    }
    assert_eq!(backend.records().len(), 2, "{:?}", backend.bodies());
    assert_eq!(envoy.counter("wechat_gate.replayed"), 2);
}

// ------------------------------------------------------------------ replays: races

/// One query sent by 16 clients at once, half as a handshake and half as a push, over
/// four workers: exactly one use wins (one echo or one delivery), every other is a
/// replay answered `success`.
#[test]
fn a_query_raced_by_sixteen_clients_over_four_workers_is_used_once() {
    let backend = Backend::start();
    let envoy = Arc::new(
        gated(backend.port, gate_config(json!({})))
            .workers(4)
            .start(),
    );
    let rounds: u64 = 6;
    let clients = 16;
    let mut echoes = 0;
    for round in 0..rounds {
        let (ts, n) = (now().to_string(), nonce());
        let s = sig(&[TOKEN, &ts, &n]);
        let q = format!("signature={s}&timestamp={ts}&nonce={n}");
        let barrier = Arc::new(Barrier::new(clients));
        let threads: Vec<_> = (0..clients)
            .map(|i| {
                let (envoy, barrier, q) = (envoy.clone(), barrier.clone(), q.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    if i % 2 == 0 {
                        envoy.send(
                            "GET",
                            &format!("/wechat?{q}&echostr=E{i}"),
                            &[],
                            b"",
                            LISTED,
                        )
                    } else {
                        let body = text_xml("o_race", "race", 6000 + round * 100 + i as u64);
                        envoy.post(&q, &body, LISTED)
                    }
                })
            })
            .collect();
        let answers: Vec<Response> = threads
            .into_iter()
            .map(|t| t.join().expect("client"))
            .collect();
        let echoed = answers
            .iter()
            .filter(|r| r.status == 200 && r.body_text().starts_with('E'))
            .count();
        for r in &answers {
            assert_eq!(r.status, 200, "round {round}: {}", r.body_text());
        }
        echoes += echoed;
    }
    let delivered = backend.records().len();
    assert_eq!(
        echoes + delivered,
        rounds as usize,
        "one use per query: {echoes} echoes, {delivered} deliveries in {rounds} rounds"
    );
    assert_eq!(
        envoy.counter("wechat_gate.replayed"),
        (rounds as usize * (clients - 1)) as u64
    );
    assert_eq!(envoy.vm_failures(), Vec::<String>::new());
}

/// The first use of a query is held (its body stalls); a second use of it, with a
/// whole body, arrives meanwhile. It used to be answered `200 success` as a replay
/// though nothing had reached the backend; the first was then refused 408 and its
/// query forgotten, and the push answered `success` was lost. A held push's query is
/// now recorded only as the push goes upstream, so the second is delivered. In stream
/// mode the first use's headers went upstream at once (its query used then): the
/// second is a replay, and the README says what that costs.
#[test]
fn a_second_use_while_the_first_is_held_is_delivered_not_answered_for_it() {
    let backend = Backend::start();
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    let (ts, n) = (now().to_string(), nonce());
    let q = format!(
        "signature={}&timestamp={ts}&nonce={n}",
        sig(&[TOKEN, &ts, &n])
    );
    let body = text_xml("o_user", "the real message", 7001);
    // The first use: its head and half its body, then nothing.
    let mut stalled = envoy.connect(LISTED).expect("connect");
    let head = format!(
        "POST /wechat?{q} HTTP/1.1\r\nhost: gate\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        &body[..body.len() / 2]
    );
    stalled.write_all(head.as_bytes()).expect("write");
    std::thread::sleep(Duration::from_millis(300));
    // The whole push with the same query, while the first is held.
    let second = envoy.post(&q, &body, LISTED);
    let mut rest = Vec::new();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = stalled.read_to_end(&mut rest);
    let first_status = String::from_utf8_lossy(&rest)
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    eprintln!(
        "first use: {first_status}; second use: {} {:?}; backend got {}; counters {:?}",
        second.status,
        second.body_text(),
        backend.records().len(),
        nonzero(&envoy)
    );
    assert_eq!(first_status, "408", "the stalled first use");
    let delivered = backend
        .records()
        .iter()
        .filter(|r| r.body_text() == body)
        .count();
    if streaming() {
        assert_eq!(answer(&second), success(), "a replay of streamed headers");
        assert_eq!(delivered, 0, "nothing half-sent completed at the backend");
    } else {
        assert_eq!(second.status, 200);
        assert_eq!(delivered, 1, "the whole push reached the backend, once");
    }
}

/// Two gates on one listener with one token (one account on two routes, or two
/// accounts that reuse a Token string), with different tolerances: a query used on
/// the short-tolerance route stays used as long as the other route, where it is still
/// fresh, would take it: an entry lives as long as the longest tolerance of the gates
/// sharing the table, not only as long as the recording gate's own.
#[test]
fn a_query_used_under_a_short_tolerance_stays_used_through_a_longer_one() {
    use crate::harness::config::{EnvoyConfig, Gate};
    let backend = Backend::start();
    let short =
        gate_config(json!({"path": "/short", "name": "short", "timestamp_tolerance_seconds": 2}));
    let long = gate_config(json!({"path": "/long", "name": "long"}));
    let envoy = EnvoyConfig::new(backend.port)
        .gate(Gate::new("gate_short", short))
        .gate(Gate::new("gate_long", long))
        .start();
    let at = now();
    let (ts, n) = (at.to_string(), nonce());
    let q = format!(
        "signature={}&timestamp={ts}&nonce={n}",
        sig(&[TOKEN, &ts, &n])
    );
    let post = |path: &str, content: &str, id: u64| {
        envoy.send(
            "POST",
            &format!("{path}?{q}"),
            &[("content-type", b"text/xml")],
            text_xml("o_user", content, id).as_bytes(),
            LISTED,
        )
    };
    assert_eq!(answer(&post("/short", "first", 7101)), success());
    // At once, the other route: a replay.
    assert_eq!(answer(&post("/long", "again", 7102)), success());
    assert_eq!(backend.records().len(), 1);
    // Once the short route's memory of it has lapsed (2 + 1 + 5 s), the long route
    // still takes its timestamp as fresh.
    crate::harness::wait_past(at, 10);
    let r = post("/long", "a body of the replayer's", 7103);
    eprintln!(
        "after 10 s on /long: {:?}; backend got {:?}; counters {:?}",
        answer(&r),
        backend.bodies(),
        nonzero(&envoy)
    );
    assert_eq!(
        backend.records().len(),
        1,
        "a used query carried a second push: {:?}",
        backend.bodies()
    );
}

/// One component's query on every route that shares its token in one VM: a push to
/// one authorizer's route, sent again to another authorizer's route or to the
/// authorization-event route, is a replay.
#[test]
fn an_open_platform_query_is_used_once_across_authorizers_and_routes() {
    use crate::harness::config::{EnvoyConfig, Gate};
    let backend = Backend::start();
    let open = |path: &str, name: &str| {
        merged(
            safe_config(json!({})),
            json!({"platform": "open_platform", "path": path, "name": name}),
        )
    };
    let envoy = EnvoyConfig::new(backend.port)
        .gate(Gate::new("gate_cb", open("/open/$APPID$/callback", "cb")))
        .gate(Gate::new("gate_auth", open("/open/auth", "auth")))
        .start();
    let p = push_of(&seal_for(APPID, &msg(7201)), "", &nonce());
    let send = |path: &str| {
        envoy.send(
            "POST",
            &format!("{path}?{}", p.query),
            &[("content-type", b"text/xml")],
            p.body.as_bytes(),
            LISTED,
        )
    };
    assert_eq!(
        answer(&send("/open/wx1111111111111111/callback")),
        success()
    );
    for path in [
        "/open/wx2222222222222222/callback",
        "/open/auth",
        "/open/wx1111111111111111/callback/",
    ] {
        assert_eq!(answer(&send(path)), success(), "{path}");
    }
    assert_eq!(backend.records().len(), 1, "{:?}", backend.bodies());
    assert_eq!(envoy.counter("wechat_gate.replayed"), 3);
}

// ------------------------------------------------------------------ WeCom handshakes

fn wecom_config() -> serde_json::Value {
    gate_config(json!({
        "platform": "wecom",
        "path": "/wecom",
        "appid": CORPID,
        "max_body_bytes": 16384,
        "safe_mode": {"encoding_aes_key": AES_KEY, "decrypt": true}
    }))
}

fn seal_for(receive_id: &str, plaintext: &str) -> String {
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random).expect("random");
    cipher::encrypt(&key(), receive_id, plaintext.as_bytes(), &random)
}

fn wecom_query(ts: &str, n: &str, sealed: &str) -> String {
    encode_query(&[
        ("msg_signature", &sig(&[TOKEN, ts, n, sealed])),
        ("timestamp", ts),
        ("nonce", n),
    ])
}

fn wecom_get(envoy: &Envoy, query: &str, echostr: &str) -> Response {
    let target = format!("/wecom?{query}&{}", encode_query(&[("echostr", echostr)]));
    envoy.send("GET", &target, &[], b"", LISTED)
}

fn wecom_post(envoy: &Envoy, query: &str, encrypt: &str) -> Response {
    let body = format!(
        "<xml><ToUserName><![CDATA[{CORPID}]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    );
    envoy.send(
        "POST",
        &format!("/wecom?{query}"),
        &[("content-type", b"text/xml")],
        body.as_bytes(),
        LISTED,
    )
}

fn wecom_message(content: &str, msg_id: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORPID}]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>1000002</AgentID></xml>",
        now()
    )
}

/// A WeCom handshake whose echostr fails to open (another CorpID's; a message) is
/// refused 401 decrypt each time and its query forgotten, never answered `success`
/// nor decrypted; a push's query and Encrypt tried as a handshake before the push
/// comes does not keep the push out; after it, the same GET is a replay.
#[test]
fn wecom_handshakes_that_fail_to_open_are_refused_and_do_not_block_the_push() {
    let backend = Backend::start();
    let envoy = gated(backend.port, wecom_config()).start();
    let ts = now().to_string();
    // Another corp's echostr, signed with our token: 401 decrypt, twice.
    let (n, foreign) = (nonce(), seal_for("ww0000000000000bad", "5927782489442352"));
    let q = wecom_query(&ts, &n, &foreign);
    for _ in 0..2 {
        let r = wecom_get(&envoy, &q, &foreign);
        assert_eq!(r.status, 401, "{}", r.body_text());
        assert!(r.body_text().contains("decrypt"), "{}", r.body_text());
    }
    // A push's query and Encrypt, as a GET before the push itself.
    let (n, message) = (nonce(), wecom_message("the salary list", 9901));
    let sealed = seal_for(CORPID, &message);
    let q = wecom_query(&ts, &n, &sealed);
    let r = wecom_get(&envoy, &q, &sealed);
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert!(!r.body_text().contains("salary"));
    // The push is delivered, then the GET is a replay and the push too.
    let r = wecom_post(&envoy, &q, &sealed);
    assert_eq!(answer(&r), success());
    assert_eq!(backend.bodies(), [message]);
    assert_eq!(answer(&wecom_get(&envoy, &q, &sealed)), success());
    assert_eq!(answer(&wecom_post(&envoy, &q, &sealed)), success());
    // A good handshake: echoed once, then a replay as GET and as POST.
    let (n, token) = (nonce(), "7283746527364");
    let echostr = seal_for(CORPID, token);
    let q = wecom_query(&ts, &n, &echostr);
    assert_eq!(
        answer(&wecom_get(&envoy, &q, &echostr)),
        (200, token.to_string())
    );
    assert_eq!(answer(&wecom_get(&envoy, &q, &echostr)), success());
    assert_eq!(answer(&wecom_post(&envoy, &q, &echostr)), success());
    assert_eq!(backend.records().len(), 1);
    assert_eq!(envoy.counter("wechat_gate.replayed"), 4);
    assert_eq!(envoy.counter("wechat_gate.rejected.decrypt"), 3);
    assert_eq!(envoy.counter("wechat_gate.handshake"), 1);
}

// ------------------------------------------------------------------ decrypted format

/// A safe-mode push of `plaintext` (sealed for `appid`), to the suite's `/wechat`.
fn sealed_push(envoy: &Envoy, appid: &str, plaintext: &str) -> Response {
    let p = push_of(&seal_for(appid, plaintext), "", &nonce());
    envoy.push(&p)
}

fn msg(msg_id: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_e2e]]></ToUserName><FromUserName><![CDATA[o_safe_user]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>{msg_id}</MsgId></xml>",
        now()
    )
}

/// What an Official Account's decrypted push must be, with `decrypt` on and off: a
/// message in XML (a BOM, whitespace, a declaration or comments around it are XML);
/// text, JSON, a declaration alone, trailing garbage, markup that does not close: 400
/// malformed, never forwarded.
#[test]
fn an_official_accounts_decrypted_push_must_be_xml_whether_or_not_it_is_handed_on() {
    for config in [safe_config(json!({})), verify_only_config()] {
        let backend = Backend::start();
        let envoy = gated(backend.port, config).start();
        let good = [
            msg(8001),
            format!("\u{feff}{}", msg(8002)),
            format!(" \r\n\t{}\n\n", msg(8003)),
            format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- c -->{}",
                msg(8004)
            ),
        ];
        for plaintext in &good {
            let r = sealed_push(&envoy, APPID, plaintext);
            assert_eq!(answer(&r), success(), "{plaintext:?}");
        }
        let bad = [
            "".to_string(),
            "hello".to_string(),
            "5927782489442352".to_string(),
            "<?xml version=\"1.0\"?>".to_string(),
            format!("{}garbage", msg(8010)),
            format!("{}<xml/>", msg(8011)),
            format!("{}\0", msg(8012)),
            "<xml><ToUserName>gh</ToUserName>".to_string(),
            "<xml>text</xml>".to_string(),
            r#"{"ToUserName":"gh_e2e","FromUserName":"o","CreateTime":1,"MsgType":"text","Content":"hi","MsgId":8013}"#.to_string(),
            "<!DOCTYPE xml [<!ENTITY e \"x\">]><xml><A>&e;</A></xml>".to_string(),
        ];
        for plaintext in &bad {
            let r = sealed_push(&envoy, APPID, plaintext);
            assert_eq!(r.status, 400, "{plaintext:?}: {}", r.body_text());
            assert!(r.body_text().contains("malformed"), "{}", r.body_text());
        }
        assert_eq!(
            backend.records().len(),
            good.len(),
            "{:?}",
            backend.bodies()
        );
        assert_eq!(
            envoy.counter("wechat_gate.rejected.malformed"),
            bad.len() as u64
        );
    }
}

/// "A decrypted safe-mode push must be a message of its platform's format": a
/// well-formed document that is no message (`<xml/>`, an empty root, a root that is
/// not `xml`, a Mini Program's `{}`) is not one, and is never forwarded as a
/// verified, decrypted message.
#[test]
fn a_decrypted_empty_or_foreign_root_is_no_message_and_never_forwarded() {
    let backend = Backend::start();
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    let mut forwarded = Vec::new();
    for plaintext in [
        "<xml/>",
        "<xml></xml>",
        "<html><body>hi</body></html>",
        "<a/>",
    ] {
        let r = sealed_push(&envoy, APPID, plaintext);
        if r.status == 200 {
            forwarded.push(plaintext);
        }
    }
    let mini_backend = Backend::start();
    let mini = gated(
        mini_backend.port,
        merged(safe_config(json!({})), json!({"platform": "mini_program"})),
    )
    .start();
    for plaintext in ["{}", r#"{"a":[1,2,3]}"#] {
        let r = sealed_push(&mini, APPID, plaintext);
        if r.status == 200 {
            forwarded.push(plaintext);
        }
    }
    for plaintext in ["[]", "null", "\"s\"", "{}x"] {
        let r = sealed_push(&mini, APPID, plaintext);
        assert_eq!(r.status, 400, "mini_program {plaintext}: {}", r.body_text());
    }
    assert!(
        forwarded.is_empty(),
        "decrypted into no message, forwarded as one: {forwarded:?} (backend got {:?} and {:?})",
        backend.bodies(),
        mini_backend.bodies()
    );
}

/// A Mini Program's push decrypts to XML or JSON (a BOM or whitespace before JSON
/// too); a WeCom push's to XML only, so a handshake token posted under its query is
/// 400, never forwarded.
#[test]
fn a_mini_programs_push_decrypts_to_xml_or_json_and_wecoms_to_xml_only() {
    let backend = Backend::start();
    let mini = gated(
        backend.port,
        merged(safe_config(json!({})), json!({"platform": "mini_program"})),
    )
    .start();
    let json_msg = |id: u64| {
        format!(
            r#"{{"ToUserName":"gh_e2e","FromUserName":"o_safe_user","CreateTime":{},"MsgType":"text","Content":"hi","MsgId":{id}}}"#,
            now()
        )
    };
    for plaintext in [
        msg(8101),
        json_msg(8102),
        format!("\u{feff}{}", json_msg(8103)),
        format!("\n {}", json_msg(8104)),
    ] {
        assert_eq!(
            answer(&sealed_push(&mini, APPID, &plaintext)),
            success(),
            "{plaintext}"
        );
    }
    assert_eq!(backend.records().len(), 4);

    let wecom_backend = Backend::start();
    let envoy = gated(wecom_backend.port, wecom_config()).start();
    let ts = now().to_string();
    for plaintext in [
        "7283746527364".to_string(),
        r#"{"ToUserName":"ww","MsgId":1}"#.to_string(),
        "hello".to_string(),
    ] {
        let n = nonce();
        let sealed = seal_for(CORPID, &plaintext);
        let r = wecom_post(&envoy, &wecom_query(&ts, &n, &sealed), &sealed);
        assert_eq!(r.status, 400, "{plaintext}: {}", r.body_text());
    }
    assert!(wecom_backend.records().is_empty());
}

// ------------------------------------------------------------------ config secrets

/// Every secret field, every wrong shape: refused, naming the field, never repeating
/// what was given (natively: the same parser the filter runs in on_configure).
#[test]
fn every_secret_field_of_every_wrong_shape_is_refused_without_repeating_it() {
    const S: &str = "Zq9SecretValueNeverShown0123456789abcdefghi"; // 43 chars
    let shapes = |s: &str| {
        vec![
            json!([[s]]),
            json!([[s], s]),
            json!([s, [s]]),
            json!([s, s, s]),
            json!([]),
            json!({"env": [s]}),
            json!({"env": {"env": s}}),
            json!({"env": "X", "other": s}),
            json!({"value": s}),
            serde_json::Value::Object([(s.to_string(), json!("X"))].into_iter().collect()),
            json!({"env": null}),
            json!({}),
            json!(5),
            json!(true),
            json!([{"env": s}, 5]),
            json!([s, null]),
        ]
    };
    let env = |name: &str| {
        (name == "X").then(|| "from-env-value-0000000000000000000000000000".to_string())
    };
    let mut checked = 0;
    for field in [
        "token",
        "source.wechat_api.secret",
        "safe_mode.encoding_aes_key",
    ] {
        for shape in shapes(S) {
            let config = match field {
                "token" => json!({"token": shape, "source": {"allow": ["127.0.0.1"]}}),
                "source.wechat_api.secret" => json!({"token": "t", "appid": "wx0123456789abcdef",
                    "source": {"wechat_api": {"secret": shape,
                    "upstreams": [{"cluster": "c", "authority": "api.weixin.qq.com"}]}}}),
                _ => json!({"token": "t", "appid": "wx0123456789abcdef",
                    "source": {"allow": ["127.0.0.1"]},
                    "safe_mode": {"encoding_aes_key": shape}}),
            };
            let text = config.to_string();
            let result = gate::config::parse(text.as_bytes(), &env);
            match result {
                Ok(_) => panic!("{field} = {shape} accepted"),
                Err(e) => {
                    let shown = format!("{e} {e:?}");
                    assert!(
                        e.field.starts_with(field),
                        "{field} = {shape}: the error names {:?}: {shown}",
                        e.field
                    );
                    assert!(!shown.contains(S), "{field} = {shape} repeated: {shown}");
                    assert!(!shown.contains("from-env-value"), "{field}: {shown}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 48);
}

/// The same through Envoy for the AES key: the listener refused, the log naming the
/// field and never the value.
#[test]
fn a_wrongly_shaped_aes_key_makes_envoy_refuse_and_the_log_never_shows_it() {
    let backend = Backend::start();
    for shape in [
        json!([[AES_KEY]]),
        json!({"env": "X", "k": AES_KEY}),
        json!([AES_KEY, [AES_KEY]]),
    ] {
        let config =
            safe_config(json!({"safe_mode": {"encoding_aes_key": shape, "decrypt": true}}));
        let log = match gated(backend.port, config).try_start() {
            Ok(_) => panic!("Envoy started with encoding_aes_key = {shape}"),
            Err(log) => log,
        };
        let line = log
            .lines()
            .find(|l| l.contains("wechat-gate refused its configuration"))
            .unwrap_or_else(|| panic!("no refusal line:\n{log}"));
        assert!(line.contains("safe_mode.encoding_aes_key"), "{line}");
        assert!(!log.contains(AES_KEY), "the log shows the key:\n{log}");
    }
}
