//! An exchange's [`Effect`]s carried out through the [`Host`], for the HTTP context
//! whose callback returned them and for the root context's tick alike; and
//! [`ExchangeProxy`], the proxy as the exchange asks it. No decision is made here.

use super::dedupe;
use super::host::{level_of, log, Body, Headers, Host};
use super::parking;
use super::worker::{SharedExchange, Worker};
use gate::exchange::{self, ByteCount, Effect, Flow, Note, Step};
use gate::park::{NotParked, Outcome, Parcel, ParkStep};
use gate::rejection::Rejection;
use gate::request::Sources;
use gate::tables::{Entry, Seen, Table};
use std::rc::Rc;
use std::sync::atomic::Ordering;

/// Carries out a step's effects in order and returns what the stream does next. A
/// request-side effect the host refuses ends the step: the exchange then refuses the
/// request rather than forward it half changed.
pub fn carry_out<H: Host>(
    step: Step,
    context_id: u32,
    worker: &Worker<H>,
    exchange: &SharedExchange,
) -> Flow {
    for effect in step.effects {
        if let Err(what) = apply(effect, context_id, worker, exchange) {
            let refused = exchange
                .borrow_mut()
                .on_effect_refused(what, &mut ExchangeProxy { worker });
            return carry_out(refused, context_id, worker, exchange);
        }
    }
    step.flow
}

/// One effect; `Err` names a request-side change the host refused.
fn apply<H: Host>(
    effect: Effect,
    context_id: u32,
    worker: &Worker<H>,
    exchange: &SharedExchange,
) -> Result<(), &'static str> {
    let host = &worker.host;
    let held = &worker.state.held;
    let probes = &worker.state.probes;
    let streamed = &worker.state.streamed;
    match effect {
        Effect::LocalReply {
            status,
            content_type,
            body,
        } => {
            let _ = host.send_response(status, &[("content-type", content_type)], &body);
        }
        Effect::Reject(rejection) => reject(host, &rejection),
        Effect::RemoveRequestHeader(name) => {
            #[cfg(feature = "attribution-twice-header-writes")]
            let _ = host.remove_header(Headers::Request, &name);
            host.remove_header(Headers::Request, &name)
                .map_err(|_| "a client-sent header could not be removed")?
        }
        Effect::RemoveRequestTrailer(name) => {
            host.remove_header(Headers::RequestTrailers, &name)
                .map_err(|_| "a client-sent trailer could not be removed")?
        }
        Effect::SetRequestHeader(name, value) => {
            #[cfg(feature = "attribution-twice-header-writes")]
            let _ = host.set_header(Headers::Request, name.as_bytes(), value.as_bytes());
            host.set_header(Headers::Request, name.as_bytes(), value.as_bytes())
                .map_err(|_| "the gate's headers could not be set")?
        }
        Effect::ReplaceRequestBody(body) => {
            #[cfg(feature = "attribution-twice-body-replace")]
            let _ = host.replace_body(Body::Request, &body);
            host.replace_body(Body::Request, &body)
                .map_err(|_| "the body could not be set")?
        }
        // The response is the backend's or Envoy's own: if the host refuses a change
        // there is nothing safer to do, so it goes as it is.
        Effect::SetResponseHeader(name, value) => {
            let _ = host.set_header(Headers::Response, name.as_bytes(), value.as_bytes());
        }
        Effect::RemoveResponseHeader(name) => {
            let _ = host.remove_header(Headers::Response, name.as_bytes());
        }
        Effect::ReplaceResponseBody(body) => {
            let _ = host.replace_body(Body::Response, &body);
        }
        Effect::Hold { for_ms } => {
            let deadline = worker.deadline_after(for_ms);
            held.release(context_id);
            held.hold(context_id, exchange.clone(), deadline);
        }
        Effect::Release => {
            held.release(context_id);
            probes.release(context_id);
            streamed.release(context_id);
        }
        Effect::Probe => probe(context_id, worker, exchange),
        Effect::EndProbe => probes.release(context_id),
        Effect::Streamed => {
            streamed.release(context_id);
            streamed.hold(context_id, (), 0);
        }
        Effect::ResumeRequest => {
            probes.release(context_id);
            let _ = host.resume_request();
        }
        Effect::Observe(observation) => worker.observe(observation),
        Effect::Count(counter) => worker.metrics.count(counter),
        Effect::Note(note) => say(host, &note),
        Effect::Park(effect) => parking::carry_out_counted(effect, host, &worker.metrics),
    }
    Ok(())
}

