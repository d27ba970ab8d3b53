//! One HTTP stream: proxy-wasm's callbacks turned into [`Exchange`] events, and the
//! effects each returns turned into hostcalls. No decision is made here.

use super::dedupe;
use super::proxy::{self, Body, Headers};
use super::worker::{SharedExchange, Worker};
use gate::dedupe::{Entry, Seen, Table};
use gate::exchange::{self, ByteCount, Context as Now, Effect, Exchange, Flow, Note, Step};
use gate::request::Sources;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct GateHttp {
    context_id: u32,
    worker: Rc<Worker>,
    exchange: SharedExchange,
    /// `on_log` has run: the stream no longer counts as open.
    logged: bool,
}

impl GateHttp {
    pub fn new(context_id: u32, worker: Rc<Worker>) -> Self {
        worker.stream_opened();
        GateHttp {
            context_id,
            worker,
            exchange: Rc::new(RefCell::new(Exchange::new())),
            logged: false,
        }
    }

    /// Runs one event (`None` when the filter has no configuration: it fails closed).
    fn event(&self, event: impl FnOnce(&mut Exchange, Now<'_>, &mut Port<'_>) -> Step) -> Action {
        let Some(config) = self.worker.config.as_deref() else {
            return carry_out(
                exchange::unconfigured(),
                self.context_id,
                &self.worker,
                &self.exchange,
            );
        };
        let ctx = self.worker.context(config);
        let step = event(
            &mut self.exchange.borrow_mut(),
            ctx,
            &mut Port {
                worker: &self.worker,
            },
        );
        carry_out(step, self.context_id, &self.worker, &self.exchange)
    }
}

/// Carries out a step's effects in order and returns what the stream does next. A
/// request-side effect the host refuses ends the step: the exchange then refuses the
/// request rather than forward it half changed.
pub fn carry_out(
    step: Step,
    context_id: u32,
    worker: &Worker,
    exchange: &SharedExchange,
) -> Action {
    for effect in step.effects {
        if let Err(what) = apply(effect, context_id, worker, exchange) {
            let refused = exchange
                .borrow_mut()
                .on_effect_refused(what, &mut Port { worker });
            return carry_out(refused, context_id, worker, exchange);
        }
    }
    match step.flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

/// One effect; `Err` names a request-side change the host refused.
fn apply(
    effect: Effect,
    context_id: u32,
    worker: &Worker,
    exchange: &SharedExchange,
) -> Result<(), &'static str> {
    let ok = |done: bool, what: &'static str| if done { Ok(()) } else { Err(what) };
    match effect {
        Effect::Reply {
            status,
            content_type,
            body,
        } => {
            proxy::send_response(status, &[("content-type", content_type)], &body);
        }
        Effect::Reject(rejection) => {
            log::debug!(
                "rejected {} ({}) from {}: {}",
                rejection.reason.name(),
                rejection.reason.status(),
                source_for_log(),
                rejection.detail
            );
            let mut headers = vec![("content-type", "text/plain; charset=utf-8")];
            headers.extend_from_slice(rejection.headers());
            proxy::send_response(
                rejection.reason.status(),
                &headers,
                rejection.body().as_bytes(),
            );
        }
        Effect::RemoveRequestHeader(name) => ok(
            proxy::set_header(Headers::Request, &name, None),
            "a client-sent header could not be removed",
        )?,
        Effect::RemoveRequestTrailer(name) => ok(
            proxy::set_header(Headers::RequestTrailers, &name, None),
            "a client-sent trailer could not be removed",
        )?,
        Effect::SetRequestHeader(name, value) => ok(
            proxy::set_header(Headers::Request, name.as_bytes(), Some(value.as_bytes())),
            "the gate's headers could not be set",
        )?,
        Effect::ReplaceRequestBody(body) => ok(
            proxy::replace_body(Body::Request, &body),
            "the body could not be set",
        )?,
        Effect::SetResponseHeader(..)
        | Effect::RemoveResponseHeader(_)
        | Effect::ReplaceResponseBody(_) => apply_to_response(effect),
        Effect::Hold { for_ms } => {
            let deadline = proxy::now_unix_ms().saturating_add(for_ms);
            worker.state.held.release(context_id);
            worker
                .state
                .held
                .hold(context_id, exchange.clone(), deadline);
        }
        Effect::Release => {
            worker.state.held.release(context_id);
            worker.state.probes.release(context_id);
            worker.state.streamed.release(context_id);
        }
        Effect::Probe => {
            // Read after the effects before it (a header removed changes the count).
            let when_held = ByteCount::decode(proxy::request_total_size().as_deref());
            worker.state.probes.release(context_id);
            worker
                .state
                .probes
                .hold(context_id, (exchange.clone(), when_held), 0);
            // The root context ticks fast while a probe waits.
            worker.tick_every(gate::held::tick_period(true, false));
        }
        Effect::EndProbe => worker.state.probes.release(context_id),
        Effect::Streamed => {
            worker.state.streamed.release(context_id);
            worker.state.streamed.hold(context_id, (), 0);
        }
        Effect::ResumeRequest => {
            worker.state.probes.release(context_id);
            let _ = proxy::resume_request();
        }
        Effect::Observe(observation) => worker.observe(observation),
        Effect::Count(counter) => worker.metrics.count(counter),
        Effect::Note(note) => say(&note),
    }
    Ok(())
}

