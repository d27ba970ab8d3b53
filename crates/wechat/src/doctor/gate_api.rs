//! `doctor --gate-api URL`: an API-role gate checked end to end from where a backend
//! runs, with no AppSecret and no token here: its token endpoint hands out the
//! stand-in (never a real-looking token), and a harmless read
//! (`get_api_domain_ip`, sent with no token) comes back from WeChat with errcode 0.
//! The gate's own refusals (its 94xxx/95xxx errcodes) are told plainly.

use super::report::{Check, Redactor, Report, Status};
use super::{explain_failure, ApiBase, UsageError};
use crate::client::Client;
use gate::api::refusal::Refusal;
use gate::api::STAND_IN_TOKEN;
use gate::token::wechat_api::ApiFailure;
use serde_json::{json, Value};

/// The token endpoints the gate answers itself: OA and Mini Program, then WeCom.
const TOKEN_PATHS: [&str; 2] = [
    "/cgi-bin/token?grant_type=client_credential",
    "/cgi-bin/gettoken",
];

/// The harmless read: WeChat's API addresses, no side effect, every platform.
const READ_PATH: &str = "/cgi-bin/get_api_domain_ip";

/// Runs both checks against the gate at `url` (the instance's `path` included).
pub fn run(http: &Client, url: &str) -> Result<Report, UsageError> {
    let base = ApiBase::parse(url).map_err(|e| UsageError(e.replace("--api", "--gate-api")))?;
    let mut redactor = Redactor::default();
    let token = token_check(http, &base, &mut redactor);
    let read = read_check(http, &base);
    let checks = [token, read]
        .into_iter()
        .map(|mut c| {
            c.summary = redactor.clean(&c.summary);
            c.advice = c.advice.iter().map(|a| redactor.clean(a)).collect();
            c.data =
                serde_json::from_str(&redactor.clean(&c.data.to_string())).unwrap_or(Value::Null);
            c
        })
        .collect();
    Ok(Report {
        appid: "(the gate's)".into(),
        api: base.base,
        checks,
    })
}

/// The gate's own refusal in a reply: its status, errcode and errmsg.
fn refusal(status: u16, body: &Value) -> Option<(i64, String)> {
    let code = body.get("errcode")?.as_i64()?;
    let errmsg = body.get("errmsg")?.as_str()?;
    (status != 200 && errmsg.starts_with("wechat-gate:")).then(|| (code, errmsg.to_string()))
}

/// What to do about the gate's refusal `code` (docs/api-role.md, "The gate's own refusals").
fn refusal_advice(code: i64) -> &'static str {
    let Some(refusal) = Refusal::of_errcode(code) else {
        return "see the gate's log (wasm component)";
    };
    // Exhaustive: a refusal the gate adds must be given its advice here.
    match refusal {
        Refusal::NotACaller => "this host's address is not in the instance's `callers`: add it (as the gate sees it, after any load balancer) or call from a host that is",
        Refusal::BadPath => "the gate will not send this path to WeChat: check the URL (the instance's `path`, then WeChat's path)",
        Refusal::NoSuchEndpoint => "no such endpoint of the gate's under this path",
        Refusal::TooLarge => "the body is over the instance's max_body_bytes",
        Refusal::Unreachable => "the gate reached none of its upstreams: check the proxy's egress to WeChat's API (doctor --appid … --egress shows the addresses)",
        Refusal::NoToken => "the gate has no access token: the errmsg above names WeChat's errcode and what to do (40164: add the proxy's egress IP to the IP whitelist; 89503: the admin must confirm the IP; 40125/40013: the AppSecret or AppID)",
        Refusal::TimedOut => "WeChat did not answer in the instance's timeout_ms; the call was not repeated",
    }
}

/// A failed check for the gate's refusal `code` (`errmsg` says why).
fn refused(name: &'static str, what: &str, status: u16, code: i64, errmsg: &str) -> Check {
    Check::new(
        name,
        Status::Fail,
        format!("{what}: the gate refused it: HTTP {status}, errcode {code}: {errmsg}"),
    )
    .advise(refusal_advice(code))
    .data(json!({"status": status, "errcode": code, "errmsg": errmsg}))
}

