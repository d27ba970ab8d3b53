//! The root context: reads and compiles the configuration once per `on_configure`,
//! keeps the live callback IP list fresh (when configured), delivers held pushes'
//! deadlines from its tick, and hands every HTTP context the worker's state. The
//! proxy-wasm SDK's `RootContext` hands its callbacks to these (`sdk`).

use super::admission::AdmissionCell;
use super::api::desk::{ApiDesk, DeskState, BUSY_TICK};
use super::dedupe;
use super::effects::{carry_out, request_total_size, ExchangeProxy};
use super::host::{log, Host};
use super::http::GateHttp;
use super::live_list::LiveList;
use super::metrics::Metrics;
use super::parking::Redelivery;
use super::worker::Worker;
use gate::body::{self, ANSWERS_PER_TICK, PROBES_PER_TICK};
use gate::config;
use gate::exchange::{ByteCount, Effect};
use std::rc::Rc;

pub struct GateRoot<H: Host> {
    context_id: u32,
    worker: Rc<Worker<H>>,
    live: Option<LiveList>,
    /// This root context's part in redelivering its account's parked pushes.
    redelivery: Option<Redelivery>,
    /// The API role (`"role": "api"`), when configured so.
    api: Option<Rc<ApiDesk<H>>>,
}

impl<H: Host> GateRoot<H> {
    pub fn new(context_id: u32, host: H) -> Self {
        GateRoot {
            context_id,
            worker: Rc::new(Worker::unconfigured(host)),
            live: None,
            redelivery: None,
            api: None,
        }
    }

    /// Delivers the deadline to the held pushes whose body has not arrived in time,
    /// then looks at the probed pushes (their byte counts), acting on at most
    /// `ANSWERS_PER_TICK` of them in all (see `gate::held`); true if more are due.
    fn deliver_deadlines(&self, now_ms: u64) -> bool {
        let worker = &self.worker;
        let host = &worker.host;
        let late = worker.state.held.expired(
            now_ms,
            body::deadlines_per_tick(!worker.state.probes.is_empty()),
        );
        let mut acted = late.len();
        for (context_id, exchange) in late {
            if host.act_on(context_id).is_ok() {
                let step = exchange
                    .borrow_mut()
                    .on_body_deadline(&mut ExchangeProxy { worker });
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
                if host.act_on(context_id).is_err() {
                    worker.state.probes.release(context_id);
                    continue;
                }
                let count = ByteCount {
                    when_held,
                    now: ByteCount::decode(request_total_size(host).as_deref()),
                };
                let step = exchange.borrow_mut().on_probe(
                    worker.context(config),
                    count,
                    &mut ExchangeProxy { worker },
                );
                if step
                    .effects
                    .iter()
                    .any(|e| matches!(e, Effect::ResumeRequest | Effect::LocalReply { .. }))
                {
                    acted += 1;
                }
                let _ = carry_out(step, context_id, worker, &exchange);
            }
        }
        // The rest of the tick acts for the root context again.
        let _ = host.act_on(self.context_id);
        worker.state.held.any_expired(now_ms)
    }

