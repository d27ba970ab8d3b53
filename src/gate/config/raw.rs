//! The configuration's JSON shape, exactly as the contract names it: strict (unknown
//! fields are errors), every field optional here so that [`super::compile`] can name
//! what is missing.

use super::{Platform, SourceMode, TokenApi, Upstream, UpstreamFailure, WhenUnavailable};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) name: Option<String>,
    pub(super) platform: Option<Platform>,
    pub(super) path: Option<String>,
    pub(super) appid: Option<String>,
    pub(super) token: Option<OneOrTwo>,
    pub(super) timestamp_tolerance_seconds: Option<u64>,
    pub(super) max_body_bytes: Option<u64>,
    pub(super) dedupe_seconds: Option<u64>,
    pub(super) on_upstream_failure: Option<UpstreamFailure>,
    pub(super) source: Option<RawSource>,
    pub(super) safe_mode: Option<RawSafeMode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) mode: Option<SourceMode>,
    pub(super) allow: Option<Vec<String>>,
    pub(super) when_unavailable: Option<WhenUnavailable>,
    pub(super) wechat_api: Option<RawWechatApi>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWechatApi {
    pub(super) appid: Option<String>,
    pub(super) secret: Option<SecretRef>,
    pub(super) token_api: Option<TokenApi>,
    pub(super) upstreams: Option<Vec<Upstream>>,
    pub(super) refresh_seconds: Option<u64>,
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSafeMode {
    pub(super) encoding_aes_key: Option<OneOrTwo>,
    pub(super) require: Option<bool>,
    pub(super) decrypt: Option<bool>,
}

/// A secret, or a list of two while it is rotated (current first).
pub(super) enum OneOrTwo {
    One(SecretRef),
    Two(SecretRef, SecretRef),
}

impl<'de> Deserialize<'de> for OneOrTwo {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            List(Vec<SecretRef>),
            One(SecretRef),
        }
        let list = match Either::deserialize(deserializer) {
            Ok(Either::One(s)) => return Ok(OneOrTwo::One(s)),
            Ok(Either::List(list)) => list,
            Err(_) => {
                return Err(serde::de::Error::custom(
                    "expected a string, {\"env\": \"NAME\"}, or a list of two of them \
                     (current first) while it is rotated",
                ))
            }
        };
        let mut list = list.into_iter();
        match (list.next(), list.next(), list.next()) {
            (Some(one), None, _) => Ok(OneOrTwo::One(one)),
            (Some(current), Some(previous), None) => Ok(OneOrTwo::Two(current, previous)),
            _ => Err(serde::de::Error::custom(
                "a rotated secret is a list of one or two: the current and the previous",
            )),
        }
    }
}

/// Where a secret comes from: the literal value, or an environment variable.
pub(super) enum SecretRef {
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
