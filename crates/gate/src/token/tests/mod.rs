//! The token machine's tests: the shared state's rules ([`state`]), the fetching
//! worker's walk ([`plan`]), the shared list ([`shared_list`]), and the machine itself
//! driven through a fake host ([`machine`]).

use super::state::Instance;
use super::wechat_api::{AccessToken, ApiFailure, CallbackIps};
use crate::allowlist::parse_block;
use crate::config::WechatApi;

mod failures;
mod fake;
mod machine;
mod plan;
mod shared_list;
mod state;

pub(super) fn token(expires_in: u64) -> AccessToken {
    AccessToken {
        value: "TOKEN".into(),
        expires_in,
    }
}

pub(super) fn ips() -> CallbackIps {
    CallbackIps {
        blocks: vec![parse_block("1.2.3.4").expect("ip")],
        entries: vec!["1.2.3.4".into()],
        skipped: vec![],
    }
}

pub(super) fn errcode(code: i64) -> ApiFailure {
    ApiFailure::Errcode {
        code,
        message: String::new(),
    }
}

/// An instance refreshing every `refresh` s with settings `settings`.
pub(super) fn inst(refresh: u64, settings: u64) -> Instance {
    Instance {
        refresh_seconds: refresh,
        settings,
    }
}

/// The `source.wechat_api` of account `appid`, compiled from `base` with the keys of
/// `extra` set.
pub(super) fn wechat_api(
    appid: &str,
    mut base: serde_json::Value,
    extra: serde_json::Value,
) -> WechatApi {
    if let (Some(w), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        w.extend(e.clone());
    }
    let json = serde_json::json!({"path": "/w", "appid": appid, "token": "t",
        "source": {"wechat_api": base}});
    crate::config::parse(json.to_string().as_bytes(), &|_| None)
        .expect("config")
        .source
        .wechat_api
        .expect("wechat_api")
}
