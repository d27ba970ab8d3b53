//! The root context: reads and compiles the configuration once per `on_configure`,
//! keeps the live callback IP list fresh (when configured), delivers held pushes'
//! deadlines from its tick, and hands every HTTP context the worker's state.

use super::admission::AdmissionCell;
use super::dedupe;
use super::http::{carry_out, GateHttp, Port};
use super::live_list::LiveList;
use super::metrics::Metrics;
use super::proxy;
use super::worker::Worker;
use gate::config;
use gate::exchange::{ByteCount, Effect};
use gate::held::{self, ANSWERS_PER_TICK, PROBES_PER_TICK};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

pub struct GateRoot {
    context_id: u32,
    worker: Rc<Worker>,
    live: Option<LiveList>,
}

impl GateRoot {
    pub fn new(context_id: u32) -> Self {
        GateRoot {
            context_id,
            worker: Rc::new(Worker::unconfigured()),
            live: None,
        }
    }

    /// Delivers the deadline to the held pushes whose body has not arrived in time,
    /// then looks at the probed pushes (their byte counts), acting on at most
    /// `ANSWERS_PER_TICK` of them in all (see `gate::held`); true if more are due.
    fn deliver_deadlines(&self) -> bool {
        let now_ms = proxy::now_unix_ms();
        let worker = &self.worker;
        let late = worker.state.held.expired(
            now_ms,
            held::deadlines_per_tick(!worker.state.probes.is_empty()),
        );
        let mut acted = late.len();
        for (context_id, exchange) in late {
            if proxy::act_on(context_id) {
                let step = exchange.borrow_mut().on_body_deadline(&mut Port { worker });
                let _ = carry_out(step, context_id, worker, &exchange);
            }
        }
        if let Some(config) = worker.config.as_deref() {
            for (context_id, (exchange, when_held), _) in
                worker.state.probes.take_front(PROBES_PER_TICK)
            {
                // Back at the end of the line until the exchange ends the probe.
                worker
                    .state
                    .probes
                    .hold(context_id, (exchange.clone(), when_held), 0);
                if acted >= ANSWERS_PER_TICK {
                    continue;
                }
                if !proxy::act_on(context_id) {
                    worker.state.probes.release(context_id);
                    continue;
                }
                let count = ByteCount {
                    when_held,
                    now: ByteCount::decode(proxy::request_total_size().as_deref()),
                };
                let step = exchange.borrow_mut().on_probe(
                    worker.context(config),
                    count,
                    &mut Port { worker },
                );
                if step
                    .effects
                    .iter()
                    .any(|e| matches!(e, Effect::ResumeRequest | Effect::Reply { .. }))
                {
                    acted += 1;
                }
                let _ = carry_out(step, context_id, worker, &exchange);
            }
        }
        // The rest of the tick acts for the root context again.
        let _ = proxy::act_on(self.context_id);
        worker.state.held.any_expired(now_ms)
    }

    /// Makes this gate's tolerance count towards the proxy's longest (again, if a
    /// write was lost) and takes in the longest as it stands.
    fn follow_longest_tolerance(&self) {
        let Some(config) = &self.worker.config else {
            return;
        };
        if let Some(longest) = dedupe::raise_longest_tolerance(config.timestamp_tolerance_seconds) {
            self.worker.state.longest_tolerance.set(longest);
        }
    }

    fn awaiting_live_list(&self) -> bool {
        self.live.is_some() && !self.worker.admission.is_ready()
    }

    fn install_live_list(&self) {
        let (Some(config), Some(live)) = (&self.worker.config, &self.live) else {
            return;
        };
        if let Some(list) = live.current() {
            self.worker.admission.install(&config.source.allow, list);
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
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if live.on_response(call_id, body_size, proxy::now(), &self.worker.metrics) {
            self.install_live_list();
        }
        self.worker.metrics.flush();
    }
}

impl RootContext for GateRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        proxy::follow_host_log_level();
        log::info!(
            "wechat-gate {} ({}) starting",
            env!("CARGO_PKG_VERSION"),
            option_env!("WECHAT_GATE_GIT_HASH").unwrap_or("unknown build")
        );
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        proxy::follow_host_log_level();
        let raw = proxy::plugin_configuration().unwrap_or_default();
        let env = |name: &str| std::env::var(name).ok();
        let config = match config::parse(&raw, &env) {
            Ok(config) => config,
            Err(e) => {
                log::error!("wechat-gate refused its {e}");
                return false;
            }
        };
        log::info!("wechat-gate configured: {}", config.summary());
        // Defined again only when the account's name changed (Envoy hands back the ids
        // of names it knows, so this is cheap either way).
        let metrics = match &self.worker.config {
            Some(old) if old.name == config.name => self.worker.metrics.clone(),
            _ => Rc::new(Metrics::define(&config.name)),
        };
        let admission = match &config.source.wechat_api {
            Some(api) => {
                let mut live = LiveList::new(api.clone());
                // A list other workers (or the previous configuration) already fetched
                // is used at once: a reconfigured filter does not start blind.
                live.pick_up_shared_list(&metrics);
                let admission = AdmissionCell::awaiting_live_list(
                    config.source.allow.clone(),
                    live.list_key().to_string(),
                );
                self.live = Some(live);
                admission
            }
            _ => {
                self.live = None;
                AdmissionCell::fixed(config.source.allow.clone())
            }
        };
        // Only the configuration is new: held pushes, what was learnt and the clock
        // go on in the worker's state.
        self.worker = Rc::new(self.worker.reconfigured(config, metrics, admission));
        self.install_live_list();
        self.follow_longest_tolerance();
        // Ticking even without a live list: held pushes are timed out from the tick.
        self.worker
            .tick_every(held::tick_period(false, self.awaiting_live_list()));
        true
    }

    fn on_tick(&mut self) {
        let now = proxy::now_unix();
        if self.worker.state.clock.replace(now) != now {
            // Once a second, however fast the tick: one shared-data read.
            self.follow_longest_tolerance();
        }
        let backlog = self.deliver_deadlines();
        if let Some(live) = self.live.as_mut() {
            if live.on_tick(proxy::now(), &self.worker.metrics) {
                self.install_live_list();
            }
        }
        // Counts kept since the last flush reach Envoy at least once a second: the
        // tick period is never longer.
        self.worker.metrics.flush();
        let probing = !self.worker.state.probes.is_empty();
        self.worker.tick_every(held::tick_period(
            backlog || probing,
            self.awaiting_live_list(),
        ));
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK panics on `None`; a context without configuration fails closed instead.
        Some(Box::new(GateHttp::new(context_id, self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
