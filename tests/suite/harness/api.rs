//! The API role's rig: accounts (official account, Mini Program, WeCom), each behind an
//! api-role gate whose two upstreams (`<name>_api`, `<name>_api_dr`) are two mock-apis;
//! the route's own cluster is a [`HeadBackend`] sink that must never see a call (in hold
//! mode) or more than its headers (in stream mode: never a token, the secret or a body).
//! Plus the gate's refusals and the scan for secrets.

use super::backend::HeadBackend;
use super::config::{EnvoyConfig, Gate};
use super::envoy::Envoy;
use super::merged;
use super::mock_api::{token_of, MockApi};
use serde_json::{json, Value};
use wechat::http1::client::Response;

/// What the gate hands a caller that asks for a token (the contract's).
pub const STAND_IN: &str = "WECHAT_GATE_STAND_IN_NOT_A_WECHAT_TOKEN";
/// The callers' address (in every gate's `callers`).
pub const CALLER: &str = "127.0.0.1";
/// An address in no gate's `callers`.
pub const OUTSIDER: &str = "127.0.0.3";
/// `per_connection_buffer_limit_bytes` of the shipped API-role configs.
pub const BUFFER_LIMIT: u32 = 16 * 1024 * 1024;

/// An account the gate calls WeChat for.
#[derive(Clone, Copy)]
pub struct Account {
    /// The gate's `name` (its metrics' account) and its clusters' prefix.
    pub name: &'static str,
    pub platform: &'static str,
    /// AppID (WeCom: CorpID).
    pub appid: &'static str,
    pub secret: &'static str,
    /// The environment variable the gate reads the secret from.
    pub secret_env: &'static str,
    pub path: &'static str,
}

pub const OFFICIAL: Account = Account {
    name: "mp",
    platform: "official_account",
    appid: "wx0123456789abcdef",
    secret: "ApiS3cretOfficialAcct01",
    secret_env: "WECHAT_APPSECRET",
    path: "/wechat-api/mp",
};

pub const MINI: Account = Account {
    name: "mini",
    platform: "mini_program",
    appid: "wxfedcba9876543210",
    secret: "ApiS3cretMiniProgram002",
    secret_env: "WECHAT_MINI_APPSECRET",
    path: "/wechat-api/mini",
};

pub const WECOM: Account = Account {
    name: "corp",
    platform: "wecom",
    appid: "ww0123456789abcdef",
    secret: "ApiS3cretWeComApp000003",
    secret_env: "WECOM_APP_SECRET",
    path: "/wechat-api/corp",
};

impl Account {
    /// The gate's plugin config: both upstreams, `callers` 127.0.0.1, a 2 s timeout,
    /// with the top-level keys of `extra` set (and of `extra["wechat_api"]` in
    /// `wechat_api`).
    pub fn config(&self, extra: Value) -> Value {
        let upstreams: Vec<Value> = self
            .clusters()
            .iter()
            .map(|c| json!({"cluster": c, "authority": "api.weixin.qq.com"}))
            .collect();
        let mut api = json!({
            "secret": {"env": self.secret_env},
            "upstreams": upstreams,
            "timeout_ms": 2000
        });
        if self.platform != "wecom" {
            api = merged(api, json!({"token_api": "stable"}));
        }
        let api = merged(api, extra["wechat_api"].clone());
        let base = json!({
            "role": "api",
            "path": self.path,
            "name": self.name,
            "platform": self.platform,
            "appid": self.appid,
            "wechat_api": api,
            "callers": ["10.0.0.0/8", CALLER]
        });
        let mut rest = extra;
        if let Some(o) = rest.as_object_mut() {
            o.remove("wechat_api");
        }
        merged(base, rest)
    }

    /// The primary's and the backup's cluster names.
    pub fn clusters(&self) -> [String; 2] {
        [
            format!("{}_api", self.name),
            format!("{}_api_dr", self.name),
        ]
    }

    /// A mock-api for this account.
    pub fn mock(&self) -> MockApi {
        MockApi::start(self.secret, &["--appid", self.appid])
    }

