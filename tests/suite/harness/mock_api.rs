//! `wechat-gate mock-api`, WeChat's API stand-in, run as a process on a free port and
//! driven over HTTP: its endpoints, its run-time controls, its call counts.

use super::process::Listening;
use serde_json::{json, Value};
use std::process::Command;
use wechat::http1::client::{self, Response};

/// A running mock-api, killed (and waited for) when dropped, even by a failed assertion.
pub struct MockApi {
    pub port: u16,
    process: Listening,
}

impl MockApi {
    /// Starts mock-api with the AppSecret `secret` (given in `WECHAT_APPSECRET`) and `args`.
    pub fn start(secret: &str, args: &[&str]) -> MockApi {
        let process = Listening::spawn(
            Command::new(env!("CARGO_BIN_EXE_wechat-gate"))
                .args(["mock-api", "--listen", "127.0.0.1:0"])
                .args(args)
                .env("WECHAT_APPSECRET", secret),
            "mock-api: listening on http://127.0.0.1:",
        );
        MockApi {
            port: process.port,
            process,
        }
    }

    /// One call; a JSON content type when there is a body.
    pub fn call(&self, method: &str, target: &str, body: &[u8]) -> std::io::Result<Response> {
        let url = client::parse_url(&format!("http://127.0.0.1:{}{target}", self.port))?;
        let headers: &[(&str, &[u8])] = if body.is_empty() {
            &[]
        } else {
            &[("content-type", b"application/json")]
        };
        client::request(method, &url, headers, body, None)
    }

    /// A call that must get an HTTP 200 with a JSON body.
    pub fn json(&self, method: &str, target: &str, body: &[u8]) -> Value {
        let r = self.call(method, target, body).expect("a response");
        assert_eq!(r.status, 200, "{method} {target}: {}", r.body_text());
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| panic!("{target}: not JSON: {}", r.body_text()))
    }

    pub fn get(&self, target: &str) -> Value {
        self.json("GET", target, b"")
    }

    pub fn stable_token(&self, appid: &str, secret: &str, force_refresh: bool) -> Value {
        let body = json!({
            "grant_type": "client_credential",
            "appid": appid,
            "secret": secret,
            "force_refresh": force_refresh,
        });
        self.json("POST", "/cgi-bin/stable_token", body.to_string().as_bytes())
    }

    pub fn classic_token(&self, appid: &str, secret: &str) -> Value {
        self.get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}"
        ))
    }

    pub fn callback_ips(&self, token: &str) -> Value {
        self.get(&format!("/cgi-bin/getcallbackip?access_token={token}"))
    }

    /// Calls per endpoint, from `GET /__calls`.
    pub fn calls(&self) -> Value {
        self.get("/__calls")
    }

    pub fn count(&self, endpoint: &str) -> u64 {
        self.calls()[endpoint].as_u64().unwrap_or(0)
    }

    /// Replaces the callback IP list (`POST /__callback_ips`).
    pub fn set_callback_ips(&self, ips: &[&str]) {
        self.json("POST", "/__callback_ips", json!(ips).to_string().as_bytes());
    }

    /// Replaces the faults (`POST /__faults`; `{}` clears them).
    pub fn set_faults(&self, faults: Value) {
        self.json("POST", "/__faults", faults.to_string().as_bytes());
    }

    /// Stops the server and returns all it printed on stdout.
    pub fn finish(self) -> String {
        self.process.finish()
    }
}

/// The access token in a token reply; mock-api's start with `MOCK_`.
pub fn token_of(reply: &Value) -> String {
    let token = reply["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {reply}"));
    assert!(token.starts_with("MOCK_") && token.len() > 40, "{token}");
    token.to_string()
}
