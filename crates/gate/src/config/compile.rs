//! From the JSON shape to a validated [`Config`]: defaults filled in, secrets
//! resolved, every refusal naming its field.

use super::raw::{OneOrTwo, RawConfig, RawPark, RawSafeMode, RawSource, RawWechatApi, SecretRef};
use super::*;
use crate::allowlist::CallbackAllowlist;

pub(super) fn config(
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let platform = raw.platform.unwrap_or_default();
    let (tolerance, max_body_bytes) = compile_limits(&raw)?;
    let path = compile_path(raw.path, platform)?;
    let token = match raw.token {
        Some(t) => resolve_rotation("token", t, env)?,
        None => return Err(ConfigError::new("token", "is required")),
    };
    let appid = match raw.appid {
        // WeCom bots' callbacks decrypt with an empty ReceiveId.
        Some(a) if a.is_empty() && platform != Platform::Wecom => {
            return Err(ConfigError::new("appid", "is empty"))
        }
        other => other,
    };
    let source = compile_source(raw.source, env, platform, appid.as_deref())?;
    let safe_mode = match raw.safe_mode {
        Some(raw) => Some(compile_safe_mode(raw, env, platform)?),
        None if platform.safe_mode_only() => {
            return Err(ConfigError::new(
                "safe_mode",
                format!(
                    "is required on platform \"{}\": its pushes are always encrypted",
                    platform.name()
                ),
            ))
        }
        None => None,
    };
    if appid.is_none() && safe_mode.is_some() {
        return Err(ConfigError::new(
            "appid",
            "is required when safe_mode is set (decryption checks it)",
        ));
    }
    let dedupe_seconds = raw.dedupe_seconds.unwrap_or(DEFAULT_DEDUPE_SECONDS);
    let name = compile_name(raw.name, appid.as_deref(), path.as_deref())?;
    let on_upstream_failure = raw.on_upstream_failure.unwrap_or(UpstreamFailure::Success);
    let park = compile_park(raw.park)?;
    Ok(Config {
        name,
        platform,
        path,
        appid,
        token,
        timestamp_tolerance_seconds: tolerance,
        max_body_bytes,
        dedupe_seconds,
        on_upstream_failure,
        source,
        safe_mode,
        park,
    })
}

/// `park`: the defaults, or bounded counts. Only `success` parks; under `pass` the
/// field is accepted and unused, so that an operator who switches
/// `on_upstream_failure` during an incident does not have the listener refused.
fn compile_park(raw: Option<RawPark>) -> Result<Park, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Park::default());
    };
    let max_messages = raw
        .max_messages
        .unwrap_or(u64::from(DEFAULT_PARK_MAX_MESSAGES));
    let max_messages = u32::try_from(max_messages)
        .ok()
        .filter(|m| *m <= MAX_PARK_MAX_MESSAGES)
        .ok_or_else(|| {
            ConfigError::new(
                "park.max_messages",
                format!("must be at most {MAX_PARK_MAX_MESSAGES} (0 turns parking off)"),
            )
        })?;
    let max_seconds = raw.max_seconds.unwrap_or(DEFAULT_PARK_MAX_SECONDS);
    if !(1..=MAX_PARK_MAX_SECONDS).contains(&max_seconds) {
        return Err(ConfigError::new(
            "park.max_seconds",
            format!(
                "must be between 1 and {MAX_PARK_MAX_SECONDS} (park.max_messages: 0 turns \
                 parking off)"
            ),
        ));
    }
    Ok(Park {
        max_messages,
        max_seconds,
    })
}

