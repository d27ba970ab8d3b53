//! The proxy-wasm SDK's context traits on the real host: each callback handed to
//! [`GateRoot`] or [`GateHttp`] as it is, and the [`Flow`] they answer turned into
//! the SDK's [`Action`]. Nothing else here.

use super::api::http::ApiHttp;
use super::host::wasm::ProxyWasm;
use super::http::GateHttp;
use super::root::GateRoot;
use gate::exchange::Flow;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

impl Context for GateRoot<ProxyWasm> {
    fn on_http_call_response(
        &mut self,
        call_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        GateRoot::on_http_call_response(self, call_id, body_size)
    }
}

impl RootContext for GateRoot<ProxyWasm> {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        GateRoot::on_vm_start(self)
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        GateRoot::on_configure(self)
    }

    fn on_tick(&mut self) {
        GateRoot::on_tick(self)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK panics on `None`; a context without configuration fails closed instead.
        match self.api_desk() {
            Some(desk) => Some(Box::new(ApiHttp::new(context_id, desk))),
            None => Some(Box::new(GateRoot::create_http_context(self, context_id))),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for GateHttp<ProxyWasm> {}

impl Context for ApiHttp<ProxyWasm> {
    fn on_http_call_response(
        &mut self,
        call_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        ApiHttp::on_http_call_response(self, call_id, body_size)
    }
}

impl HttpContext for ApiHttp<ProxyWasm> {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(ApiHttp::on_http_request_headers(self, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(ApiHttp::on_http_request_body(
            self,
            body_size,
            end_of_stream,
        ))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(ApiHttp::on_http_request_trailers(self))
    }

    fn on_log(&mut self) {
        ApiHttp::on_log(self)
    }
}

impl HttpContext for GateHttp<ProxyWasm> {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(GateHttp::on_http_request_headers(self, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(GateHttp::on_http_request_body(
            self,
            body_size,
            end_of_stream,
        ))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(GateHttp::on_http_request_trailers(self))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if cfg!(feature = "attribution-no-response-side") {
            return Action::Continue;
        }
        action(GateHttp::on_http_response_headers(self, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if cfg!(feature = "attribution-no-response-side") {
            return Action::Continue;
        }
        action(GateHttp::on_http_response_body(
            self,
            body_size,
            end_of_stream,
        ))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if cfg!(feature = "attribution-no-response-side") {
            return Action::Continue;
        }
        action(GateHttp::on_http_response_trailers(self))
    }

    fn on_log(&mut self) {
        if cfg!(feature = "attribution-no-response-side") {
            return;
        }
        GateHttp::on_log(self)
    }
}
