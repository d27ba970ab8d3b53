//! The configs the project ships: every envoy/*.yaml validates, the Istio
//! EnvoyFilter's filter loads, the demo config (`make run`) serves backend.py and the
//! CLI, and the API role sits on an internal listener of its own whose printed
//! commands work with no secret.

use crate::harness::backend::{Backend, BackendPy};
use crate::harness::cli::{cli, Ran};
use crate::harness::config::{demo_env, shipped_demo_yaml, EnvoyConfig, DEMO_AES_KEY};
use crate::harness::envoy::{validate, wasm_path, Envoy};
use crate::harness::mock_api::MockApi;
use crate::harness::requests::{nonce, signed};
use crate::harness::{closed_port, now, scratch_dir, wait_until, MANIFEST_DIR};
use std::time::Duration;

#[test]
fn every_shipped_envoy_yaml_validates() {
    let dir = format!("{MANIFEST_DIR}/envoy");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("envoy/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        if let Err(text) = validate(&path) {
            panic!("{} does not validate:\n{text}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 1, "no YAML found in envoy/");
}

/// The Wasm HTTP filter of envoy/istio/envoyfilter.yaml (between its markers), as
/// YAML list items at the filter chain's indentation, with the built .wasm.
fn istio_filter_yaml() -> String {
    let text = std::fs::read_to_string(format!("{MANIFEST_DIR}/envoy/istio/envoyfilter.yaml"))
        .expect("envoy/istio/envoyfilter.yaml");
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("# -- the Envoy HTTP filter --"))
        .skip(1)
        .take_while(|l| !l.contains("# -- end --"))
        .collect();
    assert!(block.len() > 10, "the markers are in place");
    let indent = block[0].len() - block[0].trim_start().len();
    let mut filter = String::new();
    for (i, line) in block.iter().enumerate() {
        let line = line.get(indent..).unwrap_or("").replace(
            "/etc/wechat-gate/wechat_gate.wasm",
            &wasm_path().display().to_string(),
        );
        let lead = if i == 0 {
            "          - "
        } else {
            "            "
        };
        filter.push_str(&format!("\n{lead}{line}"));
    }
    filter
}

#[test]
fn the_istio_envoyfilter_carries_a_filter_config_envoy_accepts() {
    let filter = istio_filter_yaml();
    assert!(filter.contains("allow_on_headers_stop_iteration: true"));
    // A listener with this filter before the router (the backend is never called).
    let yaml = EnvoyConfig::new(1).filters_yaml(&filter).yaml();
    let dir = scratch_dir("istio");
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, &yaml).expect("write config");
    let validated = validate(&path);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(log) = validated {
        panic!("the EnvoyFilter's Wasm filter does not validate:\n{yaml}\n{log}");
    }
}

// ---------------------------------------------------------------- the demo

const DEMO_TOKEN: &str = "demo-token-e2e";

/// `make run` on free ports: backend.py, mock-api as WeChat's API, and Envoy with the
/// shipped envoy/envoy.yaml, once the gate has WeChat's first callback IP list.
struct Demo {
    backend: BackendPy,
    _api: MockApi,
    envoy: Envoy,
    url: String,
}

/// mock-api as the demo's WeChat API, and Envoy with the shipped envoy/envoy.yaml in
/// front of `backend_port`, once the gate has WeChat's first callback IP list; the
/// callback URL.
fn demo_envoy(backend_port: u16) -> (MockApi, Envoy, String) {
    let api = MockApi::start(
        "demo-secret-e2e",
        &[
            "--appid",
            "wx0123456789abcdef",
            "--callback-ip",
            "127.0.0.1",
            "--callback-ip",
            "127.0.0.2",
        ],
    );
    let yaml = shipped_demo_yaml(backend_port, api.port);
    let envoy = Envoy::start(&yaml, 1, &demo_env(DEMO_TOKEN));
    let url = format!("http://127.0.0.1:{}/wechat", envoy.port);
    // The first list arrives from mock-api within moments of start (503 until then).
    let echoed = wait_until(Duration::from_secs(3), || {
        demo_cli(&["send", "handshake", &url]).code == Some(0)
    });
    assert!(echoed.is_some(), "{}", envoy.log_text());
    (api, envoy, url)
}

