//! A [`Host`] for the crate's tests: one VM's host, in memory. It answers what a test
//! sets up (each stream's headers, body and properties, shared data with CAS, the
//! clock, the configuration, the replies to HTTP calls) and records what the filter
//! did (local replies, header writes, resumed streams, metrics, log lines, calls out,
//! the tick period). Clones share one host, as a VM's contexts do.

use super::{Body, Headers, Host, Level, MetricKind, Refused, Shared};
use gate::header_map::HeaderMap;
use std::cell::{RefCell, RefMut};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// The status a refused call answers (any but Ok would do).
const REFUSED: Refused = Refused(2);

/// One stream as the host holds it.
#[derive(Debug, Default)]
pub struct Stream {
    pub request_headers: Vec<(String, String)>,
    pub request_trailers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
    /// Properties by their path joined with `.` (`source.address`).
    pub properties: HashMap<String, Vec<u8>>,
    /// Every write to the request's headers is refused.
    pub refuse_request_header_writes: bool,
    /// The local replies sent on this stream.
    pub replies: Vec<Reply>,
    /// How often it was let go on (`resume_request`).
    pub resumed: usize,
    /// The stream has ended: the host refuses to act on it.
    pub gone: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An HTTP call the filter made (its id is its place in [`State::calls`] plus one).
#[derive(Debug, Clone)]
pub struct Call {
    /// The context that made it, to which the host hands its reply.
    pub context: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug)]
pub struct Metric {
    pub name: String,
    pub value: i64,
}

/// Everything the host knows.
#[derive(Debug)]
pub struct State {
    /// The context hostcalls act on.
    pub current: u32,
    pub streams: BTreeMap<u32, Stream>,
    /// The root contexts, which hostcalls may always act on again.
    pub roots: Vec<u32>,
    /// Shared data: value and CAS by key.
    pub shared: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
    pub now: Duration,
    pub tick_period: Option<Duration>,
    pub plugin_configuration: Vec<u8>,
    pub env: HashMap<String, String>,
    /// Metrics by id.
    pub metrics: Vec<Metric>,
    pub logs: Vec<(Level, String)>,
    pub calls: Vec<Call>,
    /// The reply to the HTTP call being answered: its headers and body.
    pub call_reply: (Vec<(String, String)>, Vec<u8>),
    /// Every hostcall made, in order, each as `name detail` (what a push costs the
    /// host: `tests::cost`).
    pub hostcalls: Vec<String>,
}

#[derive(Clone)]
pub struct FakeHost {
    state: Rc<RefCell<State>>,
    notes_said: Rc<AtomicU32>,
}

impl FakeHost {
    /// A host whose clock reads `now` (Unix seconds).
    pub fn at(now: i64) -> FakeHost {
        let now = Duration::from_secs(u64::try_from(now).expect("a time after 1970"));
        FakeHost {
            state: Rc::new(RefCell::new(State {
                current: 0,
                streams: BTreeMap::new(),
                roots: Vec::new(),
                shared: HashMap::new(),
                last_cas: 0,
                now,
                tick_period: None,
                plugin_configuration: Vec::new(),
                env: HashMap::new(),
                metrics: Vec::new(),
                logs: Vec::new(),
                calls: Vec::new(),
                call_reply: (Vec::new(), Vec::new()),
                hostcalls: Vec::new(),
            })),
            notes_said: Rc::default(),
        }
    }

