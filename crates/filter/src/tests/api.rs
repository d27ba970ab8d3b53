//! The API role through the host: a call made from its own HTTP context with the
//! shared token; a call that waits while the root context's tick fetches the token
//! under the lease, then is sent by the root and answered on its own context; two
//! workers sharing one fetch; a refused token fetched once more and the call sent
//! again. (The decisions are the core's, `gate::api`.) No secret or token is logged.

use super::NOW;
use crate::api::http::ApiHttp;
use crate::host::fake::{Call, FakeHost, Reply};
use crate::root::GateRoot;
use gate::api::Outcome;
use gate::exchange::Flow;
use gate::metrics::Counter;
use gate::token::state::RefreshState;
use std::collections::BTreeMap;

const SECRET: &str = "s3cret-app-secret-VALUE";
const APPID: &str = "wx0123456789abcdef";
const REAL: &str = "REAL_ACCESS_TOKEN_1";
const NEW: &str = "NEW_ACCESS_TOKEN_2";
/// The shared refresh state of the account (its token), as `ApiDesk` keys it.
const STATE_KEY: &str = "wechat_gate.wx0123456789abcdef.callback_ip.state";
const USER_INFO: &str = r#"{"subscribe":1,"openid":"o1","nickname":"n"}"#;

fn config() -> String {
    format!(
        r#"{{"role": "api", "path": "/wechat-api/mp", "name": "mp", "appid": "{APPID}",
            "wechat_api": {{"secret": "{SECRET}", "upstreams": [
                {{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}}]}},
            "callers": ["10.0.0.0/8"]}}"#
    )
}

/// One worker: a root context configured for the API role on a (shared) fake host,
/// and its callers' HTTP contexts.
struct Worker {
    host: FakeHost,
    root: GateRoot<FakeHost>,
    root_id: u32,
    streams: BTreeMap<u32, ApiHttp<FakeHost>>,
    last_id: u32,
}

impl Worker {
    fn on(host: &FakeHost, root_id: u32) -> Worker {
        host.state().roots.push(root_id);
        let mut root = GateRoot::new(root_id, host.clone());
        host.enter(root_id);
        assert!(root.on_vm_start());
        host.state().plugin_configuration = config().into_bytes();
        host.enter(root_id);
        assert!(root.on_configure(), "refused: {:?}", host.state().logs);
        assert!(root.api_desk().is_some(), "configured for the API role");
        Worker {
            host: host.clone(),
            root,
            root_id,
            streams: BTreeMap::new(),
            last_id: root_id * 10_000,
        }
    }

    /// A caller's `GET path` (no body) from a listed address: its context's id.
    fn get(&mut self, path: &str) -> u32 {
        let id = self.open("GET", path, &[], "10.1.2.3:40000");
        assert_eq!(
            self.headers(id, true),
            Flow::Pause,
            "the gate answers itself"
        );
        id
    }

    /// A caller's `POST path` with `body`, its headers then its body handed over
    /// (a host that holds the headers for the body): its context's id.
    fn post(&mut self, path: &str, content_type: &str, body: &[u8]) -> u32 {
        let length = body.len().to_string();
        let headers = [("content-type", content_type), ("content-length", &length)];
        let id = self.open("POST", path, &headers, "10.1.2.3:40000");
        self.host.stream(id).request_body = body.to_vec();
        assert_eq!(self.headers(id, false), Flow::Pause, "waits for the body");
        self.host.enter(id);
        let flow = self.stream(id).on_http_request_body(body.len(), true);
        assert_eq!(flow, Flow::Pause);
        id
    }

    /// A new stream with these request headers from `source`: its id.
    fn open(&mut self, method: &str, path: &str, extra: &[(&str, &str)], source: &str) -> u32 {
        self.last_id += 1;
        let id = self.last_id;
        {
            let mut stream = self.host.stream(id);
            stream.request_headers = vec![
                (":method".into(), method.into()),
                (":path".into(), path.into()),
                (":authority".into(), "gate.internal".into()),
            ];
            let extra = extra.iter().map(|(n, v)| (n.to_string(), v.to_string()));
            stream.request_headers.extend(extra);
            let properties = &mut stream.properties;
            properties.insert("source.address".into(), source.as_bytes().to_vec());
            properties.insert("request.total_size".into(), 200u64.to_le_bytes().to_vec());
        }
        let desk = self.root.api_desk().expect("an API desk");
        self.streams.insert(id, ApiHttp::new(id, desk));
        id
    }

