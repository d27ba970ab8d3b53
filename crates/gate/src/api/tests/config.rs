//! `"role": "api"`: what is required, what is refused (naming the field), the
//! prefix's form, the defaults, and no secret in any refusal.

use super::{base, parse, SECRET};
use crate::config::api::DEFAULT_API_MAX_BODY_BYTES;
use crate::config::{ConfigError, Platform, TokenApi};
use serde_json::{json, Value};

fn refused(v: &Value) -> ConfigError {
    let e = parse(v).expect_err("should be refused");
    let text = e.to_string();
    assert!(!text.contains(SECRET), "the secret in a refusal: {text}");
    e
}

fn without(field: &str) -> Value {
    let mut v = base();
    v.as_object_mut().expect("an object").remove(field);
    v
}

fn with(field: &str, value: Value) -> Value {
    let mut v = base();
    v[field] = value;
    v
}

#[test]
fn the_api_role_is_accepted_with_its_defaults() {
    let c = parse(&base()).expect("valid");
    assert_eq!(c.name, "mp");
    assert_eq!(c.platform, Platform::OfficialAccount);
    assert_eq!(c.path, "/wechat-api/mp");
    assert_eq!(c.appid(), super::APPID);
    assert_eq!(c.api.secret.expose(), SECRET);
    assert_eq!(c.api.token_api, TokenApi::Stable);
    assert_eq!(c.api.upstreams.len(), 2);
    assert_eq!(c.api.timeout_ms, 5000);
    assert_eq!(c.callers.entries(), 2);
    assert_eq!(c.max_body_bytes, 12 * 1024 * 1024);
    assert_eq!(DEFAULT_API_MAX_BODY_BYTES, 12_582_912);
}

#[test]
fn every_platform_but_open_platform_is_served() {
    for (name, platform) in [
        ("official_account", Platform::OfficialAccount),
        ("mini_program", Platform::MiniProgram),
        ("wecom", Platform::Wecom),
    ] {
        let c = parse(&super::on(name)).expect(name);
        assert_eq!(c.platform, platform);
    }
    assert_eq!(
        parse(&super::on("wecom")).expect("wecom").api.token_api,
        TokenApi::Wecom
    );
    let e = refused(&super::on("open_platform"));
    assert_eq!(e.field, "platform");
}

#[test]
fn callers_are_required_and_not_empty() {
    assert_eq!(refused(&without("callers")).field, "callers");
    assert_eq!(refused(&with("callers", json!([]))).field, "callers");
    assert_eq!(
        refused(&with("callers", json!(["10.0.0.0/8", "no-ip"]))).field,
        "callers[1]"
    );
}

#[test]
fn appid_and_wechat_api_are_required() {
    assert_eq!(refused(&without("appid")).field, "appid");
    assert_eq!(refused(&with("appid", json!(""))).field, "appid");
    assert_eq!(refused(&without("wechat_api")).field, "wechat_api");
    let mut v = base();
    v["wechat_api"]
        .as_object_mut()
        .expect("object")
        .remove("secret");
    assert_eq!(refused(&v).field, "wechat_api.secret");
    let mut v = base();
    v["wechat_api"]["upstreams"] = json!([]);
    assert_eq!(refused(&v).field, "wechat_api.upstreams");
}

#[test]
fn unknown_fields_are_refused_naming_the_field() {
    let callback_fields = [
        ("token", json!("tok")),
        ("source", json!({"allow": ["127.0.0.1"]})),
        ("safe_mode", json!({"encoding_aes_key": "k"})),
        ("on_upstream_failure", json!("pass")),
        ("colour", json!("blue")),
    ];
    for (field, value) in callback_fields {
        let e = refused(&with(field, value));
        assert!(
            e.to_string().contains(&format!("`{field}`")),
            "{field}: {e}"
        );
    }
    for field in ["appid", "refresh_seconds", "extra"] {
        let mut v = base();
        v["wechat_api"][field] = json!(1);
        let e = refused(&v);
        assert_eq!(e.field, "wechat_api", "{field}");
        assert!(e.to_string().contains(&format!("`{field}`")), "{e}");
    }
}

#[test]
fn the_path_is_required_plain_and_kept_without_a_trailing_slash() {
    assert_eq!(refused(&without("path")).field, "path");
    let kept = parse(&with("path", json!("/wechat-api/mp/"))).expect("valid");
    assert_eq!(kept.path, "/wechat-api/mp");
    for bad in [
        "wechat-api",
        "/",
        "/wechat-api/../mp",
        "/wechat-api/./mp",
        "/wechat-api//mp",
        "/wechat-api/%6dp",
        "/wechat-api\\mp",
        "/wechat-api/mp?x=1",
        "/微信",
    ] {
        assert_eq!(refused(&with("path", json!(bad))).field, "path", "{bad}");
    }
}

#[test]
fn max_body_bytes_is_bounded() {
    let c = parse(&with("max_body_bytes", json!(1024))).expect("valid");
    assert_eq!(c.max_body_bytes, 1024);
    assert_eq!(
        refused(&with("max_body_bytes", json!(0))).field,
        "max_body_bytes"
    );
}

#[test]
fn no_refusal_and_no_debug_shows_the_secret() {
    // The secret given in forms the configuration does not take.
    for secret in [
        json!([SECRET]),
        json!({"value": SECRET}),
        json!({"env": "APP_SECRET", "value": SECRET}),
        json!(["a", "b", SECRET]),
    ] {
        let mut v = base();
        v["wechat_api"]["secret"] = secret;
        assert_eq!(refused(&v).field, "wechat_api.secret");
    }
    // A good secret beside a fault elsewhere.
    refused(&with("callers", json!([])));
    refused(&with("token", json!(SECRET)));
    let c = parse(&base()).expect("valid");
    assert!(!format!("{c:?}").contains(SECRET));
    assert!(!c.summary().contains(SECRET));
}

#[test]
fn wecom_takes_its_token_from_gettoken_and_token_api_wecom_says_so() {
    let mut v = super::on("wecom");
    v["wechat_api"]["token_api"] = json!("wecom");
    assert_eq!(
        parse(&v).expect("\"wecom\" accepted").api.token_api,
        TokenApi::Wecom
    );
    for other in ["stable", "classic"] {
        v["wechat_api"]["token_api"] = json!(other);
        assert_eq!(refused(&v).field, "wechat_api.token_api", "{other}");
    }
    let mut v = base();
    v["wechat_api"]["token_api"] = json!("wecom");
    assert_eq!(refused(&v).field, "wechat_api.token_api");
    v["wechat_api"]["token_api"] = json!("classic");
    assert_eq!(parse(&v).expect("classic").api.token_api, TokenApi::Classic);
}
