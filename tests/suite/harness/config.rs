//! Envoy configs: the one builder (`EnvoyConfig`: gates, filters, clusters, the VM's
//! environment, workers, the shipped retries, gates delivered by ECDS), the suite's
//! account (`gate_config`), and the shipped demo config on free ports.

use super::envoy::{wasm_path, Envoy};
use super::{merged, scratch_dir, wait_until, MANIFEST_DIR};
use serde_json::json;
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The demo's default EncodingAESKey (envoy/run-demo.sh).
pub const DEMO_AES_KEY: &str = "wechatGateDemoEncodingAESKey0123456789abcde";

/// The shipped demo config (envoy/envoy.yaml) on free ports (the API role's listener
/// too: `Envoy::port` is the first, the callback listener), with the built .wasm,
/// its backend on `backend_port` and WeChat's API stand-in on `api_port`.
pub fn shipped_demo_yaml(backend_port: u16, api_port: u16) -> String {
    std::fs::read_to_string(format!("{MANIFEST_DIR}/envoy/envoy.yaml"))
        .expect("envoy/envoy.yaml")
        .replace("port_value: 9901", "port_value: 0")
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 10001", "port_value: 0")
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

/// How the suite's gates read push bodies: `WECHAT_GATE_BODY_MODE=stream` runs every
/// test with plugin configs that lack `allow_on_headers_stop_iteration` (every Envoy,
/// Istio's WasmPlugin); otherwise with it, as the shipped configs set it (hold).
pub fn streaming() -> bool {
    std::env::var("WECHAT_GATE_BODY_MODE").is_ok_and(|m| m == "stream")
}

impl Gate {
    /// A gate in this run's body mode (see [`streaming`]).
    pub fn new(name: &str, config: serde_json::Value) -> Gate {
        Gate {
            name: name.to_string(),
            config: config.to_string(),
            hold_headers: !streaming(),
        }
    }

    /// The same gate in a plugin config without `allow_on_headers_stop_iteration`.
    pub fn without_header_hold(mut self) -> Gate {
        self.hold_headers = false;
        self
    }

    /// The same gate in a plugin config with `allow_on_headers_stop_iteration`.
    pub fn with_header_hold(mut self) -> Gate {
        self.hold_headers = true;
        self
    }

    fn filter_yaml(&self, env_keys: &[String]) -> String {
        format!(
            "\n          - name: {name}\n            typed_config:\n{typed}",
            name = self.name,
            typed = indented(&self.typed_config_yaml(env_keys), 14),
        )
    }

    /// The filter's `typed_config` (the Wasm filter's), unindented.
    fn typed_config_yaml(&self, env_keys: &[String]) -> String {
        format!(
            r#""@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
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

    /// The filter in the chain as ECDS delivers it, from the file `path`.
    fn discovered_yaml(&self, path: &Path) -> String {
        format!(
            r#"
          - name: {name}
            config_discovery:
              config_source:
                path_config_source: {{ path: "{path}" }}
              type_urls: ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]"#,
            name = self.name,
            path = path.display(),
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
    /// The route's retries and the backend's circuit breakers of envoy/envoy.yaml.
    shipped_retries: bool,
    /// The gates come by ECDS from files in this directory (see [`Ecds`]).
    ecds: Option<PathBuf>,
    log_levels: [&'static str; 2],
    /// The prefix of the route to the backend (`/` unless set).
    route_prefix: String,
    /// `per_connection_buffer_limit_bytes` of the listener and every cluster (Envoy's
    /// default, 1 MiB, unless set).
    buffer_limit: Option<u32>,
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
            shipped_retries: false,
            ecds: None,
            log_levels: super::envoy::DEFAULT_LOG_LEVELS,
            route_prefix: "/".to_string(),
            buffer_limit: None,
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

    /// Envoy's `--log-level` and `--component-log-level` (default: `info`, `wasm:debug`).
    pub fn log_levels(mut self, level: &'static str, components: &'static str) -> Self {
        self.log_levels = [level, components];
        self
    }

    /// Routes only paths under `prefix` to the backend (an API-role listener's route is
    /// the gate's `path`); Envoy answers 404 to the others.
    pub fn route_prefix(mut self, prefix: &str) -> Self {
        self.route_prefix = prefix.to_string();
        self
    }

    /// `per_connection_buffer_limit_bytes` on the listener and every cluster, as the
    /// shipped API-role configs set it (16 MiB: above the API role's max_body_bytes).
    pub fn buffer_limit(mut self, bytes: u32) -> Self {
        self.buffer_limit = Some(bytes);
        self
    }

    /// The backend cluster accepts response trailers (`enable_trailers`).
    pub fn backend_trailers(mut self) -> Self {
        self.backend_trailers = true;
        self
    }

    /// The backend's route retries a refused connection as the shipped configs do
    /// (envoy/envoy.yaml's `retry_policy`, and its backend cluster's
    /// `circuit_breakers`, taken from there).
    pub fn shipped_retries(mut self) -> Self {
        self.shipped_retries = true;
        self
    }

    /// Starts Envoy with its gates delivered by ECDS (a watched file per gate, as a
    /// control plane or Istio's agent delivers a filter), so that the test can
    /// reconfigure them while it runs.
    pub fn start_discovered(mut self) -> (Envoy, Ecds) {
        let dir = scratch_dir("ecds");
        let ecds = Ecds {
            dir: dir.clone(),
            env_keys: self.env_keys.clone(),
            version: Cell::new(1),
        };
        for gate in &self.gates {
            ecds.write(gate);
        }
        self.ecds = Some(dir);
        (self.start(), ecds)
    }

    pub fn start(self) -> Envoy {
        match self.try_start() {
            Ok(e) => e,
            Err(log) => panic!("Envoy did not start:\n{log}"),
        }
    }

    /// Starts Envoy; `Err(log)` if it exits (or is not ready in 60 s).
    pub fn try_start(self) -> Result<Envoy, String> {
        let env = self.env_pairs();
        Envoy::try_start_logging(&self.yaml(), self.workers, &env, self.log_levels)
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
            .map(|g| match &self.ecds {
                Some(dir) => g.discovered_yaml(&Ecds::path_in(dir, g)),
                None => g.filter_yaml(&self.env_keys),
            })
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
        let (retries, breakers) = match self.shipped_retries {
            true => (
                shipped_block("retry_policy", 14),
                shipped_block("circuit_breakers", 4),
            ),
            false => (String::new(), String::new()),
        };
        let limit = self
            .buffer_limit
            .map(|n| format!("\n    per_connection_buffer_limit_bytes: {n}"))
            .unwrap_or_default();
        let mut clusters = cluster_yaml("backend", self.backend_port, self.backend_trailers);
        clusters.push_str(&limit);
        clusters.push_str(&breakers);
        for (name, port) in &self.clusters {
            clusters.push_str(&cluster_yaml(name, *port, false));
            clusters.push_str(&limit);
        }
        let route = Route {
            prefix: &self.route_prefix,
            retries: &retries,
            unguarded: &unguarded,
        };
        let yaml = bootstrap(&filters, &route, &limit, &clusters);
        match self.ecds {
            // A subscription needs the node named.
            Some(_) => format!("node: {{ id: e2e, cluster: e2e }}\n{yaml}"),
            None => yaml,
        }
    }
}

/// Gates delivered by ECDS, each from its own file (one resource per subscription),
/// written as Envoy expects a watched file to change: by a rename.
pub struct Ecds {
    dir: PathBuf,
    env_keys: Vec<String>,
    version: Cell<u32>,
}

impl Ecds {
    fn path_in(dir: &Path, gate: &Gate) -> PathBuf {
        dir.join(format!("{}.yaml", gate.name))
    }

    fn write(&self, gate: &Gate) {
        let typed = gate.typed_config_yaml(&self.env_keys);
        let text = format!(
            "version_info: \"{version}\"\nresources:\n\
             - \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n  \
             name: {name}\n  typed_config:\n{typed}\n",
            version = self.version.get(),
            name = gate.name,
            typed = indented(&typed, 4),
        );
        publish(&Ecds::path_in(&self.dir, gate), &text);
    }

    /// Delivers `gate` (a new configuration of the gate of its name) and waits until Envoy has
    /// taken it (its `extension_config_discovery` counts one more reload).
    pub fn reconfigure(&self, envoy: &Envoy, gate: &Gate) {
        let before = envoy.ecds_reloads();
        self.version.set(self.version.get() + 1);
        self.write(gate);
        let took = wait_until(Duration::from_secs(10), || envoy.ecds_reloads() > before);
        assert!(
            took.is_some(),
            "Envoy did not take ECDS version {}:\n{}",
            self.version.get(),
            envoy.log_text()
        );
    }
}

impl Drop for Ecds {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes an ECDS file as Envoy expects a watched file to change: by a rename.
pub fn publish(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write ecds");
    std::fs::rename(&tmp, path).expect("rename ecds");
}

/// `text`'s lines, each indented by `by` spaces.
fn indented(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The block of envoy/envoy.yaml under its first key `key` (the key's line and the
/// lines indented under it), starting with a new line, indented by `by` spaces.
fn shipped_block(key: &str, by: usize) -> String {
    let demo = std::fs::read_to_string(format!("{MANIFEST_DIR}/envoy/envoy.yaml"))
        .expect("envoy/envoy.yaml");
    let depth = |l: &str| l.len() - l.trim_start().len();
    let mut lines = demo
        .lines()
        .skip_while(|l| l.trim_start() != format!("{key}:"));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("envoy/envoy.yaml has no {key}"));
    let at = depth(first);
    let block: Vec<&str> = std::iter::once(first)
        .chain(lines.take_while(|l| depth(l) > at && !l.trim().is_empty()))
        .map(|l| &l[at..])
        .collect();
    format!("\n{}", indented(&block.join("\n"), by))
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

/// The `stats_config` the shipped demo config sets (envoy/envoy.yaml): every Envoy of
/// the suite extracts the gate's tags as the shipped configs do.
pub fn shipped_stats_config() -> String {
    let demo = std::fs::read_to_string(format!("{MANIFEST_DIR}/envoy/envoy.yaml"))
        .expect("envoy/envoy.yaml");
    let start = demo
        .find("\nstats_config:\n")
        .expect("envoy.yaml sets stats_config");
    let end = demo[start..]
        .find("\nadmin:")
        .expect("admin after stats_config")
        + start;
    demo[start..end].to_string()
}

/// The listener's one virtual host: its retries, the `/unguarded` route, and the
/// prefix routed to the backend.
struct Route<'a> {
    prefix: &'a str,
    retries: &'a str,
    unguarded: &'a str,
}

fn bootstrap(filters: &str, route: &Route, listener_limit: &str, clusters: &str) -> String {
    let stats = shipped_stats_config();
    let Route {
        prefix,
        retries,
        unguarded,
    } = route;
    format!(
        r#"{stats}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}{listener_limit}
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
              domains: ["*"]{retries}
              routes:{unguarded}
              - match: {{ prefix: "{prefix}" }}
                route: {{ cluster: backend, timeout: 5s }}
          http_filters:{filters}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:{clusters}
"#
    )
}