    /// The token WeChat holds for the account now: the current one, as a stable_token
    /// call hands it back without replacing it (WeCom: gettoken). Counts one call at
    /// the mock: ask after counting.
    pub fn real_token(&self, mock: &MockApi) -> String {
        if self.platform == "wecom" {
            let reply = mock.get(&format!(
                "/cgi-bin/gettoken?corpid={}&corpsecret={}",
                self.appid, self.secret
            ));
            return token_of(&reply);
        }
        token_of(&mock.stable_token(self.appid, self.secret, false))
    }
}

/// One account's two mock-apis; the primary can be stopped.
pub struct Upstreams {
    pub primary: Option<MockApi>,
    pub backup: MockApi,
}

impl Upstreams {
    pub fn primary(&self) -> &MockApi {
        self.primary.as_ref().expect("the primary mock-api runs")
    }
}

/// A rig being built: accounts (each an api-role gate with `extra` set), other gates,
/// workers, the sink's route, log levels.
pub struct RigBuilder {
    accounts: Vec<(Account, Value)>,
    gates: Vec<Gate>,
    workers: u32,
    route_prefix: Option<&'static str>,
    log_levels: Option<[&'static str; 2]>,
}

impl RigBuilder {
    pub fn account(mut self, account: Account, extra: Value) -> Self {
        self.accounts.push((account, extra));
        self
    }

    /// Another gate in the chain before the api-role ones (a callback instance).
    pub fn gate(mut self, gate: Gate) -> Self {
        self.gates.push(gate);
        self
    }

    pub fn workers(mut self, workers: u32) -> Self {
        self.workers = workers;
        self
    }

    /// Envoy's log levels (default: the suite's, `info` and `wasm:debug`).
    pub fn log_levels(mut self, level: &'static str, components: &'static str) -> Self {
        self.log_levels = Some([level, components]);
        self
    }

    /// The route to the sink (default: the one account's path, else `/wechat-api/`).
    pub fn route_prefix(mut self, prefix: &'static str) -> Self {
        self.route_prefix = Some(prefix);
        self
    }

    /// Starts the mocks, the sink and Envoy (gates in this run's body mode).
    pub fn start(self) -> Rig {
        let sink = HeadBackend::start();
        let prefix = match (self.route_prefix, self.accounts.as_slice()) {
            (Some(p), _) => p,
            (None, [(one, _)]) => one.path,
            (None, _) => "/wechat-api/",
        };
        let mut config = EnvoyConfig::new(sink.port)
            .route_prefix(prefix)
            .buffer_limit(BUFFER_LIMIT)
            .workers(self.workers);
        if let Some([level, components]) = self.log_levels {
            config = config.log_levels(level, components);
        }
        for gate in self.gates {
            config = config.gate(gate);
        }
        let mut upstreams = Vec::new();
        for (account, extra) in &self.accounts {
            let (primary, backup) = (account.mock(), account.mock());
            let [main, dr] = account.clusters();
            config = config
                .gate(Gate::new(
                    &format!("gate_{}", account.name),
                    account.config(extra.clone()),
                ))
                .cluster(&main, primary.port)
                .cluster(&dr, backup.port)
                .vm_env(account.secret_env, account.secret);
            upstreams.push(Upstreams {
                primary: Some(primary),
                backup,
            });
        }
        Rig {
            envoy: config.start(),
            sink,
            accounts: self.accounts.iter().map(|(a, _)| *a).collect(),
            upstreams,
        }
    }
}

/// Envoy with api-role gates, their mocks and the sink.
pub struct Rig {
    pub envoy: Envoy,
    pub sink: HeadBackend,
    accounts: Vec<Account>,
    pub upstreams: Vec<Upstreams>,
}

/// A rig for `account` alone (`extra` set in its gate), one worker.
pub fn rig(account: Account, extra: Value) -> Rig {
    builder().account(account, extra).start()
}

pub fn builder() -> RigBuilder {
    RigBuilder {
        accounts: Vec::new(),
        gates: Vec::new(),
        workers: 1,
        route_prefix: None,
        log_levels: None,
    }
}

impl Rig {
    fn index(&self, account: Account) -> usize {
        self.accounts
            .iter()
            .position(|a| a.name == account.name)
            .expect("the account is in the rig")
    }

