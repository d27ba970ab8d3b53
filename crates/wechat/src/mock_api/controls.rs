//! mock-api's controls under `/__` (listed in the module doc of `mock_api`): they inspect
//! and steer the mock while it runs, and are never counted as WeChat calls.

use super::http::{Outcome, Request};
use super::routes::{bad_request, ok, reply};
use super::state::{new_token_value, now_ms, Faults, Shared};
use super::{media, validate_ips};
use serde::Deserialize;
use serde_json::json;

pub(super) fn handle(shared: &Shared, req: &Request) -> Outcome {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/__calls") => ok(&shared.lock().calls_json()),
        ("GET", "/__messages") => ok(&json!(shared.lock().messages)),
        ("GET", "/__callback_ips") => ok(&json!({ "ip_list": shared.lock().callback_ips })),
        ("POST" | "PUT", "/__callback_ips") => set_callback_ips(shared, req),
        ("POST" | "PUT", "/__faults") => set_faults(shared, req),
        ("POST", "/__rotate_token") => rotate_token(shared),
        ("POST" | "PUT", "/__token") => set_token(shared, req),
        ("POST", "/__expire_token") => {
            if let Some(token) = shared.lock().token.as_mut() {
                token.expires_at = now_ms();
            }
            ok(&json!({ "ok": true }))
        }
        ("POST" | "PUT", "/__media") => media::plant(shared, req),
        _ => reply(404, &json!({ "errcode": -1, "errmsg": "not found" })),
    }
}

fn set_faults(shared: &Shared, req: &Request) -> Outcome {
    match serde_json::from_slice::<Faults>(&req.body) {
        Ok(faults) => {
            shared.lock().faults = faults;
            ok(&json!({ "ok": true }))
        }
        Err(e) => bad_request(&format!(
            "the body must be a JSON object with fail, errcode, delay_ms, drop, garbage, \
             hang, refuse, stale_stable, hangs, busy, errcodes, unreachable, no_dns, \
             ticket_expires_in: {e}"
        )),
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

/// Another party fetched a token: a new one is current, and the old one gets 40001.
fn rotate_token(shared: &Shared) -> Outcome {
    let Some(value) = new_token_value() else {
        return reply(500, &json!({ "ok": false, "error": "no random numbers" }));
    };
    shared
        .lock()
        .install_token(value, now_ms(), shared.token_ttl_ms);
    ok(&json!({ "ok": true }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetToken {
    access_token: String,
}

/// Makes a token another mock-api issued the current one here (for its lifetime here),
/// as WeChat's backup domain honours the tokens of its primary.
fn set_token(shared: &Shared, req: &Request) -> Outcome {
    match serde_json::from_slice::<SetToken>(&req.body) {
        Ok(SetToken { access_token }) if !access_token.is_empty() => {
            shared
                .lock()
                .install_token(access_token, now_ms(), shared.token_ttl_ms);
            ok(&json!({ "ok": true }))
        }
        _ => bad_request("the body must be {\"access_token\": \"…\"}"),
    }
}
