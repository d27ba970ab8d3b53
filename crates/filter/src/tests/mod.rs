//! The root and HTTP contexts driven natively through the fake host, one file per rule
//! of the host layer. [`Gate`] is one worker: a root context on a [`FakeHost`] (the
//! VM) and the streams a test opens, each driven as Envoy would, with the host acting
//! on the context whose callback runs.

mod api;
mod cost;
mod deadline;
mod live_list;
mod metrics;
mod notes;
mod parking;
mod reconfigure;
mod refused_effects;
mod tick_budget;

use crate::host::fake::{Call, FakeHost, Stream};
use crate::http::GateHttp;
use crate::root::GateRoot;
use gate::exchange::Flow;
use gate::query::encode_query;
use gate::signature::{as_str, request_signature};
use std::collections::BTreeMap;
use std::time::Duration;

pub const TOKEN: &str = "tok";
/// The host's clock when a test starts, and every push's timestamp.
pub const NOW: i64 = 1_800_000_000;
/// The account's name in its metrics.
pub const ACCOUNT: &str = "acct";
const ROOT: u32 = 1;

/// A configuration guarding `/wechat` for a source the pushes come from, with
/// `extra` fields.
pub fn config(extra: &str) -> String {
    format!(
        r#"{{"path": "/wechat", "name": "{ACCOUNT}", "token": "{TOKEN}", "appid": "wx1234",
            "source": {{"allow": ["127.0.0.2"]}}{extra}}}"#
    )
}

/// A query signed with [`TOKEN`] at [`NOW`].
fn signed_query(nonce: &str, extra: &[(&str, &str)]) -> String {
    let timestamp = NOW.to_string();
    let signature = request_signature(TOKEN, &timestamp, nonce);
    let mut pairs = vec![
        ("signature", as_str(&signature)),
        ("timestamp", timestamp.as_str()),
        ("nonce", nonce),
    ];
    pairs.extend_from_slice(extra);
    encode_query(&pairs)
}

/// A text message with its own MsgId (so no two are WeChat's retries).
fn message(msg_id: u32) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o_sender]]>\
         </FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[hi]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )
}

/// Envoy's byte count for a request's headers, before any of its body.
const HEADER_BYTES: u64 = 200;

pub struct Gate {
    pub host: FakeHost,
    pub root: GateRoot<FakeHost>,
    root_id: u32,
    streams: BTreeMap<u32, GateHttp<FakeHost>>,
    last_id: u32,
}

impl Gate {
    /// A worker configured with `json`, on a fresh host.
    pub fn configured(json: &str) -> Gate {
        Gate::on(FakeHost::at(NOW), ROOT, json)
    }

    /// A root context `root_id` configured with `json` on `host` (another of the
    /// same VM's if the host already has one).
    pub fn on(host: FakeHost, root_id: u32, json: &str) -> Gate {
        host.state().roots.push(root_id);
        let mut root = GateRoot::new(root_id, host.clone());
        host.enter(root_id);
        assert!(root.on_vm_start());
        let mut gate = Gate {
            host,
            root,
            root_id,
            streams: BTreeMap::new(),
            last_id: root_id * 10_000,
        };
        assert!(
            gate.reconfigure(json),
            "refused: {:?}",
            gate.host.state().logs
        );
        gate
    }

    /// A (new) configuration for the root context, as `proxy_on_configure` hands it.
    pub fn reconfigure(&mut self, json: &str) -> bool {
        self.host.state().plugin_configuration = json.as_bytes().to_vec();
        self.host.enter(self.root_id);
        self.root.on_configure()
    }

    pub fn tick(&mut self) {
        self.host.enter(self.root_id);
        self.root.on_tick();
    }

    /// The root context's tick period, as it last asked the host.
    pub fn tick_period(&self) -> Option<Duration> {
        self.host.state().tick_period
    }