    fn headers(&mut self, id: u32, end_of_stream: bool) -> Flow {
        self.host.enter(id);
        self.stream(id).on_http_request_headers(end_of_stream)
    }

    fn tick(&mut self) {
        self.host.enter(self.root_id);
        self.root.on_tick();
    }

    /// The host hands WeChat's reply to call `call_id` to the context that made it.
    fn reply(&mut self, call_id: u32, status: u32, body: &str) {
        let context = {
            let mut state = self.host.state();
            let headers = vec![
                (":status".to_string(), status.to_string()),
                ("content-type".to_string(), "application/json".to_string()),
            ];
            state.call_reply = (headers, body.as_bytes().to_vec());
            state.calls[call_id as usize - 1].context
        };
        self.host.enter(context);
        if context == self.root_id {
            self.root.on_http_call_response(call_id, body.len());
        } else {
            self.stream(context)
                .on_http_call_response(call_id, body.len());
        }
    }

    /// The stream ends (`on_log`, then the context goes).
    fn end(&mut self, id: u32) {
        self.host.enter(id);
        if let Some(mut http) = self.streams.remove(&id) {
            http.on_log();
        }
        self.host.stream(id).gone = true;
    }

    fn stream(&mut self, id: u32) -> &mut ApiHttp<FakeHost> {
        self.streams.get_mut(&id).expect("an open stream")
    }

    fn replies(&self, id: u32) -> Vec<Reply> {
        self.host.stream(id).replies.clone()
    }
}

fn calls(host: &FakeHost) -> Vec<Call> {
    host.state().calls.clone()
}

/// The id of the last call made.
fn last_call(host: &FakeHost) -> u32 {
    u32::try_from(host.state().calls.len()).expect("few calls")
}

fn path_of(call: &Call) -> String {
    let path = call.headers.iter().find(|(n, _)| n == ":path");
    path.map(|(_, p)| p.clone()).unwrap_or_default()
}

fn token_fetches(host: &FakeHost) -> usize {
    let calls = calls(host);
    let fetches = calls
        .iter()
        .filter(|c| path_of(c) == "/cgi-bin/stable_token");
    fetches.count()
}

/// The access token a call to WeChat carries (decoded).
fn token_sent(call: &Call) -> Option<String> {
    let path = path_of(call);
    gate::api::route::query_value(path.split_once('?')?.1, "access_token")
}

