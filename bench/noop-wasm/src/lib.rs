//! A proxy-wasm HTTP filter that does nothing: every callback keeps its default
//! (`Continue`). Envoy still creates an HTTP context and calls into the VM for each
//! request's headers, body and response, which is what this module measures.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::LogLevel;

struct Noop;

impl Context for Noop {}
impl HttpContext for Noop {}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Noop) });
}}
