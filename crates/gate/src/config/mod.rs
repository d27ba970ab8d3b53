//! The plugin configuration: JSON in, a validated [`Config`] out.
//!
//! Parsing is strict (unknown fields and wrong types are errors) and every error
//! names the field it is about (`source.allow[1]: …`). Secrets are either literal
//! strings or `{"env": "NAME"}`, resolved here through the lookup the caller passes
//! (inside Envoy: the VM's environment), and are never printed by `Debug`.

pub mod api;
mod compile;
#[cfg(test)]
mod park_tests;
mod raw;
#[cfg(test)]
mod tests;

use crate::allowlist::CallbackAllowlist;
pub use api::ApiConfig;
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

/// A secret being rotated: the current one and, for a while, the one before it.
/// WeChat's rule for a changed Token or EncodingAESKey: accept a push signed or
/// encrypted with either, and answer with the one that opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation<T> {
    current: T,
    previous: Option<T>,
}

impl<T> Rotation<T> {
    pub fn single(current: T) -> Rotation<T> {
        Rotation {
            current,
            previous: None,
        }
    }

    pub fn current(&self) -> &T {
        &self.current
    }

    /// The one at `index` (0: current, 1: previous).
    pub fn get(&self, index: usize) -> Option<&T> {
        match index {
            0 => Some(&self.current),
            1 => self.previous.as_ref(),
            _ => None,
        }
    }

    /// Each with its index, current first.
    pub fn all(&self) -> impl Iterator<Item = (usize, &T)> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .enumerate()
    }

    fn map<U, E>(self, mut f: impl FnMut(usize, T) -> Result<U, E>) -> Result<Rotation<U>, E> {
        Ok(Rotation {
            current: f(0, self.current)?,
            previous: match self.previous {
                Some(p) => Some(f(1, p)?),
                None => None,
            },
        })
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
    /// WeCom's `gettoken` (corpid, corpsecret): set by `platform: wecom` (which may
    /// also name it), on no other platform.
    Wecom,
}

/// How `path` marks the segment holding an Open Platform authorizer's AppID: WeChat's
/// own `$APPID$`, or `{appid}`.
pub const AUTHORIZER_PLACEHOLDERS: [&str; 2] = ["{appid}", "$APPID$"];

/// Declares [`Platform`] with its configuration name in one row per variant, so that
/// its list (the CLI's `--platform` choices) and its names cannot fall out of step.
macro_rules! platforms {
    ($($(#[$attr:meta])* $variant:ident => $name:literal,)*) => {
        /// Which WeChat callback the route serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Platform {
            $($(#[$attr])* $variant,)*
        }

        impl Platform {
            /// Every platform, once, in declaration order.
            pub const ALL: &'static [Platform] = &[$(Platform::$variant,)*];

            /// Its name in the configuration (`"platform": "mini_program"`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Platform::$variant => $name,)*
                }
            }
        }
    };
}

platforms! {
    /// 公众号: XML pushes, plaintext or safe mode.
    #[default]
    OfficialAccount => "official_account",
    /// 小程序 (and mini games): XML or JSON pushes, as the console's data format says.
    MiniProgram => "mini_program",
    /// 第三方平台: safe mode only, decrypted with the component AppID; `path` may hold
    /// the authorizer's AppID (`{appid}` or `$APPID$`).
    OpenPlatform => "open_platform",
    /// 企业微信: `msg_signature` on every request, an encrypted `echostr`, bodies always
    /// encrypted, the CorpID (or suite id) as ReceiveId.
    Wecom => "wecom",
}

impl Platform {
    /// Pushes may be JSON (the format is read from each body).
    pub fn allows_json(self) -> bool {
        self == Platform::MiniProgram
    }

    /// Every push is encrypted: a plaintext one is refused.
    pub fn safe_mode_only(self) -> bool {
        matches!(self, Platform::OpenPlatform | Platform::Wecom)
    }
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
    /// Whose credentials fetch the list: `source.wechat_api.appid`, else `appid`.
    pub appid: String,
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

/// `safe_mode`: the account's `EncodingAESKey` (and while it is rotated, the previous
/// one), compiled into AES keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeMode {
    pub keys: Rotation<crate::safe_mode::cipher::AesKey>,
    /// POSTs without `encrypt_type=aes` are refused (400).
    pub require: bool,
    /// The backend gets the plaintext XML and its XML replies are encrypted.
    pub decrypt: bool,
}

/// The validated configuration of one filter instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The account's name in the metrics' `account` tag: `name`, else the AppID, else
    /// the path's letters; 1 to 64 letters, digits, `_` or `-`.
    pub name: String,
    /// Which WeChat callback this route serves.
    pub platform: Platform,
    /// The guarded path; `None` guards every request through this instance.
    pub path: Option<String>,
    pub appid: Option<String>,
    /// The Token (and while it is rotated, the previous one).
    pub token: Rotation<Secret>,
    pub timestamp_tolerance_seconds: u64,
    pub max_body_bytes: u64,
    pub dedupe_seconds: u64,
    pub on_upstream_failure: UpstreamFailure,
    pub source: SourceConfig,
    pub safe_mode: Option<SafeMode>,
    pub park: Park,
}