fn token_reply(token: &str) -> String {
    format!(r#"{{"access_token":"{token}","expires_in":7200}}"#)
}

/// The account's token in shared data, as another worker (or the callback role)
/// fetched it.
fn share_token(host: &FakeHost, token: &str) {
    let state = RefreshState {
        token: Some(token.into()),
        token_valid_until: NOW + 7000,
        ..RefreshState::default()
    };
    let bytes = serde_json::to_vec(&state).expect("json");
    host.state().shared.insert(STATE_KEY.into(), (bytes, 1));
}

fn shared_token(host: &FakeHost) -> Option<String> {
    let state = host.state();
    let (bytes, _) = state.shared.get(STATE_KEY)?;
    serde_json::from_slice::<RefreshState>(bytes).ok()?.token
}

fn answered(host: &FakeHost, outcome: Outcome) -> i64 {
    host.metric(&Counter::ApiCall(outcome).name("mp"))
}

fn assert_nothing_secret_logged(host: &FakeHost) {
    let state = host.state();
    assert!(
        !state.logs.is_empty(),
        "the configuration at least is logged"
    );
    for (_, line) in &state.logs {
        for secret in [SECRET, REAL, NEW] {
            assert!(!line.contains(secret), "{secret} logged: {line}");
        }
    }
}

#[test]
fn a_call_with_the_shared_token_is_made_from_its_own_context() {
    let host = FakeHost::at(NOW);
    let mut w = Worker::on(&host, 1);
    share_token(&host, REAL);
    let id = w.get("/wechat-api/mp/cgi-bin/user/info?openid=o1&access_token=STAND_IN&lang=zh_CN");
    let sent = calls(&host);
    assert_eq!(sent.len(), 1, "no token fetch");
    let call = &sent[0];
    assert_eq!(call.context, id, "made by the caller's own context");
    assert_eq!(call.cluster, "wechat_api");
    assert_eq!(token_sent(call).as_deref(), Some(REAL));
    let path = path_of(call);
    assert!(
        path.starts_with("/cgi-bin/user/info?") && path.ends_with("&openid=o1&lang=zh_CN"),
        "{path}"
    );
    assert!(w.replies(id).is_empty());

    w.reply(1, 200, USER_INFO);
    let replies = w.replies(id);
    assert_eq!(replies.len(), 1);
    assert_eq!(
        (replies[0].status, replies[0].body.as_slice()),
        (200, USER_INFO.as_bytes())
    );
    assert!(replies[0]
        .headers
        .contains(&("content-type".into(), "application/json".into())));
    assert_eq!(answered(&host, Outcome::Answered), 1);
    assert_nothing_secret_logged(&host);
}

#[test]
fn a_call_waits_while_the_tick_fetches_the_token_then_the_root_sends_it() {
    let host = FakeHost::at(NOW);
    let mut w = Worker::on(&host, 1);
    let id = w.get("/wechat-api/mp/cgi-bin/user/info?openid=o1");
    assert!(
        calls(&host).is_empty(),
        "no call from the HTTP context without a token"
    );
    assert_eq!(host.state().tick_period, Some(crate::api::desk::BUSY_TICK));

    w.tick();
    let sent = calls(&host);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].context, path_of(&sent[0]).as_str()),
        (1, "/cgi-bin/stable_token")
    );
    let body: serde_json::Value =
        serde_json::from_slice(sent[0].body.as_deref().expect("a body")).expect("json");
    assert_eq!(
        (body["appid"].as_str(), body["force_refresh"].as_bool()),
        (Some(APPID), Some(false))
    );
    w.tick();
    assert_eq!(
        calls(&host).len(),
        1,
        "the fetch is under way: no second one"
    );

    w.reply(1, 200, &token_reply(REAL));
    assert_eq!(shared_token(&host).as_deref(), Some(REAL));
    let sent = calls(&host);
    assert_eq!(sent.len(), 2, "the waiting call is sent at once");
    assert_eq!(sent[1].context, 1, "by the root context");
    assert_eq!(token_sent(&sent[1]).as_deref(), Some(REAL));
    assert!(w.replies(id).is_empty());

    w.reply(2, 200, USER_INFO);
    let replies = w.replies(id);
    assert_eq!(replies.len(), 1, "answered on the caller's context");
    assert_eq!(
        (replies[0].status, replies[0].body.as_slice()),
        (200, USER_INFO.as_bytes())
    );
    assert_eq!(
        host.state().current,
        1,
        "the root context acts for itself again"
    );
    assert_eq!(host.metric(&Counter::TokenFetches.name("mp")), 1);
    assert_nothing_secret_logged(&host);
}

#[test]
fn two_workers_share_one_token_fetch() {
    let host = FakeHost::at(NOW);
    let mut a = Worker::on(&host, 1);
    let mut b = Worker::on(&host, 2);
    let on_a = a.get("/wechat-api/mp/cgi-bin/user/info?openid=a");
    let on_b = b.get("/wechat-api/mp/cgi-bin/user/info?openid=b");
    a.tick();
    b.tick();
    b.tick();
    assert_eq!(token_fetches(&host), 1, "b waits for a's fetch");
    assert_eq!(calls(&host).len(), 1);

    a.reply(1, 200, &token_reply(REAL));
    assert_eq!(calls(&host).len(), 2, "a sends its call");
    b.tick();
    let sent = calls(&host);
    assert_eq!(sent.len(), 3, "b sends its call with a's token");
    assert_eq!(token_fetches(&host), 1);
    assert_eq!(
        (sent[2].context, token_sent(&sent[2]).as_deref()),
        (2, Some(REAL))
    );

    a.reply(2, 200, USER_INFO);
    b.reply(3, 200, USER_INFO);
    assert_eq!(a.replies(on_a).len(), 1);
    assert_eq!(b.replies(on_b).len(), 1);
    assert_nothing_secret_logged(&host);
}

