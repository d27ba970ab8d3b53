//! `wechat-gate doctor` against mock-api: every check passing, each errcode's advice,
//! the egress rules, JSON, a running gate's stats (a fake Envoy admin), the network
//! verdicts and the backup domains. Every run also checks that neither the AppSecret
//! nor any access token reached stdout or stderr. No Envoy needed.

use crate::harness::backend::{Backend, Reply};
use crate::harness::cli::{cli, Ran};
use crate::harness::mock_api::MockApi;
use crate::harness::{closed_port, now};
use serde_json::json;
use std::sync::Arc;
use yaml_rust2::{Yaml, YamlLoader};

const APPID: &str = "wxd0c7000000000001";
const SECRET: &str = "AppS3cretForDoctor0001";
const DOMAINS: [&str; 5] = [
    "api.weixin.qq.com",
    "api2.weixin.qq.com",
    "sh.api.weixin.qq.com",
    "sz.api.weixin.qq.com",
    "hk.api.weixin.qq.com",
];

/// The lines of doctor's report.
trait Report {
    /// The report line of check `name` (`STATUS name  summary`).
    fn line(&self, name: &str) -> &str;
    fn status(&self, name: &str) -> &str;
}

impl Report for Ran {
    fn line(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| {
                l.get(5..)
                    .is_some_and(|rest| rest.split(' ').next() == Some(name))
            })
            .unwrap_or_else(|| panic!("no {name} line in:\n{}", self.stdout))
    }

    fn status(&self, name: &str) -> &str {
        self.line(name).split(' ').next().unwrap_or_default()
    }
}

fn mock() -> MockApi {
    MockApi::start(
        SECRET,
        &[
            "--appid",
            APPID,
            "--callback-ip",
            "101.226.103.0/25",
            "--callback-ip",
            "203.205.239.82",
            "--callback-ip",
            "240e:e1:a900:50::/64",
        ],
    )
}

/// Runs the CLI with `env`, checking that no secret was printed.
fn run_cli(args: &[&str], env: &[(&str, &str)]) -> Ran {
    let run = cli(args, env);
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(SECRET), "the AppSecret was printed:\n{text}");
        // mock-api's tokens all start with MOCK_: none may show.
        assert!(
            !text.contains("MOCK_"),
            "an access token was printed:\n{text}"
        );
    }
    run
}