    pub fn state(&self) -> RefMut<'_, State> {
        self.state.borrow_mut()
    }

    /// Notes a hostcall in [`State::hostcalls`].
    fn called(&self, name: &str, detail: impl fmt::Display) {
        self.state().hostcalls.push(format!("{name} {detail}"));
    }

    /// The hostcalls made since the last time this was asked.
    pub fn take_hostcalls(&self) -> Vec<String> {
        std::mem::take(&mut self.state().hostcalls)
    }

    /// Makes `context_id` the context hostcalls act on, as the host does before a
    /// callback.
    pub fn enter(&self, context_id: u32) {
        self.state().current = context_id;
    }

    /// The stream `context_id` (created empty if the host has none yet).
    pub fn stream(&self, context_id: u32) -> RefMut<'_, Stream> {
        RefMut::map(self.state(), |s| s.streams.entry(context_id).or_default())
    }

    pub fn advance(&self, by: Duration) {
        self.state().now += by;
    }

    /// The value `name`'s counter or gauge was handed (0 if never).
    pub fn metric(&self, name: &str) -> i64 {
        let state = self.state();
        let metric = state.metrics.iter().find(|m| m.name == name);
        metric.map_or(0, |m| m.value)
    }

    /// The lines logged that contain `text`.
    pub fn logged(&self, text: &str) -> usize {
        let state = self.state();
        state.logs.iter().filter(|(_, l)| l.contains(text)).count()
    }

    /// The replies to every stream, with the stream's id, in stream order.
    pub fn replies(&self) -> Vec<(u32, u32)> {
        let state = self.state();
        let streams = state.streams.iter();
        let replies = streams.flat_map(|(id, s)| s.replies.iter().map(|r| (*id, r.status)));
        replies.collect()
    }

    /// The streams let go on.
    pub fn resumed(&self) -> Vec<u32> {
        let state = self.state();
        let resumed = state.streams.iter().filter(|(_, s)| s.resumed > 0);
        resumed.map(|(id, _)| *id).collect()
    }

    /// The stream hostcalls act on now, if the host has it.
    fn current(&self) -> Option<RefMut<'_, Stream>> {
        let state = self.state();
        let id = state.current;
        RefMut::filter_map(state, |s| s.streams.get_mut(&id)).ok()
    }

    /// A stream's map (the call reply's is not a stream's).
    fn headers_of(stream: &mut Stream, map: Headers) -> Option<&mut Vec<(String, String)>> {
        match map {
            Headers::Request => Some(&mut stream.request_headers),
            Headers::RequestTrailers => Some(&mut stream.request_trailers),
            Headers::Response => Some(&mut stream.response_headers),
            Headers::CallResponse => None,
        }
    }

    /// The headers of `map` on the current stream (or of the call reply).
    fn read_headers(&self, map: Headers) -> Option<Vec<(String, String)>> {
        if map == Headers::CallResponse {
            return Some(self.state().call_reply.0.clone());
        }
        let mut stream = self.current()?;
        FakeHost::headers_of(&mut stream, map).cloned()
    }

    /// Changes a header of the current stream.
    fn write_header(&self, map: Headers, name: &[u8], value: Option<&[u8]>) -> Result<(), Refused> {
        let mut stream = self.current().ok_or(REFUSED)?;
        if map == Headers::Request && stream.refuse_request_header_writes {
            return Err(REFUSED);
        }
        let name = String::from_utf8(name.to_vec()).map_err(|_| REFUSED)?;
        let headers = FakeHost::headers_of(&mut stream, map).ok_or(REFUSED)?;
        headers.retain(|(n, _)| *n != name);
        if let Some(value) = value {
            let value = String::from_utf8(value.to_vec()).map_err(|_| REFUSED)?;
            headers.push((name, value));
        }
        Ok(())
    }
}

impl Host for FakeHost {
    fn header_map(&self, map: Headers) -> Option<HeaderMap> {
        self.called("header_map", format_args!("{map:?}"));
        let headers = self.read_headers(map)?;
        let pairs: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        Some(HeaderMap::from_pairs(&pairs))
    }

    fn header(&self, map: Headers, name: &str) -> Option<Vec<u8>> {
        self.called("header", format_args!("{map:?} {name}"));
        let headers = self.read_headers(map)?;
        let found = headers.into_iter().find(|(n, _)| n == name);
        found.map(|(_, v)| v.into_bytes())
    }

    fn set_header(&self, map: Headers, name: &[u8], value: &[u8]) -> Result<(), Refused> {
        self.called(
            "set_header",
            format_args!("{map:?} {}", String::from_utf8_lossy(name)),
        );
        self.write_header(map, name, Some(value))
    }

    fn remove_header(&self, map: Headers, name: &[u8]) -> Result<(), Refused> {
        self.called(
            "remove_header",
            format_args!("{map:?} {}", String::from_utf8_lossy(name)),
        );
        self.write_header(map, name, None)
    }

    fn body(&self, which: Body, size: usize) -> Option<Vec<u8>> {
        self.called("body", format_args!("{which:?}"));
        let mut body = match which {
            Body::CallResponse => self.state().call_reply.1.clone(),
            Body::Request => self.current()?.request_body.clone(),
            Body::Response => self.current()?.response_body.clone(),
        };
        body.truncate(size);
        Some(body)
    }

