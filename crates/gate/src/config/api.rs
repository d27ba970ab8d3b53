//! The API role's configuration (`"role": "api"`, DESIGN.md "The API role"): the
//! account whose token the gate holds, the path prefix callers reach WeChat under,
//! who may call, and how big a call may be.

use super::compile::{compile_name, compile_wechat_api};
use super::raw::RawApi;
use super::{ConfigError, Platform, WechatApi};
use crate::allowlist::{parse_block, CallbackAllowlist};

/// Bodies up to this many bytes by default: WeChat's largest media upload (10 MB)
/// with the multipart form around it. Envoy must buffer more (its
/// `per_connection_buffer_limit_bytes`; the shipped configs: 16 MiB).
pub const DEFAULT_API_MAX_BODY_BYTES: u64 = 12 * 1024 * 1024;

/// Envoy buffers a call's body and WeChat's reply whole: a bound on both.
pub const MAX_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The validated configuration of one API-role instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// The account's name in the metrics' `account` tag.
    pub name: String,
    /// `official_account`, `mini_program` or `wecom`.
    pub platform: Platform,
    /// The prefix callers reach WeChat under, without a trailing `/`
    /// (`/wechat-api/mp`).
    pub path: String,
    /// The AppID (WeCom: the CorpID), with the secret and upstreams in `api`.
    pub api: WechatApi,
    /// Who may call: the only addresses whose calls are made.
    pub callers: CallbackAllowlist,
    pub max_body_bytes: u64,
}

impl ApiConfig {
    /// The AppID (WeCom: CorpID).
    pub fn appid(&self) -> &str {
        &self.api.appid
    }

    /// One line for the log: what this instance serves (no secrets).
    pub fn summary(&self) -> String {
        format!(
            "API role for {} {} under {}, {} caller entries, {} upstreams, max body {} bytes",
            self.platform.name(),
            self.api.appid,
            self.path,
            self.callers.entries(),
            self.api.upstreams.len(),
            self.max_body_bytes,
        )
    }
}

pub(super) fn compile(
    raw: RawApi,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ApiConfig, ConfigError> {
    let platform = raw.platform.unwrap_or_default();
    if platform == Platform::OpenPlatform {
        return Err(ConfigError::new(
            "platform",
            "\"open_platform\" is not served by the API role: component and authorizer tokens \
             need the component_verify_ticket and stored refresh tokens (use \
             official_account, mini_program or wecom)",
        ));
    }
    let path = compile_prefix(raw.path)?;
    let appid = match raw.appid {
        Some(a) if !a.is_empty() => a,
        Some(_) => return Err(ConfigError::new("appid", "is empty")),
        None => return Err(ConfigError::new("appid", "is required in the API role")),
    };
    let api = match raw.wechat_api {
        Some(w) => compile_wechat_api(w, env, platform, appid.clone(), "wechat_api")?,
        None => {
            return Err(ConfigError::new(
                "wechat_api",
                "is required in the API role",
            ))
        }
    };
    let callers = compile_callers(raw.callers)?;
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_API_MAX_BODY_BYTES);
    if !(1..=MAX_MAX_BODY_BYTES).contains(&max_body_bytes) {
        return Err(ConfigError::new(
            "max_body_bytes",
            format!("must be between 1 and {MAX_MAX_BODY_BYTES}"),
        ));
    }
    let name = compile_name(raw.name, Some(&appid), Some(&path))?;
    Ok(ApiConfig {
        name,
        platform,
        path,
        api,
        callers,
        max_body_bytes,
    })
}

/// `path`: required, absolute, plain (the characters of WeChat's own paths), no
/// empty, `.` or `..` segment; a trailing `/` is dropped.
fn compile_prefix(path: Option<String>) -> Result<String, ConfigError> {
    let Some(path) = path else {
        return Err(ConfigError::new(
            "path",
            "is required in the API role (e.g. \"/wechat-api/mp\")",
        ));
    };
    let trimmed = path.strip_suffix('/').unwrap_or(&path);
    let plain = trimmed.starts_with('/')
        && trimmed
            .split('/')
            .skip(1)
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && trimmed.bytes().all(crate::api::route::is_path_byte);
    if !plain {
        return Err(ConfigError::new(
            "path",
            "must be an absolute path of letters, digits and `._~-` segments, such as \
             \"/wechat-api/mp\"",
        ));
    }
    Ok(trimmed.to_string())
}

/// `callers`: required and not empty; each an IP address or CIDR block.
fn compile_callers(callers: Option<Vec<String>>) -> Result<CallbackAllowlist, ConfigError> {
    let callers = callers.unwrap_or_default();
    if callers.is_empty() {
        return Err(ConfigError::new(
            "callers",
            "is required in the API role: the IPs or CIDR blocks of the backends that may \
             call WeChat through the gate",
        ));
    }
    let mut blocks = Vec::with_capacity(callers.len());
    for (i, entry) in callers.iter().enumerate() {
        let block = parse_block(entry)
            .map_err(|e| ConfigError::new(format!("callers[{i}]"), e.to_string()))?;
        blocks.push(block);
    }
    Ok(CallbackAllowlist::from_blocks(blocks))
}