/// The metrics' account name: given (1 to 64 letters, digits, `_` or `-`: a bounded
/// label value that cannot break the tags encoded around it), else the AppID, else
/// the path with every other character as `_`, else `default`.
pub(super) fn compile_name(
    name: Option<String>,
    appid: Option<&str>,
    path: Option<&str>,
) -> Result<String, ConfigError> {
    let fits = |s: &str| {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if let Some(name) = name {
        return match fits(&name) {
            true => Ok(name),
            false => Err(ConfigError::new(
                "name",
                "must be 1 to 64 letters, digits, `_` or `-` (it labels the metrics)",
            )),
        };
    }
    if let Some(appid) = appid.filter(|a| fits(a)) {
        return Ok(appid.to_string());
    }
    let from_path: String = path
        .unwrap_or_default()
        .trim_matches('/')
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(match from_path.is_empty() {
        true => "default".to_string(),
        false => from_path,
    })
}

/// `timestamp_tolerance_seconds`, `max_body_bytes` and `dedupe_seconds` within bounds.
fn compile_limits(raw: &RawConfig) -> Result<(u64, u64), ConfigError> {
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
    if raw.dedupe_seconds.unwrap_or(DEFAULT_DEDUPE_SECONDS) > MAX_DEDUPE_SECONDS {
        return Err(ConfigError::new(
            "dedupe_seconds",
            format!("must be at most {MAX_DEDUPE_SECONDS} (WeChat retries within 15 s)"),
        ));
    }
    Ok((tolerance, max_body_bytes))
}

fn compile_path(path: Option<String>, platform: Platform) -> Result<Option<String>, ConfigError> {
    let placeholders = path.as_deref().map_or(0, |p| {
        AUTHORIZER_PLACEHOLDERS
            .iter()
            .map(|h| p.matches(h).count())
            .sum()
    });
    match path {
        Some(p) if !p.starts_with('/') => Err(ConfigError::new("path", "must start with '/'")),
        Some(p) if p.contains(['?', '#']) => Err(ConfigError::new(
            "path",
            "is matched against the path alone: no '?' or '#'",
        )),
        Some(_) if placeholders > 0 && platform != Platform::OpenPlatform => Err(ConfigError::new(
            "path",
            "holds an authorizer's AppID ({appid} or $APPID$), which only platform \"open_platform\" has",
        )),
        Some(_) if placeholders > 1 => Err(ConfigError::new(
            "path",
            "holds the authorizer's AppID more than once",
        )),
        // A misspelt placeholder would guard a literal path no push ever takes, and
        // let every real one pass through unguarded.
        Some(p)
            if AUTHORIZER_PLACEHOLDERS
                .iter()
                .fold(p.clone(), |rest, h| rest.replace(h, ""))
                .contains(['$', '{', '}']) =>
        {
            Err(ConfigError::new(
                "path",
                "holds '$', '{' or '}' outside a placeholder: the authorizer's AppID is \
                 written $APPID$ or {appid}, exactly",
            ))
        }
        other => Ok(other),
    }
}

fn compile_safe_mode(
    raw: RawSafeMode,
    env: &dyn Fn(&str) -> Option<String>,
    platform: Platform,
) -> Result<SafeMode, ConfigError> {
    if raw.require.is_some() && platform.safe_mode_only() {
        return Err(ConfigError::new(
            "safe_mode.require",
            format!(
                "does not apply to platform \"{}\": every push is encrypted there",
                platform.name()
            ),
        ));
    }
    const FIELD: &str = "safe_mode.encoding_aes_key";
    let texts = match raw.encoding_aes_key {
        Some(k) => resolve_rotation(FIELD, k, env)?,
        None => return Err(ConfigError::new(FIELD, "is required")),
    };
    let rotated = texts.get(1).is_some();
    let keys = texts.map(|i, text| {
        crate::safe_mode::cipher::AesKey::from_encoding_aes_key(text.expose()).map_err(|e| {
            let field = if rotated {
                format!("{FIELD}[{i}]")
            } else {
                FIELD.to_string()
            };
            ConfigError::new(
                field,
                format!("{e}: it is the 43-character EncodingAESKey from the account's settings"),
            )
        })
    })?;
    Ok(SafeMode {
        keys,
        require: raw.require.unwrap_or(platform.safe_mode_only()),
        decrypt: raw.decrypt.unwrap_or(false),
    })
}

fn compile_source(
    raw: Option<RawSource>,
    env: &dyn Fn(&str) -> Option<String>,
    platform: Platform,
    appid: Option<&str>,
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
        let block = crate::allowlist::parse_block(entry)
            .map_err(|e| ConfigError::new(format!("source.allow[{i}]"), e.to_string()))?;
        blocks.push(block);
    }
    let allow = CallbackAllowlist::from_blocks(blocks);
    let wechat_api = match raw.wechat_api {
        Some(mut api) => {
            let appid = wechat_api_appid(api.appid.take(), appid, platform)?;
            Some(compile_wechat_api(
                api,
                env,
                platform,
                appid,
                "source.wechat_api",
            )?)
        }
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

/// Whose credentials fetch the list: `source.wechat_api.appid`, else the account's.
fn wechat_api_appid(
    given: Option<String>,
    account: Option<&str>,
    platform: Platform,
) -> Result<String, ConfigError> {
    Ok(match (given, account, platform) {
        (Some(a), _, _) if a.is_empty() => {
            return Err(ConfigError::new("source.wechat_api.appid", "is empty"))
        }
        (Some(a), _, _) => a,
        // A component's AppSecret gets no access token of its own kind, and a WeCom
        // bot has no CorpID: the list must be fetched with another account's.
        (None, _, Platform::OpenPlatform) => {
            return Err(ConfigError::new(
                "source.wechat_api.appid",
                "is required on platform \"open_platform\": a component's AppSecret cannot \
                 fetch the list; give an Official Account's or Mini Program's AppID, with its \
                 AppSecret as secret (the list is the same for every account)",
            ))
        }
        (None, Some(a), _) if !a.is_empty() => a.to_string(),
        (None, Some(_), _) => {
            return Err(ConfigError::new(
                "source.wechat_api.appid",
                "is required when appid is empty: give the CorpID whose app's Secret is secret",
            ))
        }
        (None, None, _) => {
            return Err(ConfigError::new(
                "appid",
                "is required when source.wechat_api is set (or source.wechat_api.appid)",
            ))
        }
    })
}

/// `wechat_api` (the callback role's `source.wechat_api`, the API role's `wechat_api`:
/// `field` names which) for the account `appid`.
pub(super) fn compile_wechat_api(
    raw: RawWechatApi,
    env: &dyn Fn(&str) -> Option<String>,
    platform: Platform,
    appid: String,
    field: &str,
) -> Result<WechatApi, ConfigError> {
    let at = |name: &str| format!("{field}.{name}");
    let token_api = match (platform, raw.token_api) {
        (Platform::Wecom, None | Some(TokenApi::Wecom)) => TokenApi::Wecom,
        (Platform::Wecom, Some(_)) => {
            return Err(ConfigError::new(
                at("token_api"),
                "does not apply to platform \"wecom\": WeCom's token comes from gettoken",
            ))
        }
        (_, Some(TokenApi::Wecom)) => {
            return Err(ConfigError::new(
                at("token_api"),
                "\"wecom\" is platform \"wecom\"'s gettoken: use \"stable\" or \"classic\"",
            ))
        }
        (_, chosen) => chosen.unwrap_or(TokenApi::Stable),
    };
    let secret = match raw.secret {
        Some(s) => resolve_secret(&at("secret"), s, env)?,
        None => return Err(ConfigError::new(at("secret"), "is required")),
    };
    let upstreams = raw.upstreams.unwrap_or_default();
    if upstreams.is_empty() {
        return Err(ConfigError::new(
            at("upstreams"),
            "needs at least one {\"cluster\", \"authority\"}",
        ));
    }
    for (i, u) in upstreams.iter().enumerate() {
        if u.cluster.is_empty() {
            return Err(ConfigError::new(
                at(&format!("upstreams[{i}].cluster")),
                "is empty",
            ));
        }
        if u.authority.is_empty() {
            return Err(ConfigError::new(
                at(&format!("upstreams[{i}].authority")),
                "is empty",
            ));
        }
    }
    let refresh_seconds = raw.refresh_seconds.unwrap_or(DEFAULT_REFRESH_SECONDS);
    if refresh_seconds == 0 {
        return Err(ConfigError::new(
            at("refresh_seconds"),
            "must be at least 1",
        ));
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(ConfigError::new(
            at("timeout_ms"),
            format!("must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    Ok(WechatApi {
        appid,
        secret,
        token_api,
        upstreams,
        refresh_seconds,
        timeout_ms,
    })
}

/// A secret or the two of a rotation; the field of an error names which (`token[1]`).
fn resolve_rotation(
    field: &str,
    secret: OneOrTwo,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Rotation<Secret>, ConfigError> {
    match secret {
        OneOrTwo::One(s) => Ok(Rotation::single(resolve_secret(field, s, env)?)),
        OneOrTwo::Two(current, previous) => {
            let current = resolve_secret(&format!("{field}[0]"), current, env)?;
            let previous = resolve_secret(&format!("{field}[1]"), previous, env)?;
            if current == previous {
                return Err(ConfigError::new(
                    format!("{field}[1]"),
                    "is the same as the current one: list one secret, or the current and the previous",
                ));
            }
            Ok(Rotation {
                current,
                previous: Some(previous),
            })
        }
    }
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
