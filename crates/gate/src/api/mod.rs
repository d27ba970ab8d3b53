//! The API role (DESIGN.md "The API role"): the gate as the account's one token
//! holder (中控). A backend calls `<path>/cgi-bin/…` with no AppSecret and no real
//! token; the gate answers token requests with a stand-in, and makes every other call
//! to WeChat itself with the real token, refreshing it once when WeChat refuses it.
//!
//! - [`route`]: what a caller's request is (not ours, refused, a stand-in, the
//!   JS-SDK signature, a call to make), from its method, path and address.
//! - [`call`]: one call's life: the request to the next upstream, WeChat's reply
//!   judged (answer, refused token, fail over, never twice).
//! - [`refusal`]: the gate's own answers, their statuses and errcodes, in one table.
//! - [`token`]: when a call may use the shared token, waits, or fetches one.
//! - [`ticket`]: the shared JS-SDK / card ticket cache and the JS-SDK signature.
//!
//! The filter carries these out (`crates/filter/src/api/`); every decision is here.

pub mod call;
pub mod refusal;
pub mod route;
#[cfg(test)]
mod tests;
pub mod ticket;
pub mod token;

/// The token handed to callers that ask for one: visibly not WeChat's, so that an
/// operator reading an SDK's log knows where it came from. The gate replaces it (or
/// whatever a caller sends) with the real token on every call.
pub const STAND_IN_TOKEN: &str = "WECHAT_GATE_STAND_IN_NOT_A_WECHAT_TOKEN";

/// What a call counts as, exactly one per call (`api_calls_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// WeChat answered, errcode 0 or none (media).
    Answered,
    /// WeChat answered with an errcode other than 0.
    Errcode,
    /// The gate refused the call (400, 403, 404, 413).
    Refused,
    /// The gate answered for WeChat (502, 503, 504).
    Unanswered,
}

/// An answer to the caller: status, headers, body, and what it counts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub outcome: Outcome,
}

impl Answer {
    /// `200 application/json` with `body`, answered by the gate for WeChat.
    pub fn json(body: Vec<u8>) -> Answer {
        Answer {
            status: 200,
            headers: vec![("content-type", JSON.to_string())],
            body,
            outcome: Outcome::Answered,
        }
    }
}

pub const JSON: &str = "application/json; charset=utf-8";

/// The answer to a token request: the stand-in, in the platform's reply shape.
pub fn stand_in(platform: crate::config::Platform) -> Answer {
    let body = match platform {
        crate::config::Platform::Wecom => serde_json::json!({
            "errcode": 0,
            "errmsg": "ok",
            "access_token": STAND_IN_TOKEN,
            "expires_in": 7200,
        }),
        _ => serde_json::json!({ "access_token": STAND_IN_TOKEN, "expires_in": 7200 }),
    };
    Answer::json(body.to_string().into_bytes())
}
