//! mock-api's endpoints: WeChat's (counted, then faulted, then answered as WeChat
//! would) and the controls under `/__`.

use super::http::{Outcome, Request, JSON};
use super::{new_token_value, now_ms, validate_ips, Endpoint, Fault, Faults, Shared, State, Token};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::thread;
use std::time::Duration;

fn reply(status: u16, body: &Value) -> Outcome {
    Outcome::Reply {
        status,
        content_type: JSON,
        body: body.to_string().into_bytes(),
    }
}

fn ok(body: &Value) -> Outcome {
    reply(200, body)
}

fn errcode(code: i64, message: &str) -> Outcome {
    ok(&json!({ "errcode": code, "errmsg": message }))
}

fn bad_request(why: &str) -> Outcome {
    reply(400, &json!({ "ok": false, "error": why }))
}

pub(super) fn handle(shared: &Shared, req: &Request) -> Outcome {
    let endpoint = match req.path.as_str() {
        "/cgi-bin/stable_token" => Some(Endpoint::StableToken),
        "/cgi-bin/token" => Some(Endpoint::Token),
        "/cgi-bin/getcallbackip" => Some(Endpoint::CallbackIp),
        "/cgi-bin/get_api_domain_ip" => Some(Endpoint::ApiDomainIp),
        "/cgi-bin/callback/check" => Some(Endpoint::CallbackCheck),
        "/cgi-bin/gettoken" => Some(Endpoint::WecomToken),
        _ => None,
    };
    if let Some(endpoint) = endpoint {
        return wechat_call(shared, endpoint, req);
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/__calls") => match serde_json::to_value(&shared.lock().calls) {
            Ok(calls) => ok(&calls),
            Err(_) => errcode(-1, "system error"),
        },
        ("GET", "/__callback_ips") => ok(&json!({ "ip_list": shared.lock().callback_ips })),
        ("POST" | "PUT", "/__callback_ips") => set_callback_ips(shared, req),
        ("POST" | "PUT", "/__faults") => match serde_json::from_slice::<Faults>(&req.body) {
            Ok(faults) => {
                shared.lock().faults = faults;
                ok(&json!({ "ok": true }))
            }
            Err(e) => bad_request(&format!(
                "the body must be a JSON object with fail, errcode, delay_ms, drop, garbage, \
                 errcodes, unreachable, no_dns: {e}"
            )),
        },
        _ => reply(404, &json!({ "errcode": -1, "errmsg": "not found" })),
    }
}

