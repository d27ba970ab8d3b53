//! The other WeChat platforms in a real Envoy, each checked against wechatpy: a Mini
//! Program's JSON pushes (plaintext and safe mode), an Open Platform component's one
//! route for many authorizers, and WeCom's `msg_signature`-only handshake and pushes
//! with its own live list (gettoken). Every platform refuses forged, stale, replayed,
//! wrongly sourced and badly encrypted requests before the backend sees them.

use crate::harness::backend::{Backend, Reply};
use crate::harness::cli::cli;
use crate::harness::config::{gate_config, gated, EnvoyConfig, Gate};
use crate::harness::envoy::Envoy;
use crate::harness::mock_api::MockApi;
use crate::harness::requests::{nonce, signed, LISTED, TOKEN, UNLISTED};
use crate::harness::safe_mode::{key, AES_KEY, APPID, CORPID};
use crate::harness::wechatpy::{
    open_envelope_with_wechatpy, wechatpy, wechatpy_json_push, wechatpy_wecom_encrypt,
};
use crate::harness::{merged, now, wait_until};
use gate::safe_mode::cipher;
use serde_json::json;
use std::time::Duration;
use wechat::http1::client::Response;

/// Open Platform: the authorizers one component serves on one route.
const AUTHORIZER_A: &str = "wx1111111111111111";
const AUTHORIZER_B: &str = "wx2222222222222222";

/// The suite's account on `platform` with the top-level keys of `extra` set: safe
/// mode with the suite's key (decrypting), a 16 KiB body limit.
fn platform_config(platform: &str, extra: serde_json::Value) -> serde_json::Value {
    let base = gate_config(json!({
        "platform": platform,
        "appid": APPID,
        "max_body_bytes": 16384,
        "safe_mode": {"encoding_aes_key": AES_KEY, "decrypt": true}
    }));
    merged(base, extra)
}

impl Envoy {
    /// POSTs `body` to `path?query` from `source` with `content_type`.
    fn post_to(&self, path: &str, query: &str, body: &str, content_type: &str) -> Response {
        self.send(
            "POST",
            &format!("{path}?{query}"),
            &[("content-type", content_type.as_bytes())],
            body.as_bytes(),
            LISTED,
        )
    }
}

/// A Mini Program's text message in JSON, as its "data format: JSON" setting sends it.
fn json_message(content: &str, msg_id: u64) -> String {
    wechat::wechat::text_message_json(
        "gh_mini",
        "o_mini_user",
        &now().to_string(),
        content,
        msg_id,
    )
}

#[test]
fn a_mini_programs_plaintext_pushes_pass_once_in_json_or_xml_and_forgeries_never() {
    let backend = Backend::start();
    let config = gate_config(json!({"platform": "mini_program"}));
    let envoy = gated(backend.port, config).start();
    let message = json_message("你好, JSON", 7001);

    let r = envoy.post_to(
        "/wechat",
        &signed(TOKEN, now(), &nonce(), &[]),
        &message,
        "application/json",
    );
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    // WeChat's retry of the same message (a new query) is answered, not delivered.
    let r = envoy.post_to(
        "/wechat",
        &signed(TOKEN, now(), &nonce(), &[]),
        &message,
        "application/json",
    );
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.deduplicated"), 1);

    // A Mini Program set to XML pushes XML: read as such, its retry spotted too.
    let xml = crate::harness::requests::text_xml("o_mini_user", "XML too", 7004);
    for _ in 0..2 {
        let r = envoy.post_to(
            "/wechat",
            &signed(TOKEN, now(), &nonce(), &[]),
            &xml,
            "text/xml",
        );
        assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    }
    assert_eq!(envoy.counter("wechat_gate.deduplicated"), 2);
    // A forged signature and a stale timestamp never reach it.
    let forged = signed("not-the-token", now(), &nonce(), &[]);
    assert_eq!(
        envoy
            .post_to(
                "/wechat",
                &forged,
                &json_message("f", 7002),
                "application/json"
            )
            .status,
        401
    );
    let stale = signed(TOKEN, now() - 3600, &nonce(), &[]);
    assert_eq!(
        envoy
            .post_to(
                "/wechat",
                &stale,
                &json_message("s", 7003),
                "application/json"
            )
            .status,
        401
    );
    assert_eq!(backend.bodies(), vec![message, xml]);
}

