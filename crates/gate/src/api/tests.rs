//! The API role's decisions, one file per module (`tests/`): the configuration, the
//! route a request takes, a call's request and the judgment of WeChat's reply, the
//! token and ticket rules. The helpers here build an API-role configuration.

mod call;
mod config;
mod route;
mod ticket;
mod token;

use crate::config::{parse_plugin, ApiConfig, ConfigError, Plugin};
use serde_json::{json, Value};

/// The AppSecret in every configuration here: no error, log or `Debug` may show it.
pub const SECRET: &str = "s3cret-app-secret-VALUE";
pub const APPID: &str = "wx0123456789abcdef";
/// The real access token the gate holds.
pub const REAL: &str = "REAL-ACCESS-TOKEN-VALUE";
/// Unix seconds in the tests.
pub const NOW: i64 = 1_800_000_000;

/// A valid API-role configuration: an official account under `/wechat-api/mp`, two
/// upstreams (`a`, `b`), callers `10.0.0.0/8` and `127.0.0.1`.
pub fn base() -> Value {
    json!({
        "role": "api",
        "path": "/wechat-api/mp",
        "name": "mp",
        "platform": "official_account",
        "appid": APPID,
        "wechat_api": {
            "secret": SECRET,
            "upstreams": [
                {"cluster": "a", "authority": "api.weixin.qq.com"},
                {"cluster": "b", "authority": "api2.weixin.qq.com"}
            ]
        },
        "callers": ["10.0.0.0/8", "127.0.0.1"]
    })
}

/// `base()` with `platform`.
pub fn on(platform: &str) -> Value {
    let mut v = base();
    v["platform"] = json!(platform);
    v
}

pub fn parse(v: &Value) -> Result<ApiConfig, ConfigError> {
    match parse_plugin(v.to_string().as_bytes(), &|_| None)? {
        Plugin::Api(api) => Ok(api),
        Plugin::Callback(_) => panic!("parsed as the callback role"),
    }
}

pub fn config_on(platform: &str) -> ApiConfig {
    parse(&on(platform)).expect("a valid API-role configuration")
}

pub fn config() -> ApiConfig {
    config_on("official_account")
}
