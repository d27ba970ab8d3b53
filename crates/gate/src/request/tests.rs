//! The decision on a request's head, rule by rule.

use super::*;
use crate::signature::as_str;
use crate::tables::replay::CLOCK_SLACK_SECONDS;

const TOKEN: &str = "test-token";
const NOW: i64 = 1_800_000_000;

fn config(extra: &str) -> Config {
    let json = format!(
        r#"{{"path": "/wechat", "token": "{TOKEN}", "source": {{"allow": ["127.0.0.2", "10.0.0.0/8", "2001:db8::/32"]}}{extra}}}"#
    );
    crate::config::parse(json.as_bytes(), &|_| None).expect("test config")
}

fn signed_query(token: &str, ts: i64, nonce: &str) -> String {
    let sig = request_signature(token, &ts.to_string(), nonce);
    format!("signature={}&timestamp={ts}&nonce={nonce}", as_str(&sig))
}

fn run(cfg: &Config, method: &str, path: &str, source: &str) -> Verdict {
    let allow = cfg.source.allow.clone();
    decide(
        &RequestHead {
            method: method.as_bytes(),
            path: Some(path.as_bytes()),
            source: Some(source.as_bytes()),
        },
        cfg,
        &Sources {
            allow: allow.clone(),
            live_list_ready: true,
        },
        NOW,
    )
}

fn reason(v: &Verdict) -> Option<Reason> {
    match v {
        Verdict::Reject(r) => Some(r.reason),
        _ => None,
    }
}

const LISTED: &str = "127.0.0.2:40000";

#[test]
fn signed_handshake_is_echoed() {
    let c = config("");
    let path = format!("/wechat?{}&echostr=hello", signed_query(TOKEN, NOW, "7"));
    assert_eq!(
        run(&c, "GET", &path, LISTED),
        Verdict::Echo {
            echostr: Echostr::Plain("hello".into()),
            source: SourceOutcome::Listed,
            query: Some(QueryUse {
                identity: u64::from_str_radix(
                    &as_str(&request_signature(TOKEN, &NOW.to_string(), "7"))[..16],
                    16
                )
                .expect("hex"),
                timestamp: NOW as u64,
                expires_at: NOW as u64 + 301 + CLOCK_SLACK_SECONDS,
            }),
        }
    );
}

#[test]
fn echostr_is_returned_decoded() {
    let c = config("");
    let path = format!(
        "/wechat?{}&echostr=a%2Fb%20c+d",
        signed_query(TOKEN, NOW, "7")
    );
    assert!(
        matches!(run(&c, "GET", &path, LISTED), Verdict::Echo { echostr: Echostr::Plain(e), .. } if e == "a/b c d")
    );
}

#[test]
fn signed_post_is_forwarded_with_openid() {
    let c = config("");
    let path = format!("/wechat?{}&openid=oUser_1-x", signed_query(TOKEN, NOW, "7"));
    assert_eq!(
        run(&c, "POST", &path, LISTED),
        Verdict::Forward {
            openid: Some("oUser_1-x".into()),
            source: SourceOutcome::Listed,
            safe: None,
            query: QueryUse::of(&request_signature(TOKEN, &NOW.to_string(), "7"), NOW, 300),
            authorizer: None,
        }
    );
}

#[test]
fn other_paths_pass_through() {
    let c = config("");
    for path in [
        "/",
        "/wechatx",
        "/other?signature=x",
        "/Wechat",
        "/wechat/x",
        "/x;/wechat",
    ] {
        assert_eq!(
            run(&c, "DELETE", path, "1.1.1.1:1"),
            Verdict::PassThrough,
            "{path}"
        );
    }
}

#[test]
fn look_alikes_frameworks_route_as_the_path_are_guarded_too() {
    let c = config("");
    for path in [
        "/wechat/",
        "/wechat//",
        "/wechat;jsessionid=1",
        "/wechat/;x?y=1",
    ] {
        assert_eq!(
            reason(&run(&c, "DELETE", path, "1.1.1.1:1")),
            Some(Reason::Method),
            "{path}"
        );
    }
}