#[test]
fn a_mini_programs_json_push_sealed_by_wechatpy_is_decrypted_and_the_json_reply_opens_with_wechatpy(
) {
    let reply = r#"{"ToUserName":"o_mini_user","FromUserName":"gh_mini","CreateTime":1,"MsgType":"transfer_customer_service"}"#;
    let backend = Backend::replying(move |_| Reply::ok(reply));
    let envoy = gated(backend.port, platform_config("mini_program", json!({}))).start();
    let message = json_message("safe JSON", 7101);
    let (ts, n) = (now(), nonce());
    let timestamp = ts.to_string();
    let sealed = wechatpy_json_push(&message, &n, &timestamp);
    let query = signed(
        TOKEN,
        ts,
        &n,
        &[
            ("encrypt_type", "aes"),
            ("msg_signature", &sealed.msg_signature),
        ],
    );
    let r = envoy.post_to("/wechat", &query, &sealed.body, "application/json");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        backend.bodies(),
        vec![message.clone()],
        "the backend gets the plaintext JSON"
    );

    let envelope = r.body_text();
    let v: serde_json::Value =
        serde_json::from_str(&envelope).expect("a JSON push is answered in JSON");
    assert!(
        v["Encrypt"].is_string() && v["MsgSignature"].is_string(),
        "{envelope}"
    );
    let opened = open_envelope_with_wechatpy("decrypt-json", APPID, &envelope)
        .expect("wechatpy opens the gate's JSON reply");
    assert_eq!(opened, reply);

    // Refused before the backend: a wrong msg_signature, Encrypt changed after
    // signing, ciphertext for another AppID, and a replay of the good push.
    let (ts, n) = (now(), nonce());
    let timestamp = ts.to_string();
    let good = wechatpy_json_push(&json_message("x", 7102), &n, &timestamp);
    let q = |sig: &str| {
        signed(
            TOKEN,
            ts,
            &n,
            &[("encrypt_type", "aes"), ("msg_signature", sig)],
        )
    };
    let wrong = "0".repeat(40);
    let r = envoy.post_to("/wechat", &q(&wrong), &good.body, "application/json");
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert!(r.body_text().contains("msg_signature"), "{}", r.body_text());
    let tampered = good
        .body
        .replacen("\"Encrypt\": \"", "\"Encrypt\": \"QUFB", 1);
    assert_eq!(
        envoy
            .post_to(
                "/wechat",
                &q(&good.msg_signature),
                &tampered,
                "application/json"
            )
            .status,
        401
    );
    let other = cipher::encrypt(&key(), "wxANOTHERAPP", b"{}", &[7u8; 16]);
    let other_sig =
        gate::signature::as_str(&gate::signature::sign(&[TOKEN, &timestamp, &n, &other]))
            .to_string();
    let body = format!(r#"{{"ToUserName":"gh_mini","Encrypt":"{other}"}}"#);
    let r = envoy.post_to("/wechat", &q(&other_sig), &body, "application/json");
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert!(r.body_text().contains("decrypt"), "{}", r.body_text());
    assert_eq!(
        backend.records().len(),
        1,
        "nothing refused reached the backend"
    );
    assert_eq!(envoy.counter("wechat_gate.rejected.decrypt"), 1);
}

/// An Open Platform push to `/open/{route}`: `message` sealed by wechatpy with the
/// component's AppID.
fn open_platform_push(
    envoy: &Envoy,
    route: &str,
    message: &str,
    headers: &[(&str, &[u8])],
) -> Response {
    let (ts, n) = (now(), nonce());
    let timestamp = ts.to_string();
    let envelope = wechatpy(&["encrypt", TOKEN, AES_KEY, APPID, &n, &timestamp], message)
        .expect("wechatpy encrypts");
    let signature = gate::xml::element(envelope.as_bytes(), "MsgSignature")
        .ok()
        .flatten()
        .expect("MsgSignature");
    let query = signed(
        TOKEN,
        ts,
        &n,
        &[("encrypt_type", "aes"), ("msg_signature", &signature)],
    );
    let mut all: Vec<(&str, &[u8])> = vec![("content-type", b"text/xml")];
    all.extend_from_slice(headers);
    envoy.send(
        "POST",
        &format!("/open/{route}?{query}"),
        &all,
        envelope.as_bytes(),
        LISTED,
    )
}