/// The CLI with the secrets in the environment, as the demo tells users to export
/// them (and a wrong token in `WRONG_TOKEN`).
fn demo_cli(args: &[&str]) -> Ran {
    cli(
        args,
        &[
            ("WECHAT_TOKEN", DEMO_TOKEN),
            ("WECHAT_AES_KEY", DEMO_AES_KEY),
            ("WRONG_TOKEN", "wrong"),
        ],
    )
}

impl Demo {
    fn start() -> Demo {
        let backend = BackendPy::start();
        let (api, envoy, url) = demo_envoy(backend.port);
        Demo {
            backend,
            _api: api,
            envoy,
            url,
        }
    }

    fn cli(&self, args: &[&str]) -> Ran {
        demo_cli(args)
    }

    /// `wechat-gate send message URL --text text` with `extra` flags.
    fn send_message(&self, text: &str, extra: &[&str]) -> Ran {
        let args = [&["send", "message", &self.url, "--text", text][..], extra].concat();
        self.cli(&args)
    }

    /// Stops Envoy and backend.py; the lines backend.py printed.
    fn stop(self) -> Vec<String> {
        drop(self.envoy);
        self.backend.stop()
    }
}

/// The shipped route tries a refused connection again within WeChat's 5 s: a push sent
/// while the backend restarts reaches it once it is back, and the gate never answers
/// `success` for want of it (which would leave the push to parking, or lose it).
#[test]
fn a_push_sent_while_the_backend_restarts_reaches_it_through_envoys_retry() {
    let port = closed_port();
    let (_api, envoy, url) = demo_envoy(port);
    let refused = || envoy.envoy_stat("cluster.backend.upstream_cx_connect_fail");
    let before = refused();
    std::thread::scope(|s| {
        let sent = s.spawn(|| demo_cli(&["send", "message", &url, "--text", "during a restart"]));
        // The backend comes back once Envoy has found it down.
        let found_down = wait_until(Duration::from_secs(4), || refused() > before);
        assert!(found_down.is_some(), "{}", envoy.log_text());
        let backend = Backend::start_on(port);
        let r = sent.join().expect("send");
        assert_eq!(r.code, Some(0), "{}", r.stdout);
        assert_eq!(r.stdout.trim_end(), "HTTP 200\nsuccess", "{}", r.stdout);
        let got = backend.bodies();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("during a restart"), "{got:?}");
    });
    assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 0);
    assert_eq!(envoy.counter("wechat_gate.forwarded"), 1);
}

/// The lines that name `path`.
fn naming<'a>(lines: &'a [String], path: &str) -> Vec<&'a String> {
    lines.iter().filter(|l| l.contains(path)).collect()
}

