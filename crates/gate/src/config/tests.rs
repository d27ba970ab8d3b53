//! The configuration contract, field by field.

use super::*;
use std::net::IpAddr;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse_str(json: &str) -> Result<Config, ConfigError> {
    parse(json.as_bytes(), &no_env)
}

fn field_of(json: &str) -> String {
    parse_str(json).expect_err("should be refused").field
}

const MINIMAL: &str = r#"{"token": "tok", "source": {"allow": ["127.0.0.1"]}}"#;

#[test]
fn minimal_configuration_takes_the_documented_defaults() {
    let c = parse_str(MINIMAL).expect("valid");
    assert_eq!(c.path, None);
    assert_eq!(c.token.current().expose(), "tok");
    assert_eq!(c.timestamp_tolerance_seconds, 300);
    assert_eq!(c.max_body_bytes, 65536);
    assert_eq!(c.dedupe_seconds, 15);
    assert_eq!(c.on_upstream_failure, UpstreamFailure::Success);
    assert_eq!(c.source.mode, SourceMode::Enforce);
    assert_eq!(c.source.when_unavailable, WhenUnavailable::Deny);
    assert!(c
        .source
        .allow
        .contains("127.0.0.1".parse::<IpAddr>().expect("ip")));
}

#[test]
fn every_supported_field_is_read() {
    let c = parse_str(
        r#"{"path": "/wechat", "appid": "wx0123456789abcdef", "token": "t",
            "timestamp_tolerance_seconds": 0, "max_body_bytes": 10,
            "source": {"mode": "report", "allow": ["10.0.0.0/8", "::1"]}}"#,
    )
    .expect("valid");
    assert_eq!(c.path.as_deref(), Some("/wechat"));
    assert_eq!(c.appid.as_deref(), Some("wx0123456789abcdef"));
    assert_eq!(c.timestamp_tolerance_seconds, 0);
    assert_eq!(c.max_body_bytes, 10);
    assert_eq!(c.source.mode, SourceMode::Report);
    assert_eq!(c.source.allow.entries(), 2);
}

#[test]
fn token_from_the_environment() {
    let env = |name: &str| (name == "WECHAT_TOKEN").then(|| "from-env".to_string());
    let c = parse(
        br#"{"token": {"env": "WECHAT_TOKEN"}, "source": {"mode": "off"}}"#,
        &env,
    )
    .expect("valid");
    assert_eq!(c.token.current().expose(), "from-env");
}

