//! The root context: reads and compiles the configuration once per `on_configure`,
//! keeps the live callback IP list fresh (when configured), delivers held pushes'
//! deadlines from its tick, and hands every HTTP context the worker's state.

use super::admission::AdmissionCell;
use super::dedupe;
use super::http::{carry_out, GateHttp, Port, Probed, SharedExchange};
use super::live_list::LiveList;
use super::metrics::Metrics;
use super::proxy;
use crate::gate::config::{self, Config};
use crate::gate::exchange::{BodyMode, ByteCount, Context as ExchangeContext, Effect, Observation};
use crate::gate::held::{self, BodyModeLearner, HeldRequests, ANSWERS_PER_TICK, PROBES_PER_TICK};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// What every HTTP context of one configuration shares with the root context.
pub struct Worker {
    /// `None`: the filter has no configuration and fails closed.
    pub config: Option<Rc<Config>>,
    pub metrics: Rc<Metrics>,
    pub admission: Rc<AdmissionCell>,
    pub held: Rc<HeldRequests<SharedExchange>>,
    /// Pushes held on their headers whose body the filter has not been handed, with
    /// Envoy's byte count for each when held: looked at from the tick.
    pub probes: Rc<HeldRequests<Probed>>,
    /// Pushes whose headers went upstream before their body passed (stream mode).
    pub streamed: Rc<HeldRequests<()>>,
    /// What this worker has learnt of how its host hands over bodies.
    body_mode: Rc<Cell<BodyModeLearner>>,
    /// Unix seconds as of the last tick (a hostcall less per request).
    clock: Rc<Cell<i64>>,
    /// The longest `timestamp_tolerance_seconds` of the proxy's gates, read from
    /// shared data on configure and once a second from the tick.
    longest_tolerance: Rc<Cell<u64>>,
    /// The tick period last asked of the host (for the root context, from any).
    tick_period: Rc<Cell<Option<Duration>>>,
    /// HTTP streams begun and not yet logged: the last to end flushes the counts.
    open_streams: Rc<Cell<u32>>,
}

impl Worker {
    /// What an exchange is judged against now.
    pub fn context<'a>(&self, config: &'a Config) -> ExchangeContext<'a> {
        ExchangeContext {
            config,
            now: self.now(),
            body_mode: self.body_mode.get().mode(),
            streamed_unverified: self.streamed.len(),
            waiting: self.probes.len(),
            longest_tolerance: self.longest_tolerance.get(),
        }
    }

    /// Asks the host for `period` if that is not already the tick period.
    pub fn tick_every(&self, period: Duration) {
        if self.tick_period.get() != Some(period) {
            self.tick_period.set(Some(period));
            proxy::set_tick_period(period);
        }
    }

    /// Takes in what a push showed about the host; says once which mode it uses.
    pub fn observe(&self, observation: Observation) {
        let mut learner = self.body_mode.get();
        let settled = learner.observe(observation);
        self.body_mode.set(learner);
        match settled {
            Some(BodyMode::Hold) => log::info!(
                "wechat-gate reads push bodies in hold mode: the headers wait until the body \
                 has been checked (the host hands a paused request its body)"
            ),
            Some(BodyMode::Stream) => log::info!(
                "wechat-gate reads push bodies in stream mode: checked headers go on first, the \
                 body is held back until it has passed, and a refused push is reset upstream \
                 (the host received a paused request's body and kept it back: no \
                 allow_on_headers_stop_iteration)"
            ),
            Some(BodyMode::Unknown) | None => {}
        }
    }

    /// A stream began.
    pub fn stream_opened(&self) {
        self.open_streams
            .set(self.open_streams.get().saturating_add(1));
    }

    /// A stream ended: when it was the last open one, the worker is quiet and hands
    /// Envoy its counts now (under load the tick does, at least once a second).
    pub fn stream_ended(&self) {
        let open = self.open_streams.get().saturating_sub(1);
        self.open_streams.set(open);
        if open == 0 {
            self.metrics.flush();
        }
    }

    /// Unix seconds: the tick's clock, or the host's before the first tick.
    pub fn now(&self) -> i64 {
        match self.clock.get() {
            0 => proxy::now_unix(),
            t => t,
        }
    }
}

pub struct GateRoot {
    context_id: u32,
    worker: Rc<Worker>,
    live: Option<LiveList>,
}

