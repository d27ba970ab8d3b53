//! The API role with two SDKs no one here wrote, each pointed at the gate with NO
//! AppSecret: wechatpy 1.8.18 (`API_BASE_URL`; it takes a placeholder token at
//! construction) and npm's `wechat-api` 1.35.1 (its `endpoint`; it fetches its own token
//! from there, so it runs on the gate's stand-in). Each sends a custom message, reads a
//! user, uploads media and downloads it back byte for byte, gets the jsapi ticket and
//! signs a JS-SDK config; for a Mini Program each exchanges a js_code; wechatpy's
//! enterprise client sends a WeCom message.

use crate::harness::api::{rig, stat, Account, Rig, MINI, OFFICIAL, STAND_IN, WECOM};
use crate::harness::node_sdk::node_sdk;
use crate::harness::scratch_dir;
use crate::harness::wechatpy::wechatpy_api;
use serde_json::{json, Value};
use std::path::PathBuf;

const OPENID: &str = "oE2eOpenIdOfAUser000000001";
const PAGE: &str = "https://shop.example.com/page?id=7&from=e2e";

/// The gate's prefix as a URL, without a trailing slash.
fn prefix_url(rig: &Rig, account: Account) -> String {
    format!("http://127.0.0.1:{}{}", rig.envoy.port, account.path)
}

/// A media file of `len` bytes (a PNG signature, then a fixed pattern with every byte
/// value) and the path it is written to, plus a path to download it back to.
fn media_file(len: usize) -> (Vec<u8>, PathBuf, PathBuf) {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..len.saturating_sub(8)).map(|i| (i * 7 % 256) as u8));
    let dir = scratch_dir("api-media");
    let (file, out) = (dir.join("gate.png"), dir.join("downloaded.png"));
    std::fs::write(&file, &bytes).expect("write media");
    (bytes, file, out)
}

/// Nothing WeChat answered was an error: no errcode, or 0.
fn ok(what: &str, v: &Value) {
    assert!(
        v.get("errcode").is_none() || v["errcode"] == 0,
        "{what}: {v}"
    );
}

/// wechatpy's JS-SDK signature over `ticket` and a config's nonce, timestamp and url.
fn wechatpy_sign(ticket: &str, nonce: &str, timestamp: &str, url: &str) -> String {
    let v = wechatpy_api(&["sign", ticket, nonce, timestamp, url]).expect("wechatpy signs");
    v["signature"].as_str().expect("a signature").to_string()
}

/// A JSON value as text for a signature (the timestamp may be a number or a string).
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// The mock got one custom message to OPENID saying `content`.
fn assert_message(rig: &Rig, content: &str) {
    let messages = rig.mock(OFFICIAL).messages();
    let found: Vec<&Value> = messages
        .iter()
        .filter(|m| m["body"]["text"]["content"] == content)
        .collect();
    assert_eq!(found.len(), 1, "{messages:?}");
    assert_eq!(found[0]["endpoint"], "custom_send");
    assert_eq!(found[0]["body"]["touser"], OPENID);
}

