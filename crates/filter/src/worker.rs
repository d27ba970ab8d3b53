//! What one worker's HTTP contexts share with its root context, in two parts: the
//! configuration they serve under ([`Worker`], replaced by every `on_configure`) and
//! the worker's state ([`WorkerState`], created once with the root context and handed
//! on to every configuration), so a field added to the state survives an ECDS push
//! without a line in `on_configure`.

use super::admission::AdmissionCell;
use super::host::{log, Host};
use super::metrics::Metrics;
use gate::body::{BodyModeLearner, HeldRequests};
use gate::config::Config;
use gate::exchange::{self, BodyMode, Exchange, Observation};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// A request's exchange, shared with the root context while the request is held
/// (its tick delivers the body deadline).
pub type SharedExchange = Rc<RefCell<Exchange>>;

/// A probed push: its exchange, and Envoy's byte count for it when it was held.
pub type Probed = (SharedExchange, Option<u64>);

/// One configuration of the worker: what `on_configure` builds.
pub struct Worker<H: Host> {
    /// What every hostcall goes to.
    pub host: H,
    /// `None`: the filter has no configuration and fails closed.
    pub config: Option<Rc<Config>>,
    /// Defined per account name.
    pub metrics: Rc<Metrics<H>>,
    /// The callback source list of this configuration (fixed, or the live list's).
    pub admission: Rc<AdmissionCell>,
    /// Kept from configuration to configuration.
    pub state: Rc<WorkerState>,
}

/// What the worker holds and has learnt, whatever its configuration.
#[derive(Default)]
pub struct WorkerState {
    /// Pushes held under any configuration are still answered.
    pub held: HeldRequests<SharedExchange>,
    /// Pushes held on their headers whose body the filter has not been handed, with
    /// Envoy's byte count for each when held: looked at from the tick.
    pub probes: HeldRequests<Probed>,
    /// Pushes whose headers went upstream before their body passed (stream mode).
    pub streamed: HeldRequests<()>,
    /// What this worker has learnt of how its host hands over bodies.
    body_mode: Cell<BodyModeLearner>,
    /// Unix seconds as of the last tick (a hostcall less per request).
    pub clock: Cell<i64>,
    /// Unix milliseconds as of the last tick (0: no tick yet), for held pushes'
    /// deadlines (another hostcall less per held push).
    pub clock_ms: Cell<u64>,
    /// The longest `timestamp_tolerance_seconds` of the proxy's gates, read from
    /// shared data on configure and once a second from the tick.
    pub longest_tolerance: Cell<u64>,
    /// The tick period last asked of the host (for the root context, from any).
    tick_period: Cell<Option<Duration>>,
    /// HTTP streams begun and not yet logged: the last to end flushes the counts.
    open_streams: Cell<u32>,
}

impl<H: Host> Worker<H> {
    /// A worker with no configuration yet (it fails closed).
    pub fn unconfigured(host: H) -> Self {
        Worker {
            metrics: Rc::new(Metrics::none(host.clone())),
            host,
            config: None,
            admission: Rc::new(AdmissionCell::fixed(Default::default())),
            state: Rc::default(),
        }
    }

    /// This worker under another configuration: the state goes on as it is.
    pub fn reconfigured(
        &self,
        config: Config,
        metrics: Rc<Metrics<H>>,
        admission: AdmissionCell,
    ) -> Self {
        Worker {
            host: self.host.clone(),
            config: Some(Rc::new(config)),
            metrics,
            admission: Rc::new(admission),
            state: self.state.clone(),
        }
    }

    /// What an exchange is judged against now.
    pub fn context<'a>(&self, config: &'a Config) -> exchange::Circumstances<'a> {
        exchange::Circumstances {
            config,
            now: self.now(),
            body_mode: self.state.body_mode.get().mode(),
            streamed_unverified: self.state.streamed.len(),
            waiting: self.state.probes.len(),
            longest_tolerance: self.state.longest_tolerance.get(),
        }
    }

    /// Asks the host for `period` if that is not already the tick period.
    pub fn tick_every(&self, period: Duration) {
        if self.state.tick_period.get() != Some(period) {
            self.state.tick_period.set(Some(period));
            // Envoy times the next tick from now, not from the last tick: until it
            // comes, a held push's deadline is reckoned from the host's clock (the
            // tick that asked for this period sets its own clock again).
            self.state.clock_ms.set(0);
            let _ = self.host.set_tick_period(period);
        }
    }

    /// Takes in what a push showed about the host; says once which mode it uses.
    pub fn observe(&self, observation: Observation) {
        let mut learner = self.state.body_mode.get();
        let settled = learner.observe(observation);
        self.state.body_mode.set(learner);
        match settled {
            Some(BodyMode::Hold) => log!(
                self.host,
                Info,
                "wechat-gate reads push bodies in hold mode: the headers wait until the body \
                 has been checked (the host hands a paused request its body)"
            ),
            Some(BodyMode::Stream) => log!(
                self.host,
                Info,
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
        let open = &self.state.open_streams;
        open.set(open.get().saturating_add(1));
    }

    /// A stream ended: when it was the last open one, the worker is quiet and hands
    /// Envoy its counts now (under load the tick does, at least once a second).
    pub fn stream_ended(&self) {
        let open = self.state.open_streams.get().saturating_sub(1);
        self.state.open_streams.set(open);
        if open == 0 {
            self.metrics.flush();
        }
    }

    /// The Unix ms at which a push held now is `for_ms` overdue, by the tick's
    /// clock: a deadline is delivered by the first tick at or after it, so one tick
    /// period is added to the last tick's time. A push held at t is answered between
    /// t + `for_ms` and one period later, as with the host's clock read per push (a
    /// tick that comes late makes it early by as much). The host's clock before the
    /// first tick, and after the period changed outside a tick ([`Worker::tick_every`]):
    /// the next tick is then one new period after the change, which may be later than
    /// one period after the last tick.
    pub fn deadline_after(&self, for_ms: u64) -> u64 {
        let period = self.state.tick_period.get().unwrap_or_default();
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        match self.state.clock_ms.get() {
            0 => self.host.unix_millis(),
            t => t.saturating_add(period_ms),
        }
        .saturating_add(for_ms)
    }

    /// Unix seconds: the tick's clock, or the host's before the first tick.
    pub fn now(&self) -> i64 {
        match self.state.clock.get() {
            0 => self.host.unix_seconds(),
            t => t,
        }
    }
}
