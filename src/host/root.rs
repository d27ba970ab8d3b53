//! The root context: reads and compiles the configuration once per `on_configure`
//! and hands it to every HTTP context.

use super::calls;
use super::http::GateHttp;
use super::metrics::Metrics;
use crate::config::{self, Config};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

pub struct GateRoot {
    config: Option<Rc<Config>>,
    metrics: Option<Rc<Metrics>>,
}

impl GateRoot {
    pub fn new() -> Self {
        GateRoot {
            config: None,
            metrics: None,
        }
    }
}

impl Context for GateRoot {}

impl RootContext for GateRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        proxy_wasm::set_log_level(calls::host_log_level());
        log::info!(
            "wechat-gate {} ({}) starting",
            env!("CARGO_PKG_VERSION"),
            option_env!("WECHAT_GATE_GIT_HASH").unwrap_or("unknown build")
        );
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        proxy_wasm::set_log_level(calls::host_log_level());
        let raw = calls::plugin_configuration().unwrap_or_default();
        let env = |name: &str| std::env::var(name).ok();
        match config::parse(&raw, &env) {
            Ok(config) => {
                log::info!(
                    "wechat-gate configured: path {}, source.mode {:?}, {} static allowlist entries, \
                     timestamp tolerance {} s, max body {} bytes",
                    config.path.as_deref().unwrap_or("(every request)"),
                    config.source.mode,
                    config.source.allow.entries(),
                    config.timestamp_tolerance_seconds,
                    config.max_body_bytes,
                );
                if self.metrics.is_none() {
                    self.metrics = Some(Rc::new(Metrics::define()));
                }
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                log::error!("wechat-gate refused its {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK panics on `None`; a context without configuration fails closed instead.
        Some(Box::new(GateHttp::new(
            self.config.clone(),
            self.metrics.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