impl GateRoot {
    pub fn new(context_id: u32) -> Self {
        GateRoot {
            context_id,
            worker: Rc::new(Worker {
                config: None,
                metrics: Rc::new(Metrics::none()),
                admission: Rc::new(AdmissionCell::fixed(Default::default())),
                held: Rc::new(HeldRequests::default()),
                probes: Rc::new(HeldRequests::default()),
                streamed: Rc::new(HeldRequests::default()),
                body_mode: Rc::new(Cell::new(BodyModeLearner::default())),
                clock: Rc::new(Cell::new(0)),
                longest_tolerance: Rc::new(Cell::new(0)),
                tick_period: Rc::new(Cell::new(None)),
                open_streams: Rc::new(Cell::new(0)),
            }),
            live: None,
        }
    }

    /// Delivers the deadline to the held pushes whose body has not arrived in time,
    /// then looks at the probed pushes (their byte counts), acting on at most
    /// `ANSWERS_PER_TICK` of them in all (see `gate::held`); true if more are due.
    fn deliver_deadlines(&self) -> bool {
        let now_ms = proxy::now_unix_ms();
        let worker = &self.worker;
        let late = worker
            .held
            .expired(now_ms, held::deadlines_per_tick(!worker.probes.is_empty()));
        let mut acted = late.len();
        for (context_id, exchange) in late {
            if proxy::act_on(context_id) {
                let step = exchange.borrow_mut().on_body_deadline(&mut Port { worker });
                let _ = carry_out(step, context_id, worker, &exchange);
            }
        }
        if let Some(config) = worker.config.as_deref() {
            for (context_id, (exchange, when_held), _) in worker.probes.take_front(PROBES_PER_TICK)
            {
                // Back at the end of the line until the exchange ends the probe.
                worker
                    .probes
                    .hold(context_id, (exchange.clone(), when_held), 0);
                if acted >= ANSWERS_PER_TICK {
                    continue;
                }
                if !proxy::act_on(context_id) {
                    worker.probes.release(context_id);
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
        worker.held.any_expired(now_ms)
    }

    /// Makes this gate's tolerance count towards the proxy's longest (again, if a
    /// write was lost) and takes in the longest as it stands.
    fn follow_longest_tolerance(&self) {
        let Some(config) = &self.worker.config else {
            return;
        };
        if let Some(longest) = dedupe::raise_longest_tolerance(config.timestamp_tolerance_seconds) {
            self.worker.longest_tolerance.set(longest);
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
        if live.on_response(call_id, body_size, proxy::now_unix(), &self.worker.metrics) {
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
        let admission = match &config.source.wechat_api {
            Some(api) => {
                let mut live = LiveList::new(api.clone());
                // A list other workers (or the previous configuration) already fetched
                // is used at once: a reconfigured filter does not start blind.
                live.pick_up_shared_list();
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
        // Defined again only when the account's name changed (Envoy hands back the ids
        // of names it knows, so this is cheap either way).
        let metrics = match &self.worker.config {
            Some(old) if old.name == config.name => self.worker.metrics.clone(),
            _ => Rc::new(Metrics::define(&config.name)),
        };
        self.worker = Rc::new(Worker {
            config: Some(Rc::new(config)),
            metrics,
            admission: Rc::new(admission),
            // Pushes held under the previous configuration are still answered.
            held: self.worker.held.clone(),
            probes: self.worker.probes.clone(),
            streamed: self.worker.streamed.clone(),
            body_mode: self.worker.body_mode.clone(),
            clock: self.worker.clock.clone(),
            longest_tolerance: self.worker.longest_tolerance.clone(),
            tick_period: self.worker.tick_period.clone(),
            open_streams: self.worker.open_streams.clone(),
        });
        self.install_live_list();
        self.follow_longest_tolerance();
        // Ticking even without a live list: held pushes are timed out from the tick.
        self.worker
            .tick_every(held::tick_period(false, self.awaiting_live_list()));
        true
    }

    fn on_tick(&mut self) {
        let now = proxy::now_unix();
        if self.worker.clock.replace(now) != now {
            // Once a second, however fast the tick: one shared-data read.
            self.follow_longest_tolerance();
        }
        let backlog = self.deliver_deadlines();
        if let Some(live) = self.live.as_mut() {
            if live.on_tick(now, &self.worker.metrics) {
                self.install_live_list();
            }
        }
        // Counts kept since the last flush reach Envoy at least once a second: the
        // tick period is never longer.
        self.worker.metrics.flush();
        let probing = !self.worker.probes.is_empty();
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