#[test]
fn one_open_platform_route_serves_many_authorizers_and_names_each_to_the_backend() {
    let backend = Backend::start();
    // The two URLs of a component's console: every authorizer's messages, and the
    // component's own authorization events; one gate instance for each.
    let messages = platform_config("open_platform", json!({"path": "/open/$APPID$/callback"}));
    let events = platform_config("open_platform", json!({"path": "/open/auth"}));
    let envoy = EnvoyConfig::new(backend.port)
        .gate(Gate::new("wechat_gate", messages))
        .gate(Gate::new("wechat_gate_auth", events))
        .start();
    let message = |to: &str, id: u64| {
        crate::harness::requests::text_xml("o_fan", "hello", id).replace("gh_e2e", to)
    };

    // A client's own authorizer header is replaced by the path's.
    let spoof: &[(&str, &[u8])] = &[("x-wechat-gate-authorizer-appid", b"wx9999999999999999")];
    for (authorizer, id) in [(AUTHORIZER_A, 8001), (AUTHORIZER_B, 8002)] {
        let r = open_platform_push(
            &envoy,
            &format!("{authorizer}/callback"),
            &message("gh_authorized", id),
            spoof,
        );
        assert_eq!(r.status, 200, "{authorizer}: {}", r.body_text());
    }
    let named: Vec<Option<String>> = backend
        .records()
        .iter()
        .map(|r| {
            r.header("x-wechat-gate-authorizer-appid")
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        named,
        vec![
            Some(AUTHORIZER_A.to_string()),
            Some(AUTHORIZER_B.to_string())
        ]
    );

    // A segment that is no AppID, a message naming another authorizer than its path,
    // and a plaintext push (a component's pushes are always encrypted) are refused.
    let r = open_platform_push(&envoy, "evil/callback", &message("gh_x", 8003), &[]);
    assert_eq!(r.status, 400, "{}", r.body_text());
    let misnamed = message("gh_x", 8004).replace(
        "</xml>",
        &format!("<AuthorizerAppid>{AUTHORIZER_B}</AuthorizerAppid></xml>"),
    );
    let r = open_platform_push(&envoy, &format!("{AUTHORIZER_A}/callback"), &misnamed, &[]);
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert!(
        r.body_text().contains("AuthorizerAppid"),
        "{}",
        r.body_text()
    );
    assert_eq!(envoy.counter("wechat_gate.rejected.account"), 1);
    let plain = signed(TOKEN, now(), &nonce(), &[]);
    let r = envoy.post_to(
        &format!("/open/{AUTHORIZER_A}/callback"),
        &plain,
        &message("gh_x", 8005),
        "text/xml",
    );
    assert_eq!(r.status, 400, "{}", r.body_text());

    // The component's ticket passes its own route, once; another component's does not.
    let ticket = |component: &str| {
        format!("<xml><AppId><![CDATA[{component}]]></AppId><CreateTime>{}</CreateTime><InfoType><![CDATA[component_verify_ticket]]></InfoType><ComponentVerifyTicket><![CDATA[ticket@@@e2e]]></ComponentVerifyTicket></xml>", now())
    };
    let ours = ticket(APPID);
    for _ in 0..2 {
        let r = open_platform_push(&envoy, "auth", &ours, &[]);
        assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    }
    let r = open_platform_push(&envoy, "auth", &ticket("wx3333333333333333"), &[]);
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert_eq!(envoy.counter("wechat_gate.rejected.account"), 2);
    let bodies = backend.bodies();
    assert_eq!(
        bodies.len(),
        3,
        "nothing refused or retried reached the backend: {bodies:?}"
    );
    assert_eq!(bodies[2], ours);
}

/// WeCom's plaintext XML for a text message to `CORPID`'s app 1000002.
fn wecom_message(content: &str, msg_id: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORPID}]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>1000002</AgentID></xml>",
        now()
    )
}