/// The reply's body as JSON, or a failed check that says what came instead.
fn json_reply(
    name: &'static str,
    what: &str,
    reply: Result<crate::client::Reply, String>,
) -> Result<(u16, Value), Box<Check>> {
    let reply = reply.map_err(|why| {
        Box::new(
            Check::new(name, Status::Fail, format!("{what}: no reply: {why}")).advise(
                "check the URL: the API-role listener is internal (loopback in `make run`)",
            ),
        )
    })?;
    match serde_json::from_slice::<Value>(&reply.body) {
        Ok(v) if v.is_object() => Ok((reply.status, v)),
        _ => {
            let summary = format!("{what}: HTTP {}, not JSON: is an API-role gate (`\"role\": \"api\"`) at this URL, with its `path`?", reply.status);
            Err(Box::new(Check::new(name, Status::Fail, summary)))
        }
    }
}

fn token_check(http: &Client, base: &ApiBase, redactor: &mut Redactor) -> Check {
    const NAME: &str = "gate_api_token";
    let mut last = None;
    for path in TOKEN_PATHS {
        let what = path.split('?').next().unwrap_or(path);
        let (status, body) = match json_reply(NAME, what, http.get(&base.url(path))) {
            Ok(r) => r,
            Err(check) => return *check,
        };
        if let Some((code, errmsg)) = refusal(status, &body) {
            return refused(NAME, what, status, code, &errmsg);
        }
        match body.get("access_token").and_then(Value::as_str) {
            Some(STAND_IN_TOKEN) => {
                let summary = format!(
                    "{what}: the gate hands out its stand-in token (WeChat's is never seen here)"
                );
                return Check::new(NAME, Status::Pass, summary)
                    .data(json!({"endpoint": what, "status": status}));
            }
            Some(other) => {
                redactor.add(other);
                return Check::new(
                    NAME,
                    Status::Fail,
                    format!("{what}: a token that is not the gate's stand-in came back: this URL reaches WeChat (or a token server), not an API-role gate"),
                )
                .advise("point --gate-api (and the backend's SDK) at the gate's API listener and the instance's `path`; if a real token was handed out, treat it as leaked");
            }
            // Not a token path on this platform (WeCom answers gettoken): the next one.
            None => last = Some((what, status, body)),
        }
    }
    let (what, status, body) = last.unwrap_or(("token", 0, Value::Null));
    Check::new(
        NAME,
        Status::Fail,
        format!("{what}: HTTP {status}, no stand-in token: {body}"),
    )
    .advise("is this an API-role gate (`\"role\": \"api\"`), and the URL its `path`?")
}

fn read_check(http: &Client, base: &ApiBase) -> Check {
    const NAME: &str = "gate_api_call";
    let what = "get_api_domain_ip (no token sent)";
    let (status, body) = match json_reply(NAME, what, http.get(&base.url(READ_PATH))) {
        Ok(r) => r,
        Err(check) => return *check,
    };
    if let Some((code, errmsg)) = refusal(status, &body) {
        return refused(NAME, what, status, code, &errmsg);
    }
    let code = body.get("errcode").and_then(Value::as_i64).unwrap_or(0);
    if status == 200 && code == 0 {
        let ips = body
            .get("ip_list")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        return Check::new(
            NAME,
            Status::Pass,
            format!("{what}: WeChat answered through the gate, errcode 0 ({ips} API addresses)"),
        )
        .data(json!({"status": status, "errcode": 0, "ip_list": ips}));
    }
    let message = body
        .get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let failure = ApiFailure::Errcode {
        code,
        message: message.clone(),
    };
    let check = Check::new(NAME, Status::Fail, "");
    explain_failure(check, &failure, &format!("{what}: HTTP {status}, WeChat's answer"))
        .advise("WeChat refused the gate's call: the gate holds a token, but this account may not call this API")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_of_the_gates_has_its_own_advice() {
        let fallback = refusal_advice(0);
        let mut codes: Vec<i64> = Refusal::all().map(|r| r.errcode()).collect();
        for code in &codes {
            assert_ne!(refusal_advice(*code), fallback, "{code}");
        }
        codes.dedup();
        assert_eq!(codes.len(), Refusal::all().count());
        assert!(refusal_advice(94030).contains("callers"));
    }

    #[test]
    fn only_the_gates_own_errmsg_is_a_refusal() {
        let gate = json!({"errcode": 94030, "errmsg": "wechat-gate: not a caller"});
        assert_eq!(refusal(403, &gate).map(|r| r.0), Some(94030));
        let wechat = json!({"errcode": 40001, "errmsg": "invalid credential"});
        assert_eq!(refusal(200, &wechat), None);
        assert_eq!(refusal(200, &gate), None, "a 200 is WeChat's answer");
    }
}
