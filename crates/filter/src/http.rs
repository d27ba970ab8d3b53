//! One HTTP stream: the host's callbacks turned into [`Exchange`] events, and the
//! effects each returns carried out ([`effects`]). No decision is made here. The
//! proxy-wasm SDK's `HttpContext` hands its callbacks to these (`sdk`).

use super::effects::{self, ExchangeProxy};
use super::host::{Headers, Host};
use super::worker::{SharedExchange, Worker};
use gate::exchange::{self, Exchange, Flow, Step};
use std::cell::RefCell;
use std::rc::Rc;

pub struct GateHttp<H: Host> {
    context_id: u32,
    worker: Rc<Worker<H>>,
    exchange: SharedExchange,
    /// `on_log` has run: the stream no longer counts as open.
    logged: bool,
}

impl<H: Host> GateHttp<H> {
    pub fn new(context_id: u32, worker: Rc<Worker<H>>) -> Self {
        worker.stream_opened();
        GateHttp {
            context_id,
            worker,
            exchange: Rc::new(RefCell::new(Exchange::new())),
            logged: false,
        }
    }

    /// Runs one event (`None` when the filter has no configuration: it fails closed).
    fn event(
        &self,
        event: impl FnOnce(
            &mut Exchange,
            exchange::Circumstances<'_>,
            &mut ExchangeProxy<'_, H>,
        ) -> Step,
    ) -> Flow {
        let Some(config) = self.worker.config.as_deref() else {
            return self.carry_out(exchange::unconfigured());
        };
        let ctx = self.worker.context(config);
        let step = event(
            &mut self.exchange.borrow_mut(),
            ctx,
            &mut ExchangeProxy {
                worker: &self.worker,
            },
        );
        self.carry_out(step)
    }

    fn carry_out(&self, step: Step) -> Flow {
        effects::carry_out(step, self.context_id, &self.worker, &self.exchange)
    }

    pub fn on_http_request_headers(&mut self, end_of_stream: bool) -> Flow {
        // One hostcall for the whole header map; nothing more for another path.
        let Some(headers) = self.worker.host.header_map(Headers::Request) else {
            return self.event(|x, _, proxy| {
                x.on_effect_refused("request headers could not be read", proxy)
            });
        };
        self.event(|x, ctx, proxy| x.on_request_headers(ctx, &headers, end_of_stream, proxy))
    }

    pub fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Flow {
        self.event(|x, ctx, proxy| x.on_request_body(ctx, body_size, end_of_stream, proxy))
    }

    pub fn on_http_request_trailers(&mut self) -> Flow {
        self.event(|x, _, proxy| x.on_request_trailers(proxy))
    }

    pub fn on_http_response_headers(&mut self, end_of_stream: bool) -> Flow {
        self.event(|x, ctx, proxy| x.on_response_headers(ctx, end_of_stream, proxy))
    }

    pub fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Flow {
        self.event(|x, ctx, proxy| x.on_response_body(ctx, body_size, end_of_stream, proxy))
    }

    pub fn on_http_response_trailers(&mut self) -> Flow {
        self.event(|x, ctx, proxy| x.on_response_trailers(ctx, proxy))
    }

    pub fn on_log(&mut self) {
        self.exchange
            .borrow_mut()
            .on_stream_end(&mut ExchangeProxy {
                worker: &self.worker,
            });
        if !self.logged {
            self.logged = true;
            self.worker.stream_ended();
        }
    }
}

impl<H: Host> Drop for GateHttp<H> {
    fn drop(&mut self) {
        self.worker.state.held.release(self.context_id);
        self.worker.state.probes.release(self.context_id);
        self.worker.state.streamed.release(self.context_id);
        if !self.logged {
            self.worker.stream_ended();
        }
    }
}