#[test]
fn wechatpy_without_a_secret_sends_reads_uploads_downloads_and_signs() {
    let rig = rig(OFFICIAL, json!({}));
    // Over Envoy's default 1 MiB buffer: the listener's limit lets it through whole.
    let (media, file, out) = media_file(1_500_000);
    let base = format!("{}/", prefix_url(&rig, OFFICIAL));
    let got = wechatpy_api(&[
        "oa",
        &base,
        OFFICIAL.appid,
        OPENID,
        &file.display().to_string(),
        &out.display().to_string(),
        PAGE,
    ])
    .unwrap_or_else(|e| panic!("wechatpy through the gate: {e}\n{}", rig.envoy.log_text()));
    ok("send", &got["send"]);
    assert_message(&rig, "hello from wechatpy");
    assert_eq!(got["user"]["openid"], OPENID, "{got}");
    assert!(got["upload"]["media_id"].is_string(), "{got}");
    assert_eq!(got["download_status"], 200);
    let back = std::fs::read(&out).expect("the download");
    assert!(back == media, "the download differs: {} bytes", back.len());
    assert!(
        got["download_disposition"].as_str().is_some(),
        "WeChat's content-disposition reaches the caller: {got}"
    );
    let config = &got["gate_config"];
    assert_eq!(got["gate_config_status"], 200, "{got}");
    ok("jssdk-config", config);
    assert_eq!(config["appId"], OFFICIAL.appid);
    assert_eq!(config["url"], PAGE);
    assert_eq!(
        config["signature"], got["wechatpy_signature"],
        "the gate's JS-SDK signature is wechatpy's over the same ticket, nonce, timestamp, url"
    );
    assert_eq!(got["oauth"]["openid"], "oMockoauth-code-e2e", "{got}");
    let calls = rig.mock(OFFICIAL).calls();
    for endpoint in [
        "user_info",
        "custom_send",
        "media_upload",
        "media_get",
        "getticket_jsapi",
        "oauth2_access_token",
    ] {
        assert_eq!(calls[endpoint], 1, "{endpoint}: {calls}");
    }
    assert_eq!(calls["stable_token"], 1, "{calls}");
    assert_eq!(calls["token"], 0, "{calls}");
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.token_fetches"),
        1,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.ticket_fetches"),
        1,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.ticket_hits"),
        1,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.api_calls.answered"),
        7,
        "{counters:?}"
    );
    assert_clean(&rig, OFFICIAL, &got.to_string());
}

#[test]
fn node_wechat_api_runs_on_the_stand_in_token() {
    let rig = rig(OFFICIAL, json!({}));
    let (media, file, out) = media_file(300_000);
    let got = node_sdk(&[
        "oa",
        &prefix_url(&rig, OFFICIAL),
        OFFICIAL.appid,
        OPENID,
        &file.display().to_string(),
        &out.display().to_string(),
        PAGE,
    ])
    .unwrap_or_else(|e| panic!("wechat-api through the gate: {e}\n{}", rig.envoy.log_text()));
    assert_eq!(got["token_seen"], STAND_IN, "the SDK ran on the stand-in");
    ok("send", &got["send"]);
    assert_message(&rig, "hello from npm wechat-api");
    assert_eq!(got["user"]["openid"], OPENID, "{got}");
    assert!(got["upload"]["media_id"].is_string(), "{got}");
    let back = std::fs::read(&out).expect("the download");
    assert!(back == media, "the download differs: {} bytes", back.len());
    // The ticket the SDK got is the gate's (cached) one, and the SDK's signature is
    // wechatpy's over it; the gate's own jssdk-config signs with the same ticket.
    let ticket = got["ticket"].as_str().expect("a ticket");
    let cached = crate::harness::api::assert_answered(&rig.get(&format!(
        "{}/cgi-bin/ticket/getticket?type=jsapi",
        OFFICIAL.path
    )));
    assert_eq!(cached["ticket"], ticket);
    let config = &got["config"];
    let sdk_signed = wechatpy_sign(
        ticket,
        &text(&config["nonceStr"]),
        &text(&config["timestamp"]),
        PAGE,
    );
    assert_eq!(config["signature"], sdk_signed.as_str());
    let gate = crate::harness::api::assert_answered(&rig.get(&format!(
        "{}/wechat-gate/jssdk-config?url={}",
        OFFICIAL.path,
        percent_encoding::utf8_percent_encode(PAGE, percent_encoding::NON_ALPHANUMERIC)
    )));
    let gate_signed = wechatpy_sign(
        ticket,
        &text(&gate["nonceStr"]),
        &text(&gate["timestamp"]),
        PAGE,
    );
    assert_eq!(gate["signature"], gate_signed.as_str(), "{gate}");
    let calls = rig.mock(OFFICIAL).calls();
    assert_eq!(
        calls["token"], 0,
        "the SDK's token call never reached WeChat: {calls}"
    );
    assert_eq!(calls["stable_token"], 1, "{calls}");
    assert_eq!(calls["getticket_jsapi"], 1, "{calls}");
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.api_stand_in"),
        1,
        "{counters:?}"
    );
    assert_eq!(
        stat(&counters, "wechat_gate.ticket_hits"),
        2,
        "{counters:?}"
    );
    assert_clean(&rig, OFFICIAL, &got.to_string());
}