#[test]
fn a_refused_token_is_fetched_once_more_and_the_call_sent_again() {
    let host = FakeHost::at(NOW);
    let mut w = Worker::on(&host, 1);
    share_token(&host, REAL);
    let id = w.get("/wechat-api/mp/cgi-bin/user/info?openid=o1");
    assert_eq!(token_sent(&calls(&host)[0]).as_deref(), Some(REAL));

    w.reply(
        1,
        200,
        r#"{"errcode":40001,"errmsg":"invalid credential, access_token is invalid or not latest"}"#,
    );
    assert!(
        w.replies(id).is_empty(),
        "the caller does not see the refusal"
    );
    assert_eq!(calls(&host).len(), 1, "no call with the refused token");
    w.tick();
    assert_eq!(token_fetches(&host), 1);
    assert_eq!(
        shared_token(&host),
        None,
        "the refused token is dropped under the lease"
    );
    w.reply(last_call(&host), 200, &token_reply(NEW));
    assert_eq!(shared_token(&host).as_deref(), Some(NEW));
    w.tick();
    let sent = calls(&host);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(token_fetches(&host), 1, "one refetch");
    assert_eq!(token_sent(&sent[2]).as_deref(), Some(NEW));

    w.reply(3, 200, USER_INFO);
    let replies = w.replies(id);
    assert_eq!(replies.len(), 1, "only the second answer");
    assert_eq!(replies[0].body, USER_INFO.as_bytes());
    assert_eq!(host.metric(&Counter::ApiTokenRetried.name("mp")), 1);
    assert_eq!(answered(&host, Outcome::Answered), 1);
    assert_nothing_secret_logged(&host);
}

#[test]
fn the_refused_token_handed_back_is_forced_once() {
    let host = FakeHost::at(NOW);
    let mut w = Worker::on(&host, 1);
    share_token(&host, REAL);
    let id = w.get("/wechat-api/mp/cgi-bin/user/info?openid=o1");
    w.reply(
        1,
        200,
        r#"{"errcode":42001,"errmsg":"access_token expired"}"#,
    );
    w.tick();
    w.reply(last_call(&host), 200, &token_reply(REAL));
    let forced = calls(&host).last().cloned().expect("a call");
    let body: serde_json::Value =
        serde_json::from_slice(forced.body.as_deref().expect("a body")).expect("json");
    assert_eq!(body["force_refresh"], true);
    w.reply(last_call(&host), 200, &token_reply(NEW));
    assert_eq!(host.metric(&Counter::TokenForced.name("mp")), 1);
    let sent = calls(&host);
    assert_eq!(
        token_sent(sent.last().expect("a call")).as_deref(),
        Some(NEW)
    );
    w.reply(last_call(&host), 200, USER_INFO);
    assert_eq!(w.replies(id).len(), 1);
    assert_nothing_secret_logged(&host);
}

#[test]
fn a_body_goes_to_wechat_byte_for_byte_with_its_content_type() {
    let host = FakeHost::at(NOW);
    let mut w = Worker::on(&host, 1);
    share_token(&host, REAL);
    let body: Vec<u8> = b"--b\r\nContent-Disposition: form-data; name=\"media\"\r\n\r\n"
        .iter()
        .copied()
        .chain(0..=255u8)
        .collect();
    let id = w.post(
        "/wechat-api/mp/cgi-bin/media/upload?type=image",
        "multipart/form-data; boundary=b",
        &body,
    );
    let sent = calls(&host);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body.as_deref(), Some(body.as_slice()));
    let header = |name: &str| {
        sent[0]
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header(":method").as_deref(), Some("POST"));
    assert_eq!(
        header("content-type").as_deref(),
        Some("multipart/form-data; boundary=b")
    );
    assert_eq!(
        header("content-length"),
        None,
        "only content-type is passed on"
    );
    w.reply(1, 200, r#"{"type":"image","media_id":"m","created_at":1}"#);
    assert_eq!(w.replies(id).len(), 1);
}

