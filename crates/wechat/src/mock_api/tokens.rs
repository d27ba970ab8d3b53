//! WeChat's token endpoints: `stable_token` (shared while it lives, `force_refresh`
//! replaces it; `stale_stable` hands back the replaced one), `token` (a new one every
//! call) and WeCom's `gettoken`. Issuing a token makes the previous one 40001.

use super::http::{Outcome, Request};
use super::routes::{errcode, ok};
use super::state::{new_token_value, now_ms, Shared, State};
use serde::Deserialize;
use serde_json::json;

/// The checks both token endpoints make, in WeChat's order.
fn check_credentials(
    shared: &Shared,
    grant_type: Option<&str>,
    appid: Option<&str>,
    secret: Option<&str>,
) -> Result<(), Outcome> {
    if grant_type != Some("client_credential") {
        return Err(errcode(40002, "invalid grant_type"));
    }
    if appid != Some(shared.appid.as_str()) {
        return Err(errcode(40013, "invalid appid"));
    }
    if secret != Some(shared.secret.as_str()) {
        return Err(errcode(40125, "invalid appsecret"));
    }
    Ok(())
}

#[derive(Deserialize)]
struct StableTokenBody {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: bool,
}

/// Stable semantics: the current token is shared while it lives (issued when there is
/// none); `force_refresh` replaces it.
pub(super) fn stable_token(shared: &Shared, req: &Request) -> Outcome {
    if req.method != "POST" {
        return errcode(43002, "require POST method");
    }
    let Ok(body) = serde_json::from_slice::<StableTokenBody>(&req.body) else {
        return errcode(47001, "data format error");
    };
    if let Err(refused) = check_credentials(
        shared,
        body.grant_type.as_deref(),
        body.appid.as_deref(),
        body.secret.as_deref(),
    ) {
        return refused;
    }
    let now = now_ms();
    let mut state = shared.lock();
    if !body.force_refresh {
        if let Some(current) = state.token.as_ref().filter(|t| now < t.expires_at) {
            let remaining_s = (current.expires_at - now).div_ceil(1000);
            let value = match state.previous.clone() {
                Some(stale) if state.faults.stale_stable > 0 => {
                    state.faults.stale_stable -= 1;
                    stale
                }
                _ => current.value.clone(),
            };
            return ok(&json!({ "access_token": value, "expires_in": remaining_s }));
        }
    }
    issue(shared, &mut state, now)
}

/// Classic semantics: every call issues a new token and invalidates the previous.
pub(super) fn classic_token(shared: &Shared, req: &Request) -> Outcome {
    if req.method != "GET" {
        return errcode(43001, "require GET method");
    }
    if let Err(refused) = check_credentials(
        shared,
        req.query("grant_type").as_deref(),
        req.query("appid").as_deref(),
        req.query("secret").as_deref(),
    ) {
        return refused;
    }
    let now = now_ms();
    let mut state = shared.lock();
    issue(shared, &mut state, now)
}

/// WeCom's semantics (qyapi.weixin.qq.com): `corpid` and `corpsecret`; the current
/// token is handed to every caller while it lives. Errors as WeCom words them.
pub(super) fn wecom_token(shared: &Shared, req: &Request) -> Outcome {
    if req.method != "GET" {
        return errcode(43001, "require GET method");
    }
    if req.query("corpid").as_deref() != Some(shared.appid.as_str()) {
        return errcode(40013, "invalid corpid");
    }
    if req.query("corpsecret").as_deref() != Some(shared.secret.as_str()) {
        return errcode(40001, "invalid credential");
    }
    let now = now_ms();
    let mut state = shared.lock();
    if let Some(current) = state.token.as_ref().filter(|t| now < t.expires_at) {
        let remaining_s = (current.expires_at - now).div_ceil(1000);
        return ok(&json!({
            "errcode": 0, "errmsg": "ok",
            "access_token": current.value, "expires_in": remaining_s
        }));
    }
    issue(shared, &mut state, now)
}

/// Issues a new token (the previous one is no longer the latest) and answers it.
pub(super) fn issue(shared: &Shared, state: &mut State, now: u64) -> Outcome {
    let Some(value) = new_token_value() else {
        return errcode(-1, "system error");
    };
    let reply = ok(&json!({
        "access_token": value,
        "expires_in": shared.token_ttl_ms / 1000,
    }));
    state.install_token(value, now, shared.token_ttl_ms);
    reply
}
