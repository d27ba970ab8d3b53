//! The route a request takes: the prefix on a segment boundary, callers checked
//! first, paths WeChat would not see refused, the stand-in, the gate's own endpoint,
//! and what each call needs (token, secret, ticket).

use super::{config, config_on};
use crate::api::refusal::Refusal;
use crate::api::route::{route, Kind, Route, Target};
use crate::api::ticket::TicketType;
use crate::config::ApiConfig;
use std::net::IpAddr;

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("an address"))
}

/// The route for `method path` from a caller.
fn of(c: &ApiConfig, method: &str, path: &str) -> Route {
    route(c, method, path.as_bytes(), ip("10.1.2.3"))
}

fn call(c: &ApiConfig, method: &str, path: &str) -> Target {
    match of(c, method, path) {
        Route::Call(t) => t,
        other => panic!("{method} {path}: {other:?}"),
    }
}

#[test]
fn the_prefix_holds_only_on_a_segment_boundary() {
    let c = config();
    for path in [
        "/wechat-api/mpx",
        "/wechat-api/mpx/cgi-bin/token",
        "/wechat-api",
        "/other",
        "/",
    ] {
        assert_eq!(of(&c, "GET", path), Route::NotMine, "{path}");
    }
    // Not ours even for a stranger: other routes are not this instance's business.
    assert_eq!(
        route(&c, "GET", b"/wechat-api/mpx", ip("192.0.2.1")),
        Route::NotMine
    );
    let t = call(&c, "GET", "/wechat-api/mp/cgi-bin/user/info?openid=o1");
    assert_eq!(t.path, "/cgi-bin/user/info");
    assert_eq!(t.query, "openid=o1");
    assert_eq!(t.kind, Kind::Token);
}

#[test]
fn callers_are_checked_before_anything_else() {
    let c = config();
    for path in [
        "/wechat-api/mp/cgi-bin/user/info",
        "/wechat-api/mp/../x",
        "/wechat-api/mp/cgi-bin/token",
        "/wechat-api/mp/wechat-gate/nothing",
        "/wechat-api/mp",
    ] {
        for caller in [ip("192.0.2.1"), ip("::1"), None] {
            assert_eq!(
                route(&c, "GET", path.as_bytes(), caller),
                Route::Refuse(Refusal::NotACaller),
                "{path} from {caller:?}"
            );
        }
    }
    assert!(matches!(
        route(&c, "GET", b"/wechat-api/mp/cgi-bin/x", ip("127.0.0.1")),
        Route::Call(_)
    ));
}

#[test]
fn a_path_wechat_would_not_see_as_given_is_refused() {
    let c = config();
    for rest in [
        "",
        "/",
        "/cgi-bin/..",
        "/cgi-bin/../token",
        "/cgi-bin/./user/info",
        "/cgi-bin//user/info",
        "/cgi-bin/user/info/",
        "/cgi-bin/%2e%2e/x",
        "/cgi-bin%2fuser",
        "/cgi-bin\\user",
        "/cgi-bin/用户",
        "/cgi-bin/user info",
        "/cgi-bin/user;x",
    ] {
        let path = format!("/wechat-api/mp{rest}?a=1");
        assert_eq!(
            of(&c, "GET", &path),
            Route::Refuse(Refusal::BadPath),
            "{path}"
        );
    }
    let bad_query = [b"/wechat-api/mp/cgi-bin/x?a=".as_slice(), &[0xff, 0xfe]].concat();
    assert_eq!(
        route(&c, "GET", &bad_query, ip("10.0.0.1")),
        Route::Refuse(Refusal::BadPath)
    );
}