#[test]
fn unset_environment_variable_is_refused_naming_the_field() {
    let e =
        parse_str(r#"{"token": {"env": "NOPE"}, "source": {"mode": "off"}}"#).expect_err("unset");
    assert_eq!(e.field, "token.env");
    assert!(e.message.contains("NOPE"));
}

#[test]
fn secret_must_be_a_string_or_env_object() {
    assert_eq!(
        field_of(r#"{"token": 5, "source": {"mode": "off"}}"#),
        "token"
    );
    assert_eq!(
        field_of(r#"{"token": {"file": "x"}, "source": {"mode": "off"}}"#),
        "token"
    );
    assert_eq!(
        field_of(r#"{"token": "", "source": {"mode": "off"}}"#),
        "token"
    );
}

#[test]
fn a_secret_of_the_wrong_type_is_refused_without_repeating_it() {
    let live = |secret: &str| LIVE.replace(r#"{"env": "SECRET"}"#, secret);
    for (json, field) in [
        (live(r#"["S3cret-v"]"#), "source.wechat_api.secret"),
        (live(r#"{"env": ["S3cret-v"]}"#), "source.wechat_api.secret"),
        (
            live(r#"{"env": "S3cret-v", "x": 1}"#),
            "source.wechat_api.secret",
        ),
        (live(r#"{"ENV": "S3cret-v"}"#), "source.wechat_api.secret"),
        (
            r#"{"token": [["S3cret-v"]], "source": {"mode": "off"}}"#.to_string(),
            "token",
        ),
        (
            r#"{"token": [{"env": 7}], "source": {"mode": "off"}}"#.to_string(),
            "token",
        ),
    ] {
        let err = parse(json.as_bytes(), &|_| None).expect_err(&json);
        assert_eq!(err.field, field, "{json}");
        assert!(!err.to_string().contains("S3cret-v"), "{err}");
    }
}

#[test]
fn secrets_never_show_in_debug_output() {
    let c = parse_str(r#"{"token": "sup3r-secret", "source": {"mode": "off"}}"#).expect("valid");
    assert!(!format!("{c:?}").contains("sup3r-secret"));
}

#[test]
fn unknown_fields_are_refused_naming_the_field() {
    let e = parse_str(r#"{"token": "t", "tokne": "x", "source": {"mode": "off"}}"#)
        .expect_err("unknown");
    assert!(e.message.contains("tokne"), "{e}");
    let e =
        parse_str(r#"{"token": "t", "source": {"mode": "off", "alow": []}}"#).expect_err("unknown");
    assert!(e.field.starts_with("source"), "{e}");
    assert!(e.message.contains("alow"), "{e}");
}

#[test]
fn wrong_types_are_refused_naming_the_field() {
    assert_eq!(
        field_of(r#"{"token": "t", "max_body_bytes": "big", "source": {"mode": "off"}}"#),
        "max_body_bytes"
    );
    assert_eq!(
        field_of(r#"{"token": "t", "source": {"mode": "block"}}"#),
        "source.mode"
    );
    assert_eq!(
        field_of(r#"{"token": "t", "timestamp_tolerance_seconds": -1, "source": {"mode": "off"}}"#),
        "timestamp_tolerance_seconds"
    );
    assert_eq!(
        field_of(r#"{"token": "t", "source": {"allow": "127.0.0.1"}}"#),
        "source.allow"
    );
}

#[test]
fn bad_cidr_is_refused_naming_its_index() {
    let e = parse_str(r#"{"token": "t", "source": {"allow": ["127.0.0.1", "10.0.0.0/40"]}}"#)
        .expect_err("bad");
    assert_eq!(e.field, "source.allow[1]");
    assert!(e.message.contains("10.0.0.0/40"));
}

#[test]
fn missing_token_is_refused() {
    assert_eq!(field_of(r#"{"source": {"mode": "off"}}"#), "token");
}

#[test]
fn empty_allowlist_under_enforce_is_refused() {
    assert_eq!(field_of(r#"{"token": "t"}"#), "source.allow");
    assert_eq!(
        field_of(r#"{"token": "t", "source": {"allow": []}}"#),
        "source.allow"
    );
    assert!(parse_str(r#"{"token": "t", "source": {"mode": "report"}}"#).is_ok());
}

#[test]
fn path_must_be_a_plain_absolute_path() {
    assert_eq!(
        field_of(r#"{"path": "wechat", "token": "t", "source": {"mode": "off"}}"#),
        "path"
    );
    assert_eq!(
        field_of(r#"{"path": "/wechat?x=1", "token": "t", "source": {"mode": "off"}}"#),
        "path"
    );
}

#[test]
fn zero_body_limit_is_refused() {
    assert_eq!(
        field_of(r#"{"token": "t", "max_body_bytes": 0, "source": {"mode": "off"}}"#),
        "max_body_bytes"
    );
}

const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

#[test]
fn safe_mode_compiles_the_key_and_defaults_to_verify_only() {
    let c = parse_str(&format!(
        r#"{{"token": "t", "appid": "wx1", "safe_mode": {{"encoding_aes_key": "{AES_KEY}"}}, "source": {{"mode": "off"}}}}"#
    ))
    .expect("valid");
    let safe = c.safe_mode.expect("safe mode");
    assert!(!safe.require && !safe.decrypt);
    assert_eq!(
        *safe.keys.current(),
        crate::safe_mode::cipher::AesKey::from_encoding_aes_key(AES_KEY).expect("key")
    );
}

#[test]
fn safe_mode_key_comes_from_the_environment_and_must_be_43_base64_characters() {
    let env = |name: &str| (name == "K").then(|| AES_KEY.to_string());
    let json = r#"{"token": "t", "appid": "wx1", "safe_mode": {"encoding_aes_key": {"env": "K"}, "decrypt": true, "require": true}, "source": {"mode": "off"}}"#;
    let safe = parse(json.as_bytes(), &env)
        .expect("valid")
        .safe_mode
        .expect("safe");
    assert!(safe.require && safe.decrypt);
    for bad in [
        &AES_KEY[..42],
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDE!G",
    ] {
        let e = parse_str(&format!(
            r#"{{"token": "t", "appid": "wx1", "safe_mode": {{"encoding_aes_key": "{bad}"}}, "source": {{"mode": "off"}}}}"#
        ))
        .expect_err(bad);
        assert_eq!(e.field, "safe_mode.encoding_aes_key");
        assert!(!e.to_string().contains(bad), "the key is not echoed: {e}");
    }
}

#[test]
fn safe_mode_needs_a_key_and_an_appid() {
    assert_eq!(
        field_of(
            r#"{"token": "t", "appid": "wx1", "safe_mode": {"decrypt": true}, "source": {"mode": "off"}}"#
        ),
        "safe_mode.encoding_aes_key"
    );
    assert_eq!(
        field_of(&format!(
            r#"{{"token": "t", "safe_mode": {{"encoding_aes_key": "{AES_KEY}"}}, "source": {{"mode": "off"}}}}"#
        )),
        "appid"
    );
}

#[test]
fn dedupe_and_upstream_failure_are_read() {
    let c = parse_str(
        r#"{"token": "t", "dedupe_seconds": 0, "on_upstream_failure": "pass", "source": {"mode": "off"}}"#,
    )
    .expect("valid");
    assert_eq!(c.dedupe_seconds, 0);
    assert_eq!(c.on_upstream_failure, UpstreamFailure::Pass);
    assert_eq!(
        field_of(r#"{"token": "t", "dedupe_seconds": 86401, "source": {"mode": "off"}}"#),
        "dedupe_seconds"
    );
}

#[test]
fn later_fields_still_must_have_the_right_shape() {
    assert_eq!(
        field_of(r#"{"token": "t", "on_upstream_failure": "maybe", "source": {"mode": "off"}}"#),
        "on_upstream_failure"
    );
    let e =
        parse_str(r#"{"token": "t", "safe_mode": {"decrypt": "yes"}, "source": {"mode": "off"}}"#)
            .expect_err("type");
    assert_eq!(e.field, "safe_mode.decrypt");
}

const LIVE: &str = r#"{"token": "t", "appid": "wx1", "source": {"wechat_api": {"secret": {"env": "SECRET"}, "upstreams": [{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}]}}}"#;

#[test]
fn live_list_configuration_takes_the_documented_defaults() {
    let env = |n: &str| (n == "SECRET").then(|| "app-secret".to_string());
    let c = parse(LIVE.as_bytes(), &env).expect("valid");
    let api = c.source.wechat_api.expect("wechat_api");
    assert_eq!(api.secret.expose(), "app-secret");
    assert_eq!(
        (api.token_api, api.refresh_seconds, api.timeout_ms),
        (TokenApi::Stable, 3600, 5000)
    );
    assert_eq!(
        api.upstreams,
        [Upstream {
            cluster: "wechat_api".into(),
            authority: "api.weixin.qq.com".into()
        }]
    );
    assert_eq!(c.source.when_unavailable, WhenUnavailable::Deny);
    assert!(
        c.source.allow.is_empty(),
        "an empty static list is fine with a live list"
    );
}

#[test]
fn live_list_needs_appid_secret_and_upstreams() {
    let env = |n: &str| (n == "SECRET").then(|| "s".to_string());
    let no_appid = LIVE.replace(r#""appid": "wx1", "#, "");
    assert_eq!(
        parse(no_appid.as_bytes(), &env).expect_err("appid").field,
        "appid"
    );
    assert_eq!(
        parse(LIVE.as_bytes(), &no_env).expect_err("secret").field,
        "source.wechat_api.secret.env"
    );
    let no_upstreams = LIVE.replace(
        r#""upstreams": [{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}]"#,
        r#""upstreams": []"#,
    );
    assert_eq!(
        parse(no_upstreams.as_bytes(), &env)
            .expect_err("upstreams")
            .field,
        "source.wechat_api.upstreams"
    );
    let bad_api = LIVE.replace(r#""secret""#, r#""token_api": "newest", "secret""#);
    assert_eq!(
        parse(bad_api.as_bytes(), &env)
            .expect_err("token_api")
            .field,
        "source.wechat_api.token_api"
    );
}

#[test]
fn the_list_is_fetched_with_the_accounts_appid_unless_another_is_named() {
    let env = |n: &str| (n == "SECRET").then(|| "s".to_string());
    let api = |json: &str| parse(json.as_bytes(), &env).map(|c| c.source.wechat_api.expect("api"));
    assert_eq!(api(LIVE).expect("valid").appid, "wx1");
    let other = LIVE.replace(r#""secret""#, r#""appid": "wxOA", "secret""#);
    assert_eq!(api(&other).expect("valid").appid, "wxOA");
    // Given here, the top-level appid is not needed for the list.
    let only_api = other.replace(r#""appid": "wx1", "#, "");
    assert_eq!(api(&only_api).expect("valid").appid, "wxOA");
    let empty = LIVE.replace(r#""secret""#, r#""appid": "", "secret""#);
    assert_eq!(
        api(&empty).expect_err("empty").field,
        "source.wechat_api.appid"
    );
    // A component cannot fetch it with its own AppSecret; a WeCom bot has no CorpID.
    let aes =
        r#""safe_mode": {"encoding_aes_key": "GeuKYOtmlo3LsuufAkG+oPBZOZm/L42M6eGR8KhDGgE"}, "#;
    let component = LIVE.replace(
        r#"{"token""#,
        &format!(r#"{{"platform": "open_platform", {aes}"token""#),
    );
    assert_eq!(
        api(&component).expect_err("component").field,
        "source.wechat_api.appid"
    );
    let component_with_oa = component.replace(r#""secret""#, r#""appid": "wxOA", "secret""#);
    assert_eq!(api(&component_with_oa).expect("valid").appid, "wxOA");
    let bot = LIVE.replace(r#""appid": "wx1""#, r#""appid": """#).replace(
        r#"{"token""#,
        &format!(r#"{{"platform": "wecom", {aes}"token""#),
    );
    assert_eq!(api(&bot).expect_err("bot").field, "source.wechat_api.appid");
}

#[test]
fn live_list_timeout_is_bounded() {
    let env = |n: &str| (n == "SECRET").then(|| "s".to_string());
    for bad in ["0", "60001", "4294967296"] {
        let json = LIVE.replace(r#""secret""#, &format!(r#""timeout_ms": {bad}, "secret""#));
        assert_eq!(
            parse(json.as_bytes(), &env).expect_err(bad).field,
            "source.wechat_api.timeout_ms"
        );
    }
}

#[test]
fn when_unavailable_without_a_live_list_is_refused() {
    assert_eq!(
        field_of(
            r#"{"token": "t", "source": {"allow": ["127.0.0.1"], "when_unavailable": "allow"}}"#
        ),
        "source.when_unavailable"
    );
}

#[test]
fn not_json_or_empty_is_refused() {
    assert!(parse_str("").is_err());
    assert!(parse_str("{").is_err());
    assert!(parse_str(r#"{"token": "t", "source": {"mode": "off"}} x"#).is_err());
    assert!(parse_str("[]").is_err());
}

#[test]
fn error_display_names_the_field() {
    let e = parse_str(r#"{"token": "t", "source": {"allow": ["nope"]}}"#).expect_err("bad");
    assert!(e.to_string().contains("`source.allow[0]`"), "{e}");
}

const OTHER_KEY: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";

#[test]
fn a_rotated_token_or_key_is_a_list_of_two_current_first() {
    let json = format!(
        r#"{{"token": ["new", {{"env": "OLD"}}], "appid": "wx1", "source": {{"mode": "off"}}, "safe_mode": {{"encoding_aes_key": ["{AES_KEY}", "{OTHER_KEY}"]}}}}"#
    );
    let c = parse(json.as_bytes(), &|name| {
        (name == "OLD").then(|| "old".to_string())
    })
    .expect("valid");
    let tokens: Vec<&str> = c.token.all().map(|(_, t)| t.expose()).collect();
    assert_eq!(tokens, ["new", "old"]);
    let keys = &c.safe_mode.expect("safe mode").keys;
    assert!(keys.get(1).is_some() && keys.get(2).is_none());
    // The previous one comes from the environment like any secret.
    assert_eq!(parse_str(&json).expect_err("unset").field, "token[1].env");
}

#[test]
fn a_rotation_of_none_three_or_the_same_twice_is_refused_naming_the_field() {
    for (json, field) in [
        (r#"{"token": [], "source": {"mode": "off"}}"#, "token"),
        (
            r#"{"token": ["a", "b", "c"], "source": {"mode": "off"}}"#,
            "token",
        ),
        (
            r#"{"token": ["a", "a"], "source": {"mode": "off"}}"#,
            "token[1]",
        ),
        (
            r#"{"token": ["a", ""], "source": {"mode": "off"}}"#,
            "token[1]",
        ),
    ] {
        assert_eq!(field_of(json), field, "{json}");
    }
    let bad_key = format!(
        r#"{{"token": "t", "appid": "wx1", "source": {{"mode": "off"}}, "safe_mode": {{"encoding_aes_key": ["{AES_KEY}", "short"]}}}}"#
    );
    assert_eq!(field_of(&bad_key), "safe_mode.encoding_aes_key[1]");
}

#[test]
fn a_rotation_may_name_two_variables() {
    let json = r#"{"token": [{"env": "NEW"}, {"env": "OLD"}], "source": {"mode": "off"}}"#;
    let c = parse(json.as_bytes(), &|name| Some(name.to_lowercase())).expect("valid");
    let tokens: Vec<&str> = c.token.all().map(|(_, t)| t.expose()).collect();
    assert_eq!(tokens, ["new", "old"]);
}

#[test]
fn the_metrics_name_is_given_or_the_appid_or_the_path() {
    let name = |json: &str| parse_str(json).map(|c| c.name);
    let with =
        |extra: &str| format!(r#"{{"token": "t", "source": {{"allow": ["127.0.0.1"]}}{extra}}}"#);
    assert_eq!(
        name(&with(r#", "name": "shop-1""#)).expect("valid"),
        "shop-1"
    );
    assert_eq!(
        name(&with(r#", "appid": "wx1", "path": "/w""#)).expect("valid"),
        "wx1"
    );
    assert_eq!(
        name(&with(r#", "path": "/open/$APPID$/cb""#))
            .expect_err("placeholder")
            .field,
        "path"
    );
    assert_eq!(
        name(&with(r#", "path": "/we.chat/cb""#)).expect("valid"),
        "we_chat_cb"
    );
    assert_eq!(name(&with("")).expect("valid"), "default");
    // A name that would break the tags around it, or grow the label set unbounded.
    for bad in ["", "a;b", "a=.=b", "a.b", "名字", &"x".repeat(65)] {
        assert_eq!(
            name(&with(&format!(r#", "name": "{bad}""#)))
                .expect_err(bad)
                .field,
            "name"
        );
    }
}

// ---- adversarial: platforms -------------------------------------------------

fn open_platform_with_path(path: &str) -> String {
    format!(
        r#"{{"platform": "open_platform", "path": "{path}", "token": "t", "appid": "wxc0c0c0c0c0c0c0c0",
            "source": {{"mode": "off"}}, "safe_mode": {{"encoding_aes_key": "{AES_KEY}"}}}}"#
    )
}

/// A misspelt placeholder would make the pattern a literal path: every real push
/// (`/open/wx…/callback`) would then pass through unguarded. Refuse it instead.
#[test]
fn open_platform_refuses_a_misspelt_authorizer_placeholder() {
    for path in [
        "/open/$appid$/callback",
        "/open/{APPID}/callback",
        "/open/$APPID/callback",
        "/open/{{appid}}/callback",
        "/open/${appid}/callback",
    ] {
        assert_eq!(
            parse_str(&open_platform_with_path(path))
                .map(|c| c.path)
                .map_err(|e| e.field),
            Err("path".to_string()),
            "{path} is accepted as a literal path"
        );
    }
    // The two spellings the contract names stay accepted.
    for path in ["/open/$APPID$/callback", "/open/{appid}/callback"] {
        assert!(parse_str(&open_platform_with_path(path)).is_ok(), "{path}");
    }
}

/// WeCom's live list starts with gettoken(corpid, corpsecret): with no CorpID it can
/// never load, and under `when_unavailable: deny` every push would be 503 for good.
/// (An empty `appid` is for bots, whose callbacks have no live list to fetch.)
#[test]
fn wecom_with_the_live_list_needs_a_corpid() {
    let json = format!(
        r#"{{"platform": "wecom", "appid": "", "token": "t",
            "source": {{"wechat_api": {{"secret": "s", "upstreams": [{{"cluster": "qyapi", "authority": "qyapi.weixin.qq.com"}}]}}}},
            "safe_mode": {{"encoding_aes_key": "{AES_KEY}"}}}}"#
    );
    // Refused, naming where the CorpID for the list goes.
    assert_eq!(
        parse_str(&json).map(|_| ()).map_err(|e| e.field),
        Err("source.wechat_api.appid".to_string())
    );
}

#[test]
fn a_field_named_twice_is_refused_at_any_depth() {
    for json in [
        r#"{"token": "t", "token": "u", "source": {"mode": "off"}}"#,
        r#"{"token": "t", "source": {"mode": "off", "mode": "report"}}"#,
    ] {
        let e = parse_str(json).expect_err("twice");
        assert!(e.message.contains("duplicate field"), "{e}");
    }
    let e = parse_str(r#"{"token": "t", "source": {"allow": ["127.0.0.1", 5]}}"#)
        .expect_err("a number");
    assert_eq!(e.field, "source.allow[1]", "{e}");
}

#[test]
fn every_platform_is_listed_once_and_named_as_the_configuration_spells_it() {
    for (i, p) in Platform::ALL.iter().enumerate() {
        assert_eq!(*p as usize, i, "{p:?}");
        let read: Platform = serde_json::from_str(&format!("\"{}\"", p.name())).expect("a name");
        assert_eq!(read, *p);
    }
}
