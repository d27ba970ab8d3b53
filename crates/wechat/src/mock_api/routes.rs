//! mock-api's dispatch: WeChat's endpoints (counted, then faulted, then answered as
//! WeChat would, by `tokens`, `callback`, `calls` and `media`) and the controls under
//! `/__` (`controls`); the reply shapes and the access-token check they share.

use super::http::{Outcome, Request, JSON};
use super::state::{new_token_value, now_ms, Endpoint, Fault, Shared, State};
use super::{callback, calls, controls, media, tokens};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::thread;
use std::time::Duration;

pub(super) fn reply(status: u16, body: &Value) -> Outcome {
    Outcome::Reply {
        status,
        headers: vec![("content-type", JSON.to_string())],
        body: body.to_string().into_bytes(),
    }
}

pub(super) fn ok(body: &Value) -> Outcome {
    reply(200, body)
}

pub(super) fn errcode(code: i64, message: &str) -> Outcome {
    ok(&json!({ "errcode": code, "errmsg": message }))
}

/// WeChat's success answer of calls that return nothing else.
pub(super) fn ok_errcode() -> Outcome {
    errcode(0, "ok")
}

pub(super) fn bad_request(why: &str) -> Outcome {
    reply(400, &json!({ "ok": false, "error": why }))
}

/// The endpoint a WeChat path (and, for getticket, its `type`) names.
fn endpoint_of(req: &Request) -> Option<Endpoint> {
    Some(match req.path.as_str() {
        "/cgi-bin/stable_token" => Endpoint::StableToken,
        "/cgi-bin/token" => Endpoint::Token,
        "/cgi-bin/getcallbackip" => Endpoint::Getcallbackip,
        "/cgi-bin/get_api_domain_ip" => Endpoint::GetApiDomainIp,
        "/cgi-bin/callback/check" => Endpoint::CallbackCheck,
        "/cgi-bin/gettoken" => Endpoint::Gettoken,
        "/cgi-bin/user/info" => Endpoint::UserInfo,
        "/cgi-bin/message/custom/send" => Endpoint::CustomSend,
        "/cgi-bin/media/upload" => Endpoint::MediaUpload,
        "/cgi-bin/media/get" => Endpoint::MediaGet,
        "/cgi-bin/ticket/getticket" => match req.query("type").as_deref() {
            Some("jsapi") => Endpoint::GetticketJsapi,
            Some("wx_card") => Endpoint::GetticketWxCard,
            _ => Endpoint::Getticket,
        },
        "/sns/jscode2session" => Endpoint::Jscode2session,
        "/sns/oauth2/access_token" => Endpoint::Oauth2AccessToken,
        "/cgi-bin/message/send" => Endpoint::WecomMessageSend,
        _ => return None,
    })
}

pub(super) fn handle(shared: &Shared, req: &Request) -> Outcome {
    match endpoint_of(req) {
        Some(endpoint) => wechat_call(shared, endpoint, req),
        None => controls::handle(shared, req),
    }
}

/// One of WeChat's endpoints: counted, then faults, then the real answer.
fn wechat_call(shared: &Shared, endpoint: Endpoint, req: &Request) -> Outcome {
    let (fault, delay_ms) = {
        let mut state = shared.lock();
        (state.take_fault(endpoint), state.faults.delay_ms)
    };
    if delay_ms > 0 {
        thread::sleep(Duration::from_millis(delay_ms));
    }
    match fault {
        Some(Fault::Hang) => return Outcome::Hang,
        Some(Fault::Drop) => return Outcome::Drop,
        Some(Fault::Garbage) => {
            return Outcome::Reply {
                status: 200,
                headers: vec![("content-type", "text/html; charset=utf-8".into())],
                body: b"<html>not json".to_vec(),
            }
        }
        Some(Fault::Fail(code)) => return errcode(code, &fault_message(code, req.peer)),
        None => {}
    }
    match endpoint {
        Endpoint::StableToken => tokens::stable_token(shared, req),
        Endpoint::Token => tokens::classic_token(shared, req),
        Endpoint::Gettoken => tokens::wecom_token(shared, req),
        Endpoint::Getcallbackip | Endpoint::GetApiDomainIp => {
            callback::ip_list(shared, endpoint, req)
        }
        Endpoint::CallbackCheck => callback::callback_check(shared, req),
        Endpoint::MediaUpload => media::upload(shared, req),
        Endpoint::MediaGet => media::get(shared, req),
        _ => calls::answer(shared, endpoint, req),
    }
}

/// WeChat's errmsg for `code`; 40164's names the address the call came from, as
/// WeChat's does.
fn fault_message(code: i64, peer: Option<IpAddr>) -> String {
    let fixed = match code {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40013 => "invalid appid",
        40125 => "invalid appsecret",
        40164 => return not_in_whitelist(peer),
        41001 => "access_token missing",
        42001 => "access_token expired",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit mustslower retry next minute",
        48001 => "api unauthorized",
        89501 => "此IP正在等待管理员确认,请联系管理员",
        89503 => "此IP调用需要管理员确认,请联系管理员",
        89506 => "24小时内该IP被管理员拒绝调用两次，24小时内不可再使用该IP调用",
        89507 => "1小时内该IP被管理员拒绝调用一次，1小时内不可再使用该IP调用",
        _ => "mock fault",
    };
    fixed.to_string()
}

/// `invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist rid: …`, as WeChat words it.
fn not_in_whitelist(peer: Option<IpAddr>) -> String {
    let (v4, v6) = match peer {
        Some(IpAddr::V4(ip)) => (ip.to_string(), ip.to_ipv6_mapped().to_string()),
        Some(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => (v4.to_string(), ip.to_string()),
            None => (String::new(), ip.to_string()),
        },
        None => (String::new(), String::new()),
    };
    let rid = new_token_value().map(|t| t.chars().skip(5).take(24).collect::<String>());
    format!(
        "invalid ip {v4} ipv6 {v6}, not in whitelist rid: {}",
        rid.unwrap_or_default()
    )
}

/// The access token a guarded call carries must be there, be the current one, and be
/// unexpired. A refusal is counted as `refused_token`.
pub(super) fn check_access_token(state: &mut State, req: &Request) -> Result<(), Outcome> {
    let token = req.query("access_token").filter(|t| !t.is_empty());
    let code = match (&state.token, token) {
        (_, None) => 41001,
        (Some(current), Some(token)) if token == current.value => {
            if now_ms() < current.expires_at {
                return Ok(());
            }
            42001
        }
        _ => 40001,
    };
    state.count("refused_token");
    Err(errcode(code, &fault_message(code, req.peer)))
}
