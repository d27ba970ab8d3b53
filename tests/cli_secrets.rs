//! The CLI takes secrets from the environment only: a missing variable is a usage error
//! (exit 2) that names it, and no secret ever shows in what the CLI prints.

use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;

const BIN: &str = env!("CARGO_BIN_EXE_wechat-gate");
const TOKEN: &str = "tok-3f9c-never-printed";
const AES_KEY: &str = "GeuKYOtmlo3LsuufAkG+oPBZOZm/L42M6eGR8KhDGgE";
const APPSECRET: &str = "appsecret-77d1-never-printed";

/// The CLI with a clean environment for the three secrets, plus `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("WECHAT_TOKEN")
        .env_remove("WECHAT_AES_KEY")
        .env_remove("WECHAT_APPSECRET")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run wechat-gate")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn assert_usage_error_naming(out: &Output, var: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(out.stdout.is_empty(), "{all}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{var} is not set")),
        "{all}"
    );
}

fn assert_no_secret(out: &Output) {
    let all = text(out);
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
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected,
        "{}",
        text(&out)
    );
    let out = run(
        &[&["sign", "--token-env", "TOKEN_B"][..], &fixed].concat(),
        &[("TOKEN_B", "AAAAA"), ("WECHAT_TOKEN", "other")],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected,
        "{}",
        text(&out)
    );
}

/// A callback endpoint that echoes `echostr` and answers anything else `success`.
fn endpoint() -> (String, JoinHandle<usize>, std::sync::Arc<tiny_http::Server>) {
    let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("listen"));
    let port = server.server_addr().to_ip().expect("ip").port();
    let s = server.clone();
    let thread = std::thread::spawn(move || {
        let mut served = 0;
        while let Ok(req) = s.recv() {
            let echostr = req
                .url()
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("echostr="))
                .map(str::to_string);
            let _ = req.respond(tiny_http::Response::from_string(
                echostr.unwrap_or_else(|| "success".into()),
            ));
            served += 1;
        }
        served
    });
    (format!("http://127.0.0.1:{port}/wechat"), thread, server)
}

#[test]
fn no_secret_appears_in_what_the_cli_prints() {
    let (url, thread, server) = endpoint();
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
        assert_eq!(out.status.code(), Some(0), "{}", text(out));
        assert_no_secret(out);
    }
    server.unblock();
    assert_eq!(thread.join().expect("endpoint"), 3, "three requests sent");

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
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("WECHAT_AES_KEY must be 43 characters"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(bad_key));
}
