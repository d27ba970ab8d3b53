//! The root context: reads and compiles the configuration once per `on_configure`,
//! keeps the live callback IP list fresh (when configured) and hands every HTTP
//! context the current admission set.

use super::admission::AdmissionCell;
use super::calls;
use super::held::{HeldRequests, ANSWERS_PER_TICK};
use super::http::GateHttp;
use super::live_list::LiveList;
use super::metrics::Metrics;
use crate::allowlist::CallbackAllowlist;
use crate::config::{self, Config};
use crate::verify::{Reason, Rejection};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// Ticks come every 100 ms until this worker has its first list (so no worker
/// answers 503 for long after another has loaded it), then every second; every
/// 10 ms while more stalled pushes are due than one tick may answer.
const FAST_TICK: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_secs(1);
const BACKLOG_TICK: Duration = Duration::from_millis(10);

pub struct GateRoot {
    config: Option<Rc<Config>>,
    metrics: Option<Rc<Metrics>>,
    live: Option<LiveList>,
    admission: Rc<AdmissionCell>,
    fast_ticks: bool,
    /// The tick period last asked of the host.
    tick_period: Option<Duration>,
    held: Rc<HeldRequests>,
    /// Unix seconds as of the last tick, for the HTTP contexts.
    clock: Rc<Cell<i64>>,
}

impl GateRoot {
    pub fn new() -> Self {
        GateRoot {
            config: None,
            metrics: None,
            live: None,
            admission: Rc::new(AdmissionCell::awaiting_live_list(
                CallbackAllowlist::default(),
                String::new(),
            )),
            fast_ticks: false,
            tick_period: None,
            held: Rc::new(HeldRequests::default()),
            clock: Rc::new(Cell::new(0)),
        }
    }

    /// Answers 408 to the held pushes whose body has not arrived in time, at most
    /// `ANSWERS_PER_TICK` of them (see `held`); true if more are due.
    fn answer_stalled_pushes(&self) -> bool {
        let now_ms = calls::now_unix_ms();
        for context_id in self.held.expired(now_ms, ANSWERS_PER_TICK) {
            if !calls::act_on(context_id) {
                continue; // the request is gone
            }
            let rejection = Rejection::new(
                Reason::BodyTimeout,
                "the body did not reach the gate in time",
            );
            calls::send_response(
                rejection.reason.status(),
                &[("content-type", "text/plain; charset=utf-8")],
                rejection.body().as_bytes(),
            );
            if let Some(m) = &self.metrics {
                m.rejected(rejection.reason);
            }
            if self.held.first_warning() {
                log::error!(
                    "a push's body did not reach the gate within {} ms of its headers (answered \
                     408). If every push ends this way, the Wasm filter's plugin config lacks \
                     allow_on_headers_stop_iteration: true (Envoy >= 1.35; in Istio, an \
                     EnvoyFilter patch), without which Envoy never hands the gate a held \
                     request's body; or set dedupe_seconds to 0 and leave out safe_mode",
                    super::held::BODY_DEADLINE_MS
                );
            }
        }
        self.held.any_expired(now_ms)
    }

    /// Asks the host for `period` if that is not already the tick period.
    fn tick_every(&mut self, period: Duration) {
        if self.tick_period != Some(period) {
            self.tick_period = Some(period);
            let _ = proxy_wasm::hostcalls::set_tick_period(period);
        }
    }

    fn rebuild_admission(&mut self) {
        let (Some(config), Some(live)) = (&self.config, &self.live) else {
            return;
        };
        if let Some(list) = live.current() {
            self.admission.install(&config.source.allow, list);
        }
    }
}

impl Context for GateRoot {
    fn on_http_call_response(
        &mut self,
        call_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let (Some(live), Some(metrics)) = (self.live.as_mut(), self.metrics.as_ref()) else {
            return;
        };
        if live.on_response(call_id, body_size, calls::now_unix(), metrics) {
            self.rebuild_admission();
        }
    }
}

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
        let config = match config::parse(&raw, &env) {
            Ok(config) => config,
            Err(e) => {
                log::error!("wechat-gate refused its {e}");
                return false;
            }
        };
        log::info!(
            "wechat-gate configured: path {}, source.mode {:?}, {} static allowlist entries{}, \
             timestamp tolerance {} s, max body {} bytes",
            config.path.as_deref().unwrap_or("(every request)"),
            config.source.mode,
            config.source.allow.entries(),
            if config.source.wechat_api.is_some() {
                " + WeChat's live callback IP list"
            } else {
                ""
            },
            config.timestamp_tolerance_seconds,
            config.max_body_bytes,
        );
        if self.metrics.is_none() {
            self.metrics = Some(Rc::new(Metrics::define()));
        }
        match (&config.source.wechat_api, &config.appid) {
            (Some(api), Some(appid)) => {
                let mut live = LiveList::new(api.clone(), appid.clone());
                // A list other workers (or the previous configuration) already fetched
                // is used at once: a reconfigured filter does not start blind.
                live.pick_up_shared_list();
                self.admission = Rc::new(AdmissionCell::awaiting_live_list(
                    config.source.allow.clone(),
                    live.list_key().to_string(),
                ));
                self.live = Some(live);
                self.fast_ticks = true;
                self.tick_every(FAST_TICK);
            }
            _ => {
                self.live = None;
                self.admission = Rc::new(AdmissionCell::fixed(config.source.allow.clone()));
                // Still ticking: held pushes are timed out from the tick.
                self.fast_ticks = false;
                self.tick_every(TICK);
            }
        }
        self.config = Some(Rc::new(config));
        self.rebuild_admission();
        true
    }

    fn on_tick(&mut self) {
        let now = calls::now_unix();
        self.clock.set(now);
        let backlog = self.answer_stalled_pushes();
        if let (Some(live), Some(metrics)) = (self.live.as_mut(), self.metrics.as_ref()) {
            if live.on_tick(now, metrics) {
                self.rebuild_admission();
            }
        }
        if self.fast_ticks && self.admission.is_ready() {
            self.fast_ticks = false;
        }
        self.tick_every(match (backlog, self.fast_ticks) {
            (true, _) => BACKLOG_TICK,
            (false, true) => FAST_TICK,
            (false, false) => TICK,
        });
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK panics on `None`; a context without configuration fails closed instead.
        Some(Box::new(GateHttp::new(
            context_id,
            self.config.clone(),
            self.metrics.clone(),
            self.admission.clone(),
            self.held.clone(),
            self.clock.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
