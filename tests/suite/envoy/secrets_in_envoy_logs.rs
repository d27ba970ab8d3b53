//! The AppSecret (WeCom: the corpsecret) and the access token never reach Envoy's log
//! at the levels an operator runs in production, on any platform, while the live list
//! is fetched and refreshed. WeChat wants some of them in the URL (`getcallbackip`'s
//! `access_token`, WeCom's `gettoken?corpsecret=`, the classic `token?secret=`), and
//! Envoy's `router` component prints the URL of every call the gate dispatches at
//! `debug`: measured, and checked here, so the README's warning stays true.

use crate::harness::backend::Backend;
use crate::harness::config::{EnvoyConfig, Gate};
use crate::harness::envoy::Envoy;
use crate::harness::mock_api::{token_of, MockApi};
use crate::harness::requests::TOKEN;
use crate::harness::safe_mode::AES_KEY;
use crate::harness::wait_until;
use serde_json::json;
use std::time::Duration;

/// One account per platform, each with its own mock-api.
struct Account {
    platform: &'static str,
    path: &'static str,
    /// The account's `appid` (Open Platform: the component's).
    appid: &'static str,
    /// Whose credentials fetch the list (Open Platform: an Official Account's).
    api_appid: &'static str,
    secret_env: &'static str,
    secret: &'static str,
    /// `source.wechat_api.token_api` (none on WeCom: `gettoken`).
    token_api: Option<&'static str>,
}

const ACCOUNTS: [Account; 4] = [
    Account {
        platform: "official_account",
        path: "/oa",
        appid: "wx0123456789abcdef",
        api_appid: "wx0123456789abcdef",
        secret_env: "OA_APPSECRET",
        secret: "OaAppS3cretInLogs0001",
        // The classic token API carries the AppSecret in its URL.
        token_api: Some("classic"),
    },
    Account {
        platform: "mini_program",
        path: "/mini",
        appid: "wx4444444444444444",
        api_appid: "wx4444444444444444",
        secret_env: "MINI_APPSECRET",
        secret: "MiniAppS3cretInLogs02",
        token_api: Some("stable"),
    },
    Account {
        platform: "open_platform",
        path: "/open/$APPID$/cb",
        appid: "wx5555555555555555",
        api_appid: "wx3333333333333333",
        secret_env: "OPEN_APPSECRET",
        secret: "OpenAppS3cretInLogs03",
        token_api: Some("stable"),
    },
    Account {
        platform: "wecom",
        path: "/wecom",
        appid: "ww5afe0e2e0000c0de",
        api_appid: "ww5afe0e2e0000c0de",
        secret_env: "WECOM_CORPSECRET",
        secret: "CorpS3cretInLogs00004",
        token_api: None,
    },
];

impl Account {
    fn cluster(&self) -> String {
        format!("api_{}", self.platform)
    }

    fn gate(&self) -> Gate {
        let mut api = json!({
            "secret": {"env": self.secret_env},
            "refresh_seconds": 1,
            "upstreams": [{"cluster": self.cluster(), "authority": "api.weixin.qq.com"}]
        });
        if let Some(t) = self.token_api {
            api["token_api"] = json!(t);
        }
        if self.api_appid != self.appid {
            api["appid"] = json!(self.api_appid);
        }
        Gate::new(
            &format!("gate_{}", self.platform),
            json!({
                "platform": self.platform, "path": self.path, "appid": self.appid,
                "token": TOKEN, "safe_mode": {"encoding_aes_key": AES_KEY},
                "source": {"wechat_api": api}
            }),
        )
    }

    /// The access token mock-api has issued to the gate (the current one).
    fn token(&self, api: &MockApi) -> String {
        let reply = if self.platform == "wecom" {
            api.get(&format!(
                "/cgi-bin/gettoken?corpid={}&corpsecret={}",
                self.api_appid, self.secret
            ))
        } else {
            api.stable_token(self.api_appid, self.secret, false)
        };
        token_of(&reply)
    }
}

/// Envoy at `levels` with every platform's live list refreshed at least twice (so
/// each token has been in a `getcallbackip` URL twice); the log, and each account's
/// AppSecret and access token.
fn run_every_platform(
    levels: [&'static str; 2],
) -> (String, Vec<(&'static str, &'static str, String)>) {
    let apis: Vec<MockApi> = ACCOUNTS
        .iter()
        .map(|a| {
            MockApi::start(
                a.secret,
                &["--appid", a.api_appid, "--callback-ip", "127.0.0.2"],
            )
        })
        .collect();
    let backend = Backend::start();
    let mut config = EnvoyConfig::new(backend.port).log_levels(levels[0], levels[1]);
    for (a, api) in ACCOUNTS.iter().zip(&apis) {
        config = config
            .gate(a.gate())
            .vm_env(a.secret_env, a.secret)
            .cluster(&a.cluster(), api.port);
    }
    let envoy: Envoy = config.start();
    for (a, api) in ACCOUNTS.iter().zip(&apis) {
        assert!(
            wait_until(Duration::from_secs(15), || api.count("getcallbackip") >= 2).is_some(),
            "{}: the list was not refreshed: {}\n{}",
            a.platform,
            api.calls(),
            envoy.log_text()
        );
    }
    let secrets = ACCOUNTS
        .iter()
        .zip(&apis)
        .map(|(a, api)| (a.platform, a.secret, a.token(api)))
        .collect();
    (envoy.log_text(), secrets)
}

#[test]
fn at_info_no_secret_or_access_token_reaches_envoys_log_on_any_platform() {
    // `info` for Envoy, the gate's own lines at `debug`.
    let (log, secrets) = run_every_platform(["info", "wasm:debug"]);
    for (platform, secret, token) in &secrets {
        assert!(
            !log.contains(secret),
            "{platform}: the secret is in the log"
        );
        assert!(
            !log.contains(token.as_str()),
            "{platform}: the access token is in the log"
        );
    }
}

#[test]
fn at_debug_envoys_router_prints_the_urls_the_gate_dispatches() {
    // What the README and the shipped configs warn about, measured: the `router`
    // component at `debug` prints every dispatched URL (and its `:path` header), so the
    // access token of every platform, and the secret where WeChat wants it in the URL
    // (the classic token API, WeCom's gettoken). stable_token's POST body is not
    // printed, even at trace.
    let (log, secrets) = run_every_platform(["info", "router:debug,wasm:debug"]);
    for (platform, secret, token) in &secrets {
        let in_url = matches!(*platform, "official_account" | "wecom");
        assert_eq!(log.contains(secret), in_url, "{platform}: the secret");
        assert!(log.contains(token.as_str()), "{platform}: the access token");
        let lines = log
            .lines()
            .filter(|l| l.contains(token.as_str()) && l.contains("][debug][router]"))
            .count();
        assert!(lines >= 2, "{platform}: the router's lines print the token");
    }
}

#[test]
fn the_shipped_configs_warn_against_the_router_debug_log() {
    // What the test above measures, said where an operator sets log levels.
    for file in [
        "envoy/envoy.yaml",
        "envoy/envoy-wechat.yaml",
        "envoy/istio/wasmplugin.yaml",
        "envoy/istio/api-wasmplugin.yaml",
    ] {
        let text = std::fs::read_to_string(format!("{}/{file}", crate::harness::MANIFEST_DIR))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let comments: String = text
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for needed in [
            "`router`",
            "`debug`",
            "access_token",
            "docs/deploying-envoy.md",
        ] {
            assert!(
                comments.contains(needed),
                "{file}: no comment names {needed}"
            );
        }
    }
}