    /// `account`'s mock-apis.
    pub fn upstreams(&self, account: Account) -> &Upstreams {
        &self.upstreams[self.index(account)]
    }

    /// `account`'s primary mock-api.
    pub fn mock(&self, account: Account) -> &MockApi {
        self.upstreams(account).primary()
    }

    /// Stops `account`'s primary mock-api (its port then refuses connections).
    pub fn stop_primary(&mut self, account: Account) {
        let i = self.index(account);
        if let Some(m) = self.upstreams[i].primary.take() {
            m.finish();
        }
    }

    /// One call from `source` to `target` (the account's prefix included).
    pub fn call_from(
        &self,
        source: &str,
        method: &str,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Response {
        let headers: Vec<(&str, &[u8])> = content_type
            .map(|t| vec![("content-type", t.as_bytes())])
            .unwrap_or_default();
        self.envoy.send(method, target, &headers, body, source)
    }

    /// A GET from the caller.
    pub fn get(&self, target: &str) -> Response {
        self.call_from(CALLER, "GET", target, None, b"")
    }

    /// A POST of JSON from the caller.
    pub fn post_json(&self, target: &str, body: &Value) -> Response {
        self.call_from(
            CALLER,
            "POST",
            target,
            Some("application/json"),
            body.to_string().as_bytes(),
        )
    }

    /// What the sink saw must hold none of `secrets` (the AppSecret, real tokens) and no
    /// body; in hold mode, nothing at all. (In stream mode a call with a body sends its
    /// head there first: the caller's own request line, with whatever placeholder or
    /// stand-in `access_token` the caller put in it, never the real one.)
    pub fn assert_sink_untouched(&self, secrets: &[&str]) {
        let heads = self.sink.heads();
        if !super::config::streaming() {
            assert!(
                heads.is_empty(),
                "the route's cluster got calls: {heads:#?}"
            );
        }
        assert!(
            self.sink.bodies().is_empty(),
            "the route's cluster got bodies: {:?}",
            self.sink.bodies()
        );
        for head in &heads {
            for s in secrets {
                assert!(!head.contains(s), "a secret reached the route's cluster");
            }
        }
    }
}

/// A custom text message to `openid`.
pub fn custom_text(openid: &str, content: &str) -> Value {
    json!({"touser": openid, "msgtype": "text", "text": {"content": content}})
}

/// The response's body as JSON (panics, with the body, if it is not).
pub fn json_of(r: &Response) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| panic!("{}: not JSON: {}", r.status, r.body_text()))
}

/// The gate's own refusal: `status`, JSON `{"errcode": errcode, "errmsg": "wechat-gate: …"}`.
pub fn assert_refusal(r: &Response, status: u16, errcode: i64) {
    assert_eq!(r.status, status, "{}", r.body_text());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        r.header("content-type")
    );
    let v = json_of(r);
    assert_eq!(v["errcode"], errcode, "{v}");
    assert!(
        v["errmsg"]
            .as_str()
            .is_some_and(|m| m.starts_with("wechat-gate: ")),
        "{v}"
    );
}

/// WeChat answered (errcode absent or 0) with HTTP 200.
pub fn assert_answered(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v = json_of(r);
    assert!(
        v.get("errcode").is_none() || v["errcode"] == 0,
        "WeChat's answer was an error: {v}"
    );
    v
}

/// None of `secrets` is in `texts`, each named by its label.
pub fn assert_hidden(secrets: &[(&str, &str)], texts: &[(&str, &str)]) {
    for (what, secret) in secrets {
        assert!(!secret.is_empty());
        for (place, text) in texts {
            assert!(!text.contains(secret), "{what} found in {place}");
        }
    }
}

/// The stat `name` in `counters` (see [`Envoy::counters`]); 0 if not defined.
pub fn stat(counters: &std::collections::BTreeMap<String, u64>, name: &str) -> u64 {
    counters.get(name).copied().unwrap_or(0)
}

/// A response as text: status line, headers and body.
pub fn response_text(r: &Response) -> String {
    let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{}\n{}\n\n{}", r.status, headers.join("\n"), r.body_text())
}
