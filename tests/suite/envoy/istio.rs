//! The gate configured the way Istio's agent configures a WasmPlugin: the filter
//! delivered by ECDS (here a file subscription), named `<namespace>.<name>`, `root_id`
//! the plugin name, no `vm_id`, the environment as `key_values` (INLINE) and
//! `host_env_keys` (HOST), `failure_policy: FAIL_CLOSED`, the module fetched over
//! HTTP with its sha256, and no `allow_on_headers_stop_iteration`. Every feature
//! works there; a token and key rotation through ECDS under traffic loses nothing.

use crate::harness::backend::{Backend, RawBackend, Reply};
use crate::harness::config::publish;
use crate::harness::envoy::{wasm_path, Envoy};
use crate::harness::mock_api::MockApi;
use crate::harness::requests::{nonce, signed, text_xml};
use crate::harness::{now, scratch_dir, wait_until};
use gate::safe_mode::cipher::AesKey;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use wechat::http1::client::Response;
use wechat::wechat::{open_reply, safe_mode_push};

const APPID: &str = "wx0123456789abcdef";
const SECRET: &str = "IstioAppSecret0001";
const TOKEN_A: &str = "istio-token-a";
const TOKEN_B: &str = "istio-token-b";
const KEY_A: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const KEY_B: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";
const FILTER: &str = "default.wechat-gate";
const LISTED: &str = "127.0.0.2";

/// The module, served over HTTP as Istio's agent would fetch it.
struct ModuleServer {
    port: u16,
    _server: RawBackend,
}

impl ModuleServer {
    fn start(module: Vec<u8>) -> ModuleServer {
        let server = RawBackend::start(move |conn, request| {
            conn.write_response(200, &[], &module, request.keep_alive)
        });
        ModuleServer {
            port: server.port,
            _server: server,
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(bytes)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The gate's plugin configuration, naming the token and key variables in order.
fn plugin_config(tokens: &[&str], keys: &[&str]) -> serde_json::Value {
    let env = |names: &[&str]| -> serde_json::Value {
        let list: Vec<_> = names.iter().map(|n| json!({"env": n})).collect();
        if list.len() == 1 {
            list[0].clone()
        } else {
            json!(list)
        }
    };
    json!({
        "path": "/wechat",
        "appid": APPID,
        "token": env(tokens),
        "dedupe_seconds": 15,
        "safe_mode": {"encoding_aes_key": env(keys), "decrypt": true},
        "source": {"wechat_api": {
            "secret": {"env": "WECHAT_APPSECRET"},
            "upstreams": [{"cluster": "outbound|80||api.weixin.qq.com", "authority": "api.weixin.qq.com"}]
        }}
    })
}

/// The ECDS resource Istio's agent makes of a WasmPlugin.
fn ecds(version: u32, module_port: u16, sha256: &str, config: &serde_json::Value) -> String {
    let value = config.to_string().replace('\'', "''");
    format!(
        r#"version_info: "{version}"
resources:
- "@type": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
  name: {FILTER}
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: {FILTER}
      root_id: wechat_gate
      failure_policy: FAIL_CLOSED
      vm_config:
        runtime: envoy.wasm.runtime.v8
        code:
          remote:
            http_uri: {{ uri: "http://127.0.0.1:{module_port}/plugin.wasm", cluster: wasm_server, timeout: 10s }}
            sha256: "{sha256}"
        environment_variables:
          # INLINE (key_values) and HOST (host_env_keys), as Istio's vmConfig.env maps
          # them. Here the AppSecret is INLINE only to show that path works: INLINE
          # values show in /config_dump, so a real deployment reads secrets from HOST.
          key_values: {{ WECHAT_APPSECRET: "{SECRET}" }}
          host_env_keys: [WECHAT_TOKEN_A, WECHAT_TOKEN_B, WECHAT_AES_KEY_A, WECHAT_AES_KEY_B]
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: '{value}'
"#
    )
}

fn bootstrap(ecds_path: &Path, backend: u16, module: u16, api: u16) -> String {
    let cluster = |name: &str, port: u16| {
        format!(
            r#"
  - name: "{name}"
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: "{name}"
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}] }}]"#
        )
    };
    format!(
        r#"node: {{ id: sidecar~127.0.0.1~backend.default~default.svc.cluster.local, cluster: backend.default }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound
          use_remote_address: true
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend, timeout: 4.5s }}
          http_filters:
          - name: {FILTER}
            config_discovery:
              config_source:
                path_config_source: {{ path: "{ecds}" }}
              type_urls: ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:{}{}{}
"#,
        cluster("backend", backend),
        cluster("wasm_server", module),
        cluster("outbound|80||api.weixin.qq.com", api),
        ecds = ecds_path.display(),
    )
}

