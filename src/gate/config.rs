//! The plugin configuration: JSON in, a validated [`Config`] out.
//!
//! Parsing is strict (unknown fields and wrong types are errors) and every error
//! names the field it is about (`source.allow[1]: …`). Secrets are either literal
//! strings or `{"env": "NAME"}`, resolved here through the lookup the caller passes
//! (inside Envoy: the VM's environment), and are never printed by `Debug`.

use crate::gate::allowlist::CallbackAllowlist;
use serde::Deserialize;
use std::fmt;

/// A configuration error, naming the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "configuration: {}", self.message)
        } else {
            write!(f, "configuration field `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A resolved secret. `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceMode {
    /// Sources outside the allowlist are refused (403).
    Enforce,
    /// Sources outside the allowlist are logged and counted, never refused.
    Report,
    /// No source check at all.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnavailable {
    /// 503 + Retry-After until the live list has loaded.
    Deny,
    /// Forward verified requests from unlisted sources until then, and count them.
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenApi {
    Stable,
    Classic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamFailure {
    Success,
    Pass,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub cluster: String,
    pub authority: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WechatApi {
    pub secret: Secret,
    pub token_api: TokenApi,
    pub upstreams: Vec<Upstream>,
    pub refresh_seconds: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    pub mode: SourceMode,
    /// The static entries of `source.allow`.
    pub allow: CallbackAllowlist,
    pub when_unavailable: WhenUnavailable,
    pub wechat_api: Option<WechatApi>,
}

/// `safe_mode`: the account's `EncodingAESKey`, compiled into the AES key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeMode {
    pub key: crate::gate::safe_mode::cipher::AesKey,
    /// POSTs without `encrypt_type=aes` are refused (400).
    pub require: bool,
    /// The backend gets the plaintext XML and its XML replies are encrypted.
    pub decrypt: bool,
}

/// The validated configuration of one filter instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The guarded path; `None` guards every request through this instance.
    pub path: Option<String>,
    pub appid: Option<String>,
    pub token: Secret,
    pub timestamp_tolerance_seconds: u64,
    pub max_body_bytes: u64,
    pub dedupe_seconds: u64,
    pub on_upstream_failure: UpstreamFailure,
    pub source: SourceConfig,
    pub safe_mode: Option<SafeMode>,
}

impl Config {
    /// One line for the log: what this configuration guards and how (no secrets).
    pub fn summary(&self) -> String {
        format!(
            "path {}, source.mode {:?}, {} static allowlist entries{}, timestamp tolerance {} s, \
             max body {} bytes",
            self.path.as_deref().unwrap_or("(every request)"),
            self.source.mode,
            self.source.allow.entries(),
            if self.source.wechat_api.is_some() {
                " + WeChat's live callback IP list"
            } else {
                ""
            },
            self.timestamp_tolerance_seconds,
            self.max_body_bytes,
        )
    }
}

pub const DEFAULT_TIMESTAMP_TOLERANCE_SECONDS: u64 = 300;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 65536;
pub const DEFAULT_DEDUPE_SECONDS: u64 = 15;
/// A day: anything longer only grows the shared table's churn, never its use.
pub const MAX_DEDUPE_SECONDS: u64 = 86_400;
pub const DEFAULT_REFRESH_SECONDS: u64 = 3600;
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// WeChat answers in well under a second; a minute is already generous.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

// ---- the JSON shape, exactly as DESIGN.md names it ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    path: Option<String>,
    appid: Option<String>,
    token: Option<SecretRef>,
    timestamp_tolerance_seconds: Option<u64>,
    max_body_bytes: Option<u64>,
    dedupe_seconds: Option<u64>,
    on_upstream_failure: Option<UpstreamFailure>,
    source: Option<RawSource>,
    safe_mode: Option<RawSafeMode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    mode: Option<SourceMode>,
    allow: Option<Vec<String>>,
    when_unavailable: Option<WhenUnavailable>,
    wechat_api: Option<RawWechatApi>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWechatApi {
    secret: Option<SecretRef>,
    token_api: Option<TokenApi>,
    upstreams: Option<Vec<Upstream>>,
    refresh_seconds: Option<u64>,
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSafeMode {
    encoding_aes_key: Option<SecretRef>,
    require: Option<bool>,
    decrypt: Option<bool>,
}

/// Where a secret comes from: the literal value, or an environment variable.
enum SecretRef {
    Literal(String),
    Env(String),
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FromEnv {
            env: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Literal(String),
            Env(FromEnv),
        }
        match Either::deserialize(deserializer) {
            Ok(Either::Literal(s)) => Ok(SecretRef::Literal(s)),
            Ok(Either::Env(e)) => Ok(SecretRef::Env(e.env)),
            Err(_) => Err(serde::de::Error::custom(
                "expected a string or {\"env\": \"NAME\"}",
            )),
        }
    }
}

/// Parses and validates a configuration. `env` looks up environment variables
/// (inside Envoy: `std::env::var` over the VM's `environment_variables`).
pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new(
            "",
            "empty; at least `token` and `source` are needed",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        ConfigError::new(field, e.inner().to_string())
    })?;
    de.end().map_err(|e| {
        ConfigError::new(
            "",
            format!("trailing characters after the JSON object: {e}"),
        )
    })?;

    let path = match raw.path {
        Some(p) if !p.starts_with('/') => {
            return Err(ConfigError::new("path", "must start with '/'"));
        }
        Some(p) if p.contains(['?', '#']) => {
            return Err(ConfigError::new(
                "path",
                "is matched against the path alone: no '?' or '#'",
            ));
        }
        other => other,
    };
    let token = match raw.token {
        Some(t) => resolve_secret("token", t, env)?,
        None => return Err(ConfigError::new("token", "is required")),
    };
    let tolerance = raw
        .timestamp_tolerance_seconds
        .unwrap_or(DEFAULT_TIMESTAMP_TOLERANCE_SECONDS);
    if i64::try_from(tolerance).is_err() {
        return Err(ConfigError::new(
            "timestamp_tolerance_seconds",
            "is too large",
        ));
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        return Err(ConfigError::new("max_body_bytes", "must be at least 1"));
    }

    let source = compile_source(raw.source, env)?;
    let appid = match raw.appid {
        Some(a) if a.is_empty() => return Err(ConfigError::new("appid", "is empty")),
        other => other,
    };
    if appid.is_none() && source.wechat_api.is_some() {
        return Err(ConfigError::new(
            "appid",
            "is required when source.wechat_api is set",
        ));
    }
    let safe_mode = match raw.safe_mode {
        Some(raw) => Some(compile_safe_mode(raw, env)?),
        None => None,
    };
    if appid.is_none() && safe_mode.is_some() {
        return Err(ConfigError::new(
            "appid",
            "is required when safe_mode is set (decryption checks it)",
        ));
    }
    let dedupe_seconds = raw.dedupe_seconds.unwrap_or(DEFAULT_DEDUPE_SECONDS);
    if dedupe_seconds > MAX_DEDUPE_SECONDS {
        return Err(ConfigError::new(
            "dedupe_seconds",
            format!("must be at most {MAX_DEDUPE_SECONDS} (WeChat retries within 15 s)"),
        ));
    }

    Ok(Config {
        path,
        appid,
        token,
        timestamp_tolerance_seconds: tolerance,
        max_body_bytes,
        dedupe_seconds,
        on_upstream_failure: raw.on_upstream_failure.unwrap_or(UpstreamFailure::Success),
        source,
        safe_mode,
    })
}