fn set_callback_ips(shared: &Shared, req: &Request) -> Outcome {
    let entries: Vec<String> = match serde_json::from_slice(&req.body) {
        Ok(entries) => entries,
        Err(_) => return bad_request("the body must be a JSON array of strings"),
    };
    match validate_ips(&entries) {
        Ok(list) => {
            let n = list.len();
            shared.lock().callback_ips = list;
            ok(&json!({ "ok": true, "entries": n }))
        }
        Err(e) => bad_request(&e),
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
        Some(Fault::Drop) => return Outcome::Drop,
        Some(Fault::Garbage) => {
            return Outcome::Reply {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: b"<html>not json".to_vec(),
            }
        }
        Some(Fault::Fail(code)) => return errcode(code, &fault_message(code, req.peer)),
        None => {}
    }
    match endpoint {
        Endpoint::StableToken => stable_token(shared, req),
        Endpoint::Token => classic_token(shared, req),
        Endpoint::CallbackIp | Endpoint::ApiDomainIp => ip_list(shared, endpoint, req),
        Endpoint::CallbackCheck => callback_check(shared, req),
        Endpoint::WecomToken => wecom_token(shared, req),
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

/// The access token a guarded call carries must be the current one, and unexpired.
fn check_access_token(state: &State, req: &Request) -> Result<(), Outcome> {
    let token = req.query("access_token");
    match &state.token {
        Some(current) if token.as_deref() == Some(current.value.as_str()) => {
            if now_ms() >= current.expires_at {
                return Err(errcode(42001, "access_token expired"));
            }
            Ok(())
        }
        _ => Err(errcode(
            40001,
            "invalid credential, access_token is invalid or not latest",
        )),
    }
}

/// `getcallbackip` (the list set by --callback-ip or `/__callback_ips`) and
/// `get_api_domain_ip` (a fixed list of api.weixin.qq.com-like addresses).
fn ip_list(shared: &Shared, endpoint: Endpoint, req: &Request) -> Outcome {
    if req.method != "GET" {
        return errcode(43001, "require GET method");
    }
    let state = shared.lock();
    if let Err(refused) = check_access_token(&state, req) {
        return refused;
    }
    match endpoint {
        Endpoint::CallbackIp => ok(&json!({ "ip_list": state.callback_ips })),
        _ => ok(&json!({
            "ip_list": ["101.89.47.18", "101.91.34.103", "240e:e1:a900:50::18"]
        })),
    }
}

#[derive(Deserialize)]
struct CheckBody {
    action: Option<String>,
    check_operator: Option<String>,
}

/// The addresses the account's callback URL resolves to in the mock, with their operator.
const CALLBACK_HOST: [(&str, &str); 2] = [("203.0.113.10", "UNICOM"), ("203.0.113.11", "CHINANET")];

/// `callback/check`: WeChat resolves the account's callback URL and pings each address
/// once from the operator asked for (`DEFAULT`: the address's own).
fn callback_check(shared: &Shared, req: &Request) -> Outcome {
    if req.method != "POST" {
        return errcode(43002, "require POST method");
    }
    let Ok(body) = serde_json::from_slice::<CheckBody>(&req.body) else {
        return errcode(47001, "data format error");
    };
    let state = shared.lock();
    if let Err(refused) = check_access_token(&state, req) {
        return refused;
    }
    let (dns, ping) = match body.action.as_deref() {
        Some("all") => (true, true),
        Some("dns") => (true, false),
        Some("ping") => (false, true),
        _ => return errcode(40202, "invalid action"),
    };
    let operator = match body.check_operator.as_deref() {
        Some(op @ ("DEFAULT" | "CHINANET" | "UNICOM" | "CAP")) => op,
        _ => return errcode(40203, "invalid check_operator"),
    };
    let resolved: &[(&str, &str)] = if state.faults.no_dns {
        &[]
    } else {
        &CALLBACK_HOST
    };
    let (loss, time) = if state.faults.unreachable {
        ("100%", "")
    } else {
        ("0%", "23.079ms")
    };
    let mut reply = serde_json::Map::new();
    if dns {
        let answers: Vec<Value> = resolved
            .iter()
            .map(|(ip, real)| json!({ "ip": ip, "real_operator": real }))
            .collect();
        reply.insert("dns".into(), Value::Array(answers));
    }
    if ping {
        let pings: Vec<Value> = resolved
            .iter()
            .map(|(ip, real)| {
                let from = if operator == "DEFAULT" {
                    real
                } else {
                    operator
                };
                json!({ "ip": ip, "from_operator": from, "package_loss": loss, "time": time })
            })
            .collect();
        reply.insert("ping".into(), Value::Array(pings));
    }
    ok(&Value::Object(reply))
}

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

/// Stable semantics: the current token is shared while it lives; `force_refresh`
/// replaces it.
fn stable_token(shared: &Shared, req: &Request) -> Outcome {
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
            return ok(&json!({ "access_token": current.value, "expires_in": remaining_s }));
        }
    }
    issue(shared, &mut state, now)
}

/// Classic semantics: every call issues a new token and invalidates the previous.
fn classic_token(shared: &Shared, req: &Request) -> Outcome {
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
fn wecom_token(shared: &Shared, req: &Request) -> Outcome {
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

fn issue(shared: &Shared, state: &mut State, now: u64) -> Outcome {
    let Some(value) = new_token_value() else {
        return errcode(-1, "system error");
    };
    let reply = ok(&json!({
        "access_token": value,
        "expires_in": shared.token_ttl_ms / 1000,
    }));
    state.token = Some(Token {
        value,
        expires_at: now.saturating_add(shared.token_ttl_ms),
    });
    reply
}
