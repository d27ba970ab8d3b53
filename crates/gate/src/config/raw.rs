//! The configuration's JSON shape, exactly as the contract names it: strict (unknown
//! fields are errors), every field optional here so that [`super::compile`] can name
//! what is missing.

use super::{
    ConfigError, Platform, SourceMode, TokenApi, Upstream, UpstreamFailure, WhenUnavailable,
};
use serde::de::{DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::fmt;

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
    pub(super) park: Option<RawPark>,
}

/// The API role's JSON shape (`"role": "api"`).
pub(super) struct RawApi {
    pub(super) name: Option<String>,
    pub(super) platform: Option<Platform>,
    pub(super) path: Option<String>,
    pub(super) appid: Option<String>,
    pub(super) wechat_api: Option<RawWechatApi>,
    pub(super) callers: Option<Vec<String>>,
    pub(super) max_body_bytes: Option<u64>,
}

pub(super) struct RawSource {
    pub(super) mode: Option<SourceMode>,
    pub(super) allow: Option<Vec<String>>,
    pub(super) when_unavailable: Option<WhenUnavailable>,
    pub(super) wechat_api: Option<RawWechatApi>,
}

pub(super) struct RawWechatApi {
    pub(super) appid: Option<String>,
    pub(super) secret: Option<SecretRef>,
    pub(super) token_api: Option<TokenApi>,
    pub(super) upstreams: Option<Vec<Upstream>>,
    pub(super) refresh_seconds: Option<u64>,
    pub(super) timeout_ms: Option<u64>,
}

pub(super) struct RawPark {
    pub(super) max_messages: Option<u64>,
    pub(super) max_seconds: Option<u64>,
}

pub(super) struct RawSafeMode {
    pub(super) encoding_aes_key: Option<OneOrTwo>,
    pub(super) require: Option<bool>,
    pub(super) decrypt: Option<bool>,
}

/// Reads the configuration from its parsed JSON, field by field, so that an error
/// names the field it is in (`source.allow[1]`). serde_json parses; the walk is here
/// rather than in `serde_path_to_error`, which wraps every type's deserializer and
/// was a tenth of the `.wasm`.
/// Which role the JSON configures (`role`: `callback`, the default, or `api`), and
/// the rest of it read for that role.
pub(super) enum RawPlugin {
    Callback(Box<RawConfig>),
    Api(Box<RawApi>),
}

pub(super) fn read_plugin(json: Strict) -> Result<RawPlugin, ConfigError> {
    let mut f = Fields::of(json.0, "")?;
    match f.take::<String>("role")?.as_deref() {
        None | Some("callback") => read_callback(f).map(|r| RawPlugin::Callback(Box::new(r))),
        Some("api") => read_api(f).map(|r| RawPlugin::Api(Box::new(r))),
        Some(_) => Err(ConfigError::new(
            "role",
            "must be \"callback\" (the default) or \"api\"",
        )),
    }
}

fn read_api(mut f: Fields) -> Result<RawApi, ConfigError> {
    let raw = RawApi {
        name: f.take("name")?,
        platform: f.take("platform")?,
        path: f.take("path")?,
        appid: f.take("appid")?,
        wechat_api: f
            .object("wechat_api")?
            .map(read_api_wechat_api)
            .transpose()?,
        callers: f.list("callers")?,
        max_body_bytes: f.take("max_body_bytes")?,
    };
    f.done()?;
    Ok(raw)
}

/// The API role's `wechat_api`: the account is `appid`, and nothing is refreshed on
/// a schedule, so neither `appid` nor `refresh_seconds` is a field of it.
fn read_api_wechat_api(mut f: Fields) -> Result<RawWechatApi, ConfigError> {
    let raw = RawWechatApi {
        appid: None,
        secret: f.take("secret")?,
        token_api: f.take("token_api")?,
        upstreams: f.list("upstreams")?,
        refresh_seconds: None,
        timeout_ms: f.take("timeout_ms")?,
    };
    f.done()?;
    Ok(raw)
}

fn read_callback(mut f: Fields) -> Result<RawConfig, ConfigError> {
    let raw = RawConfig {
        name: f.take("name")?,
        platform: f.take("platform")?,
        path: f.take("path")?,
        appid: f.take("appid")?,
        token: f.take("token")?,
        timestamp_tolerance_seconds: f.take("timestamp_tolerance_seconds")?,
        max_body_bytes: f.take("max_body_bytes")?,
        dedupe_seconds: f.take("dedupe_seconds")?,
        on_upstream_failure: f.take("on_upstream_failure")?,
        source: f.object("source")?.map(read_source).transpose()?,
        safe_mode: f.object("safe_mode")?.map(read_safe_mode).transpose()?,
        park: f.object("park")?.map(read_park).transpose()?,
    };
    f.done()?;
    Ok(raw)
}

fn read_source(mut f: Fields) -> Result<RawSource, ConfigError> {
    let raw = RawSource {
        mode: f.take("mode")?,
        allow: f.list("allow")?,
        when_unavailable: f.take("when_unavailable")?,
        wechat_api: f.object("wechat_api")?.map(read_wechat_api).transpose()?,
    };
    f.done()?;
    Ok(raw)
}