#[test]
fn the_demo_delivers_plain_and_safe_mode_messages_to_backend_py_and_seals_the_reply() {
    let demo = Demo::start();
    let r = demo.send_message("你好, gate", &["--openid", "o_demo_1"]);
    assert_eq!(r.code, Some(0), "{}", r.stdout);
    assert!(
        r.stdout.starts_with("HTTP 200\n<xml>"),
        "backend.py's reply: {}",
        r.stdout
    );
    assert!(r.stdout.contains("收到: 你好, gate"), "{}", r.stdout);
    // Safe mode: backend.py gets the plaintext, the CLI gets its reply sealed, then
    // checks the seal and decrypts it as WeChat would.
    let safe = [
        "--openid",
        "o_demo_2",
        "--safe-mode",
        "--appid",
        "wx0123456789abcdef",
    ];
    let r = demo.send_message("加密的你好", &safe);
    assert_eq!(r.code, Some(0), "{}", r.stdout);
    assert!(
        r.stdout.contains("<Encrypt>"),
        "sealed on the wire: {}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("-- the reply, signature checked and decrypted:\n<xml>"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("收到: 加密的你好"), "{}", r.stdout);

    let lines = demo.stop();
    let wechat = naming(&lines, "/wechat");
    assert_eq!(
        wechat.len(),
        2,
        "backend.py saw exactly the two verified messages: {wechat:?}"
    );
    let plain = wechat[0];
    assert!(plain.starts_with("backend: POST /wechat?"), "{plain}");
    assert!(plain.contains("'x-wechat-gate-verified': '1'"), "{plain}");
    assert!(
        plain.contains("'x-wechat-gate-openid': 'o_demo_1'"),
        "{plain}"
    );
    assert!(plain.contains("你好, gate"), "{plain}");
    let decrypted = wechat[1];
    assert!(
        decrypted.contains("'x-wechat-gate-decrypted': '1'") && decrypted.contains("加密的你好"),
        "the safe-mode push arrived decrypted: {decrypted}"
    );
    assert!(!decrypted.contains("<Encrypt>"), "{decrypted}");
}

#[test]
fn the_demo_keeps_forged_spoofed_and_lookalike_requests_from_backend_py() {
    let demo = Demo::start();
    let r = demo.send_message("forged", &["--token-env", "WRONG_TOKEN"]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(r.stdout.starts_with("HTTP 401"), "{}", r.stdout);
    let r = demo.send_message("spoofed source", &["--source", "127.0.0.9"]);
    assert_eq!(r.code, Some(1));
    // Look-alikes of the callback path never reach the backend unchecked: the gate
    // guards those a framework routes as /wechat (400: no signed query), the demo
    // config answers the others 404.
    for (lookalike, status) in [
        ("/wechat/", 400),
        ("/wechat;jsessionid=1", 400),
        ("/WeChat", 404),
        ("/WECHAT/x", 404),
        ("/wechatx", 404),
    ] {
        let r = demo.envoy.send(
            "POST",
            lookalike,
            &[("x-wechat-gate-verified", b"1")],
            b"<xml/>",
            "127.0.0.1",
        );
        assert_eq!(r.status, status, "{lookalike}: {}", r.body_text());
    }
    // Not on the gated route: forged gate headers are stripped by the demo route config.
    let other = demo.envoy.send(
        "GET",
        "/healthz",
        &[("x-wechat-gate-verified", b"1")],
        b"",
        "127.0.0.9",
    );
    assert_eq!(other.status, 200);

    let lines = demo.stop();
    let wechat = naming(&lines, "/wechat");
    assert!(wechat.is_empty(), "backend.py saw none of them: {wechat:?}");
    let health = naming(&lines, "/healthz");
    assert_eq!(health.len(), 1);
    assert!(health[0].contains("gate={}"), "{}", health[0]);
}

/// One listener of a shipped config: its name, address, buffer limit and gates.
struct ShippedListener {
    name: String,
    address: String,
    buffer_limit: Option<i64>,
    /// Each wechat-gate filter: `allow_on_headers_stop_iteration` and its JSON config.
    gates: Vec<(bool, serde_json::Value)>,
}

impl ShippedListener {
    fn is_api(&self) -> bool {
        self.gates.iter().any(|(_, c)| c["role"] == "api")
    }

    /// The largest body a gate on this listener accepts (stated, else the role's
    /// default: 64 KiB for callbacks, 12 MiB for the API role).
    fn max_body_bytes(&self) -> i64 {
        let of = |c: &serde_json::Value| {
            c["max_body_bytes"]
                .as_i64()
                .unwrap_or(if c["role"] == "api" {
                    12 * 1024 * 1024
                } else {
                    65_536
                })
        };
        self.gates.iter().map(|(_, c)| of(c)).max().unwrap_or(0)
    }
}

/// The listeners of envoy/`file`, read as YAML.
fn shipped_listeners(file: &str) -> Vec<ShippedListener> {
    use yaml_rust2::YamlLoader;
    let text = std::fs::read_to_string(format!("{MANIFEST_DIR}/envoy/{file}")).expect(file);
    let docs = YamlLoader::load_from_str(&text).expect("YAML");
    let listeners = docs[0]["static_resources"]["listeners"]
        .as_vec()
        .expect("static listeners");
    listeners
        .iter()
        .map(|l| {
            let mut gates = Vec::new();
            for chain in l["filter_chains"].as_vec().into_iter().flatten() {
                for filter in chain["filters"].as_vec().into_iter().flatten() {
                    let http = filter["typed_config"]["http_filters"].as_vec();
                    for f in http.into_iter().flatten() {
                        let config = &f["typed_config"]["config"];
                        if let Some(json) = config["configuration"]["value"].as_str() {
                            let hold = config["allow_on_headers_stop_iteration"].as_bool();
                            let value = serde_json::from_str(json).expect("a gate's JSON");
                            gates.push((hold == Some(true), value));
                        }
                    }
                }
            }
            ShippedListener {
                name: l["name"].as_str().unwrap_or_default().to_string(),
                address: l["address"]["socket_address"]["address"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                buffer_limit: l["per_connection_buffer_limit_bytes"].as_i64(),
                gates,
            }
        })
        .collect()
}

const SHIPPED: [&str; 2] = ["envoy.yaml", "envoy-wechat.yaml"];

#[test]
fn every_shipped_envoy_yaml_buffers_more_than_its_gates_accept() {
    for file in SHIPPED {
        let listeners = shipped_listeners(file);
        assert!(
            listeners.iter().any(|l| !l.gates.is_empty()),
            "{file}: no gate"
        );
        for l in listeners.iter().filter(|l| !l.gates.is_empty()) {
            let limit = l
                .buffer_limit
                .unwrap_or_else(|| panic!("{file}: listener {} states no buffer limit", l.name));
            let body = l.max_body_bytes();
            assert!(
                body < limit,
                "{file}: listener {}: max_body_bytes {body} >= buffer limit {limit}",
                l.name
            );
        }
    }
}

/// Loopback or a private (RFC 1918 / ULA) address: never 0.0.0.0, never public.
fn is_internal(address: &str) -> bool {
    let host = address.split('/').next().unwrap_or_default();
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => a.is_loopback() || a.is_private(),
        Ok(std::net::IpAddr::V6(a)) => a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00,
        Err(_) => false,
    }
}

/// The API role is on a listener of its own, internal only (address and callers),
/// its headers held for the body, with a buffer above its max_body_bytes: never
/// on the public listener WeChat's pushes reach.
#[test]
fn the_api_role_is_on_an_internal_listener_of_its_own_that_buffers_its_bodies() {
    for file in SHIPPED {
        let listeners = shipped_listeners(file);
        let api: Vec<_> = listeners.iter().filter(|l| l.is_api()).collect();
        assert_eq!(api.len(), 1, "{file}: one API listener");
        for l in api {
            assert!(
                l.gates.iter().all(|(_, c)| c["role"] == "api"),
                "{file}: {} mixes the API role with callback gates",
                l.name
            );
            assert!(
                is_internal(&l.address),
                "{file}: {} on {}",
                l.name,
                l.address
            );
            for (hold, c) in &l.gates {
                assert!(hold, "{file}: allow_on_headers_stop_iteration");
                let callers = c["callers"].as_array().expect("callers");
                assert!(!callers.is_empty(), "{file}: callers");
                for caller in callers {
                    let caller = caller.as_str().unwrap_or_default();
                    assert!(is_internal(caller), "{file}: caller {caller}");
                }
            }
            let limit = l.buffer_limit.unwrap_or(0);
            assert!(
                limit > l.max_body_bytes() && l.max_body_bytes() >= 10 * 1024 * 1024,
                "{file}: {}: buffer {limit}, max_body_bytes {}",
                l.name,
                l.max_body_bytes()
            );
        }
    }
}

#[test]
fn the_demo_answers_every_oversized_push_itself_and_backend_py_sees_none() {
    let demo = Demo::start();
    let big = |n: usize| format!("<xml><Content>{}</Content></xml>", "x".repeat(n));
    for size in [70_000, 2_000_000] {
        let body = big(size);
        let query = signed(DEMO_TOKEN, now(), &nonce(), &[]);
        let raw = format!(
            "POST /wechat?{query} HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = demo
            .envoy
            .send_raw(raw.as_bytes(), "127.0.0.1")
            .expect("an answer");
        assert_eq!(r.status, 413, "{size}: {}", r.body_text());
        assert!(
            r.body_text().contains("too_large"),
            "the gate's 413, not Envoy's: {}",
            r.body_text()
        );
        // Chunked, with no length to refuse on: 411 before any of the body is read.
        let raw = format!(
            "POST /wechat?{} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            signed(DEMO_TOKEN, now(), &nonce(), &[]),
            body.len()
        );
        let r = demo
            .envoy
            .send_raw(raw.as_bytes(), "127.0.0.1")
            .expect("an answer");
        assert_eq!(r.status, 411, "{size} chunked: {}", r.body_text());
    }
    let lines = demo.stop();
    let wechat = naming(&lines, "/wechat");
    assert!(wechat.is_empty(), "backend.py saw none of them: {wechat:?}");
}

/// The commands `make run` prints for the other platforms (envoy/run-demo.sh's
/// `PLATFORMS`), as arguments, aimed at `port`.
fn printed_platform_commands(port: u16) -> Vec<Vec<String>> {
    let script = std::fs::read_to_string(format!("{MANIFEST_DIR}/envoy/run-demo.sh"))
        .expect("envoy/run-demo.sh");
    let block = script
        .split_once("PLATFORMS=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(block, _)| block)
        .expect("run-demo.sh prints the platforms' commands");
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("$CLI "))
        .map(|l| {
            l.split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(|a| a.replace("127.0.0.1:10000", &format!("127.0.0.1:{port}")))
                .collect()
        })
        .collect()
}

#[test]
fn the_demos_printed_commands_for_every_platform_pass_their_gates() {
    let demo = Demo::start();
    let commands = printed_platform_commands(demo.envoy.port);
    assert!(commands.len() >= 5, "{commands:?}");
    for args in &commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = demo.cli(&args);
        assert_eq!(r.code, Some(0), "{args:?}:\n{}", r.text());
    }
    // Each route is guarded: a forged WeCom handshake and a push for a segment that is
    // no AppID are refused, and look-alikes never reach backend.py.
    let forged = demo.cli(&[
        "send",
        "handshake",
        &format!("http://127.0.0.1:{}/wecom", demo.envoy.port),
        "--platform",
        "wecom",
        "--safe-mode",
        "--appid",
        "ww0123456789abcdef",
        "--token-env",
        "WRONG_TOKEN",
    ]);
    assert!(forged.stdout.starts_with("HTTP 401"), "{}", forged.text());
    for lookalike in [
        "/mp/",
        "/WeCom",
        "/open/wx1111111111111111/callback/x",
        "/open",
    ] {
        let r = demo
            .envoy
            .send("POST", lookalike, &[], b"<xml/>", "127.0.0.1");
        assert!(matches!(r.status, 400 | 404), "{lookalike}: {}", r.status);
    }
    let lines = demo.stop();
    let mini = naming(&lines, "POST /mp?");
    assert_eq!(mini.len(), 2, "{mini:?}");
    assert!(
        mini.iter().all(|l| l.contains("body={\"")),
        "JSON reached backend.py: {mini:?}"
    );
    let wecom = naming(&lines, "POST /wecom?");
    assert_eq!(wecom.len(), 1, "{wecom:?}");
    assert!(
        wecom[0].contains("'x-wechat-gate-decrypted': '1'"),
        "{}",
        wecom[0]
    );
    let open = naming(&lines, "POST /open/wx1111111111111111/callback?");
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(
        open[0].contains("'x-wechat-gate-authorizer-appid': 'wx1111111111111111'"),
        "{}",
        open[0]
    );
}

// ---------------------------------------------------------------- the API role

/// The port of the demo's API-role listener (`wechat_api_role`), read from the admin.
fn api_port(envoy: &Envoy) -> u16 {
    let v: serde_json::Value =
        serde_json::from_str(&envoy.admin_text("/listeners?format=json")).expect("listeners");
    let listener = v["listener_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == "wechat_api_role")
        .unwrap_or_else(|| panic!("no wechat_api_role listener: {v}"));
    let port = listener["local_address"]["socket_address"]["port_value"].as_u64();
    port.and_then(|p| u16::try_from(p).ok()).expect("a port")
}

/// The API role's commands `make run` prints (envoy/run-demo.sh's `API_EXAMPLES`), as
/// bash renders them with the gate on `port`: one string per command.
fn printed_api_commands(port: u16) -> Vec<String> {
    let script = std::fs::read_to_string(format!("{MANIFEST_DIR}/envoy/run-demo.sh"))
        .expect("envoy/run-demo.sh");
    let assignment = script
        .lines()
        .skip_while(|l| !l.starts_with("API_EXAMPLES=\""))
        .take_while(|l| !l.starts_with("# Envoy's own log"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        assignment.contains("curl"),
        "run-demo.sh prints the API role's commands"
    );
    let python = crate::harness::wechatpy::python().display().to_string();
    let render = format!(
        "GATE_API=http://127.0.0.1:{port}/wechat-api/mp; APPID=wx0123456789abcdef; \
         CLI={}; PY={python}\n{assignment}\nprintf %s \"$API_EXAMPLES\"",
        env!("CARGO_BIN_EXE_wechat-gate")
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &render])
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // A command starts on an indented line; a line that is not indented continues it.
    let mut commands: Vec<String> = Vec::new();
    for line in text.lines() {
        match (line.strip_prefix("  "), commands.last_mut()) {
            (Some(start), _) => commands.push(start.to_string()),
            (None, Some(open)) if !line.is_empty() => {
                open.push('\n');
                open.push_str(line);
            }
            _ => {}
        }
    }
    commands
}

/// Every command `make run` prints for the API role works, as typed, against the
/// shipped demo config: WeChat's answers with no token sent, the stand-in, a signed
/// JS-SDK config, doctor --gate-api, wechatpy with no AppSecret; and no token leaks.
#[test]
fn the_demos_printed_api_role_commands_work_with_no_secret() {
    let demo = Demo::start();
    let commands = printed_api_commands(api_port(&demo.envoy));
    assert!(commands.len() >= 6, "{commands:?}");
    for command in &commands {
        let out = std::process::Command::new("bash")
            .args(["-c", command])
            .current_dir(MANIFEST_DIR)
            .env_remove("WECHAT_APPSECRET")
            .output()
            .expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{command}\n{stdout}{stderr}");
        assert!(
            !stdout.contains("MOCK_"),
            "a token reached the caller: {stdout}"
        );
        let expect = if command.contains("/cgi-bin/token") {
            "WECHAT_GATE_STAND_IN_NOT_A_WECHAT_TOKEN"
        } else if command.contains("jssdk-config") {
            "\"signature\""
        } else if command.contains("doctor") {
            "all checks passed"
        } else if command.contains("user") {
            "o_demo_1"
        } else {
            "ip_list"
        };
        assert!(stdout.contains(expect), "{command}\n{stdout}{stderr}");
    }
    let counts = demo.envoy.counters();
    assert!(
        counts.get("wechat_gate.api_stand_in").copied().unwrap_or(0) >= 2,
        "{counts:?}"
    );
}

/// The demo's API role answers only on its own listener and only its `callers`: on the
/// public listener (WeChat's) the path is nobody's but backend.py's (its 404, no stand-in),
/// and another address gets the gate's 403.
#[test]
fn the_demos_api_role_is_not_on_the_public_listener_and_refuses_other_callers() {
    let demo = Demo::start();
    let token = "/wechat-api/mp/cgi-bin/token";
    let public = demo.envoy.send("GET", token, &[], b"", "127.0.0.1");
    assert_eq!(public.status, 404, "{}", public.body_text());
    assert!(!public.body_text().contains("STAND_IN"));
    let url = wechat::http1::client::Url {
        host: "127.0.0.1".into(),
        port: api_port(&demo.envoy),
        target: "/wechat-api/mp/cgi-bin/get_api_domain_ip".into(),
    };
    let outsider = "127.0.0.2".parse().ok();
    let r = wechat::http1::client::request("GET", &url, &[], b"", outsider).expect("an answer");
    assert_eq!(r.status, 403, "{}", r.body_text());
    assert!(
        r.body_text().contains("\"errcode\":94030"),
        "{}",
        r.body_text()
    );
}
