//! The API role (`gate::api`): any method, `:path` and caller through `route`, then any
//! sequence of replies through the call. A call goes only to a configured upstream and
//! only to a plain WeChat path (no `..`, no empty segment, no `%`), with exactly one
//! `access_token` (the gate's) or the gate's `appid` and `secret` (a user's OAuth
//! calls: the caller's query as it is); a refused token is
//! retried at most once; a call is failed over only while upstreams are left; the
//! token never shows in `Debug`.
#![no_main]

use arbitrary::Arbitrary;
use gate::api::call::{Call, Next, Reply};
use gate::api::route::{is_path_byte, route, Kind, Route};
use gate::config::{parse_plugin, Plugin};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};

const TOKEN: &str = "REAL_TOKEN_abc";
const SECRET: &str = "app-secret-123";

#[derive(Arbitrary, Debug)]
struct Input {
    method: String,
    path: Vec<u8>,
    caller: bool,
    wecom: bool,
    replies: Vec<(Option<u32>, bool, Vec<u8>)>,
}

fn config(wecom: bool) -> gate::config::ApiConfig {
    let json = serde_json::json!({
        "role": "api", "path": "/wechat-api/mp", "appid": "wx0123456789abcdef",
        "platform": if wecom { "wecom" } else { "official_account" },
        "wechat_api": {"secret": SECRET, "upstreams": [
            {"cluster": "a", "authority": "api.weixin.qq.com"},
            {"cluster": "b", "authority": "api2.weixin.qq.com"}]},
        "callers": ["127.0.0.1"]
    });
    match parse_plugin(json.to_string().as_bytes(), &|_| None) {
        Ok(Plugin::Api(c)) => c,
        other => panic!("the fuzz config is refused: {other:?}"),
    }
}

fuzz_target!(|input: Input| {
    let cfg = config(input.wecom);
    let caller = input
        .caller
        .then_some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .or(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    let Route::Call(target) = route(&cfg, &input.method, &input.path, caller) else {
        return;
    };
    assert!(input.caller, "a call for an address outside callers");
    assert!(target.path.starts_with('/') && target.path.bytes().all(is_path_byte));
    assert!(target
        .path
        .split('/')
        .skip(1)
        .all(|s| !s.is_empty() && s != "." && s != ".."));
    let kind = target.kind;
    let caller_query = target.query.clone();
    let mut call = Call::new(target, None);
    let (mut retried, mut failed_over) = (0, 0);
    for (status, json, body) in input.replies {
        let Some(out) = call.request(&cfg.api, Some(TOKEN)) else {
            break;
        };
        assert!(out.cluster == "a" || out.cluster == "b");
        let path = out.header(":path").unwrap_or_default();
        let (_, query) = path.split_once('?').unwrap_or((path, ""));
        let keys: Vec<&str> = query
            .split('&')
            .map(|p| p.split('=').next().unwrap_or(p))
            .collect();
        match kind {
            // A user's own token: sent as the caller wrote it.
            Kind::Caller => assert_eq!(query, caller_query),
            Kind::Secret => {
                assert!(query.starts_with("appid=wx0123456789abcdef&secret=app%2Dsecret%2D123"));
                assert_eq!(keys.iter().filter(|k| **k == "secret").count(), 1);
                assert!(!keys.contains(&"access_token"));
            }
            _ => {
                assert!(query.starts_with("access_token=REAL%5FTOKEN%5Fabc"));
                assert_eq!(keys.iter().filter(|k| **k == "access_token").count(), 1);
            }
        }
        assert!(!format!("{call:?}{out:?}").contains(TOKEN));
        let reply = Reply {
            status,
            content_type: Some(
                if json {
                    "application/json"
                } else {
                    "text/plain"
                }
                .into(),
            ),
            disposition: None,
            body,
        };
        match call.on_reply(&cfg.api, &reply, 1_700_000_000) {
            Next::Answer { answer, .. } => {
                assert!((100..600).contains(&answer.status) || status == Some(answer.status));
                return;
            }
            Next::NewToken => retried += 1,
            Next::FailOver => failed_over += 1,
        }
        assert!(retried <= 1 && failed_over <= 1);
    }
});
