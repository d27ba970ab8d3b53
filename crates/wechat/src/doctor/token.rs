//! The access token: `stable_token` (shared with every holder, the default) or the
//! classic `token` (which invalidates every other holder's). Its errcodes are the ones
//! an operator most often meets: wrong secret or AppID, IP whitelist, admin confirmation.

use super::report::{Check, Status};
use super::{failed, CallError, Doctor};
use gate::config::TokenApi;
use gate::token::wechat_api::{
    classic_token_call, parse_token_reply, stable_token_call, wecom_token_call, AccessToken,
    ApiCall,
};

const NAME: &str = "token";

/// The token check, and the token when WeChat gave one.
pub(super) fn check(d: &Doctor) -> (Check, Option<AccessToken>) {
    let (endpoint, call) = match d.args.token_api {
        TokenApi::Stable => (
            "stable_token",
            stable_token_call(&d.appid, d.secret(), false),
        ),
        TokenApi::Classic => ("token", classic_token_call(&d.appid, d.secret())),
        TokenApi::Wecom => ("gettoken", wecom_token_call(&d.appid, d.secret())),
    };
    let reply = send(d, &call);
    let reply = match reply {
        Ok(r) => r,
        Err(why) => {
            let c = Check::new(NAME, Status::Fail, format!("{endpoint}: no reply: {why}")).advise(
                format!(
                    "check that this machine reaches {} (DNS, firewall, or HTTPS_PROXY)",
                    d.api.host
                ),
            );
            return (c, None);
        }
    };
    match parse_token_reply(Some(u32::from(reply.status)), &reply.body) {
        Ok(token) => {
            let mut c = Check::new(
                NAME,
                Status::Pass,
                format!(
                    "{endpoint}: WeChat gave an access token (expires in {} s)",
                    token.expires_in
                ),
            )
            .data(serde_json::json!({
                "endpoint": endpoint,
                "expires_in": token.expires_in,
                "elapsed_ms": reply.elapsed.as_millis(),
            }));
            if d.args.token_api == TokenApi::Classic {
                c.status = Status::Warn;
                c = c.advise(
                    "the classic token API invalidates every other holder's token (the gate's \
                     too, after 5 minutes): prefer --token-api stable",
                );
            }
            (c, Some(token))
        }
        Err(failure) => (failed(NAME, endpoint, CallError::Api(failure)), None),
    }
}

fn send(d: &Doctor, call: &ApiCall) -> Result<crate::client::Reply, String> {
    let url = d.api.url(&call.path);
    match &call.body {
        Some(body) => {
            let json: serde_json::Value =
                serde_json::from_slice(body).map_err(|_| "bad request body".to_string())?;
            d.http.post_json(&url, &json)
        }
        None => d.http.get(&url),
    }
}
