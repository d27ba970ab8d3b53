//! `wechat-gate doctor --gate-api URL` against a fake API-role gate (a recording
//! server answering as the contract says the gate does): the stand-in token and a
//! harmless read passing, each of the gate's refusals told plainly, a URL that hands
//! out a real-looking token failing (and the token never printed), WeCom's gettoken.
//! No AppSecret in the environment: a backend that checks its gate holds none.

use crate::harness::backend::{Backend, Recorded, Reply};
use crate::harness::cli::{cli, Ran};
use crate::harness::closed_port;

const PATH: &str = "/wechat-api/mp";
const STAND_IN: &str = "WECHAT_GATE_STAND_IN_NOT_A_WECHAT_TOKEN";
const STAND_IN_REPLY: &str =
    r#"{"access_token":"WECHAT_GATE_STAND_IN_NOT_A_WECHAT_TOKEN","expires_in":7200}"#;
const IPS_REPLY: &str = r#"{"ip_list":["101.89.47.18","101.91.34.103"]}"#;

/// A fake gate under [`PATH`]: `token` answers the token endpoints, `read` the
/// harmless read; anything else 404 as Envoy would.
fn fake_gate(token: Reply, read: Reply) -> Backend {
    let (token, read) = (
        std::sync::Mutex::new(Some(token)),
        std::sync::Mutex::new(Some(read)),
    );
    Backend::replying(move |r: &Recorded| {
        let take = |slot: &std::sync::Mutex<Option<Reply>>| {
            let held = slot.lock().expect("lock");
            held.as_ref()
                .map(|r| Reply::status(r.status, &String::from_utf8_lossy(&r.body)))
                .unwrap_or_else(|| Reply::status(500, ""))
        };
        let path = r.url.split('?').next().unwrap_or_default();
        match path.strip_prefix(PATH) {
            Some("/cgi-bin/token") => take(&token),
            Some("/cgi-bin/get_api_domain_ip") => take(&read),
            _ => Reply::status(404, "not found\n"),
        }
    })
}

/// `doctor --gate-api <gate><PATH>` with no secret in the environment.
fn doctor(gate: &Backend, extra: &[&str]) -> Ran {
    let url = format!("{}{PATH}", gate.url());
    let args = [
        &["doctor", "--gate-api", url.as_str(), "--timeout", "5"][..],
        extra,
    ]
    .concat();
    cli(&args, &[])
}

/// The report line of check `name`.
fn line<'a>(run: &'a Ran, name: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| {
            l.get(5..)
                .is_some_and(|rest| rest.split(' ').next() == Some(name))
        })
        .unwrap_or_else(|| panic!("no {name} line in:\n{}{}", run.stdout, run.stderr))
}

#[test]
fn a_gate_that_hands_out_its_stand_in_and_relays_a_read_passes_with_no_secret_here() {
    let gate = fake_gate(Reply::ok(STAND_IN_REPLY), Reply::ok(IPS_REPLY));
    let run = doctor(&gate, &[]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        line(&run, "gate_api_token").starts_with("PASS"),
        "{}",
        run.stdout
    );
    assert!(line(&run, "gate_api_token").contains("stand-in"));
    let read = line(&run, "gate_api_call");
    assert!(read.starts_with("PASS"), "{}", run.stdout);
    assert!(read.contains("errcode 0 (2 API addresses)"), "{read}");
    // The read carries no token: the gate adds the real one.
    let urls: Vec<String> = gate.records().iter().map(|r| r.url.clone()).collect();
    assert!(
        urls.contains(&format!("{PATH}/cgi-bin/get_api_domain_ip")),
        "{urls:?}"
    );
    assert!(urls.iter().all(|u| !u.contains("access_token")), "{urls:?}");
    let json = doctor(&gate, &["--json"]).json();
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["checks"][0]["name"], "gate_api_token");
}

