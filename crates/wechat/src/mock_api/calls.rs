//! The API role's plain calls: `user/info`, `message/custom/send`, WeCom's
//! `message/send` (both bodies kept for `/__messages`), `ticket/getticket`, and the
//! two that take the AppSecret instead of a token, `sns/jscode2session` and
//! `sns/oauth2/access_token`.

use super::http::{Outcome, Request};
use super::routes::{check_access_token, errcode, ok, ok_errcode};
use super::state::{random_value, Endpoint, Shared};
use serde_json::{json, Value};

pub(super) fn answer(shared: &Shared, endpoint: Endpoint, req: &Request) -> Outcome {
    match endpoint {
        Endpoint::Jscode2session | Endpoint::Oauth2AccessToken => {
            return sns(shared, endpoint, req)
        }
        _ => {}
    }
    let expected = match endpoint {
        Endpoint::CustomSend | Endpoint::WecomMessageSend => "POST",
        _ => "GET",
    };
    if req.method != expected {
        return if expected == "POST" {
            errcode(43002, "require POST method")
        } else {
            errcode(43001, "require GET method")
        };
    }
    let mut state = shared.lock();
    if let Err(refused) = check_access_token(&mut state, req) {
        return refused;
    }
    match endpoint {
        Endpoint::UserInfo => user_info(req),
        Endpoint::CustomSend | Endpoint::WecomMessageSend => {
            let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
                return errcode(47001, "data format error");
            };
            if !body.is_object() {
                return errcode(47001, "data format error");
            }
            state
                .messages
                .push(json!({ "endpoint": endpoint.name(), "body": body }));
            if endpoint == Endpoint::CustomSend {
                ok_errcode()
            } else {
                ok(&json!({ "errcode": 0, "errmsg": "ok", "invaliduser": "" }))
            }
        }
        Endpoint::GetticketJsapi | Endpoint::GetticketWxCard => {
            let Some(ticket) = random_value("MOCKTICKET_", 75) else {
                return errcode(-1, "system error");
            };
            ok(&json!({
                "errcode": 0, "errmsg": "ok",
                "ticket": ticket, "expires_in": state.faults.ticket_expires_in
            }))
        }
        _ => errcode(40097, "invalid args"),
    }
}

/// `user/info`: every openid is a subscriber called "mock user".
fn user_info(req: &Request) -> Outcome {
    let Some(openid) = req.query("openid").filter(|o| !o.is_empty()) else {
        return errcode(40003, "invalid openid");
    };
    let language = match req.query("lang").as_deref() {
        Some(lang @ ("zh_CN" | "zh_TW" | "en")) => lang.to_string(),
        _ => "zh_CN".to_string(),
    };
    ok(&json!({
        "subscribe": 1,
        "openid": openid,
        "nickname": "mock user",
        "sex": 0,
        "language": language,
        "city": "",
        "province": "",
        "country": "",
        "headimgurl": "",
        "subscribe_time": 1_700_000_000,
        "remark": "",
        "groupid": 0,
        "tagid_list": [],
        "subscribe_scene": "ADD_SCENE_QR_CODE",
        "qr_scene": 0,
        "qr_scene_str": ""
    }))
}

/// `jscode2session` and `oauth2/access_token`: the AppID and AppSecret in the query,
/// and a code from the user's side (`bad`, or none, is refused with 40029). The openid
/// is `oMock` and the code, so a test can tell whose it is.
fn sns(shared: &Shared, endpoint: Endpoint, req: &Request) -> Outcome {
    if req.method != "GET" {
        return errcode(43001, "require GET method");
    }
    if req.query("appid").as_deref() != Some(shared.appid.as_str()) {
        return errcode(40013, "invalid appid");
    }
    if req.query("secret").as_deref() != Some(shared.secret.as_str()) {
        return errcode(40125, "invalid appsecret");
    }
    let code_name = match endpoint {
        Endpoint::Jscode2session => "js_code",
        _ => "code",
    };
    let code = match req.query(code_name) {
        Some(code) if !code.is_empty() && code != "bad" => code,
        _ => return errcode(40029, "invalid code"),
    };
    if req.query("grant_type").as_deref() != Some("authorization_code") {
        return errcode(40002, "invalid grant_type");
    }
    let openid = format!("oMock{code}");
    let (Some(key), Some(refresh)) = (
        random_value("MOCKKEY_", 24),
        random_value("MOCKREFRESH_", 64),
    ) else {
        return errcode(-1, "system error");
    };
    if endpoint == Endpoint::Jscode2session {
        return ok(&json!({ "openid": openid, "session_key": key }));
    }
    // A user's token, never the account's: it opens no call of the account's.
    let Some(user_token) = random_value("MOCKUSER_", 64) else {
        return errcode(-1, "system error");
    };
    ok(&json!({
        "access_token": user_token,
        "expires_in": 7200,
        "refresh_token": refresh,
        "openid": openid,
        "scope": "snsapi_base"
    }))
}
