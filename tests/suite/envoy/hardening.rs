//! What an operator can get wrong is refused loudly, and secrets stay secret: a bad
//! configuration stops Envoy naming the field; a token from the environment never
//! shows in the admin API or the log.

use crate::harness::backend::Backend;
use crate::harness::envoy::{gate_config, gated};
use crate::harness::now;
use crate::harness::requests::{signed, LISTED, UNLISTED};
use serde_json::json;

#[test]
fn bad_configuration_makes_envoy_refuse_to_start_and_names_the_field() {
    let backend = Backend::start();
    for (config, field) in [
        (
            json!({"token": "t", "source": {"allow": ["127.0.0.1"]}, "tokne": 1}),
            "tokne",
        ),
        (
            json!({"token": "t", "source": {"allow": ["127.0.0.1", "10.0.0.0/33"]}}),
            "source.allow[1]",
        ),
        (
            json!({"token": {"env": "WECHAT_GATE_UNSET_VAR"}, "source": {"allow": ["127.0.0.1"]}}),
            "token.env",
        ),
        (json!({"token": "t"}), "source.allow"),
        (
            json!({"token": "t", "source": {"mode": "off"}, "safe_mode": {"decrypt": true}}),
            "safe_mode",
        ),
    ] {
        let started = gated(backend.port, config.clone())
            .vm_env_key("WECHAT_GATE_UNSET_VAR")
            .try_start();
        match started {
            Ok(_) => panic!("Envoy started with {config}"),
            Err(log) => {
                assert!(
                    log.starts_with("exited"),
                    "Envoy should exit, not hang: {log}"
                );
                let line = log
                    .lines()
                    .find(|l| l.contains("wechat-gate refused its configuration"))
                    .unwrap_or_else(|| panic!("no refusal line for {config}:\n{log}"));
                assert!(line.contains(field), "{field} not named in: {line}");
            }
        }
    }
}

#[test]
fn token_from_the_environment_never_shows_in_config_dump_or_logs() {
    let secret = "Tok3nFromEnv7f3a9cZ";
    let backend = Backend::start();
    let config = gate_config(json!({"token": {"env": "WECHAT_TOKEN"}}));
    let envoy = gated(backend.port, config)
        .vm_env("WECHAT_TOKEN", secret)
        .start();
    // The token is in use: its signatures pass, others fail, every path logs.
    let r = envoy.handshake(secret, "ok");
    assert_eq!((r.status, r.body_text().as_str()), (200, "ok"));
    assert_eq!(
        envoy
            .post(&signed(secret, now(), "2", &[]), "<xml/>", LISTED)
            .status,
        200
    );
    assert_eq!(
        envoy
            .post(&signed("wrong", now(), "2", &[]), "<xml/>", LISTED)
            .status,
        401
    );
    assert_eq!(
        envoy
            .post(&signed(secret, now(), "2", &[]), "<xml/>", UNLISTED)
            .status,
        403
    );
    for path in [
        "/config_dump",
        "/config_dump?include_eds",
        "/stats",
        "/clusters",
        "/listeners",
    ] {
        let text = envoy.admin_text(path);
        assert!(!text.is_empty(), "{path} answered nothing");
        assert!(!text.contains(secret), "{path} shows the token");
    }
    assert!(
        envoy.admin_text("/config_dump").contains("WECHAT_TOKEN"),
        "the dump names the variable only"
    );
    let log = envoy.log_text();
    assert!(
        log.contains("rejected signature (401)"),
        "debug logging was on"
    );
    assert!(!log.contains(secret), "the log shows the token");
}