/// WeCom's query: `msg_signature`, `timestamp`, `nonce` (and `extra`), no `signature`.
fn wecom_query(msg_signature: &str, timestamp: &str, n: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("msg_signature", msg_signature),
        ("timestamp", timestamp),
        ("nonce", n),
    ];
    pairs.extend_from_slice(extra);
    gate::query::encode_query(&pairs)
}

/// A WeCom push of `message` sealed by wechatpy.enterprise: the query and the body.
fn wecom_push(message: &str) -> (String, String) {
    let (ts, n) = (now(), nonce());
    let timestamp = ts.to_string();
    let sealed = wechatpy_wecom_encrypt(CORPID, message, &n, &timestamp);
    let body = format!(
        "<xml><ToUserName><![CDATA[{CORPID}]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        sealed.body
    );
    (
        wecom_query(&sealed.msg_signature, &timestamp, &n, &[]),
        body,
    )
}

fn wecom_config() -> serde_json::Value {
    platform_config("wecom", json!({"path": "/wecom", "appid": CORPID}))
}

#[test]
fn wecoms_handshake_is_answered_with_the_plaintext_of_wechatpys_echostr() {
    let backend = Backend::start();
    let envoy = gated(backend.port, wecom_config()).start();
    let handshake = |corpid: &str, signer: Option<&str>, timestamp: i64| {
        let (ts, n) = (timestamp.to_string(), nonce());
        let sealed = wechatpy_wecom_encrypt(corpid, "5927782489442352", &n, &ts);
        let signature = signer.map_or(sealed.msg_signature.clone(), |s| s.to_string());
        let q = wecom_query(&signature, &ts, &n, &[("echostr", &sealed.body)]);
        let target = format!("/wecom?{q}");
        (envoy.send("GET", &target, &[], b"", LISTED), target)
    };
    let (r, target) = handshake(CORPID, None, now());
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "5927782489442352")
    );
    // The same handshake again is a replay (as on every platform): answered
    // `success`, not decrypted again. Forged, stale, for another corp, or from a
    // source not on the list, it is refused.
    let r = envoy.send("GET", &target, &[], b"", LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.replayed"), 1);
    let forged = "0".repeat(40);
    assert_eq!(handshake(CORPID, Some(&forged), now()).0.status, 401);
    assert_eq!(handshake(CORPID, None, now() - 3600).0.status, 401);
    let r = handshake("ww0000000000000bad", None, now()).0;
    assert_eq!(r.status, 401, "{}", r.body_text());
    let (ts, n) = (now().to_string(), nonce());
    let sealed = wechatpy_wecom_encrypt(CORPID, "1", &n, &ts);
    let q = wecom_query(&sealed.msg_signature, &ts, &n, &[("echostr", &sealed.body)]);
    assert_eq!(
        envoy
            .send("GET", &format!("/wecom?{q}"), &[], b"", UNLISTED)
            .status,
        403
    );
    assert!(
        backend.records().is_empty(),
        "the gate answers handshakes itself"
    );

    // The CLI's WeCom handshake, as an operator checks the route.
    let url = format!("http://127.0.0.1:{}/wecom", envoy.port);
    let ran = cli(
        &[
            "send",
            "handshake",
            &url,
            "--platform",
            "wecom",
            "--source",
            LISTED,
            "--safe-mode",
            "--appid",
            CORPID,
        ],
        &[("WECHAT_TOKEN", TOKEN), ("WECHAT_AES_KEY", AES_KEY)],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.text());
}