/// A response-side effect. The response is the backend's or Envoy's own: if the host
/// refuses a change there is nothing safer to do, so it goes as it is.
fn apply_to_response(effect: Effect) {
    match effect {
        Effect::SetResponseHeader(name, value) => {
            let _ = proxy::set_header(Headers::Response, name.as_bytes(), Some(value.as_bytes()));
        }
        Effect::RemoveResponseHeader(name) => {
            let _ = proxy::set_header(Headers::Response, name.as_bytes(), None);
        }
        Effect::ReplaceResponseBody(body) => {
            let _ = proxy::replace_body(Body::Response, &body);
        }
        _ => {}
    }
}

/// Logs a note at its level; the `once` ones once per VM.
fn say(note: &Note) {
    static SAID: AtomicU32 = AtomicU32::new(0);
    if let Some(bit) = note.once_index().and_then(|i| 1u32.checked_shl(i)) {
        if SAID.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            return;
        }
    }
    log::log!(
        proxy::log_level(note.level()),
        "{}",
        note.line(source_for_log)
    );
}

fn source_for_log() -> String {
    proxy::property(&["source", "address"])
        .map(|a| String::from_utf8_lossy(&a).into_owned())
        .unwrap_or_else(|| "an unknown source".to_string())
}

/// The proxy as the exchange asks it: each answer is a hostcall, made when asked.
pub struct Port<'a> {
    pub worker: &'a Worker,
}

impl exchange::Proxy for Port<'_> {
    fn source_address(&mut self) -> Option<Vec<u8>> {
        proxy::property(&["source", "address"])
    }

    fn sources(&mut self) -> Rc<Sources> {
        self.worker.admission.current()
    }

    fn newer_sources(&mut self) -> Option<Rc<Sources>> {
        self.worker.admission.catch_up()
    }

    fn request_trailer_names(&mut self) -> Vec<Vec<u8>> {
        proxy::request_trailers().map_or_else(Vec::new, |t| t.names_where(|_| true))
    }

    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        proxy::body(Body::Request, size)
    }

    fn response_status(&mut self) -> Option<u32> {
        proxy::response_status()
    }

    fn response_body(&mut self, size: usize) -> Option<Vec<u8>> {
        proxy::body(Body::Response, size)
    }

    fn random16(&mut self) -> Option<[u8; 16]> {
        proxy::random16()
    }

    fn response_details(&mut self) -> Option<Vec<u8>> {
        proxy::property(&["response", "code_details"])
    }

    fn reached_upstream(&mut self) -> bool {
        proxy::property(&["upstream", "address"]).is_some()
    }

    fn record(&mut self, table: Table, entry: Entry, now: u64) -> Seen {
        dedupe::record(table, entry, now)
    }

    fn forget(&mut self, table: Table, identity: u64) {
        dedupe::forget(table, identity);
    }
}

impl Context for GateHttp {}

impl Drop for GateHttp {
    fn drop(&mut self) {
        self.worker.state.held.release(self.context_id);
        self.worker.state.probes.release(self.context_id);
        self.worker.state.streamed.release(self.context_id);
        if !self.logged {
            self.worker.stream_ended();
        }
    }
}

impl HttpContext for GateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // One hostcall for the whole header map; nothing more for another path.
        let Some(headers) = proxy::request_headers() else {
            return self.event(|x, _, port| {
                x.on_effect_refused("request headers could not be read", port)
            });
        };
        self.event(|x, ctx, port| x.on_request_headers(ctx, &headers, end_of_stream, port))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.event(|x, ctx, port| x.on_request_body(ctx, body_size, end_of_stream, port))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.event(|x, _, port| x.on_request_trailers(port))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.event(|x, ctx, port| x.on_response_headers(ctx, end_of_stream, port))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.event(|x, ctx, port| x.on_response_body(ctx, body_size, end_of_stream, port))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.event(|x, ctx, port| x.on_response_trailers(ctx, port))
    }

    fn on_log(&mut self) {
        self.exchange.borrow_mut().on_stream_end(&mut Port {
            worker: &self.worker,
        });
        if !self.logged {
            self.logged = true;
            self.worker.stream_ended();
        }
    }
}