/// `park`: how many pushes answered `success` for want of a backend are kept for
/// redelivery ([`crate::park`]), and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Park {
    /// 0: parking is off (such a push is lost).
    pub max_messages: u32,
    pub max_seconds: u64,
}

impl Default for Park {
    fn default() -> Self {
        Park {
            max_messages: DEFAULT_PARK_MAX_MESSAGES,
            max_seconds: DEFAULT_PARK_MAX_SECONDS,
        }
    }
}

impl Config {
    /// A push Envoy could not deliver is answered `success` and parked for the gate to
    /// redeliver: `on_upstream_failure: success` with `park.max_messages` above 0.
    pub fn parks(&self) -> bool {
        self.on_upstream_failure == UpstreamFailure::Success && self.park.max_messages > 0
    }

    /// One line for the log: what this configuration guards and how (no secrets).
    pub fn summary(&self) -> String {
        format!(
            "{} on path {}, source.mode {:?}, {} static allowlist entries{}, timestamp tolerance \
             {} s, max body {} bytes{}",
            self.platform.name(),
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
            match &self.safe_mode {
                Some(s) if s.decrypt => ", safe mode (decrypting)",
                Some(_) => ", safe mode (verifying)",
                None => "",
            },
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
pub const DEFAULT_PARK_MAX_MESSAGES: u32 = 1000;
pub const DEFAULT_PARK_MAX_SECONDS: u64 = 600;
/// The most slots a parking area may have (`crate::park::MAX_MESSAGES`).
pub const MAX_PARK_MAX_MESSAGES: u32 = 10_000;
/// A day: a reply to a push is only possible for 48 hours (customer-service
/// messages), and a backend down longer needs an operator, not a queue.
pub const MAX_PARK_MAX_SECONDS: u64 = 86_400;

/// What one filter instance is configured as: `role` `callback` (the default) or
/// `api` ([`ApiConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plugin {
    Callback(Config),
    Api(ApiConfig),
}

/// Parses and validates a configuration of either role.
pub fn parse_plugin(
    json: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plugin, ConfigError> {
    match raw::read_plugin(strict(json)?)? {
        raw::RawPlugin::Callback(raw) => compile::config(*raw, env).map(Plugin::Callback),
        raw::RawPlugin::Api(raw) => api::compile(*raw, env).map(Plugin::Api),
    }
}

/// Parses and validates a configuration of the callback role. `env` looks up environment variables
/// (inside Envoy: `std::env::var` over the VM's `environment_variables`).
pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    match parse_plugin(json, env)? {
        Plugin::Callback(config) => Ok(config),
        Plugin::Api(_) => Err(ConfigError::new("role", "is \"api\", not a callback")),
    }
}

/// The JSON itself, strictly: errors name the field (`source.allow[1]`).
fn strict(json: &[u8]) -> Result<raw::Strict, ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new(
            "",
            "empty; at least `token` and `source` are needed",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let value =
        raw::Strict::deserialize(&mut de).map_err(|e| ConfigError::new("", e.to_string()))?;
    de.end().map_err(|e| {
        ConfigError::new(
            "",
            format!("trailing characters after the JSON object: {e}"),
        )
    })?;
    Ok(value)
}