#[test]
fn a_mini_program_exchanges_js_codes_through_both_sdks_without_a_token() {
    // The Mini Program's gate is a second instance beside the official account's.
    let rig = crate::harness::api::builder()
        .account(OFFICIAL, json!({}))
        .account(MINI, json!({}))
        .start();
    let prefix = prefix_url(&rig, MINI);
    let py = wechatpy_api(&[
        "mini",
        &format!("{prefix}/"),
        MINI.appid,
        "jscode-from-wechatpy",
    ])
    .unwrap_or_else(|e| panic!("wechatpy code_to_session: {e}\n{}", rig.envoy.log_text()));
    ok("code_to_session", &py["session"]);
    assert_eq!(py["session"]["openid"], "oMockjscode-from-wechatpy", "{py}");
    let node = node_sdk(&["mini", &prefix, MINI.appid, "jscode-from-node"])
        .unwrap_or_else(|e| panic!("wechat-api jscode2session: {e}"));
    assert_eq!(node["session"]["status"], 200, "{node}");
    ok("jscode2session", &node["session"]["data"]);
    assert_eq!(
        node["session"]["data"]["openid"], "oMockjscode-from-node",
        "{node}"
    );
    let calls = rig.mock(MINI).calls();
    assert_eq!(calls["jscode2session"], 2, "{calls}");
    // jscode2session carries the AppSecret, not a token: none was fetched for it.
    assert_eq!(calls["stable_token"], 0, "{calls}");
    let other = rig.mock(OFFICIAL).calls();
    assert_eq!(
        other.get("jscode2session"),
        None,
        "the other account's WeChat: {other}"
    );
    assert_clean(&rig, MINI, &format!("{py}{node}"));
}

#[test]
fn wecom_hands_out_a_stand_in_for_gettoken_and_sends_messages() {
    let rig = rig(WECOM, json!({}));
    let r = rig.get(&format!(
        "{}/cgi-bin/gettoken?corpid={}&corpsecret=not-the-secret",
        WECOM.path, WECOM.appid
    ));
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v = crate::harness::api::json_of(&r);
    assert_eq!(
        v,
        json!({"errcode": 0, "errmsg": "ok", "access_token": STAND_IN, "expires_in": 7200})
    );
    let got = wechatpy_api(&[
        "wecom",
        &format!("{}/", prefix_url(&rig, WECOM)),
        WECOM.appid,
        "1000002",
        "zhangsan",
    ])
    .unwrap_or_else(|e| panic!("wechatpy.enterprise: {e}\n{}", rig.envoy.log_text()));
    ok("message/send", &got["send"]);
    let messages = rig.mock(WECOM).messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["endpoint"], "wecom_message_send");
    assert_eq!(messages[0]["body"]["touser"], "zhangsan");
    let calls = rig.mock(WECOM).calls();
    assert_eq!(
        calls["gettoken"], 1,
        "one token from WeCom, the caller's was a stand-in: {calls}"
    );
    assert_eq!(calls["wecom_message_send"], 1, "{calls}");
    let counters = rig.envoy.counters();
    assert_eq!(
        stat(&counters, "wechat_gate.api_stand_in"),
        1,
        "{counters:?}"
    );
    assert_clean(&rig, WECOM, &got.to_string());
}

/// The SDK's output, the route's cluster and Envoy's log hold neither the secret nor
/// the real token.
fn assert_clean(rig: &Rig, account: Account, output: &str) {
    let token = account.real_token(rig.mock(account));
    let log = rig.envoy.log_text();
    crate::harness::api::assert_hidden(
        &[("the secret", account.secret), ("the real token", &token)],
        &[("the SDK's output", output), ("Envoy's log", &log)],
    );
    rig.assert_sink_untouched(&[account.secret, &token]);
    assert!(rig.envoy.vm_failures().is_empty(), "{log}");
}