fn read_wechat_api(mut f: Fields) -> Result<RawWechatApi, ConfigError> {
    let raw = RawWechatApi {
        appid: f.take("appid")?,
        secret: f.take("secret")?,
        token_api: f.take("token_api")?,
        upstreams: f.list("upstreams")?,
        refresh_seconds: f.take("refresh_seconds")?,
        timeout_ms: f.take("timeout_ms")?,
    };
    f.done()?;
    Ok(raw)
}

fn read_safe_mode(mut f: Fields) -> Result<RawSafeMode, ConfigError> {
    let raw = RawSafeMode {
        encoding_aes_key: f.take("encoding_aes_key")?,
        require: f.take("require")?,
        decrypt: f.take("decrypt")?,
    };
    f.done()?;
    Ok(raw)
}

fn read_park(mut f: Fields) -> Result<RawPark, ConfigError> {
    let raw = RawPark {
        max_messages: f.take("max_messages")?,
        max_seconds: f.take("max_seconds")?,
    };
    f.done()?;
    Ok(raw)
}

/// The members of one JSON object not read yet, and where the object is.
struct Fields {
    members: Map<String, Value>,
    path: String,
}

impl Fields {
    fn of(value: Value, path: &str) -> Result<Fields, ConfigError> {
        match value {
            Value::Object(members) => Ok(Fields {
                members,
                path: path.to_string(),
            }),
            _ => Err(ConfigError::new(path, "expected a JSON object")),
        }
    }

    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The member `key` as a `T` (absent or `null`: `None`).
    fn take<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.members.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v)
                .map(Some)
                .map_err(|e| ConfigError::new(self.path_of(key), e.to_string())),
        }
    }

    /// The member `key` as a list of `T`, each element's error naming its index.
    fn list<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<Vec<T>>, ConfigError> {
        let path = self.path_of(key);
        match self.members.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    T::deserialize(v)
                        .map_err(|e| ConfigError::new(format!("{path}[{i}]"), e.to_string()))
                })
                .collect::<Result<Vec<T>, _>>()
                .map(Some),
            Some(_) => Err(ConfigError::new(path, "expected a list")),
        }
    }

    /// The member `key`, an object.
    fn object(&mut self, key: &str) -> Result<Option<Fields>, ConfigError> {
        match self.members.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Fields::of(v, &self.path_of(key)).map(Some),
        }
    }

    /// Every member has been read: any left is one the configuration does not have.
    fn done(self) -> Result<(), ConfigError> {
        match self.members.keys().next() {
            None => Ok(()),
            Some(key) => Err(ConfigError::new(
                self.path.clone(),
                format!("unknown field `{key}`"),
            )),
        }
    }
}

/// JSON parsed by serde_json as a [`Value`], strictly: an object that names a member
/// twice is refused (serde_json's own map would keep the last one silently).
pub(super) struct Strict(pub(super) Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strict;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
                Ok(Strict(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
                Ok(Strict(Value::String(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Strict, E> {
                Ok(Strict(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
                let mut items = Vec::new();
                while let Some(Strict(v)) = seq.next_element()? {
                    items.push(v);
                }
                Ok(Strict(Value::Array(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
                let mut members = Map::new();
                while let Some((key, Strict(v))) = map.next_entry::<String, Strict>()? {
                    if members.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("duplicate field `{key}`")));
                    }
                    members.insert(key, v);
                }
                Ok(Strict(Value::Object(members)))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A secret, or a list of two while it is rotated (current first).
pub(super) enum OneOrTwo {
    One(SecretRef),
    Two(SecretRef, SecretRef),
}

impl<'de> Deserialize<'de> for OneOrTwo {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expected = |_| {
            serde::de::Error::custom(
                "expected a string, {\"env\": \"NAME\"}, or a list of two of them \
                 (current first) while it is rotated",
            )
        };
        let Strict(value) = Strict::deserialize(deserializer)?;
        let Value::Array(list) = value else {
            return SecretRef::from_json(value)
                .map(OneOrTwo::One)
                .map_err(expected);
        };
        let mut list = list.into_iter().map(SecretRef::from_json);
        match (list.next(), list.next(), list.next()) {
            (Some(one), None, _) => one.map(OneOrTwo::One).map_err(expected),
            (Some(current), Some(previous), None) => Ok(OneOrTwo::Two(
                current.map_err(expected)?,
                previous.map_err(expected)?,
            )),
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

impl SecretRef {
    /// Only a string or an object whose one member is `env` (a string): serde's derive
    /// would also read `["x"]` as `{"env": "x"}`, taking a secret for a variable's name
    /// and naming it in the refusal. The error never repeats what was given.
    fn from_json(value: Value) -> Result<SecretRef, ()> {
        match value {
            Value::String(s) => Ok(SecretRef::Literal(s)),
            Value::Object(mut members) if members.len() == 1 => match members.remove("env") {
                Some(Value::String(name)) => Ok(SecretRef::Env(name)),
                _ => Err(()),
            },
            _ => Err(()),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Strict(value) = Strict::deserialize(deserializer)?;
        SecretRef::from_json(value)
            .map_err(|()| serde::de::Error::custom("expected a string or {\"env\": \"NAME\"}"))
    }
}