#[test]
fn a_wecom_push_sealed_by_wechatpy_is_decrypted_and_its_reply_opens_with_wechatpy() {
    let reply = format!("<xml><ToUserName><![CDATA[zhangsan]]></ToUserName><FromUserName><![CDATA[{CORPID}]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[收到]]></Content></xml>");
    let answer = reply.clone();
    let backend = Backend::replying(move |_| Reply::ok(&answer));
    let envoy = gated(backend.port, wecom_config()).start();
    let message = wecom_message("你好, WeCom", 9001);
    let (query, body) = wecom_push(&message);

    let r = envoy.post_to("/wecom", &query, &body, "text/xml");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        backend.bodies(),
        vec![message.clone()],
        "the backend gets the plaintext"
    );
    let opened = open_envelope_with_wechatpy("wecom-decrypt", CORPID, &r.body_text())
        .expect("wechatpy.enterprise opens the gate's reply");
    assert_eq!(opened, reply);

    // The same push again (a replay of its query), WeCom's retry of the message with
    // a new query, a body its msg_signature does not sign, ciphertext for another
    // corp, and a push from an unlisted source: none reaches the backend again.
    let r = envoy.post_to("/wecom", &query, &body, "text/xml");
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.replayed"), 1);
    let (retry_query, retry_body) = wecom_push(&message);
    let r = envoy.post_to("/wecom", &retry_query, &retry_body, "text/xml");
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.deduplicated"), 1);
    let (q, _) = wecom_push(&wecom_message("a", 9002));
    let (_, other_body) = wecom_push(&wecom_message("b", 9003));
    assert_eq!(
        envoy.post_to("/wecom", &q, &other_body, "text/xml").status,
        401
    );
    let (ts, n) = (now().to_string(), nonce());
    let foreign = wechatpy_wecom_encrypt("ww0000000000000bad", &wecom_message("c", 9004), &n, &ts);
    let body = format!("<xml><Encrypt><![CDATA[{}]]></Encrypt></xml>", foreign.body);
    let r = envoy.post_to(
        "/wecom",
        &wecom_query(&foreign.msg_signature, &ts, &n, &[]),
        &body,
        "text/xml",
    );
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert!(r.body_text().contains("decrypt"), "{}", r.body_text());
    let (q, b) = wecom_push(&wecom_message("d", 9005));
    let r = envoy.send(
        "POST",
        &format!("/wecom?{q}"),
        &[("content-type", b"text/xml")],
        b.as_bytes(),
        UNLISTED,
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        backend.records().len(),
        1,
        "nothing refused reached the backend"
    );

    // The CLI sends a WeCom push and opens the sealed reply as WeCom would.
    let url = format!("http://127.0.0.1:{}/wecom", envoy.port);
    let ran = cli(
        &[
            "send",
            "message",
            &url,
            "--platform",
            "wecom",
            "--source",
            LISTED,
            "--text",
            "hi",
            "--to",
            CORPID,
            "--safe-mode",
            "--appid",
            CORPID,
        ],
        &[("WECHAT_TOKEN", TOKEN), ("WECHAT_AES_KEY", AES_KEY)],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.text());
    assert_eq!(backend.records().len(), 2);
}

#[test]
fn wecoms_live_list_comes_from_gettoken_and_getcallbackip() {
    const CORPSECRET: &str = "CorpS3cretForTests01";
    let api = MockApi::start(
        CORPSECRET,
        &["--appid", CORPID, "--callback-ip", "127.0.0.2"],
    );
    let backend = Backend::start();
    let gate = Gate::new(
        "wechat_gate",
        platform_config(
            "wecom",
            json!({
                "path": "/wecom",
                "appid": CORPID,
                "source": {"wechat_api": {
                    "secret": {"env": "WECHAT_CORPSECRET"},
                    "upstreams": [{"cluster": "qyapi", "authority": "qyapi.weixin.qq.com"}]
                }}
            }),
        ),
    );
    let envoy = EnvoyConfig::new(backend.port)
        .gate(gate)
        .vm_env("WECHAT_CORPSECRET", CORPSECRET)
        .cluster("qyapi", api.port)
        .start();
    let listed = wait_until(Duration::from_secs(10), || {
        let (q, b) = wecom_push(&wecom_message("listed?", 9100 + now() as u64 % 1000));
        envoy.post_to("/wecom", &q, &b, "text/xml").status == 200
    });
    assert!(
        listed.is_some(),
        "WeCom's list never loaded:\n{}",
        envoy.log_text()
    );
    let (q, b) = wecom_push(&wecom_message("unlisted", 9200));
    let r = envoy.send(
        "POST",
        &format!("/wecom?{q}"),
        &[("content-type", b"text/xml")],
        b.as_bytes(),
        "127.0.0.1",
    );
    assert_eq!(
        r.status,
        403,
        "127.0.0.1 is not on WeCom's list: {}",
        r.body_text()
    );
    assert!(
        api.count("gettoken") >= 1 && api.count("getcallbackip") >= 1,
        "{}",
        api.calls()
    );
    assert_eq!(
        api.count("token") + api.count("stable_token"),
        0,
        "WeCom has no stable_token"
    );
    let log = envoy.log_text();
    assert!(!log.contains(CORPSECRET), "the corpsecret is never logged");
}

