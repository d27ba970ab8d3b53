//! One request through an API-role instance: see [`super`].

use super::desk::{ApiDesk, SharedCall, BUSY_TICK};
use crate::host::{Body, Headers, Host};
use gate::api::call::{Call, Jssdk};
use gate::api::refusal::Refusal;
use gate::api::route::{self, Route};
use gate::body::{BodyMode, ByteCount};
use gate::exchange::Flow;
use gate::metrics::Counter;
use gate::request::parse_source_address;
use std::cell::RefCell;
use std::rc::Rc;

pub struct ApiHttp<H: Host> {
    context_id: u32,
    desk: Rc<ApiDesk<H>>,
    /// The call being made for this request (`None`: not ours, or answered at once).
    call: Option<SharedCall>,
    /// The call has been started (or the request answered): later body is ignored.
    started: bool,
}

impl<H: Host> ApiHttp<H> {
    pub fn new(context_id: u32, desk: Rc<ApiDesk<H>>) -> Self {
        ApiHttp {
            context_id,
            desk,
            call: None,
            started: false,
        }
    }

    pub fn on_http_request_headers(&mut self, end_of_stream: bool) -> Flow {
        let desk = self.desk.clone();
        let host = &desk.host;
        let Some(headers) = host.header_map(Headers::Request) else {
            return self.refuse(Refusal::BadPath);
        };
        let method = String::from_utf8_lossy(headers.get(":method").unwrap_or_default());
        let path = headers.get(":path").unwrap_or_default();
        let caller = host
            .property(&["source", "address"])
            .and_then(|a| parse_source_address(&a));
        let call = match route::route(&desk.config, &method, path, caller) {
            Route::NotMine => return Flow::Continue,
            Route::Refuse(r) => return self.refuse(r),
            Route::StandIn => {
                desk.metrics.count(Counter::ApiStandIn);
                self.started = true;
                desk.answer(
                    self.context_id,
                    gate::api::stand_in(desk.config.platform),
                    false,
                );
                return Flow::Pause;
            }
            Route::Jssdk { url } => Call::jssdk(Jssdk {
                url,
                nonce: nonce(host),
                timestamp: host.unix_seconds(),
            }),
            Route::Call(target) => {
                let length = headers
                    .get("content-length")
                    .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
                if length.is_some_and(|n| n > desk.config.max_body_bytes) {
                    return self.refuse(Refusal::TooLarge);
                }
                let content_type = headers
                    .get("content-type")
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                Call::new(target, content_type)
            }
        };
        let call = Rc::new(RefCell::new(call));
        self.call = Some(call.clone());
        if end_of_stream {
            self.started = true;
            desk.start(self.context_id, &call, false);
            self.busy_tick();
            return Flow::Pause;
        }
        match desk.body_mode() {
            // The headers go on to the route's own cluster (never with a token or the
            // secret); the body is held here and the caller answered by the gate.
            Some(BodyMode::Stream) => Flow::Continue,
            Some(BodyMode::Hold) => Flow::Pause,
            _ => {
                let count = ByteCount::decode(host.property(&["request", "total_size"]).as_deref());
                desk.probe(self.context_id, count);
                self.busy_tick();
                Flow::Pause
            }
        }
    }

    pub fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Flow {
        self.on_body(Some(body_size), end_of_stream)
    }

    /// Trailers end the request: the body as buffered.
    pub fn on_http_request_trailers(&mut self) -> Flow {
        self.on_body(None, true)
    }

    /// Body came (`size`: Envoy's count of it so far; `None`: trailers, the body as
    /// buffered): held until its end, then the call starts.
    fn on_body(&mut self, size: Option<usize>, end: bool) -> Flow {
        let Some(call) = self.call.clone() else {
            return Flow::Continue;
        };
        if self.started {
            return Flow::Pause;
        }
        let desk = self.desk.clone();
        desk.body_came(self.context_id);
        let max = usize::try_from(desk.config.max_body_bytes).unwrap_or(usize::MAX);
        if size.is_some_and(|n| n > max) {
            return self.refuse(Refusal::TooLarge);
        }
        if !end {
            return Flow::Pause;
        }
        let wanted = size.unwrap_or(max.saturating_add(1));
        let body = desk.host.body(Body::Request, wanted).unwrap_or_default();
        if body.len() > max {
            return self.refuse(Refusal::TooLarge);
        }
        call.borrow_mut().set_body(body);
        self.started = true;
        desk.start(self.context_id, &call, false);
        self.busy_tick();
        Flow::Pause
    }

    /// WeChat's reply to the call this context made.
    pub fn on_http_call_response(&mut self, _call_id: u32, body_size: usize) {
        if let Some(call) = self.call.clone() {
            self.desk.on_reply(self.context_id, &call, body_size, false);
            self.busy_tick();
        }
        self.desk.metrics.flush();
    }

    pub fn on_log(&mut self) {
        self.desk.forget(self.context_id);
        self.desk.metrics.flush();
    }

    fn refuse(&mut self, refusal: Refusal) -> Flow {
        self.started = true;
        self.desk.forget(self.context_id);
        self.desk.answer(self.context_id, refusal.answer(), false);
        Flow::Pause
    }

    /// The root context's tick comes soon when something of this worker waits on it.
    fn busy_tick(&self) {
        if self.desk.busy() {
            self.desk.worker.tick_every(BUSY_TICK);
        }
    }
}

/// JS-SDK's `nonceStr`: 16 random bytes as hex (the clock's nanoseconds if the host
/// has no randomness).
fn nonce(host: &impl Host) -> String {
    let bytes = host.random16().unwrap_or_else(|| {
        let nanos = host.now().unwrap_or_default().subsec_nanos();
        let mut b = [0u8; 16];
        for (to, from) in b.iter_mut().zip(nanos.to_le_bytes()) {
            *to = from;
        }
        b
    });
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
