//! The configuration contract's `park`, field by field.

use super::*;

fn parse_str(json: &str) -> Result<Config, ConfigError> {
    parse(json.as_bytes(), &|_| None)
}

/// A minimal configuration with `extra` members.
fn with(extra: &str) -> String {
    format!(r#"{{"token": "tok", "source": {{"allow": ["127.0.0.1"]}}{extra}}}"#)
}

fn refusal(extra: &str) -> ConfigError {
    parse_str(&with(extra)).expect_err("should be refused")
}

#[test]
fn parking_is_on_by_default_with_the_documented_bounds() {
    let c = parse_str(&with("")).expect("valid");
    assert_eq!(
        c.park,
        Park {
            max_messages: 1000,
            max_seconds: 600
        }
    );
}

#[test]
fn park_fields_are_read_and_each_defaults_alone() {
    let c = parse_str(&with(r#", "park": {"max_messages": 5, "max_seconds": 30}"#)).expect("valid");
    assert_eq!((c.park.max_messages, c.park.max_seconds), (5, 30));
    let c = parse_str(&with(r#", "park": {"max_seconds": 30}"#)).expect("valid");
    assert_eq!((c.park.max_messages, c.park.max_seconds), (1000, 30));
    let c = parse_str(&with(r#", "park": {"max_messages": 7}"#)).expect("valid");
    assert_eq!((c.park.max_messages, c.park.max_seconds), (7, 600));
}

#[test]
fn zero_messages_turns_parking_off() {
    let c = parse_str(&with(r#", "park": {"max_messages": 0}"#)).expect("valid");
    assert_eq!(c.park.max_messages, 0);
}

#[test]
fn park_bounds_are_enforced_naming_the_field() {
    for (extra, field) in [
        (r#", "park": {"max_messages": 10001}"#, "park.max_messages"),
        (
            r#", "park": {"max_messages": 4294967296}"#,
            "park.max_messages",
        ),
        (r#", "park": {"max_seconds": 0}"#, "park.max_seconds"),
        (r#", "park": {"max_seconds": 86401}"#, "park.max_seconds"),
        (r#", "park": {"max_messages": -1}"#, "park.max_messages"),
        (r#", "park": {"max_seconds": "600"}"#, "park.max_seconds"),
        (r#", "park": {"max_message": 5}"#, "park"),
        (r#", "park": 5"#, "park"),
    ] {
        assert_eq!(refusal(extra).field, field, "{extra}");
    }
    let c = parse_str(&with(
        r#", "park": {"max_messages": 10000, "max_seconds": 86400}"#,
    ));
    assert!(c.is_ok(), "the bounds themselves are allowed");
}

#[test]
fn park_under_on_upstream_failure_pass_is_accepted_and_parks_nothing() {
    let c = parse_str(&with(
        r#", "on_upstream_failure": "pass", "park": {"max_messages": 5}"#,
    ))
    .expect("valid");
    assert_eq!(c.on_upstream_failure, UpstreamFailure::Pass);
    assert!(!c.parks());
    let c = parse_str(&with("")).expect("valid");
    assert!(c.parks(), "the defaults park");
    let c = parse_str(&with(r#", "park": {"max_messages": 0}"#)).expect("valid");
    assert!(!c.parks(), "max_messages 0 turns parking off");
}
