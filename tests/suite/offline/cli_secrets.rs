//! The CLI takes secrets from the environment only: a missing variable is a usage error
//! (exit 2) that names it, and no secret ever shows in what the CLI prints.

use crate::harness::backend::{Backend, Reply};
use crate::harness::cli::{cli as run, Ran};

const TOKEN: &str = "tok-3f9c-never-printed";
const AES_KEY: &str = "GeuKYOtmlo3LsuufAkG+oPBZOZm/L42M6eGR8KhDGgE";
const APPSECRET: &str = "appsecret-77d1-never-printed";

fn assert_usage_error_naming(out: &Ran, var: &str) {
    let all = out.text();
    assert_eq!(out.code, Some(2), "{all}");
    assert!(out.stdout.is_empty(), "{all}");
    assert!(out.stderr.contains(&format!("{var} is not set")), "{all}");
}

fn assert_no_secret(out: &Ran) {
    let all = out.text();
    for secret in [TOKEN, AES_KEY, APPSECRET] {
        assert!(!all.contains(secret), "a secret was printed: {all}");
    }
}

#[test]
fn a_missing_token_variable_is_a_usage_error_naming_it() {
    assert_usage_error_naming(&run(&["sign"], &[]), "WECHAT_TOKEN");
    assert_usage_error_naming(
        &run(
            &["sign", "--token-env", "MY_TOKEN"],
            &[("WECHAT_TOKEN", TOKEN)],
        ),
        "MY_TOKEN",
    );
    assert_usage_error_naming(
        &run(
            &["send", "handshake", "http://127.0.0.1:9/w"],
            &[("WECHAT_TOKEN", "")],
        ),
        "WECHAT_TOKEN",
    );
}

#[test]
fn a_missing_encoding_aes_key_variable_is_a_usage_error_naming_it() {
    let args = [
        "send",
        "message",
        "http://127.0.0.1:9/w",
        "--text",
        "hi",
        "--safe-mode",
        "--appid",
        "wx1",
    ];
    let out = run(&args, &[("WECHAT_TOKEN", TOKEN)]);
    assert_usage_error_naming(&out, "WECHAT_AES_KEY");
    let mut renamed = args.to_vec();
    renamed.extend(["--aes-key-env", "ACCOUNT_B_KEY"]);
    let out = run(
        &renamed,
        &[("WECHAT_TOKEN", TOKEN), ("WECHAT_AES_KEY", AES_KEY)],
    );
    assert_usage_error_naming(&out, "ACCOUNT_B_KEY");
}

#[test]
fn a_missing_appsecret_variable_is_a_usage_error_naming_it() {
    let listen = ["mock-api", "--listen", "127.0.0.1:0", "--appid", "wx1"];
    assert_usage_error_naming(&run(&listen, &[]), "WECHAT_APPSECRET");
    let mut renamed = listen.to_vec();
    renamed.extend(["--secret-env", "OTHER_SECRET"]);
    assert_usage_error_naming(
        &run(&renamed, &[("WECHAT_APPSECRET", APPSECRET)]),
        "OTHER_SECRET",
    );
}

#[test]
fn the_token_is_read_from_the_variable_named() {
    // The official vector: token AAAAA, timestamp 1714036504, nonce 1514711492.
    let expected =
        "signature=f464b24fc39322e44b38aa78f5edd27bd1441696&timestamp=1714036504&nonce=1514711492\n";
    let fixed = ["--timestamp", "1714036504", "--nonce", "1514711492"];
    let out = run(
        &[&["sign"][..], &fixed].concat(),
        &[("WECHAT_TOKEN", "AAAAA")],
    );
    assert_eq!(out.stdout, expected, "{}", out.text());
    let out = run(
        &[&["sign", "--token-env", "TOKEN_B"][..], &fixed].concat(),
        &[("TOKEN_B", "AAAAA"), ("WECHAT_TOKEN", "other")],
    );
    assert_eq!(out.stdout, expected, "{}", out.text());
}

/// A callback endpoint that echoes `echostr` and answers anything else `success`.
fn endpoint() -> Backend {
    Backend::replying(|r| {
        let echostr = r
            .url
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("echostr="));
        echostr.map_or_else(Reply::success, Reply::ok)
    })
}

#[test]
fn no_secret_appears_in_what_the_cli_prints() {
    let endpoint = endpoint();
    let url = format!("{}/wechat", endpoint.url());
    let env = [("WECHAT_TOKEN", TOKEN), ("WECHAT_AES_KEY", AES_KEY)];
    let runs = [
        run(&["sign", "--echostr", "e"], &env),
        run(&["send", "handshake", &url], &env),
        run(&["send", "message", &url, "--text", "hi"], &env),
        run(
            &[
                "send",
                "message",
                &url,
                "--text",
                "hi",
                "--safe-mode",
                "--appid",
                "wx1",
            ],
            &env,
        ),
    ];
    for out in &runs {
        assert_eq!(out.code, Some(0), "{}", out.text());
        assert_no_secret(out);
    }
    assert_eq!(endpoint.records().len(), 3, "three requests sent");

    // A key that is not an EncodingAESKey is refused without echoing it.
    let bad_key = "not-a-key-but-still-secret";
    let out = run(
        &[
            "send",
            "message",
            &url,
            "--text",
            "hi",
            "--safe-mode",
            "--appid",
            "wx1",
        ],
        &[("WECHAT_TOKEN", TOKEN), ("WECHAT_AES_KEY", bad_key)],
    );
    assert_eq!(out.code, Some(2), "{}", out.text());
    assert!(
        out.text().contains("WECHAT_AES_KEY must be 43 characters"),
        "{}",
        out.text()
    );
    assert!(!out.text().contains(bad_key));
}
