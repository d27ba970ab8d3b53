//! `wechat-gate mock-api`, WeChat's API stand-in, run as a process on a free port and
//! driven over HTTP: its endpoints, its run-time controls (faults, token rotation and
//! expiry, planted media), its call counts and the messages it received.

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
        let headers: &[(&str, &[u8])] = if body.is_empty() {
            &[]
        } else {
            &[("content-type", b"application/json")]
        };
        self.call_with(method, target, headers, body)
    }

    /// One call with these request headers.
    pub fn call_with(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let url = client::parse_url(&format!("http://127.0.0.1:{}{target}", self.port))?;
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

    /// Another party fetches a token: the current one gets 40001 from now on.
    pub fn rotate_token(&self) {
        assert_eq!(
            self.json("POST", "/__rotate_token", b""),
            json!({"ok": true})
        );
    }

    /// The current token expires now: 42001 until a new one is fetched.
    pub fn expire_token(&self) {
        assert_eq!(
            self.json("POST", "/__expire_token", b""),
            json!({"ok": true})
        );
    }

    /// Makes `token` (another mock-api's) the current one here, as WeChat's backup domain
    /// honours the tokens of its primary.
    pub fn set_token(&self, token: &str) {
        let body = json!({ "access_token": token }).to_string();
        assert_eq!(
            self.json("POST", "/__token", body.as_bytes()),
            json!({"ok": true})
        );
    }

    /// The bodies custom/send and WeCom's message/send received, in order:
    /// `[{"endpoint": "custom_send"|"wecom_message_send", "body": {…}}]`.
    pub fn messages(&self) -> Vec<Value> {
        match self.get("/__messages") {
            Value::Array(list) => list,
            other => panic!("/__messages: {other}"),
        }
    }

    /// Stores `bytes` as a media file named `filename` (served by media/get with
    /// `content_type`); its media_id.
    pub fn plant_media(&self, bytes: &[u8], filename: &str, content_type: &str) -> String {
        let target = format!("/__media?filename={filename}");
        let headers: &[(&str, &[u8])] = &[("content-type", content_type.as_bytes())];
        let r = self
            .call_with("POST", &target, headers, bytes)
            .expect("a response");
        assert_eq!(r.status, 200, "/__media: {}", r.body_text());
        media_id_of(&serde_json::from_slice(&r.body).expect("JSON"))
    }

    /// Stores `size` bytes of [`media_pattern`] (without sending them) as
    /// `application/octet-stream` media named `filename`; its media_id.
    pub fn plant_media_of_size(&self, size: usize, filename: &str) -> String {
        let reply = self.json(
            "POST",
            &format!("/__media?filename={filename}&size={size}"),
            b"",
        );
        media_id_of(&reply)
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

/// The media_id in a reply.
pub fn media_id_of(reply: &Value) -> String {
    reply["media_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no media_id in {reply}"))
        .to_string()
}

/// The bytes of media planted by size: byte i is i % 251.
pub fn media_pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// A `multipart/form-data` body with one file field `media`, as WeChat's SDKs send an
/// upload: its content type (with the boundary) and the body.
pub fn media_form(filename: &str, content_type: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----wechat-gate-test-7MA4YWxkTrZu0gW";
    let mut body = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"media\"; \
         filename=\"{filename}\"\r\ncontent-type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