/// `doctor` against `api`, with every backup domain mapped to it, then `extra`.
fn doctor_with(api: &MockApi, resolve: &[(&str, u16)], extra: &[&str]) -> Ran {
    let base = format!("http://127.0.0.1:{}", api.port);
    let mut args = vec![
        "doctor".to_string(),
        "--appid".into(),
        APPID.into(),
        "--api".into(),
        base,
        "--timeout".into(),
        "5".into(),
    ];
    for (host, port) in resolve {
        args.push("--resolve".into());
        args.push(format!("{host}=127.0.0.1:{port}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_cli(&args, &[("WECHAT_APPSECRET", SECRET)])
}

fn doctor(api: &MockApi, extra: &[&str]) -> Ran {
    let all: Vec<(&str, u16)> = DOMAINS.iter().map(|d| (*d, api.port)).collect();
    doctor_with(api, &all, extra)
}

#[test]
fn every_check_passes_against_mock_api() {
    let api = mock();
    let run = doctor(&api, &[]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    for name in [
        "token",
        "callback_ips",
        "api_domain_ips",
        "network",
        "backup_domains",
    ] {
        assert_eq!(run.status(name), "PASS", "{}", run.stdout);
    }
    assert!(run
        .line("token")
        .contains("stable_token: WeChat gave an access token (expires in"));
    assert!(run
        .line("callback_ips")
        .ends_with("3 entries (1 IPv4, 0 IPv6, 2 CIDR blocks)"));
    assert!(run
        .line("network")
        .contains("2 DNS answers, 2 of 2 pings answered"));
    assert!(run
        .line("backup_domains")
        .contains("5 of 5 API domains probed answered"));
    assert!(
        run.stdout
            .contains("ping  203.0.113.10  UNICOM      0%   23.079ms"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("regenerate the rule daily"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().last(), Some("all checks passed"));
    assert!(
        run.stderr
            .contains("doctor: asking WeChat to resolve and ping"),
        "{}",
        run.stderr
    );
    let calls = api.calls();
    assert_eq!(calls["callback_check"], 1);
    assert_eq!(calls["get_api_domain_ip"], 1);
    assert_eq!(
        calls["getcallbackip"], 6,
        "one check and five domains: {calls}"
    );
}

#[test]
fn each_errcode_gets_its_meaning_and_what_to_do() {
    let api = mock();
    let table: [(i64, &str, &str); 10] = [
        (-1, "WeChat is busy", "retry in a few seconds"),
        (40001, "the AppSecret is wrong", "check the AppSecret"),
        (
            40125,
            "the AppSecret is not valid",
            "check the AppSecret against 基本配置 → AppSecret",
        ),
        (40013, "the AppID is not valid", "check the AppID"),
        (
            40164,
            "not in the account's IP whitelist",
            "add 127.0.0.1 (the address WeChat saw) to 基本配置 → IP白名单",
        ),
        (
            89503,
            "need the administrator's confirmation",
            "the administrator must confirm this IP's call",
        ),
        (
            89501,
            "waiting for the administrator's confirmation",
            "ask the administrator to confirm it",
        ),
        (
            89506,
            "refused this IP twice within 24 hours",
            "calls from this IP are blocked for 24 hours",
        ),
        (89507, "refused this IP within the last hour", "wait 1 hour"),
        (
            45009,
            "daily quota of this API is used up",
            "wait for the daily reset",
        ),
    ];
    for (code, meaning, todo) in table {
        api.set_faults(json!({"errcodes": {"stable_token": code}}));
        let run = doctor(&api, &[]);
        assert_eq!(run.code, Some(1), "{code}: {}", run.stdout);
        let line = run.line("token");
        assert!(line.starts_with("FAIL token"), "{code}: {line}");
        assert!(
            line.contains(&format!("errcode {code}: ")) && line.contains(meaning),
            "{code}: {line}"
        );
        assert!(
            run.stdout.contains(&format!("-> {todo}")),
            "{code}:\n{}",
            run.stdout
        );
        for later in ["callback_ips", "api_domain_ips", "network"] {
            assert_eq!(run.status(later), "SKIP", "{code}: {}", run.stdout);
        }
    }
    // The classic endpoint's errcodes are explained the same way.
    api.set_faults(json!({"errcodes": {"token": 40164}}));
    let run = doctor(&api, &["--token-api", "classic"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.line("token").contains("token: errcode 40164"),
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .contains("-> add 127.0.0.1 (the address WeChat saw)"));
}

#[test]
fn a_wrong_secret_and_a_wrong_appid_are_told_apart() {
    let api = mock();
    let base = format!("http://127.0.0.1:{}", api.port);
    let common = ["doctor", "--api", &base, "--timeout", "5"];
    let wrong_secret = run_cli(
        &[&common[..], &["--appid", APPID]].concat(),
        &[("WECHAT_APPSECRET", "NotTheSecret000")],
    );
    assert_eq!(wrong_secret.code, Some(1));
    assert!(
        wrong_secret
            .line("token")
            .contains("errcode 40125: the AppSecret is not valid"),
        "{}",
        wrong_secret.stdout
    );
    let wrong_appid = run_cli(
        &[&common[..], &["--appid", "wx0000000000000000"]].concat(),
        &[("WECHAT_APPSECRET", SECRET)],
    );
    assert!(
        wrong_appid
            .line("token")
            .contains("errcode 40013: the AppID is not valid"),
        "{}",
        wrong_appid.stdout
    );
}

#[test]
fn the_classic_token_api_works_with_a_warning() {
    let api = mock();
    let run = doctor(&api, &["--token-api", "classic"]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(run.status("token"), "WARN");
    assert!(
        run.stdout
            .contains("invalidates every other holder's token"),
        "{}",
        run.stdout
    );
    assert_eq!(api.count("token"), 1);
    assert_eq!(api.count("stable_token"), 0);
}

fn egress_rule(api: &MockApi, format: &str) -> (String, Ran) {
    let run = doctor(api, &["--egress", format, "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let report = run.json();
    let check = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "api_domain_ips"))
        .cloned()
        .expect("api_domain_ips check");
    assert_eq!(check["data"]["egress"]["format"], format);
    let rule = check["data"]["egress"]["rule"]
        .as_str()
        .expect("rule")
        .to_string();
    assert!(rule.contains("regenerate this daily"), "{rule}");
    (rule, run)
}

fn yaml(text: &str) -> Yaml {
    let mut docs =
        YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"));
    assert_eq!(docs.len(), 1, "{text}");
    docs.remove(0)
}

const API_IPS: [&str; 3] = ["101.89.47.18", "101.91.34.103", "240e:e1:a900:50::18"];

#[test]
fn the_envoy_egress_rule_is_a_static_cluster_of_the_api_addresses() {
    let api = mock();
    let (rule, _) = egress_rule(&api, "envoy");
    let cluster = yaml(&rule);
    assert_eq!(cluster["type"].as_str(), Some("STATIC"));
    assert_eq!(
        cluster["transport_socket"]["typed_config"]["sni"].as_str(),
        Some("api.weixin.qq.com")
    );
    let endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        .as_vec()
        .expect("lb_endpoints");
    let addrs: Vec<(&str, i64)> = endpoints
        .iter()
        .map(|e| {
            let s = &e["endpoint"]["address"]["socket_address"];
            (
                s["address"].as_str().unwrap_or_default(),
                s["port_value"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(addrs, API_IPS.map(|a| (a, 443)).to_vec());
}

#[test]
fn the_istio_egress_rule_is_a_service_entry_with_the_addresses() {
    let api = mock();
    let (rule, _) = egress_rule(&api, "istio");
    let entry = yaml(&rule);
    assert_eq!(entry["kind"].as_str(), Some("ServiceEntry"));
    assert_eq!(
        entry["spec"]["hosts"][0].as_str(),
        Some("api.weixin.qq.com")
    );
    let addresses: Vec<&str> = entry["spec"]["addresses"]
        .as_vec()
        .expect("addresses")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(
        addresses,
        [
            "101.89.47.18/32",
            "101.91.34.103/32",
            "240e:e1:a900:50::18/128"
        ]
    );
    assert_eq!(entry["spec"]["ports"][0]["number"].as_i64(), Some(443));
}

#[test]
fn the_k8s_egress_rule_is_a_network_policy_with_ip_blocks() {
    let api = mock();
    let (rule, run) = egress_rule(&api, "k8s");
    let policy = yaml(&rule);
    assert_eq!(policy["kind"].as_str(), Some("NetworkPolicy"));
    assert_eq!(policy["spec"]["policyTypes"][0].as_str(), Some("Egress"));
    let to = policy["spec"]["egress"][0]["to"].as_vec().expect("to");
    let cidrs: Vec<&str> = to
        .iter()
        .filter_map(|t| t["ipBlock"]["cidr"].as_str())
        .collect();
    assert_eq!(
        cidrs,
        [
            "101.89.47.18/32",
            "101.91.34.103/32",
            "240e:e1:a900:50::18/128"
        ]
    );
    assert_eq!(
        policy["spec"]["egress"][0]["ports"][0]["port"].as_i64(),
        Some(443)
    );
    // In text mode the same rule is printed unindented, ready to copy.
    let text = doctor(&api, &["--egress", "k8s"]);
    assert!(
        text.stdout
            .contains(&format!("-- egress rule (k8s):\n{rule}")),
        "{}",
        text.stdout
    );
    assert!(run.stdout.starts_with('{'));
}

#[test]
fn the_nft_egress_rule_is_a_table_with_one_set_per_family() {
    let api = mock();
    let (rule, _) = egress_rule(&api, "nft");
    let body: Vec<&str> = rule
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    assert_eq!(body.first(), Some(&"table inet wechat_gate {"), "{rule}");
    assert_eq!(body.last(), Some(&"}"), "{rule}");
    let opens = rule.matches('{').count();
    assert_eq!(opens, rule.matches('}').count(), "balanced braces: {rule}");
    assert!(rule.contains("set wechat_api_v4 {\n    type ipv4_addr\n    flags interval\n    elements = { 101.89.47.18/32, 101.91.34.103/32 }\n  }"), "{rule}");
    assert!(rule.contains("set wechat_api_v6 {\n    type ipv6_addr\n    flags interval\n    elements = { 240e:e1:a900:50::18/128 }\n  }"), "{rule}");
}

#[test]
fn json_output_is_one_document_with_every_check() {
    let api = mock();
    let run = doctor(&api, &["--json"]);
    assert_eq!(run.code, Some(0));
    let report = run.json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["appid"], APPID);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "token",
            "callback_ips",
            "api_domain_ips",
            "network",
            "backup_domains"
        ]
    );
    let checks = &report["checks"];
    assert!(
        checks
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["status"] == "pass")),
        "{report}"
    );
    assert_eq!(
        checks[1]["data"],
        json!({"entries": 3, "ipv4": 1, "ipv6": 0, "cidr": 2, "skipped": []})
    );
    assert_eq!(checks[2]["data"]["ip_list"], json!(API_IPS));
    assert_eq!(checks[3]["data"]["ping"][0]["package_loss"], "0%");

    api.set_faults(json!({"errcodes": {"stable_token": 40164}}));
    let failed = doctor(&api, &["--json"]).json();
    assert_eq!(failed["ok"], false);
    assert_eq!(failed["checks"][0]["data"]["errcode"], 40164);
}

/// doctor with `--gate-admin` pointing at a fake Envoy admin that answers
/// `/stats?filter=wasmcustom` with `stats` (and anything else 404), which must be
/// read once.
fn gate_run(api: &MockApi, stats: String, extra: &[&str]) -> Ran {
    let admin = Backend::replying(move |r| {
        if r.url == "/stats?filter=wasmcustom" {
            Reply::ok(&stats)
        } else {
            Reply::status(404, "")
        }
    });
    let url = admin.url();
    let run = doctor(api, &[&["--gate-admin", url.as_str()][..], extra].concat());
    let asked = admin
        .records()
        .iter()
        .filter(|r| r.url == "/stats?filter=wasmcustom")
        .count();
    assert_eq!(asked, 1, "the admin's /stats was read once");
    run
}

#[test]
fn a_running_gate_with_the_same_list_matches() {
    let api = mock();
    let stats = format!(
        "wasmcustom.wechat_gate.allowlist.entries: 3\nwasmcustom.wechat_gate.allowlist.last_success_unix: {}\nwasmcustom.wechat_gate.forwarded: 12\n",
        now() - 30
    );
    let run = gate_run(&api, stats, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(run.status("gate"), "PASS");
    assert!(
        run.line("gate")
            .contains("the gate holds 3 entries, as WeChat lists now"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_running_gate_with_another_list_or_none_fails() {
    let api = mock();
    let stale = format!("wasmcustom.wechat_gate.allowlist.entries: 2\nwasmcustom.wechat_gate.allowlist.last_success_unix: {}\n", now() - 30);
    let run = gate_run(&api, stale, &[]);
    assert_eq!(run.code, Some(1));
    assert!(run.line("gate").starts_with("FAIL gate"), "{}", run.stdout);
    assert!(
        run.line("gate")
            .contains("holds 2 entries, WeChat lists 3 now"),
        "{}",
        run.stdout
    );

    let never = "wasmcustom.wechat_gate.allowlist.entries: 0\nwasmcustom.wechat_gate.allowlist.last_success_unix: 0\n".to_string();
    let run = gate_run(&api, never, &[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.line("gate")
            .contains("has not loaded WeChat's list yet"),
        "{}",
        run.stdout
    );

    let run = gate_run(&api, "server.live: 1\n".to_string(), &[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.line("gate").contains("no wechat_gate.allowlist stats"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_gate_with_account_tags_is_matched_by_account() {
    let api = mock();
    let t = now() - 5;
    let stats = format!(
        "wasmcustom.wechat_gate.allowlist.entries.account=.=other;.;: 9\n\
         wasmcustom.wechat_gate.allowlist.last_success_unix.account=.=other;.;: {t}\n\
         wasmcustom.wechat_gate.rejected_total.account=.=other;.;reason=.=source;.;: 4\n\
         wasmcustom.wechat_gate.allowlist.entries.account=.={APPID};.;: 3\n\
         wasmcustom.wechat_gate.allowlist.last_success_unix.account=.={APPID};.;: {t}\n"
    );
    let run = gate_run(&api, stats.clone(), &[]);
    assert_eq!(run.status("gate"), "PASS", "{}", run.stdout);
    assert!(run
        .line("gate")
        .contains(&format!("the gate (account {APPID}) holds 3 entries")));
    let run = gate_run(&api, stats, &["--gate-account", "other"]);
    assert_eq!(run.status("gate"), "FAIL", "{}", run.stdout);
    assert!(run
        .line("gate")
        .contains("(account other) holds 9 entries, WeChat lists 3"));
}

#[test]
fn a_callback_url_wechat_cannot_reach_or_resolve_fails_the_network_check() {
    let api = mock();
    api.set_faults(json!({"unreachable": true}));
    let run = doctor(&api, &[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.line("network").starts_with("FAIL network"),
        "{}",
        run.stdout
    );
    assert!(run.line("network").contains("0 of 2 pings answered"));
    assert!(
        run.stdout
            .contains("unreachable from WeChat (every ping lost)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("ping  203.0.113.10  UNICOM    100%          -"),
        "{}",
        run.stdout
    );

    api.set_faults(json!({"no_dns": true}));
    let run = doctor(&api, &[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout
            .contains("WeChat cannot resolve the callback URL's domain"),
        "{}",
        run.stdout
    );

    api.set_faults(json!({"errcodes": {"callback_check": 48001}}));
    let run = doctor(&api, &[]);
    assert!(
        run.line("network")
            .contains("callback/check: errcode 48001: this account has no permission"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_network_check_takes_its_action_and_operator() {
    let api = mock();
    let run = doctor(
        &api,
        &[
            "--check-action",
            "ping",
            "--check-operator",
            "CAP",
            "--json",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let network = &run.json()["checks"][3];
    assert_eq!(network["data"]["dns"], json!([]), "ping only: {network}");
    assert_eq!(network["data"]["ping"][0]["from_operator"], "CAP");
    let bad = run_cli(
        &["doctor", "--appid", APPID, "--check-operator", "MOBILE"],
        &[("WECHAT_APPSECRET", SECRET)],
    );
    assert_eq!(bad.code, Some(2));
}

#[test]
fn backup_domains_report_each_one_reached_or_not() {
    let api = mock();
    let mut resolve: Vec<(&str, u16)> = DOMAINS.iter().map(|d| (*d, api.port)).collect();
    if let Some(hk) = resolve.last_mut() {
        hk.1 = closed_port();
    }
    let run = doctor_with(&api, &resolve, &[]);
    assert_eq!(
        run.code,
        Some(0),
        "a missing backup is a warning: {}",
        run.stdout
    );
    assert_eq!(run.status("backup_domains"), "WARN");
    assert!(run
        .line("backup_domains")
        .contains("4 of 5 API domains probed answered"));
    assert!(
        run.stdout
            .contains("hk.api.weixin.qq.com   not reached: connection failed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("api2.weixin.qq.com     reached in "),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("upstreams, in order: api.weixin.qq.com, api2.weixin.qq.com, sh.api.weixin.qq.com, sz.api.weixin.qq.com\n"));

    // --api is not WeChat's: only the mapped domains are probed, never the real ones.
    let run = doctor_with(&api, &[("api2.weixin.qq.com", api.port)], &[]);
    assert_eq!(run.status("backup_domains"), "PASS", "{}", run.stdout);
    assert!(run
        .line("backup_domains")
        .contains("1 of 1 API domains probed answered"));
    assert_eq!(
        run.stdout
            .matches("not probed (--api is not WeChat's")
            .count(),
        4,
        "{}",
        run.stdout
    );

    let dead = closed_port();
    let none: Vec<(&str, u16)> = DOMAINS.iter().map(|d| (*d, dead)).collect();
    let run = doctor_with(&api, &none, &[]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.status("backup_domains"), "FAIL", "{}", run.stdout);
}

#[test]
fn an_unreachable_api_is_a_failed_token_check_with_advice() {
    let port = closed_port();
    let run = run_cli(
        &[
            "doctor",
            "--appid",
            APPID,
            "--api",
            &format!("http://127.0.0.1:{port}"),
            "--timeout",
            "5",
        ],
        &[("WECHAT_APPSECRET", SECRET)],
    );
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.line("token")
            .contains("stable_token: no reply: connection failed"),
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .contains("-> check that this machine reaches 127.0.0.1"));
}

#[test]
fn the_appsecret_comes_from_the_environment_only() {
    let run = run_cli(&["doctor", "--appid", APPID], &[]);
    assert_eq!(run.code, Some(2));
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains("WECHAT_APPSECRET is not set"),
        "{}",
        run.stderr
    );
    let run = run_cli(
        &[
            "doctor",
            "--appid",
            APPID,
            "--secret-env",
            "ACCOUNT_B_SECRET",
        ],
        &[("WECHAT_APPSECRET", SECRET)],
    );
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("ACCOUNT_B_SECRET is not set"),
        "{}",
        run.stderr
    );
    let run = run_cli(&["doctor", "--appid", APPID, "--secret", SECRET], &[]);
    assert_eq!(run.code, Some(2), "no --secret argument");

    // The secret named by --secret-env is the one sent.
    let api = mock();
    let base = format!("http://127.0.0.1:{}", api.port);
    let run = run_cli(
        &[
            "doctor",
            "--appid",
            APPID,
            "--api",
            &base,
            "--secret-env",
            "ACCOUNT_B_SECRET",
            "--json",
        ],
        &[
            ("ACCOUNT_B_SECRET", SECRET),
            ("WECHAT_APPSECRET", "wrong-one-000"),
        ],
    );
    assert_eq!(run.json()["checks"][0]["status"], "pass", "{}", run.stdout);
}

#[test]
fn a_bad_api_url_or_resolve_is_a_usage_error() {
    for extra in [
        ["--api", "ftp://api.weixin.qq.com"],
        ["--resolve", "api.weixin.qq.com"],
        ["--gate-admin", "127.0.0.1:9901"],
    ] {
        let run = run_cli(
            &[&["doctor", "--appid", APPID][..], &extra].concat(),
            &[("WECHAT_APPSECRET", SECRET)],
        );
        assert_eq!(run.code, Some(2), "{extra:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(extra[0]), "{extra:?}: {}", run.stderr);
    }
}

#[test]
fn an_https_api_is_spoken_to_over_tls() {
    use std::io::Read;
    // A listener that records each connection's first byte and closes it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let first_bytes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = first_bytes.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut byte = [0u8; 1];
            if stream.read_exact(&mut byte).is_ok() {
                seen.lock().expect("bytes").push(byte[0]);
            }
        }
    });
    let mut args = vec![
        "doctor",
        "--appid",
        APPID,
        "--api",
        "https://api.weixin.qq.com",
        "--timeout",
        "5",
    ];
    let resolve: Vec<String> = DOMAINS
        .iter()
        .map(|d| format!("{d}=127.0.0.1:{port}"))
        .collect();
    for r in &resolve {
        args.extend(["--resolve", r.as_str()]);
    }
    let run = run_cli(&args, &[("WECHAT_APPSECRET", SECRET)]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.line("token")
            .contains("stable_token: no reply: connection failed"),
        "{}",
        run.stdout
    );
    let bytes = first_bytes.lock().expect("bytes").clone();
    assert_eq!(bytes.len(), 6, "the token call and five domains: {bytes:?}");
    // 0x16: a TLS handshake record (the ClientHello), never a plaintext request.
    assert!(bytes.iter().all(|b| *b == 0x16), "{bytes:?}");
}

#[test]
fn backup_domains_are_not_probed_for_a_non_wechat_api_without_resolve() {
    let api = mock();
    let run = doctor_with(&api, &[], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(run.status("backup_domains"), "SKIP");
    assert!(
        run.line("backup_domains")
            .contains("not probed: --api is not WeChat's"),
        "{}",
        run.stdout
    );
    assert_eq!(api.count("getcallbackip"), 1, "the list check only");
}