/// A refusal: its debug line, then its status, headers and plain-text body.
fn reject(host: &impl Host, rejection: &Rejection) {
    log!(
        host,
        Debug,
        "rejected {} ({}) from {}: {}",
        rejection.reason.name(),
        rejection.reason.status(),
        source_for_log(host),
        rejection.detail
    );
    let mut headers = vec![("content-type", "text/plain; charset=utf-8")];
    headers.extend_from_slice(rejection.headers());
    let _ = host.send_response(
        rejection.reason.status(),
        &headers,
        rejection.body().as_bytes(),
    );
}

/// Starts watching a push held on its headers: Envoy's byte count for it now, and
/// the root context ticking fast while it waits.
fn probe<H: Host>(context_id: u32, worker: &Worker<H>, exchange: &SharedExchange) {
    let probes = &worker.state.probes;
    // Read after the effects before it (a header removed changes the count).
    let when_held = ByteCount::decode(request_total_size(&worker.host).as_deref());
    probes.release(context_id);
    probes.hold(context_id, (exchange.clone(), when_held), 0);
    worker.tick_every(gate::body::tick_period(true, false));
}

/// Envoy's byte count for the effective context's request, `request.total_size`:
/// its headers and every body byte the connection manager has received, counted
/// before any filter is handed them (works from the root's tick too).
pub fn request_total_size(host: &impl Host) -> Option<Vec<u8>> {
    host.property(&["request", "total_size"])
}

/// Logs a note at its level; the `once` ones once per VM.
pub fn say(host: &impl Host, note: &Note) {
    if let Some(bit) = note.once_index().and_then(|i| 1u32.checked_shl(i)) {
        if host.notes_said().fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            return;
        }
    }
    let level = level_of(note.level());
    if host.logs(level) {
        let _ = host.log(
            level,
            format_args!("{}", note.line(|| source_for_log(host))),
        );
    }
}

fn source_for_log(host: &impl Host) -> String {
    host.property(&["source", "address"])
        .map(|a| String::from_utf8_lossy(&a).into_owned())
        .unwrap_or_else(|| "an unknown source".to_string())
}

/// The proxy as the exchange asks it: each answer is a hostcall (or the worker's),
/// made when asked.
pub struct ExchangeProxy<'a, H: Host> {
    pub worker: &'a Worker<H>,
}

impl<H: Host> exchange::Proxy for ExchangeProxy<'_, H> {
    fn source_address(&mut self) -> Option<Vec<u8>> {
        if cfg!(feature = "attribution-no-source-address") {
            return Some(b"127.0.0.1:1".to_vec());
        }
        self.worker.host.property(&["source", "address"])
    }

    fn sources(&mut self) -> Rc<Sources> {
        self.worker.admission.current()
    }

    fn newer_sources(&mut self) -> Option<Rc<Sources>> {
        self.worker.admission.catch_up(&self.worker.host)
    }

    fn request_trailer_names(&mut self) -> Vec<Vec<u8>> {
        self.worker
            .host
            .header_map(Headers::RequestTrailers)
            .map_or_else(Vec::new, |t| t.names_where(|_| true))
    }

    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        #[cfg(feature = "attribution-twice-body")]
        let _ = std::hint::black_box(self.worker.host.body(Body::Request, size));
        self.worker.host.body(Body::Request, size)
    }

    fn response_status(&mut self) -> Option<u32> {
        self.worker.host.status(Headers::Response)
    }

    fn response_body(&mut self, size: usize) -> Option<Vec<u8>> {
        self.worker.host.body(Body::Response, size)
    }

    fn random16(&mut self) -> Option<[u8; 16]> {
        self.worker.host.random16()
    }

    fn response_details(&mut self) -> Option<Vec<u8>> {
        self.worker.host.property(&["response", "code_details"])
    }

    fn reached_upstream(&mut self) -> bool {
        self.worker
            .host
            .property(&["upstream", "address"])
            .is_some()
    }

    fn record(&mut self, table: Table, entry: Entry, now: u64) -> Seen {
        dedupe::record(&self.worker.host, table, entry, now)
    }

    fn forget(&mut self, table: Table, identity: u64) {
        dedupe::forget(&self.worker.host, table, identity);
    }

    fn route_cluster(&mut self) -> Option<Vec<u8>> {
        self.worker.host.property(&["xds", "cluster_name"])
    }

    fn park(&mut self, parcel: Parcel) -> ParkStep {
        match self.worker.config.as_deref() {
            Some(config) => parking::park(&self.worker.host, config, parcel),
            // Unreachable: an unconfigured filter forwards nothing.
            None => ParkStep {
                outcome: Outcome::Pass(NotParked::Unavailable),
                effects: Vec::new(),
            },
        }
    }
}