#[test]
fn without_a_path_every_request_is_guarded() {
    let c = crate::config::parse(
        format!(r#"{{"token": "{TOKEN}", "source": {{"mode": "off"}}}}"#).as_bytes(),
        &|_| None,
    )
    .expect("config");
    assert_eq!(
        reason(&run(&c, "GET", "/anything", LISTED)),
        Some(Reason::Malformed)
    );
}

#[test]
fn methods_other_than_get_and_post_get_405_with_allow() {
    let c = config("");
    for m in ["PUT", "HEAD", "OPTIONS", "DELETE", "get", "CONNECT"] {
        let v = run(&c, m, "/wechat", LISTED);
        assert_eq!(reason(&v), Some(Reason::Method), "{m}");
        if let Verdict::Reject(r) = v {
            assert_eq!(r.reason.status(), 405);
            assert_eq!(r.headers(), &[("allow", "GET, POST")]);
        }
    }
}

#[test]
fn missing_or_empty_parameters_are_400() {
    let c = config("");
    let good = signed_query(TOKEN, NOW, "7");
    for path in [
        "/wechat".to_string(),
        "/wechat?timestamp=1&nonce=2".to_string(),
        "/wechat?signature=&timestamp=1&nonce=2".to_string(),
        "/wechat?signature=a&nonce=2".to_string(),
        "/wechat?signature=a&timestamp=1".to_string(),
        format!("/wechat?{good}"), // GET without echostr
        format!("/wechat?{good}&echostr="),
    ] {
        assert_eq!(
            reason(&run(&c, "GET", &path, LISTED)),
            Some(Reason::Malformed),
            "{path}"
        );
    }
}

#[test]
fn repeated_or_non_utf8_parameters_are_400() {
    let c = config("");
    let good = signed_query(TOKEN, NOW, "7");
    for path in [
        format!("/wechat?{good}&nonce=7&echostr=x"),
        format!("/wechat?{good}&echostr=%FF"),
        format!("/wechat?{good}&echostr=1&echostr=1"),
    ] {
        assert_eq!(
            reason(&run(&c, "GET", &path, LISTED)),
            Some(Reason::Malformed),
            "{path}"
        );
    }
}

#[test]
fn timestamp_that_is_not_a_number_is_400() {
    let c = config("");
    for ts in ["abc", "-5", "1e9", "99999999999999999999999", " 1"] {
        let path = format!("/wechat?signature=a&timestamp={ts}&nonce=1&echostr=x");
        assert_eq!(
            reason(&run(&c, "GET", &path, LISTED)),
            Some(Reason::Malformed),
            "{ts}"
        );
    }
}

#[test]
fn implausible_openid_is_400() {
    let c = config("");
    let path = format!("/wechat?{}&openid=a%0D%0Ab", signed_query(TOKEN, NOW, "7"));
    assert_eq!(
        reason(&run(&c, "POST", &path, LISTED)),
        Some(Reason::Malformed)
    );
}

#[test]
fn unlisted_source_is_403_before_the_signature_is_looked_at() {
    let c = config("");
    let path = format!("/wechat?{}&echostr=x", signed_query("wrong", NOW, "7"));
    assert_eq!(
        reason(&run(&c, "GET", &path, "127.0.0.3:1")),
        Some(Reason::Source)
    );
}

#[test]
fn source_address_forms_envoy_reports() {
    let c = config("");
    let path = format!("/wechat?{}&echostr=x", signed_query(TOKEN, NOW, "7"));
    for listed in [
        "127.0.0.2:1",
        "10.9.8.7:65535",
        "[2001:db8::5]:443",
        "[::ffff:127.0.0.2]:80",
        "127.0.0.2",
    ] {
        assert!(
            matches!(run(&c, "GET", &path, listed), Verdict::Echo { .. }),
            "{listed}"
        );
    }
    for unlisted in [
        "127.0.0.3:1",
        "[2001:db9::5]:443",
        "garbage",
        "",
        "127.0.0.2:99999",
        "envoy://internal",
    ] {
        assert_eq!(
            reason(&run(&c, "GET", &path, unlisted)),
            Some(Reason::Source),
            "{unlisted}"
        );
    }
}

#[test]
fn missing_source_address_is_403() {
    let c = config("");
    let allow = c.source.allow.clone();
    let path = format!("/wechat?{}&echostr=x", signed_query(TOKEN, NOW, "7"));
    let v = decide(
        &RequestHead {
            method: b"GET",
            path: Some(path.as_bytes()),
            source: None,
        },
        &c,
        &Sources {
            allow: allow.clone(),
            live_list_ready: true,
        },
        NOW,
    );
    assert_eq!(reason(&v), Some(Reason::Source));
}

#[test]
fn report_mode_lets_unlisted_sources_through_and_says_so() {
    let c = crate::config::parse(
        format!(
            r#"{{"token": "{TOKEN}", "source": {{"mode": "report", "allow": ["127.0.0.2"]}}}}"#
        )
        .as_bytes(),
        &|_| None,
    )
    .expect("config");
    let path = format!("/wechat?{}", signed_query(TOKEN, NOW, "7"));
    assert_eq!(
        run(&c, "POST", &path, "127.0.0.9:1"),
        Verdict::Forward {
            openid: None,
            source: SourceOutcome::ReportOnly,
            safe: None,
            query: QueryUse::of(&request_signature(TOKEN, &NOW.to_string(), "7"), NOW, 300),
            authorizer: None,
        }
    );
    assert!(matches!(
        run(&c, "POST", &path, LISTED),
        Verdict::Forward {
            source: SourceOutcome::Listed,
            ..
        }
    ));
}

#[test]
fn report_mode_still_checks_the_signature() {
    let c = crate::config::parse(
        format!(r#"{{"token": "{TOKEN}", "source": {{"mode": "report"}}}}"#).as_bytes(),
        &|_| None,
    )
    .expect("config");
    let path = format!("/wechat?{}", signed_query("wrong", NOW, "7"));
    assert_eq!(
        reason(&run(&c, "POST", &path, "127.0.0.9:1")),
        Some(Reason::Signature)
    );
}

#[test]
fn mode_off_skips_the_source_check() {
    let c = crate::config::parse(
        format!(r#"{{"token": "{TOKEN}", "source": {{"mode": "off"}}}}"#).as_bytes(),
        &|_| None,
    )
    .expect("config");
    let path = format!("/wechat?{}", signed_query(TOKEN, NOW, "7"));
    assert!(matches!(
        run(&c, "POST", &path, "garbage"),
        Verdict::Forward {
            source: SourceOutcome::NotChecked,
            ..
        }
    ));
}

#[test]
fn before_the_live_list_loads_deny_gives_503_and_static_entries_still_work() {
    let mut c = config("");
    let allow = c.source.allow.clone();
    let path = format!("/wechat?{}", signed_query(TOKEN, NOW, "7"));
    let run_unready = |c: &Config, source: &str| {
        decide(
            &RequestHead {
                method: b"POST",
                path: Some(path.as_bytes()),
                source: Some(source.as_bytes()),
            },
            c,
            &Sources {
                allow: allow.clone(),
                live_list_ready: false,
            },
            NOW,
        )
    };
    let v = run_unready(&c, "127.0.0.9:1");
    assert_eq!(reason(&v), Some(Reason::Unavailable));
    if let Verdict::Reject(r) = &v {
        assert_eq!(r.reason.status(), 503);
        assert_eq!(r.headers(), &[("retry-after", RETRY_AFTER_SECONDS)]);
    }
    assert!(matches!(
        run_unready(&c, LISTED),
        Verdict::Forward {
            source: SourceOutcome::Listed,
            ..
        }
    ));
    c.source.when_unavailable = WhenUnavailable::Allow;
    assert!(matches!(
        run_unready(&c, "127.0.0.9:1"),
        Verdict::Forward {
            source: SourceOutcome::Unverified,
            ..
        }
    ));
}

#[test]
fn wrong_signature_is_401() {
    let c = config("");
    let path = format!(
        "/wechat?{}&echostr=x",
        signed_query("not-the-token", NOW, "7")
    );
    assert_eq!(
        reason(&run(&c, "GET", &path, LISTED)),
        Some(Reason::Signature)
    );
    let v = run(&c, "GET", &path, LISTED);
    if let Verdict::Reject(r) = v {
        assert_eq!(r.reason.status(), 401);
    }
}

#[test]
fn uppercase_signature_is_not_accepted() {
    let c = config("");
    let sig = request_signature(TOKEN, &NOW.to_string(), "7");
    let upper = as_str(&sig).to_ascii_uppercase();
    let path = format!("/wechat?signature={upper}&timestamp={NOW}&nonce=7&echostr=x");
    assert_eq!(
        reason(&run(&c, "GET", &path, LISTED)),
        Some(Reason::Signature)
    );
}

#[test]
fn timestamp_outside_the_window_is_401_stale() {
    let c = config("");
    for ts in [NOW - 301, NOW + 301, 0] {
        let path = format!("/wechat?{}&echostr=x", signed_query(TOKEN, ts, "7"));
        let v = run(&c, "GET", &path, LISTED);
        assert_eq!(reason(&v), Some(Reason::Stale), "{ts}");
    }
    for ts in [NOW - 300, NOW + 300, NOW] {
        let path = format!("/wechat?{}&echostr=x", signed_query(TOKEN, ts, "7"));
        assert!(
            matches!(run(&c, "GET", &path, LISTED), Verdict::Echo { .. }),
            "{ts}"
        );
    }
}

fn query_use(v: &Verdict) -> Option<QueryUse> {
    match v {
        Verdict::Echo { query, .. } | Verdict::Forward { query, .. } => *query,
        _ => None,
    }
}

#[test]
fn a_verified_query_is_identified_by_its_signature_whatever_the_method_or_extras() {
    let c = config("");
    let q = signed_query(TOKEN, NOW, "7");
    let get = query_use(&run(&c, "GET", &format!("/wechat?{q}&echostr=a"), LISTED));
    let post = query_use(&run(&c, "POST", &format!("/wechat?{q}"), LISTED));
    let other = query_use(&run(&c, "POST", &format!("/wechat?{q}&openid=o2"), LISTED));
    assert!(get.is_some());
    assert_eq!(get, post, "a handshake's query cannot become a push");
    assert_eq!(post, other);
    let another_nonce = signed_query(TOKEN, NOW, "8");
    assert_ne!(
        query_use(&run(
            &c,
            "POST",
            &format!("/wechat?{another_nonce}"),
            LISTED
        )),
        post
    );
    assert_eq!(
        post.map(|u| u.expires_at),
        Some(NOW as u64 + 301 + CLOCK_SLACK_SECONDS)
    );
}

#[test]
fn with_tolerance_zero_no_query_is_remembered() {
    let c = config(r#", "timestamp_tolerance_seconds": 0"#);
    let path = format!("/wechat?{}", signed_query(TOKEN, NOW, "7"));
    let v = run(&c, "POST", &path, LISTED);
    assert!(matches!(v, Verdict::Forward { query: None, .. }), "{v:?}");
}

#[test]
fn tolerance_zero_turns_the_freshness_check_off() {
    let c = config(r#", "timestamp_tolerance_seconds": 0"#);
    let path = format!("/wechat?{}&echostr=x", signed_query(TOKEN, 1, "7"));
    assert!(matches!(
        run(&c, "GET", &path, LISTED),
        Verdict::Echo { .. }
    ));
}

#[test]
fn largest_timestamps_do_not_overflow() {
    let c = config("");
    let path = format!(
        "/wechat?{}&echostr=x",
        signed_query(TOKEN, 999_999_999_999_999_999, "7")
    );
    assert_eq!(reason(&run(&c, "GET", &path, LISTED)), Some(Reason::Stale));
}

#[test]
fn gate_headers_are_recognised_in_any_case() {
    assert!(is_gate_header(b"x-wechat-gate-verified"));
    assert!(is_gate_header(b"X-WeChat-Gate-Openid"));
    assert!(!is_gate_header(b"x-wechat-gat"));
    assert!(!is_gate_header(b"x-wechat-other"));
}

#[test]
fn gate_headers_spelled_with_underscores_are_recognised_too() {
    for name in [
        &b"x_wechat_gate_verified"[..],
        b"X_WECHAT_GATE_OPENID",
        b"x-wechat_gate-verified",
        b"x_wechat-gate_decrypted",
    ] {
        assert!(is_gate_header(name), "{}", String::from_utf8_lossy(name));
    }
    assert!(!is_gate_header(b"x_wechat_gatex"));
    assert!(!is_gate_header(b"x.wechat.gate.verified"));
    assert!(!is_gate_header(b"-wechat-gate-verified"));
}

#[test]
fn rejection_body_names_the_reason() {
    let c = config("");
    if let Verdict::Reject(r) = run(&c, "PUT", "/wechat", LISTED) {
        assert_eq!(
            r.body(),
            "wechat-gate: method: only GET and POST are accepted\n"
        );
    } else {
        panic!("expected a rejection");
    }
}

#[test]
fn a_safe_mode_push_carries_its_msg_signature_timestamp_and_nonce() {
    let c = config("");
    let path = format!(
        "/wechat?{}&encrypt_type=aes&msg_signature=abc",
        signed_query(TOKEN, NOW, "7")
    );
    match run(&c, "POST", &path, LISTED) {
        Verdict::Forward { safe: Some(s), .. } => {
            assert_eq!(s.msg_signature, "abc");
            assert_eq!(s.timestamp, NOW.to_string());
            assert_eq!(s.nonce, "7");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn encrypt_type_aes_is_read_case_insensitively() {
    let c = config("");
    let path = format!(
        "/wechat?{}&encrypt_type=AES&msg_signature=abc",
        signed_query(TOKEN, NOW, "7")
    );
    assert!(matches!(
        run(&c, "POST", &path, LISTED),
        Verdict::Forward { safe: Some(_), .. }
    ));
}

#[test]
fn a_safe_mode_push_without_msg_signature_is_400() {
    let c = config("");
    for extra in ["&encrypt_type=aes", "&encrypt_type=aes&msg_signature="] {
        let path = format!("/wechat?{}{extra}", signed_query(TOKEN, NOW, "7"));
        assert_eq!(
            reason(&run(&c, "POST", &path, LISTED)),
            Some(Reason::Malformed)
        );
    }
}

#[test]
fn safe_mode_require_refuses_plaintext_pushes_but_not_the_handshake() {
    let c = config(
        r#", "appid": "wx1", "safe_mode": {"encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "require": true}"#,
    );
    let plain = format!("/wechat?{}", signed_query(TOKEN, NOW, "7"));
    assert_eq!(
        reason(&run(&c, "POST", &plain, LISTED)),
        Some(Reason::Malformed)
    );
    let raw = format!("{plain}&encrypt_type=raw");
    assert_eq!(
        reason(&run(&c, "POST", &raw, LISTED)),
        Some(Reason::Malformed)
    );
    let aes = format!("{plain}&encrypt_type=aes&msg_signature=abc");
    assert!(matches!(
        run(&c, "POST", &aes, LISTED),
        Verdict::Forward { safe: Some(_), .. }
    ));
    let get = format!("{plain}&echostr=hi");
    assert!(matches!(run(&c, "GET", &get, LISTED), Verdict::Echo { .. }));
}