#[test]
fn token_requests_get_the_stand_in_on_the_platforms_token_api() {
    for platform in ["official_account", "mini_program"] {
        let c = config_on(platform);
        assert_eq!(
            of(
                &c,
                "GET",
                "/wechat-api/mp/cgi-bin/token?grant_type=client_credential"
            ),
            Route::StandIn
        );
        assert_eq!(
            of(&c, "POST", "/wechat-api/mp/cgi-bin/stable_token"),
            Route::StandIn
        );
        assert_eq!(
            call(&c, "GET", "/wechat-api/mp/cgi-bin/gettoken").kind,
            Kind::Token
        );
    }
    let wecom = config_on("wecom");
    assert_eq!(
        of(&wecom, "GET", "/wechat-api/mp/cgi-bin/gettoken?corpid=x"),
        Route::StandIn
    );
    for path in [
        "/wechat-api/mp/cgi-bin/token",
        "/wechat-api/mp/cgi-bin/stable_token",
    ] {
        assert_eq!(call(&wecom, "GET", path).kind, Kind::Token, "{path}");
    }
}

#[test]
fn the_stand_in_is_in_each_platforms_reply_shape() {
    use crate::api::{stand_in, STAND_IN_TOKEN};
    use crate::config::Platform;
    let body =
        |p| -> serde_json::Value { serde_json::from_slice(&stand_in(p).body).expect("json") };
    let oa = body(Platform::OfficialAccount);
    assert_eq!(
        oa,
        serde_json::json!({"access_token": STAND_IN_TOKEN, "expires_in": 7200})
    );
    let wecom = body(Platform::Wecom);
    assert_eq!(wecom["errcode"], 0);
    assert_eq!(wecom["access_token"], STAND_IN_TOKEN);
    assert_eq!(stand_in(Platform::MiniProgram).status, 200);
}

#[test]
fn jssdk_config_is_a_get_on_an_official_account_with_a_url() {
    let c = config();
    let url =
        "/wechat-api/mp/wechat-gate/jssdk-config?url=https%3A%2F%2Fexample.com%2Fa%3Fb%3D1%23top";
    assert_eq!(
        of(&c, "GET", url),
        Route::Jssdk {
            url: "https://example.com/a?b=1#top".into()
        }
    );
    assert_eq!(of(&c, "POST", url), Route::Refuse(Refusal::NoSuchEndpoint));
    for platform in ["mini_program", "wecom"] {
        assert_eq!(
            of(&config_on(platform), "GET", url),
            Route::Refuse(Refusal::NoSuchEndpoint)
        );
    }
    for missing in ["", "?url=", "?other=1"] {
        let path = format!("/wechat-api/mp/wechat-gate/jssdk-config{missing}");
        assert_eq!(
            of(&c, "GET", &path),
            Route::Refuse(Refusal::BadPath),
            "{path}"
        );
    }
    assert_eq!(
        of(&c, "GET", "/wechat-api/mp/wechat-gate/other?url=x"),
        Route::Refuse(Refusal::NoSuchEndpoint)
    );
}

#[test]
fn getticket_of_a_cached_type_is_a_ticket_call() {
    let c = config();
    let kind = |method, q: &str| {
        call(
            &c,
            method,
            &format!("/wechat-api/mp/cgi-bin/ticket/getticket{q}"),
        )
        .kind
    };
    assert_eq!(kind("GET", "?type=jsapi"), Kind::Ticket(TicketType::Jsapi));
    assert_eq!(
        kind("GET", "?access_token=x&type=wx_card"),
        Kind::Ticket(TicketType::WxCard)
    );
    assert_eq!(kind("GET", "?type=other"), Kind::Token);
    assert_eq!(kind("GET", ""), Kind::Token);
    assert_eq!(kind("POST", "?type=jsapi"), Kind::Token);
}

#[test]
fn sns_calls_take_the_secret() {
    let c = config_on("mini_program");
    for path in ["/sns/jscode2session", "/sns/oauth2/access_token"] {
        let t = call(&c, "GET", &format!("/wechat-api/mp{path}?js_code=c"));
        assert_eq!(t.kind, Kind::Secret, "{path}");
        assert_eq!(t.path, path);
    }
    assert_eq!(
        call(&c, "GET", "/wechat-api/mp/sns/jscode2session2").kind,
        Kind::Token
    );
}