fn compile_safe_mode(
    raw: RawSafeMode,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SafeMode, ConfigError> {
    const FIELD: &str = "safe_mode.encoding_aes_key";
    let text = match raw.encoding_aes_key {
        Some(k) => resolve_secret(FIELD, k, env)?,
        None => return Err(ConfigError::new(FIELD, "is required")),
    };
    let key = crate::gate::safe_mode::cipher::AesKey::from_encoding_aes_key(text.expose())
        .map_err(|e| {
            ConfigError::new(
                FIELD,
                format!("{e}: it is the 43-character EncodingAESKey from the account's settings"),
            )
        })?;
    Ok(SafeMode {
        key,
        require: raw.require.unwrap_or(false),
        decrypt: raw.decrypt.unwrap_or(false),
    })
}

fn compile_source(
    raw: Option<RawSource>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SourceConfig, ConfigError> {
    let raw = raw.unwrap_or(RawSource {
        mode: None,
        allow: None,
        when_unavailable: None,
        wechat_api: None,
    });
    let mode = raw.mode.unwrap_or(SourceMode::Enforce);
    let mut blocks = Vec::new();
    for (i, entry) in raw.allow.iter().flatten().enumerate() {
        let block = crate::gate::allowlist::parse_block(entry)
            .map_err(|e| ConfigError::new(format!("source.allow[{i}]"), e.to_string()))?;
        blocks.push(block);
    }
    let allow = CallbackAllowlist::from_blocks(blocks);
    let wechat_api = match raw.wechat_api {
        Some(api) => Some(compile_wechat_api(api, env)?),
        None => None,
    };
    if wechat_api.is_none() && raw.when_unavailable.is_some() {
        return Err(ConfigError::new(
            "source.when_unavailable",
            "only applies to the live list: set source.wechat_api or remove it",
        ));
    }
    if mode == SourceMode::Enforce && allow.is_empty() && wechat_api.is_none() {
        return Err(ConfigError::new(
            "source.allow",
            "is empty under mode \"enforce\" with no source.wechat_api: every request would be \
             refused; list the addresses WeChat calls from, or set source.mode to \"report\" or \"off\"",
        ));
    }
    Ok(SourceConfig {
        mode,
        allow,
        when_unavailable: raw.when_unavailable.unwrap_or(WhenUnavailable::Deny),
        wechat_api,
    })
}

fn compile_wechat_api(
    raw: RawWechatApi,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<WechatApi, ConfigError> {
    let secret = match raw.secret {
        Some(s) => resolve_secret("source.wechat_api.secret", s, env)?,
        None => return Err(ConfigError::new("source.wechat_api.secret", "is required")),
    };
    let upstreams = raw.upstreams.unwrap_or_default();
    if upstreams.is_empty() {
        return Err(ConfigError::new(
            "source.wechat_api.upstreams",
            "needs at least one {\"cluster\", \"authority\"}",
        ));
    }
    for (i, u) in upstreams.iter().enumerate() {
        if u.cluster.is_empty() {
            return Err(ConfigError::new(
                format!("source.wechat_api.upstreams[{i}].cluster"),
                "is empty",
            ));
        }
        if u.authority.is_empty() {
            return Err(ConfigError::new(
                format!("source.wechat_api.upstreams[{i}].authority"),
                "is empty",
            ));
        }
    }
    let refresh_seconds = raw.refresh_seconds.unwrap_or(DEFAULT_REFRESH_SECONDS);
    if refresh_seconds == 0 {
        return Err(ConfigError::new(
            "source.wechat_api.refresh_seconds",
            "must be at least 1",
        ));
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(ConfigError::new(
            "source.wechat_api.timeout_ms",
            format!("must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    Ok(WechatApi {
        secret,
        token_api: raw.token_api.unwrap_or(TokenApi::Stable),
        upstreams,
        refresh_seconds,
        timeout_ms,
    })
}

fn resolve_secret(
    field: &str,
    secret: SecretRef,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    let value = match secret {
        SecretRef::Literal(v) => v,
        SecretRef::Env(name) if name.is_empty() => {
            return Err(ConfigError::new(
                format!("{field}.env"),
                "names no variable",
            ));
        }
        SecretRef::Env(name) => match env(&name) {
            Some(v) => v,
            None => {
                return Err(ConfigError::new(
                    format!("{field}.env"),
                    format!(
                        "environment variable {name} is not set in the Wasm VM (list it in \
                         vm_config.environment_variables)"
                    ),
                ));
            }
        },
    };
    if value.is_empty() {
        return Err(ConfigError::new(field, "is empty"));
    }
    Ok(Secret(value))
}

#[cfg(test)]
mod tests {
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
        assert_eq!(c.token.expose(), "tok");
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
        assert_eq!(c.token.expose(), "from-env");
    }

    #[test]
    fn unset_environment_variable_is_refused_naming_the_field() {
        let e = parse_str(r#"{"token": {"env": "NOPE"}, "source": {"mode": "off"}}"#)
            .expect_err("unset");
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
    fn secrets_never_show_in_debug_output() {
        let c =
            parse_str(r#"{"token": "sup3r-secret", "source": {"mode": "off"}}"#).expect("valid");
        assert!(!format!("{c:?}").contains("sup3r-secret"));
    }

    #[test]
    fn unknown_fields_are_refused_naming_the_field() {
        let e = parse_str(r#"{"token": "t", "tokne": "x", "source": {"mode": "off"}}"#)
            .expect_err("unknown");
        assert!(e.message.contains("tokne"), "{e}");
        let e = parse_str(r#"{"token": "t", "source": {"mode": "off", "alow": []}}"#)
            .expect_err("unknown");
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
            field_of(
                r#"{"token": "t", "timestamp_tolerance_seconds": -1, "source": {"mode": "off"}}"#
            ),
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
            safe.key,
            crate::gate::safe_mode::cipher::AesKey::from_encoding_aes_key(AES_KEY).expect("key")
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
            field_of(
                r#"{"token": "t", "on_upstream_failure": "maybe", "source": {"mode": "off"}}"#
            ),
            "on_upstream_failure"
        );
        let e = parse_str(
            r#"{"token": "t", "safe_mode": {"decrypt": "yes"}, "source": {"mode": "off"}}"#,
        )
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
}