    /// A new stream with these request headers (`source.address` a listed one);
    /// its id.
    pub fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        self.last_id += 1;
        let id = self.last_id;
        {
            let mut stream = self.host.stream(id);
            stream.request_headers = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            let properties = &mut stream.properties;
            properties.insert("source.address".into(), b"127.0.0.2:4000".to_vec());
            properties.insert("request.total_size".into(), count(HEADER_BYTES));
        }
        self.host.enter(self.root_id);
        let http = self.root.create_http_context(id);
        self.streams.insert(id, http);
        id
    }

    /// A signed push (a new nonce and MsgId each) whose headers have reached the
    /// filter and whose body Envoy has not received yet: its id, and what the
    /// headers phase answered.
    pub fn push(&mut self) -> (u32, Flow) {
        self.push_where(|_| {})
    }

    /// As [`Gate::push`], the stream set up by `setup` before its headers reach the
    /// filter.
    pub fn push_where(&mut self, setup: impl FnOnce(&mut Stream)) -> (u32, Flow) {
        let n = self.last_id + 1;
        let body = message(n);
        let path = format!("/wechat?{}", signed_query(&n.to_string(), &[]));
        let length = body.len().to_string();
        let id = self.open(&[
            (":authority", "gate.example"),
            (":method", "POST"),
            (":path", &path),
            ("content-type", "text/xml"),
            ("content-length", &length),
        ]);
        {
            let mut stream = self.host.stream(id);
            stream.request_body = body.into_bytes();
            setup(&mut stream);
        }
        let flow = self.request_headers(id, false);
        (id, flow)
    }

    /// The handshake WeChat sends to check the URL, with this nonce.
    pub fn handshake(&mut self, nonce: &str) -> (u32, Flow) {
        let path = format!("/wechat?{}", signed_query(nonce, &[("echostr", "echo")]));
        let id = self.open(&[(":method", "GET"), (":path", &path)]);
        let flow = self.request_headers(id, true);
        (id, flow)
    }

    pub fn request_headers(&mut self, id: u32, end_of_stream: bool) -> Flow {
        self.host.enter(id);
        self.stream(id).on_http_request_headers(end_of_stream)
    }

    /// Hands the filter the push's whole body (a host that holds does, while the
    /// headers wait).
    pub fn request_body(&mut self, id: u32) -> Flow {
        let size = self.host.stream(id).request_body.len();
        self.host.enter(id);
        self.stream(id).on_http_request_body(size, true)
    }

    /// Envoy has received the push's body and keeps it back from the filter (a
    /// host that streams, while the headers wait).
    pub fn body_kept_by_host(&mut self, id: u32) {
        let mut stream = self.host.stream(id);
        let size = stream.request_body.len() as u64;
        let total = count(HEADER_BYTES + size);
        stream.properties.insert("request.total_size".into(), total);
    }

    /// The response's headers reach the filter.
    pub fn response_headers(&mut self, id: u32, end_of_stream: bool) -> Flow {
        self.host.enter(id);
        self.stream(id).on_http_response_headers(end_of_stream)
    }

    /// The stream ends (`on_log`, then the context goes).
    pub fn end(&mut self, id: u32) {
        self.host.enter(id);
        if let Some(mut http) = self.streams.remove(&id) {
            http.on_log();
        }
        self.host.stream(id).gone = true;
    }

    /// Answers the last HTTP call the root context made with `status` and `body`, as
    /// the host does (`on_http_call_response`); the call.
    pub fn answer_last_call(&mut self, status: u32, body: &str) -> Call {
        let (id, call) = {
            let mut state = self.host.state();
            let status = vec![(":status".to_string(), status.to_string())];
            state.call_reply = (status, body.as_bytes().to_vec());
            let id = u32::try_from(state.calls.len()).expect("few calls");
            (id, state.calls.last().cloned().expect("a call made"))
        };
        self.host.enter(self.root_id);
        self.root.on_http_call_response(id, body.len());
        call
    }

    /// The statuses of the local replies sent on `id`.
    pub fn replies(&self, id: u32) -> Vec<u32> {
        let stream = self.host.stream(id);
        stream.replies.iter().map(|r| r.status).collect()
    }

    /// The worker learns that its host holds a paused request's body for the
    /// filter (a first push's body handed over while its headers waited).
    pub fn learn_hold_mode(&mut self) {
        let (id, _) = self.push();
        assert_eq!(self.request_body(id), Flow::Continue);
        self.end(id);
    }

    fn stream(&mut self, id: u32) -> &mut GateHttp<FakeHost> {
        self.streams.get_mut(&id).expect("an open stream")
    }
}

/// `request.total_size` as Envoy gives it: a little-endian 64-bit integer.
fn count(bytes: u64) -> Vec<u8> {
    bytes.to_le_bytes().to_vec()
}

/// Just past a held push's deadline, whenever it was held: a deadline is set by the
/// tick's clock and one tick period (at most a second) later (`Worker::deadline_after`).
pub fn past_the_deadline() -> Duration {
    Duration::from_millis(gate::body::BODY_DEADLINE_MS + 1000 + 1)
}