    /// Makes this gate's tolerance count towards the proxy's longest (again, if a
    /// write was lost) and takes in the longest as it stands.
    fn follow_longest_tolerance(&self) {
        let Some(config) = &self.worker.config else {
            return;
        };
        let tolerance = config.timestamp_tolerance_seconds;
        if let Some(longest) = dedupe::raise_longest_tolerance(&self.worker.host, tolerance) {
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

    /// The reply to an HTTP call this root context made.
    pub fn on_http_call_response(&mut self, call_id: u32, body_size: usize) {
        if let Some(api) = &self.api {
            if api.on_root_reply(call_id, body_size) {
                api.metrics.flush();
                return;
            }
        }
        let (host, metrics) = (&self.worker.host, &self.worker.metrics);
        if let Some(redelivery) = self.redelivery.as_mut() {
            if redelivery.on_response(call_id, host, metrics) {
                metrics.flush();
                return;
            }
        }
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let (host, metrics) = (&self.worker.host, &self.worker.metrics);
        if live.on_response(
            host,
            call_id,
            body_size,
            host.now().unwrap_or_default(),
            metrics,
        ) {
            self.install_live_list();
        }
        self.worker.metrics.flush();
    }

    pub fn on_vm_start(&mut self) -> bool {
        let host = &self.worker.host;
        let _ = host.follow_log_level();
        log!(
            host,
            Info,
            "wechat-gate {} ({}) starting",
            env!("CARGO_PKG_VERSION"),
            option_env!("WECHAT_GATE_GIT_HASH").unwrap_or("unknown build")
        );
        true
    }

    /// A (new) configuration: false, logged, if it is refused.
    pub fn on_configure(&mut self) -> bool {
        let host = self.worker.host.clone();
        let _ = host.follow_log_level();
        let raw = host.plugin_configuration().unwrap_or_default();
        let env = |name: &str| host.env(name);
        let config = match config::parse_plugin(&raw, &env) {
            Ok(config::Plugin::Callback(config)) => config,
            Ok(config::Plugin::Api(api)) => return self.configure_api(api),
            Err(e) => {
                log!(host, Error, "wechat-gate refused its {e}");
                return false;
            }
        };
        self.api = None;
        log!(host, Info, "wechat-gate configured: {}", config.summary());
        // Defined again only when the account's name changed (Envoy hands back the ids
        // of names it knows, so this is cheap either way).
        let metrics = match &self.worker.config {
            Some(old) if old.name == config.name => self.worker.metrics.clone(),
            _ => Rc::new(Metrics::define(host.clone(), &config.name)),
        };
        let admission = match &config.source.wechat_api {
            Some(api) => {
                let mut live = LiveList::new(api.clone());
                // A list other workers (or the previous configuration) already fetched
                // is used at once: a reconfigured filter does not start blind.
                live.pick_up_shared_list(&host, &metrics);
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
        // A call out for the same area is still answered here; another area (the
        // account renamed, or parking's bounds changed) starts afresh.
        let area = gate::park::Area::of(&config);
        if self.redelivery.as_ref().is_none_or(|r| r.area() != &area) {
            // Unique among the proxy's redeliverers: random, else the clock's
            // nanoseconds beside this root context's id.
            let fallback = u64::from(host.now().unwrap_or_default().subsec_nanos()) << 32
                | u64::from(self.context_id);
            let id = host.random16().map_or(fallback, |r| {
                u64::from_le_bytes(r[..8].try_into().unwrap_or_default())
            });
            self.redelivery = Some(Redelivery::new(&config, id));
        }
        // Only the configuration is new: held pushes, what was learnt and the clock
        // go on in the worker's state.
        self.worker = Rc::new(self.worker.reconfigured(config, metrics, admission));
        self.install_live_list();
        self.follow_longest_tolerance();
        // Ticking even without a live list: held pushes are timed out from the tick.
        self.worker
            .tick_every(body::tick_period(false, self.awaiting_live_list()));
        true
    }

    /// The API role's configuration: its desk (the calls waiting on this worker go on
    /// under it), and the tick.
    fn configure_api(&mut self, config: config::ApiConfig) -> bool {
        let host = self.worker.host.clone();
        log!(host, Info, "wechat-gate configured: {}", config.summary());
        let metrics = match &self.api {
            Some(old) if old.config.name == config.name => old.metrics.clone(),
            _ => Rc::new(Metrics::define(host.clone(), &config.name)),
        };
        let state = self
            .api
            .as_ref()
            .map_or_else(|| Rc::new(DeskState::default()), |d| d.state());
        self.live = None;
        // The API role's tick keeps no callback clock: should the callback role come
        // back, it reads the host's clock until its own first tick, not this one's.
        self.worker.state.clock.set(0);
        self.worker.state.clock_ms.set(0);
        self.api = Some(Rc::new(ApiDesk::new(
            self.worker.clone(),
            config,
            metrics,
            self.context_id,
            state,
        )));
        self.worker.tick_every(body::tick_period(false, false));
        true
    }

    pub fn on_tick(&mut self) {
        if let Some(api) = &self.api {
            api.on_tick();
            api.metrics.flush();
            let period = if api.busy() {
                BUSY_TICK
            } else {
                body::tick_period(false, false)
            };
            self.worker.tick_every(period);
            return;
        }
        let clock = self.worker.host.now().unwrap_or_default();
        let now = i64::try_from(clock.as_secs()).unwrap_or(0);
        let now_ms = u64::try_from(clock.as_millis()).unwrap_or(0);
        self.worker.state.clock_ms.set(now_ms);
        if self.worker.state.clock.replace(now) != now {
            // Once a second, however fast the tick: one shared-data read.
            self.follow_longest_tolerance();
        }
        let backlog = self.deliver_deadlines(now_ms);
        if let Some(live) = self.live.as_mut() {
            if live.on_tick(&self.worker.host, clock, &self.worker.metrics) {
                self.install_live_list();
            }
        }
        // Pushes parked before (under any configuration) are redelivered however this
        // one parks.
        if let Some(redelivery) = self.redelivery.as_mut() {
            redelivery.on_tick(&self.worker.host, &self.worker.metrics);
        }
        // Counts kept since the last flush reach Envoy at least once a second: the
        // tick period is never longer.
        self.worker.metrics.flush();
        let probing = !self.worker.state.probes.is_empty();
        self.worker.tick_every(body::tick_period(
            backlog || probing,
            self.awaiting_live_list(),
        ));
        // Set from this tick, the next one comes one period after it.
        self.worker.state.clock_ms.set(now_ms);
    }

    /// A stream's HTTP context (one without configuration fails closed).
    pub fn create_http_context(&self, context_id: u32) -> GateHttp<H> {
        GateHttp::new(context_id, self.worker.clone())
    }

    /// The API role's desk, when this instance is configured for it.
    pub fn api_desk(&self) -> Option<Rc<ApiDesk<H>>> {
        self.api.clone()
    }
}