#[test]
fn a_caller_outside_callers_is_told_so() {
    let refusal =
        r#"{"errcode":94030,"errmsg":"wechat-gate: the caller 127.0.0.1 is not in callers"}"#;
    let gate = fake_gate(Reply::status(403, refusal), Reply::status(403, refusal));
    let run = doctor(&gate, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let token = line(&run, "gate_api_token");
    assert!(token.starts_with("FAIL"), "{}", run.stdout);
    assert!(token.contains("HTTP 403, errcode 94030"), "{token}");
    assert!(
        run.stdout.contains("not in the instance's `callers`"),
        "{}",
        run.stdout
    );
}

#[test]
fn no_token_to_be_had_carries_wechats_advice() {
    let refusal = r#"{"errcode":95030,"errmsg":"wechat-gate: no access token: WeChat answered errcode 40164: add the proxy's egress IP 203.0.113.7 to the account's IP whitelist"}"#;
    let gate = fake_gate(Reply::ok(STAND_IN_REPLY), Reply::status(503, refusal));
    let run = doctor(&gate, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(line(&run, "gate_api_token").starts_with("PASS"));
    let read = line(&run, "gate_api_call");
    assert!(read.starts_with("FAIL"), "{}", run.stdout);
    assert!(read.contains("HTTP 503, errcode 95030"), "{read}");
    assert!(
        read.contains("40164: add the proxy's egress IP 203.0.113.7"),
        "{read}"
    );
}

#[test]
fn a_url_that_hands_out_a_real_looking_token_fails_and_the_token_is_not_printed() {
    let real = "86_RealLookingAccessTokenFromWeChat_xyz0123456789";
    let reply = format!(r#"{{"access_token":"{real}","expires_in":7200}}"#);
    let gate = fake_gate(Reply::ok(&reply), Reply::ok(IPS_REPLY));
    for extra in [&[][..], &["--json"][..]] {
        let run = doctor(&gate, extra);
        assert_eq!(run.code, Some(1), "{}", run.stdout);
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(real), "the token was printed:\n{text}");
        }
    }
    let run = doctor(&gate, &[]);
    assert!(
        line(&run, "gate_api_token").contains("not the gate's stand-in"),
        "{}",
        run.stdout
    );
}

#[test]
fn wecoms_gettoken_is_the_stand_in_endpoint_there() {
    // On WeCom, /cgi-bin/token is no stand-in path: the gate sends it to WeChat.
    let gate = Backend::replying(|r: &Recorded| {
        match r
            .url
            .split('?')
            .next()
            .unwrap_or_default()
            .strip_prefix(PATH)
        {
            Some("/cgi-bin/token") => {
                Reply::ok(r#"{"errcode":40014,"errmsg":"invalid access_token"}"#)
            }
            Some("/cgi-bin/gettoken") => Reply::ok(&format!(
                r#"{{"errcode":0,"errmsg":"ok","access_token":"{STAND_IN}","expires_in":7200}}"#
            )),
            Some("/cgi-bin/get_api_domain_ip") => {
                Reply::ok(r#"{"errcode":0,"errmsg":"ok","ip_list":["182.254.11.176"]}"#)
            }
            _ => Reply::status(404, "not found\n"),
        }
    });
    let run = doctor(&gate, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        line(&run, "gate_api_token").contains("/cgi-bin/gettoken"),
        "{}",
        run.stdout
    );
}

#[test]
fn no_gate_at_the_url_is_a_failed_check_not_a_crash() {
    let gate = Backend::replying(|_: &Recorded| Reply::status(404, "not found\n"));
    let run = doctor(&gate, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        line(&run, "gate_api_token").contains("not JSON"),
        "{}",
        run.stdout
    );

    let url = format!("http://127.0.0.1:{}{PATH}", closed_port());
    let run = cli(&["doctor", "--gate-api", &url, "--timeout", "2"], &[]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        line(&run, "gate_api_token").contains("no reply"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_appid_is_needed_only_without_gate_api() {
    let run = cli(&["doctor"], &[]);
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("--appid"), "{}", run.stderr);
}