#[test]
fn the_gate_answers_token_requests_strangers_and_large_bodies_itself() {
    let host = FakeHost::at(NOW);
    let mut w = Worker::on(&host, 1);
    let stand_in =
        w.get("/wechat-api/mp/cgi-bin/token?grant_type=client_credential&appid=x&secret=y");
    let reply = &w.replies(stand_in)[0];
    assert_eq!(reply.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).expect("json");
    assert_eq!(body["access_token"], gate::api::STAND_IN_TOKEN);
    w.end(stand_in);
    assert_eq!(host.metric(&Counter::ApiStandIn.name("mp")), 1);

    let stranger = w.open(
        "GET",
        "/wechat-api/mp/cgi-bin/user/info",
        &[],
        "192.0.2.1:5000",
    );
    assert_eq!(w.headers(stranger, true), Flow::Pause);
    assert_eq!(w.replies(stranger)[0].status, 403);

    let huge = (12 * 1024 * 1024 + 1).to_string();
    let large = w.open(
        "POST",
        "/wechat-api/mp/cgi-bin/media/upload",
        &[("content-length", &huge)],
        "10.0.0.1:1",
    );
    assert_eq!(w.headers(large, false), Flow::Pause);
    assert_eq!(w.replies(large)[0].status, 413);

    let other = w.open(
        "GET",
        "/wechat-api/mpx/cgi-bin/user/info",
        &[],
        "192.0.2.1:5000",
    );
    assert_eq!(
        w.headers(other, true),
        Flow::Continue,
        "not this instance's"
    );
    assert!(calls(&host).is_empty(), "WeChat is not called");
    for id in [stranger, large, other] {
        w.end(id);
    }
    assert_eq!(answered(&host, Outcome::Refused), 2);
}

#[test]
fn a_failed_fetch_answers_the_waiting_calls_with_wechats_advice() {
    let host = FakeHost::at(NOW);
    let mut w = Worker::on(&host, 1);
    let id = w.get("/wechat-api/mp/cgi-bin/user/info?openid=o1");
    w.tick();
    w.reply(
        1,
        200,
        r#"{"errcode":40164,"errmsg":"invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist"}"#,
    );
    let replies = w.replies(id);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 503);
    let body: serde_json::Value = serde_json::from_slice(&replies[0].body).expect("json");
    assert_eq!(body["errcode"], 95030);
    let errmsg = body["errmsg"].as_str().expect("errmsg");
    assert!(
        errmsg.contains("40164") && errmsg.contains("203.0.113.7"),
        "{errmsg}"
    );
    assert_eq!(
        calls(&host).len(),
        1,
        "WeChat is not called without a token"
    );
    assert_eq!(answered(&host, Outcome::Unanswered), 1);
    // A new call within the hold-off is answered at once, with no fetch.
    let again = w.get("/wechat-api/mp/cgi-bin/user/info?openid=o2");
    assert_eq!(w.replies(again)[0].status, 503);
    w.tick();
    assert_eq!(calls(&host).len(), 1);
    assert!(host.logged("203.0.113.7") > 0, "the operator is told");
    assert_nothing_secret_logged(&host);
}