    fn replace_body(&self, which: Body, value: &[u8]) -> Result<(), Refused> {
        self.called("replace_body", format_args!("{which:?}"));
        let mut stream = self.current().ok_or(REFUSED)?;
        match which {
            Body::Request => stream.request_body = value.to_vec(),
            Body::Response => stream.response_body = value.to_vec(),
            Body::CallResponse => return Err(REFUSED),
        }
        Ok(())
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.called("property", path.join("."));
        self.current()?.properties.get(&path.join(".")).cloned()
    }

    fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), Refused> {
        self.called("send_response", status);
        let mut stream = self.current().ok_or(REFUSED)?;
        stream.replies.push(Reply {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
        Ok(())
    }

    fn resume_request(&self) -> Result<(), Refused> {
        self.called("resume_request", "");
        self.current().ok_or(REFUSED)?.resumed += 1;
        Ok(())
    }

    fn act_on(&self, context_id: u32) -> Result<(), Refused> {
        self.called("act_on", context_id);
        let mut state = self.state();
        let live = state.streams.get(&context_id).is_some_and(|s| !s.gone);
        if live || state.roots.contains(&context_id) {
            state.current = context_id;
            return Ok(());
        }
        Err(REFUSED)
    }

    fn plugin_configuration(&self) -> Option<Vec<u8>> {
        Some(self.state().plugin_configuration.clone())
    }

    fn env(&self, name: &str) -> Option<String> {
        self.state().env.get(name).cloned()
    }

    fn now(&self) -> Result<Duration, Refused> {
        self.called("now", "");
        Ok(self.state().now)
    }

    fn random16(&self) -> Option<[u8; 16]> {
        self.called("random16", "");
        Some([7; 16])
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), Refused> {
        self.called("set_tick_period", format_args!("{period:?}"));
        self.state().tick_period = Some(period);
        Ok(())
    }

    fn get_shared(&self, key: &str) -> Result<Shared, Refused> {
        self.called("get_shared", key);
        let state = self.state();
        Ok(match state.shared.get(key) {
            Some((value, cas)) => Shared {
                value: Some(value.clone()),
                cas: Some(*cas),
            },
            None => Shared::default(),
        })
    }

    /// As proxy-wasm-cpp-host: no CAS (or a missing key) always writes.
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Refused> {
        self.called("set_shared", format_args!("{key} ({} bytes)", value.len()));
        let mut state = self.state();
        let stored = state.shared.get(key).map(|(_, cas)| *cas);
        if let (Some(stored), Some(cas)) = (stored, cas) {
            if stored != cas {
                return Err(Refused::CAS_MISMATCH);
            }
        }
        state.last_cas += 1;
        let cas = state.last_cas;
        state.shared.insert(key.to_string(), (value.to_vec(), cas));
        Ok(())
    }

    fn define_metric(&self, _kind: MetricKind, name: &str) -> Result<u32, Refused> {
        let mut state = self.state();
        let metrics = &mut state.metrics;
        let id = match metrics.iter().position(|m| m.name == name) {
            Some(id) => id,
            None => {
                metrics.push(Metric {
                    name: name.to_string(),
                    value: 0,
                });
                metrics.len() - 1
            }
        };
        Ok(u32::try_from(id).expect("few metrics"))
    }

    fn increment_metric(&self, id: u32, by: i64) -> Result<(), Refused> {
        self.called("increment_metric", id);
        let mut state = self.state();
        let metric = state.metrics.get_mut(id as usize).ok_or(REFUSED)?;
        metric.value += by;
        Ok(())
    }

    fn record_metric(&self, id: u32, value: u64) -> Result<(), Refused> {
        self.called("record_metric", id);
        let mut state = self.state();
        let metric = state.metrics.get_mut(id as usize).ok_or(REFUSED)?;
        metric.value = i64::try_from(value).expect("a small gauge");
        Ok(())
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<u32, Refused> {
        self.called("dispatch_http_call", cluster);
        let mut state = self.state();
        let context = state.current;
        state.calls.push(Call {
            context,
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.map(<[u8]>::to_vec),
        });
        Ok(u32::try_from(state.calls.len()).expect("few calls"))
    }

    fn follow_log_level(&self) -> Result<(), Refused> {
        Ok(())
    }

    /// Every line is logged, debug too.
    fn logs(&self, _level: Level) -> bool {
        true
    }

    fn log(&self, level: Level, message: fmt::Arguments<'_>) -> Result<(), Refused> {
        self.called("log", level);
        self.state().logs.push((level, message.to_string()));
        Ok(())
    }

    fn notes_said(&self) -> &AtomicU32 {
        &self.notes_said
    }
}
