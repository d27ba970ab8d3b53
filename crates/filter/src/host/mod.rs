//! Everything the filter asks of its host, as one trait: [`Host`] lists every hostcall
//! the filter makes, each answering a value (a `Result` or an `Option`), never a panic.
//! The root and HTTP contexts are generic over it. Inside Envoy they run on
//! [`wasm::ProxyWasm`], the only code that names the proxy-wasm ABI; the crate's tests
//! run them on `fake::FakeHost`, which records what they did and answers what a test
//! says.
//!
//! Calls about a request act on the host's effective context: the stream whose
//! callback is running, or the one a root context chose with [`Host::act_on`].

#[cfg(test)]
pub mod fake;
pub mod wasm;

use gate::header_map::HeaderMap;
pub use log::Level;
use std::fmt;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Which header map a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    Request,
    RequestTrailers,
    Response,
    /// The reply to an HTTP call (in `on_http_call_response`).
    CallResponse,
}

/// Which body a buffer call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Request,
    Response,
    /// The reply to an HTTP call (in `on_http_call_response`).
    CallResponse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// A call the host did not carry out: the status it answered instead of Ok, kept as
/// the ABI's number (a host may answer one no enum here names).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub u32);

impl Refused {
    pub const NOT_FOUND: Refused = Refused(1);
    /// Another worker wrote the shared-data value since it was read.
    pub const CAS_MISMATCH: Refused = Refused(8);
}

impl fmt::Debug for Refused {
    /// The status's name in the proxy-wasm ABI (0.2.1), or its number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 13] = [
            "Ok",
            "NotFound",
            "BadArgument",
            "SerializationFailure",
            "ParseFailure",
            "BadExpression",
            "InvalidMemoryAccess",
            "Empty",
            "CasMismatch",
            "ResultMismatch",
            "InternalFailure",
            "BrokenConnection",
            "Unimplemented",
        ];
        match usize::try_from(self.0).ok().and_then(|i| NAMES.get(i)) {
            Some(name) => f.write_str(name),
            None => write!(f, "status {}", self.0),
        }
    }
}

/// A shared-data value and its CAS (`None`, `None`: no such key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shared {
    pub value: Option<Vec<u8>>,
    pub cas: Option<u32>,
}

/// Every hostcall the filter makes. Cloning a host is cheap (the real one has no
/// data): each context keeps its own handle.
pub trait Host: Clone {
    // ------------------------------------------------------------ the request

    /// All of a header map in one hostcall (each hostcall costs about as much as the
    /// whole verdict, so the gate reads the map once and looks up in it); `None` if
    /// the host refuses or the map does not decode.
    fn header_map(&self, map: Headers) -> Option<HeaderMap>;
    /// One header's value; `None` if there is none or the host refuses.
    fn header(&self, map: Headers, name: &str) -> Option<Vec<u8>>;
    fn set_header(&self, map: Headers, name: &[u8], value: &[u8]) -> Result<(), Refused>;
    fn remove_header(&self, map: Headers, name: &[u8]) -> Result<(), Refused>;
    /// The first `size` bytes of a buffered body (empty when there is none); `None`
    /// if the host refuses.
    fn body(&self, which: Body, size: usize) -> Option<Vec<u8>>;
    /// Replaces the whole buffered body with `value`.
    fn replace_body(&self, which: Body, value: &[u8]) -> Result<(), Refused>;
    /// A property (e.g. `["source", "address"]`); `None` if the host has none or
    /// refuses.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// A local reply (refused: the stream is gone, and there is no one to tell).
    fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), Refused>;
    /// Lets a request paused on its headers go on.
    fn resume_request(&self) -> Result<(), Refused>;
    /// Makes `context_id` the context the next hostcalls act on (from the root
    /// context, for a request it holds); refused if that request is gone.
    fn act_on(&self, context_id: u32) -> Result<(), Refused>;

    // ------------------------------------------------------------ the VM

    fn plugin_configuration(&self) -> Option<Vec<u8>>;
    /// An environment variable the VM was given (`vm_config.environment_variables`).
    fn env(&self, name: &str) -> Option<String>;
    /// The proxy's clock, since the Unix epoch.
    fn now(&self) -> Result<Duration, Refused>;
    /// 16 bytes from the random source.
    fn random16(&self) -> Option<[u8; 16]>;
    fn set_tick_period(&self, period: Duration) -> Result<(), Refused>;

    // ------------------------------------------------------------ shared data

    /// The value under `key` and its CAS; a missing key is `Ok` with neither.
    fn get_shared(&self, key: &str) -> Result<Shared, Refused>;
    /// Writes `value` under `key` if its CAS is still `cas` (`None`: whatever it
    /// is); [`Refused::CAS_MISMATCH`] if another write came first.
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Refused>;

    // ------------------------------------------------------------ metrics

    /// Defines a metric (again: the host hands back the id it has); its id.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, Refused>;
    fn increment_metric(&self, id: u32, by: i64) -> Result<(), Refused>;
    fn record_metric(&self, id: u32, value: u64) -> Result<(), Refused>;

    // ------------------------------------------------------------ calls out

    /// An HTTP call through `cluster`; its id, which the reply comes back with.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, Refused>;

    // ------------------------------------------------------------ logs

    /// Asks the host for its log level and logs at it from now on (at info if the
    /// host will not say), so that lines it would drop are not even formatted.
    fn follow_log_level(&self) -> Result<(), Refused>;
    /// Whether a line at `level` is logged (no hostcall).
    fn logs(&self, level: Level) -> bool;
    /// One line to the host's log. Use [`log!`], which formats only lines that are
    /// logged.
    fn log(&self, level: Level, message: fmt::Arguments<'_>) -> Result<(), Refused>;
    /// The once-notes this VM has said, a bit each (`Note::once_index`): as long-lived
    /// as the VM, shared by its root contexts (not a hostcall: where the VM keeps it).
    fn notes_said(&self) -> &AtomicU32;

    // ------------------------------------------------------------ derived

    /// Seconds since the Unix epoch, by the proxy's clock (0 if it will not say).
    fn unix_seconds(&self) -> i64 {
        i64::try_from(self.now().unwrap_or_default().as_secs()).unwrap_or(0)
    }

    /// Milliseconds since the Unix epoch, by the proxy's clock (0 if it will not say).
    fn unix_millis(&self) -> u64 {
        u64::try_from(self.now().unwrap_or_default().as_millis()).unwrap_or(0)
    }

    /// The `:status` in a map of response headers.
    fn status(&self, map: Headers) -> Option<u32> {
        let status = self.header(map, ":status")?;
        std::str::from_utf8(&status).ok()?.parse().ok()
    }
}

/// The host's log level for a line of the core's (a note's level).
pub fn level_of(level: gate::exchange::Level) -> Level {
    match level {
        gate::exchange::Level::Debug => Level::Debug,
        gate::exchange::Level::Info => Level::Info,
        gate::exchange::Level::Warn => Level::Warn,
        gate::exchange::Level::Error => Level::Error,
    }
}

/// Logs through a [`Host`] at a [`Level`] (`log!(host, Warn, "…", …)`), formatting
/// the line, and evaluating its arguments (hostcalls among them), only if the host
/// logs at that level. A line the host refuses is dropped.
macro_rules! log {
    ($host:expr, $level:ident, $($arg:tt)+) => {{
        #[allow(unused_imports)]
        use $crate::host::Host as _;
        let host = &$host;
        if host.logs($crate::host::Level::$level) {
            let _ = host.log($crate::host::Level::$level, format_args!($($arg)+));
        }
    }};
}
pub(crate) use log;