#[test]
fn a_ticket_is_fetched_once_then_answered_from_the_cache() {
    let host = FakeHost::at(NOW);
    let mut w = Worker::on(&host, 1);
    share_token(&host, REAL);
    let first = w.get("/wechat-api/mp/cgi-bin/ticket/getticket?type=jsapi");
    let ticket = r#"{"errcode":0,"errmsg":"ok","ticket":"JSAPI_TICKET","expires_in":7200}"#;
    w.reply(1, 200, ticket);
    assert_eq!(w.replies(first)[0].body, ticket.as_bytes());

    let page =
        "/wechat-api/mp/wechat-gate/jssdk-config?url=https%3A%2F%2Fexample.com%2Fp%3Fa%3D1%23frag";
    let jssdk = w.get(page);
    let second = w.get("/wechat-api/mp/cgi-bin/ticket/getticket?type=jsapi");
    assert_eq!(calls(&host).len(), 1, "both from the cache");
    w.end(second);
    assert_eq!(host.metric(&Counter::TicketHits.name("mp")), 2);
    let body: serde_json::Value = serde_json::from_slice(&w.replies(second)[0].body).expect("json");
    assert_eq!(body["ticket"], "JSAPI_TICKET");
    let body: serde_json::Value = serde_json::from_slice(&w.replies(jssdk)[0].body).expect("json");
    let (nonce, timestamp) = (
        body["nonceStr"].as_str().expect("nonce"),
        body["timestamp"].as_i64().expect("ts"),
    );
    let url = "https://example.com/p?a=1";
    assert_eq!(body["url"], url);
    assert_eq!(body["appId"], APPID);
    assert_eq!(timestamp, NOW);
    assert_eq!(
        body["signature"].as_str(),
        Some(gate::api::ticket::jssdk_signature("JSAPI_TICKET", nonce, timestamp, url).as_str())
    );
}

#[test]
fn jssdk_config_without_a_cached_ticket_fetches_it_and_signs_with_it() {
    let host = FakeHost::at(NOW);
    let mut w = Worker::on(&host, 1);
    share_token(&host, REAL);
    let id = w.get("/wechat-api/mp/wechat-gate/jssdk-config?url=https%3A%2F%2Fexample.com%2Fp");
    let sent = calls(&host);
    assert_eq!(sent.len(), 1);
    let path = path_of(&sent[0]);
    assert!(path.starts_with("/cgi-bin/ticket/getticket?"), "{path}");
    assert_eq!(token_sent(&sent[0]).as_deref(), Some(REAL));
    let ticket = r#"{"errcode":0,"errmsg":"ok","ticket":"JSAPI_TICKET","expires_in":7200}"#;
    w.reply(1, 200, ticket);
    let replies = w.replies(id);
    assert_eq!(replies.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&replies[0].body).expect("json");
    let nonce = body["nonceStr"].as_str().expect("a nonce");
    let url = "https://example.com/p";
    let signature = gate::api::ticket::jssdk_signature("JSAPI_TICKET", nonce, NOW, url);
    assert_eq!(body["signature"].as_str(), Some(signature.as_str()));
    assert!(!String::from_utf8_lossy(&replies[0].body).contains("JSAPI_TICKET"));
    w.end(id);
    assert_eq!(host.metric(&Counter::TicketFetches.name("mp")), 1);
    let cached = w.get("/wechat-api/mp/cgi-bin/ticket/getticket?type=jsapi");
    assert_eq!(calls(&host).len(), 1, "the ticket was cached");
    assert_eq!(w.replies(cached).len(), 1);
}

#[test]
fn a_call_that_waits_longer_than_a_fetch_may_take_is_answered_503() {
    let host = FakeHost::at(NOW);
    let mut a = Worker::on(&host, 1);
    let mut b = Worker::on(&host, 2);
    a.get("/wechat-api/mp/cgi-bin/user/info?openid=a");
    a.tick();
    assert_eq!(
        token_fetches(&host),
        1,
        "a holds the lease; its fetch is never answered"
    );
    let id = b.get("/wechat-api/mp/cgi-bin/user/info?openid=b");
    b.tick();
    assert!(b.replies(id).is_empty(), "b waits for a's fetch");
    let api = gate::config::parse_plugin(config().as_bytes(), &|_| None).expect("valid");
    let gate::config::Plugin::Api(api) = api else {
        panic!("the API role");
    };
    let lease = gate::api::token::lease_seconds(&api.api);
    host.advance(std::time::Duration::from_secs(
        u64::try_from(lease).expect("positive") + 2,
    ));
    b.tick();
    let replies = b.replies(id);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 503);
}