/// One platform's route in the matrix below.
struct Route {
    platform: &'static str,
    /// The request path (the configured one, or for Open Platform an authorizer's).
    path: &'static str,
    config_path: &'static str,
    /// The account whose key seals: the AppID, the component's or the CorpID.
    account: &'static str,
    json: bool,
    wecom: bool,
}

impl Route {
    /// A push of `message` sealed for `for_account`, its query signed with `token` at
    /// `timestamp`: the request target and body.
    fn push(
        &self,
        message: &str,
        token: &str,
        timestamp: i64,
        for_account: &str,
    ) -> (String, String) {
        let n = nonce();
        let ts = timestamp.to_string();
        let mut random = [0u8; 16];
        getrandom::getrandom(&mut random).expect("random");
        let encrypt = cipher::encrypt(&key(), for_account, message.as_bytes(), &random);
        let msg_signature =
            gate::signature::as_str(&gate::signature::sign(&[token, &ts, &n, &encrypt]))
                .to_string();
        let query = if self.wecom {
            wecom_query(&msg_signature, &ts, &n, &[])
        } else {
            signed(
                token,
                timestamp,
                &n,
                &[("encrypt_type", "aes"), ("msg_signature", &msg_signature)],
            )
        };
        let body = if self.json {
            format!(r#"{{"ToUserName":"gh_x","Encrypt":"{encrypt}"}}"#)
        } else {
            format!("<xml><ToUserName><![CDATA[gh_x]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
        };
        (format!("{}?{query}", self.path), body)
    }

    fn message(&self, content: &str, msg_id: u64) -> String {
        if self.json {
            json_message(content, msg_id)
        } else {
            crate::harness::requests::text_xml("o_user", content, msg_id)
        }
    }

    /// The backend's text reply to a push, in the push's format.
    fn reply(json: bool) -> &'static str {
        if json {
            r#"{"ToUserName":"o_user","FromUserName":"gh_x","CreateTime":1,"MsgType":"text","Content":"ok"}"#
        } else {
            "<xml><ToUserName><![CDATA[o_user]]></ToUserName><FromUserName><![CDATA[gh_x]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[ok]]></Content></xml>"
        }
    }

    /// Opens a sealed reply with wechatpy as this platform's SDK would.
    fn open(&self, envelope: &str) -> Result<String, String> {
        let command = match (self.wecom, self.json) {
            (true, _) => "wecom-decrypt",
            (false, true) => "decrypt-json",
            (false, false) => "decrypt",
        };
        open_envelope_with_wechatpy(command, self.account, envelope)
    }
}

#[test]
fn every_platform_gives_an_official_accounts_guarantees() {
    let routes = [
        Route {
            platform: "official_account",
            path: "/wechat",
            config_path: "/wechat",
            account: APPID,
            json: false,
            wecom: false,
        },
        Route {
            platform: "mini_program",
            path: "/wechat",
            config_path: "/wechat",
            account: APPID,
            json: true,
            wecom: false,
        },
        Route {
            platform: "open_platform",
            path: "/open/wx1111111111111111/cb",
            config_path: "/open/$APPID$/cb",
            account: APPID,
            json: false,
            wecom: false,
        },
        Route {
            platform: "wecom",
            path: "/wecom",
            config_path: "/wecom",
            account: CORPID,
            json: false,
            wecom: true,
        },
    ];
    for route in &routes {
        let json = route.json;
        let backend = Backend::replying(move |_| Reply::ok(Route::reply(json)));
        let config = platform_config(
            route.platform,
            json!({"path": route.config_path, "appid": route.account, "name": route.platform}),
        );
        let envoy = gated(backend.port, config).start();
        let who = route.platform;
        let send = |(target, body): &(String, String), source: &str| {
            let content_type: &[u8] = if json {
                b"application/json"
            } else {
                b"text/xml"
            };
            envoy.send(
                "POST",
                target,
                &[("content-type", content_type)],
                body.as_bytes(),
                source,
            )
        };

        // The handshake (a third-party platform's URLs have none).
        if route.wecom {
            let (ts, n) = (now().to_string(), nonce());
            let sealed = wechatpy_wecom_encrypt(CORPID, "8317", &n, &ts);
            let q = wecom_query(&sealed.msg_signature, &ts, &n, &[("echostr", &sealed.body)]);
            let r = envoy.send("GET", &format!("/wecom?{q}"), &[], b"", LISTED);
            assert_eq!((r.status, r.body_text().as_str()), (200, "8317"), "{who}");
        } else if route.platform != "open_platform" {
            let r = envoy.handshake(TOKEN, "8317");
            assert_eq!((r.status, r.body_text().as_str()), (200, "8317"), "{who}");
        }

        // A verified push reaches the backend decrypted, its reply opens with wechatpy.
        let message = route.message("the one message", 4242);
        let push = route.push(&message, TOKEN, now(), route.account);
        let r = send(&push, LISTED);
        assert_eq!(r.status, 200, "{who}: {}", r.body_text());
        assert_eq!(backend.bodies(), vec![message.clone()], "{who}");
        assert_eq!(
            route.open(&r.body_text()).as_deref(),
            Ok(Route::reply(json)),
            "{who}"
        );

        // WeChat's retry (same message, new query) and a replay (the same request)
        // are answered `success` without the backend.
        for again in [
            route.push(&message, TOKEN, now(), route.account),
            push.clone(),
        ] {
            let r = send(&again, LISTED);
            assert_eq!(
                (r.status, r.body_text().as_str()),
                (200, "success"),
                "{who}"
            );
        }
        // Forged, stale, from an unlisted source, sealed for another account: refused.
        let other = route.message("x", 4343);
        for (request, source, status, reason) in [
            (
                route.push(&other, "not-the-token", now(), route.account),
                LISTED,
                401,
                if route.wecom {
                    "msg_signature"
                } else {
                    "signature"
                },
            ),
            (
                route.push(&other, TOKEN, now() - 3600, route.account),
                LISTED,
                401,
                "stale",
            ),
            (
                route.push(&other, TOKEN, now(), route.account),
                UNLISTED,
                403,
                "source",
            ),
            (
                route.push(&other, TOKEN, now(), "wx0000000000000bad"),
                LISTED,
                401,
                "decrypt",
            ),
        ] {
            let r = send(&request, source);
            assert_eq!(r.status, status, "{who} {reason}: {}", r.body_text());
            assert!(r.body_text().contains(reason), "{who}: {}", r.body_text());
            let counted = envoy.counters_by_account();
            let key = (who.to_string(), format!("wechat_gate.rejected.{reason}"));
            assert_eq!(counted.get(&key), Some(&1), "{who} {reason}: {counted:?}");
        }
        assert_eq!(
            backend.records().len(),
            1,
            "{who}: only the one verified message arrived"
        );
        let counted = envoy.counters_by_account();
        for (name, value) in [
            ("wechat_gate.forwarded", 1),
            ("wechat_gate.deduplicated", 1),
            ("wechat_gate.replayed", 1),
            ("wechat_gate.reply_encrypted", 1),
        ] {
            assert_eq!(
                counted.get(&(who.to_string(), name.to_string())),
                Some(&value),
                "{who} {name}"
            );
        }
    }
}