/// Envoy configured as Istio's agent would, with everything it needs around it.
struct Mesh {
    envoy: Envoy,
    backend: Backend,
    api: MockApi,
    ecds_path: PathBuf,
    module: ModuleServer,
    sha256: String,
    version: std::cell::Cell<u32>,
    _dir: PathBuf,
}

impl Mesh {
    fn start(backend: Backend) -> Mesh {
        let module = std::fs::read(wasm_path()).expect("the built .wasm");
        let sha256 = sha256_hex(&module);
        let module = ModuleServer::start(module);
        let api = MockApi::start(SECRET, &["--appid", APPID, "--callback-ip", LISTED]);
        let dir = scratch_dir("istio");
        let ecds_path = dir.join("ecds.yaml");
        publish(
            &ecds_path,
            &ecds(
                1,
                module.port,
                &sha256,
                &plugin_config(&["WECHAT_TOKEN_A"], &["WECHAT_AES_KEY_A"]),
            ),
        );
        let envoy = Envoy::start(
            &bootstrap(&ecds_path, backend.port, module.port, api.port),
            2,
            &[
                ("WECHAT_TOKEN_A", TOKEN_A),
                ("WECHAT_TOKEN_B", TOKEN_B),
                ("WECHAT_AES_KEY_A", KEY_A),
                ("WECHAT_AES_KEY_B", KEY_B),
            ],
        );
        let mesh = Mesh {
            envoy,
            backend,
            api,
            ecds_path,
            module,
            sha256,
            version: std::cell::Cell::new(1),
            _dir: dir,
        };
        // The live list loads from mock-api through the ServiceEntry's cluster.
        let loaded = wait_until(Duration::from_secs(10), || {
            mesh.handshake(TOKEN_A).status == 200
        });
        assert!(loaded.is_some(), "{}", mesh.envoy.log_text());
        mesh
    }

    fn handshake(&self, token: &str) -> Response {
        let q = signed(token, now(), &nonce(), &[("echostr", "mesh")]);
        self.envoy
            .send("GET", &format!("/wechat?{q}"), &[], b"", LISTED)
    }

    /// Publishes a new plugin configuration (naming the variables of `tokens` and
    /// `keys`) and waits until Envoy has taken it and the gate answers a handshake
    /// signed with `signer`, the token it now trusts first.
    fn reconfigure(&self, tokens: &[&str], keys: &[&str], signer: &str) {
        let reloads = || self.envoy.ecds_reloads();
        let before = reloads();
        let v = self.version.get() + 1;
        self.version.set(v);
        publish(
            &self.ecds_path,
            &ecds(
                v,
                self.module.port,
                &self.sha256,
                &plugin_config(tokens, keys),
            ),
        );
        assert!(
            wait_until(Duration::from_secs(10), || reloads() > before).is_some(),
            "Envoy did not take ECDS version {v}:\n{}",
            self.envoy.log_text()
        );
        assert!(
            wait_until(Duration::from_secs(10), || self.handshake(signer).status
                == 200)
            .is_some(),
            "ECDS version {v} is not in force:\n{}",
            self.envoy.log_text()
        );
    }
}

/// A safe-mode push of `message` signed with `token` and encrypted with `key`; the
/// answer, and the reply opened with them (as WeChat would) if it was sealed.
fn safe_push(envoy: &Envoy, token: &str, key: &str, message: &str) -> (Response, Option<String>) {
    let aes = AesKey::from_encoding_aes_key(key).expect("key");
    let (ts, n) = (now().to_string(), nonce());
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random).expect("random");
    let push = safe_mode_push(
        &aes, APPID, token, &ts, &n, "gh_mesh", message, false, &random,
    );
    let q = signed(
        token,
        ts.parse().unwrap_or(0),
        &n,
        &[
            ("encrypt_type", "aes"),
            ("msg_signature", &push.msg_signature),
        ],
    );
    let r = envoy.send(
        "POST",
        &format!("/wechat?{q}"),
        &[("content-type", b"text/xml")],
        push.body.as_bytes(),
        LISTED,
    );
    let opened = open_reply(&r.body, &aes, APPID, token, &ts, &n)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    (r, opened)
}

