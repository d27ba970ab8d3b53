//! The callback role's endpoints: `getcallbackip`, `get_api_domain_ip` and
//! `callback/check`.

use super::http::{Outcome, Request};
use super::routes::{check_access_token, errcode, ok};
use super::state::{Endpoint, Shared};
use serde::Deserialize;
use serde_json::{json, Value};

/// `getcallbackip` (the list set by --callback-ip or `/__callback_ips`) and
/// `get_api_domain_ip` (a fixed list of api.weixin.qq.com-like addresses).
pub(super) fn ip_list(shared: &Shared, endpoint: Endpoint, req: &Request) -> Outcome {
    if req.method != "GET" {
        return errcode(43001, "require GET method");
    }
    let mut state = shared.lock();
    if let Err(refused) = check_access_token(&mut state, req) {
        return refused;
    }
    match endpoint {
        Endpoint::Getcallbackip => ok(&json!({ "ip_list": state.callback_ips })),
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
pub(super) fn callback_check(shared: &Shared, req: &Request) -> Outcome {
    if req.method != "POST" {
        return errcode(43002, "require POST method");
    }
    let Ok(body) = serde_json::from_slice::<CheckBody>(&req.body) else {
        return errcode(47001, "data format error");
    };
    let mut state = shared.lock();
    if let Err(refused) = check_access_token(&mut state, req) {
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