#[test]
fn configured_as_istio_configures_a_wasm_plugin_every_feature_works() {
    let mesh = Mesh::start(Backend::start());
    let envoy = &mesh.envoy;
    // A verified safe-mode push reaches the backend decrypted; a forged one does not.
    let message = text_xml("o_mesh", "hello mesh", 700);
    let (r, _) = safe_push(envoy, TOKEN_A, KEY_A, &message);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    let (r, _) = safe_push(envoy, "forged", KEY_A, &text_xml("o_mesh", "x", 701));
    assert_eq!(r.status, 401);
    // WeChat's retry (a new query, the same message) is answered without the backend.
    let (r, _) = safe_push(envoy, TOKEN_A, KEY_A, &message);
    assert_eq!(r.body_text(), "success");
    let bodies: Vec<String> = mesh
        .backend
        .records()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(bodies, [message]);
    assert_eq!(envoy.counter("wechat_gate.deduplicated"), 1);
    // An unlisted source is refused: the live list came through the mesh's cluster.
    let q = signed(TOKEN_A, now(), &nonce(), &[("echostr", "x")]);
    assert_eq!(
        envoy
            .send("GET", &format!("/wechat?{q}"), &[], b"", "127.0.0.3")
            .status,
        403
    );
    assert_eq!(mesh.api.count("getcallbackip"), 1);
    assert!(envoy
        .log_text()
        .contains(&format!("wasm log {FILTER} wechat_gate")));
}

#[test]
fn a_token_and_key_rotation_through_ecds_under_traffic_loses_nothing() {
    let mesh = Mesh::start(Backend::start());
    let stop = AtomicBool::new(false);
    let signer = std::sync::Mutex::new((TOKEN_A, KEY_A));
    let sent = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let (token, key) = *signer.lock().expect("signer");
                let (r, _) = safe_push(
                    &mesh.envoy,
                    token,
                    key,
                    &text_xml("o_rot", "flowing", 10_000 + i),
                );
                sent.fetch_add(1, Ordering::SeqCst);
                if (r.status, r.body_text().as_str()) != (200, "success") {
                    failures.lock().expect("failures").push(format!(
                        "{token}: {} {}",
                        r.status,
                        r.body_text()
                    ));
                }
                i += 1;
            }
        });
        let at_least = |n: usize| {
            let target = sent.load(Ordering::SeqCst) + n;
            assert!(
                wait_until(Duration::from_secs(20), || sent.load(Ordering::SeqCst)
                    >= target)
                .is_some()
            );
        };
        at_least(10);
        // 1. The gate takes the new token and key beside the old ones.
        mesh.reconfigure(
            &["WECHAT_TOKEN_B", "WECHAT_TOKEN_A"],
            &["WECHAT_AES_KEY_B", "WECHAT_AES_KEY_A"],
            TOKEN_B,
        );
        at_least(10);
        // 2. The console is changed: WeChat signs and encrypts with the new ones.
        *signer.lock().expect("signer") = (TOKEN_B, KEY_B);
        at_least(10);
        // 3. The old ones are dropped.
        mesh.reconfigure(&["WECHAT_TOKEN_B"], &["WECHAT_AES_KEY_B"], TOKEN_B);
        at_least(10);
        stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(
        failures.lock().expect("failures").clone(),
        Vec::<String>::new()
    );
    let sent = sent.load(Ordering::SeqCst);
    assert_eq!(
        mesh.backend.records().len(),
        sent,
        "every push delivered once"
    );
    assert_eq!(
        mesh.envoy.counter("wechat_gate.forwarded"),
        sent as u64,
        "counters carry on"
    );
    // The live list and the tables were kept: no second fetch, the old token refused.
    assert_eq!(mesh.api.count("getcallbackip"), 1);
    let (r, _) = safe_push(&mesh.envoy, TOKEN_A, KEY_A, &text_xml("o_rot", "old", 1));
    assert_eq!(r.status, 401);
    assert_eq!(mesh.envoy.vm_failures(), Vec::<String>::new());
}

#[test]
fn while_rotating_a_reply_is_sealed_with_the_token_and_key_of_its_push() {
    const REPLY: &str = "<xml><Content><![CDATA[sealed]]></Content></xml>";
    let mesh = Mesh::start(Backend::replying(|_| Reply::ok(REPLY)));
    mesh.reconfigure(
        &["WECHAT_TOKEN_B", "WECHAT_TOKEN_A"],
        &["WECHAT_AES_KEY_B", "WECHAT_AES_KEY_A"],
        TOKEN_B,
    );
    for (i, (token, key)) in [(TOKEN_A, KEY_A), (TOKEN_B, KEY_B), (TOKEN_B, KEY_A)]
        .into_iter()
        .enumerate()
    {
        let (r, opened) = safe_push(
            &mesh.envoy,
            token,
            key,
            &text_xml("o_r", "hi", 900 + i as u64),
        );
        assert_eq!(r.status, 200, "{token}");
        assert_eq!(
            opened.as_deref(),
            Some(REPLY),
            "{token} / {key}: {}",
            r.body_text()
        );
    }
}
