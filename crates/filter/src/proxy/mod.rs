//! Every hostcall the filter makes, in one place, wrapped so that no host status can
//! make one panic: the SDK's trait methods unwrap and its `hostcalls` panic on any
//! status they do not expect, so the gate calls the ABI itself and turns every status
//! into a value. (One exception, [`dispatch`], says why.) Everything else in `host`
//! reaches the proxy through here.

mod abi;

use abi::*;
use log::LevelFilter;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};
use std::time::Duration;

use gate::header_map::{self, HeaderMap};

const OK: u32 = Status::Ok as u32;
const NOT_FOUND: u32 = Status::NotFound as u32;

/// A hostcall that hands back bytes the host allocated through this module's
/// `proxy_on_memory_allocate` (the SDK's allocator: a boxed `[u8]` of exactly `size`):
/// `Ok(None)` when the host returned no buffer, `Err` the status when it was not Ok.
/// The buffer is taken back as an owned Vec exactly once, as the SDK does.
fn returned_bytes(
    call: impl FnOnce(*mut *mut u8, *mut usize) -> u32,
) -> Result<Option<Vec<u8>>, u32> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    match call(&mut data, &mut size) {
        OK if data.is_null() => Ok(None),
        // SAFETY: see above; the host gave up the buffer to us.
        OK => Ok(Some(unsafe { Vec::from_raw_parts(data, size, size) })),
        status => Err(status),
    }
}

/// The host's log level as the `log` crate's filter (critical: off, as the SDK's
/// logger has it); `None` if the host will not say.
fn host_log_level() -> Option<LevelFilter> {
    let mut level: u32 = 0;
    // SAFETY: the host writes one u32 to a live local (read as a number: a value out
    // of the enum's range must not become a `LogLevel`).
    if unsafe { proxy_get_log_level(&mut level) } != OK {
        return None;
    }
    Some(match level {
        0 => LevelFilter::Trace,
        1 => LevelFilter::Debug,
        2 => LevelFilter::Info,
        3 => LevelFilter::Warn,
        4 => LevelFilter::Error,
        _ => LevelFilter::Off,
    })
}

/// One header's value from `map`; `None` if it has none or the host refuses.
fn map_value(map: MapType, name: &str) -> Option<Vec<u8>> {
    // SAFETY: `name` is a live slice for the whole call; the out-pointers are locals.
    returned_bytes(|data, size| unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), data, size)
    })
    .ok()
    .flatten()
}

/// Which header map a call is about.
#[derive(Clone, Copy)]
pub enum Headers {
    Request,
    RequestTrailers,
    Response,
}

/// Sets (or with `None` removes) a header; false if the host refused. The SDK's own
/// wrappers panic on any status but Ok, so the ABI is called directly.
pub fn set_header(which: Headers, name: &[u8], value: Option<&[u8]>) -> bool {
    let map = match which {
        Headers::Request => MapType::HttpRequestHeaders,
        Headers::RequestTrailers => MapType::HttpRequestTrailers,
        Headers::Response => MapType::HttpResponseHeaders,
    } as u32;
    // SAFETY: the pointers and lengths describe live slices for the whole call; the
    // host only reads them.
    let status = unsafe {
        match value {
            Some(v) => {
                proxy_replace_header_map_value(map, name.as_ptr(), name.len(), v.as_ptr(), v.len())
            }
            None => proxy_remove_header_map_value(map, name.as_ptr(), name.len()),
        }
    };
    status == 0
}

/// A property (`path` joined by NULs, as the ABI takes it); `None` if the host has
/// none or refuses.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let path = path.join("\0");
    // SAFETY: `path` is live for the whole call; the out-pointers are locals.
    returned_bytes(|data, size| unsafe {
        proxy_get_property(path.as_ptr(), path.len(), data, size)
    })
    .ok()
    .flatten()
}

/// Envoy's byte count for the effective context's request, `request.total_size`:
/// its headers and every body byte the connection manager has received, counted
/// before any filter is handed them (works from the root's tick too).
pub fn request_total_size() -> Option<Vec<u8>> {
    property(&["request", "total_size"])
}

/// The proxy's clock, since the Unix epoch.
pub fn now() -> Duration {
    let mut nanos: u64 = 0;
    // SAFETY: the host writes one u64 to a live local.
    match unsafe { proxy_get_current_time_nanoseconds(&mut nanos) } {
        OK => Duration::from_nanos(nanos),
        _ => Duration::ZERO,
    }
}

/// Seconds since the Unix epoch, by the proxy's clock.
pub fn now_unix() -> i64 {
    i64::try_from(now().as_secs()).unwrap_or(0)
}

/// A local reply; false if the host refused (the stream is gone, and there is no
/// one to tell). The SDK's wrapper panics on any status but Ok.
pub fn send_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
    let pairs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let map = header_map::encode(&pairs);
    const DETAILS: &str = "wechat_gate";
    // SAFETY: every pointer and length describes a live buffer for the whole call;
    // the host only reads them.
    let result = unsafe {
        proxy_send_local_response(
            status,
            DETAILS.as_ptr(),
            DETAILS.len(),
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    };
    result == 0
}

/// Lets a request paused on its headers go on (the effective context's).
pub fn resume_request() -> bool {
    // SAFETY: plain value arguments (0: the request stream).
    unsafe { proxy_continue_stream(0) == 0 }
}

/// Makes `context_id` the context the next hostcalls act on (from the root context,
/// for a request it holds); false if that request is gone.
pub fn act_on(context_id: u32) -> bool {
    // SAFETY: plain value arguments.
    unsafe { proxy_set_effective_context(context_id) == 0 }
}

/// Milliseconds since the Unix epoch, by the proxy's clock.
pub fn now_unix_ms() -> u64 {
    u64::try_from(now().as_millis()).unwrap_or(0)
}

pub fn plugin_configuration() -> Option<Vec<u8>> {
    buffer(BufferType::PluginConfiguration as u32, usize::MAX)
        .ok()
        .flatten()
}

/// Up to `size` bytes of a buffer, from its start.
fn buffer(which: u32, size: usize) -> Result<Option<Vec<u8>>, u32> {
    // SAFETY: the out-pointers are locals; see `returned_bytes`.
    returned_bytes(|data, returned| unsafe {
        proxy_get_buffer_bytes(which, 0, size, data, returned)
    })
}

/// Which body a buffer call is about.
#[derive(Clone, Copy)]
pub enum Body {
    Request,
    Response,
}

impl Body {
    fn buffer_type(self) -> u32 {
        match self {
            Body::Request => BufferType::HttpRequestBody as u32,
            Body::Response => BufferType::HttpResponseBody as u32,
        }
    }
}

/// The first `size` bytes of the buffered body; `None` if the host refuses.
pub fn body(which: Body, size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        return Some(Vec::new());
    }
    buffer(which.buffer_type(), size)
        .ok()
        .map(Option::unwrap_or_default)
}

/// Replaces the whole buffered body with `value`; false if the host refused.
pub fn replace_body(which: Body, value: &[u8]) -> bool {
    // SAFETY: `value` is a live slice for the whole call; the host only reads it.
    let status = unsafe {
        proxy_set_buffer_bytes(
            which.buffer_type(),
            0,
            usize::MAX,
            value.as_ptr(),
            value.len(),
        )
    };
    status == 0
}

/// 16 bytes from the WASI random source; `None` if it fails.
pub fn random16() -> Option<[u8; 16]> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).ok()?;
    Some(bytes)
}

/// All request headers in one hostcall (each hostcall costs about as much as the
/// whole verdict, so the gate reads the map once and looks up in it); `None` if the
/// host refuses or the map does not decode.
pub fn request_headers() -> Option<HeaderMap> {
    header_map(MapType::HttpRequestHeaders)
}

/// All request trailers, as [`request_headers`].
pub fn request_trailers() -> Option<HeaderMap> {
    header_map(MapType::HttpRequestTrailers)
}

fn header_map(map: MapType) -> Option<HeaderMap> {
    // SAFETY: the out-pointers are locals; see `returned_bytes`.
    let pairs =
        returned_bytes(|data, size| unsafe { proxy_get_header_map_pairs(map as u32, data, size) })
            .ok()?;
    HeaderMap::from_serialized(pairs.unwrap_or_default())
}

// ---------------------------------------------------------------- shared data

/// A shared-data value and its CAS; `None` if the host refuses.
pub fn shared_get(key: &str) -> Option<(Option<Vec<u8>>, Option<u32>)> {
    let mut cas: u32 = 0;
    // SAFETY: `key` is live for the whole call; the out-pointers are locals.
    let value = returned_bytes(|data, size| unsafe {
        proxy_get_shared_data(key.as_ptr(), key.len(), data, size, &mut cas)
    });
    match value {
        Ok(value) => Some((value, (cas != 0).then_some(cas))),
        Err(NOT_FOUND) => Some((None, None)),
        Err(_) => None,
    }
}

/// How a shared-data write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Done,
    /// Another worker wrote since the value was read.
    CasMismatch,
    Failed,
}

/// Writes `value` under `key` if its CAS is still `cas` (`None`: whatever it is).
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Write {
    // SAFETY: `key` and `value` are live slices for the whole call; the host only
    // reads them.
    let status = unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    };
    match status {
        OK => Write::Done,
        s if s == Status::CasMismatch as u32 => Write::CasMismatch,
        _ => Write::Failed,
    }
}

// ---------------------------------------------------------------- metrics

/// Defines a counter or gauge; `None` (logged) if the host refuses.
pub fn define_metric(gauge: bool, name: &str) -> Option<u32> {
    let kind = if gauge {
        MetricType::Gauge
    } else {
        MetricType::Counter
    };
    let mut id: u32 = 0;
    // SAFETY: `name` is live for the whole call; the host writes the id to a local.
    match unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) } {
        OK => Some(id),
        status => {
            log::error!("could not define metric {name}: status {status}");
            None
        }
    }
}

pub fn increment_metric(id: u32, by: i64) {
    // SAFETY: plain value arguments.
    let _ = unsafe { proxy_increment_metric(id, by) };
}

pub fn record_metric(id: u32, value: u64) {
    // SAFETY: plain value arguments.
    let _ = unsafe { proxy_record_metric(id, value) };
}

// ---------------------------------------------------------------- calls out

/// An HTTP call through `cluster`; the call id, or why the host refused it.
///
/// The one SDK wrapper left: the SDK routes a call's reply
/// (`proxy_on_http_call_response`, which it exports) only to calls it registered
/// itself, and panics on any other, so a call made through the ABI directly would
/// trap on its reply. The wrapper panics only on a status other than Ok,
/// BadArgument and InternalFailure, which are all proxy-wasm-cpp-host's `http_call`
/// returns for the arguments built here (the others are InvalidMemoryAccess, a bad
/// pointer of ours, and Unimplemented, a host without HTTP calls).
pub fn dispatch(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(cluster, headers, body, vec![], timeout)
}

/// The `:status` of the reply to an HTTP call (in `on_http_call_response`).
pub fn call_response_status() -> Option<u32> {
    status_of(MapType::HttpCallResponseHeaders)
}

/// The body of the reply to an HTTP call, up to `size` bytes.
pub fn call_response_body(size: usize) -> Option<Vec<u8>> {
    buffer(BufferType::HttpCallResponseBody as u32, size)
        .ok()
        .flatten()
}

// ---------------------------------------------------------------- the VM

pub fn set_tick_period(period: Duration) {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: a plain value argument.
    let _ = unsafe { proxy_set_tick_period_milliseconds(ms) };
}

/// Takes the host's log level (so debug lines are not even formatted when Envoy
/// drops them).
pub fn follow_host_log_level() {
    log::set_max_level(host_log_level().unwrap_or(LevelFilter::Info));
}

/// Sends the `log` crate's lines to the host's log (at info and up until the host's
/// level is known), and a panic's message at critical before the VM aborts. The SDK's
/// logger would do the same but unwraps every `proxy_log` status.
pub fn start_logging() {
    let _ = log::set_logger(&HOST_LOG);
    log::set_max_level(LevelFilter::Info);
    std::panic::set_hook(Box::new(|panic| {
        write_log(LogLevel::Critical, &panic.to_string())
    }));
}

/// The `log` crate's level for a note of the core's.
pub fn log_level(level: gate::exchange::Level) -> log::Level {
    use gate::exchange::Level;
    match level {
        Level::Debug => log::Level::Debug,
        Level::Info => log::Level::Info,
        Level::Warn => log::Level::Warn,
        Level::Error => log::Level::Error,
    }
}

struct HostLog;

static HOST_LOG: HostLog = HostLog;

impl log::Log for HostLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        write_log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// One line to the host's log; a line the host refuses is dropped.
fn write_log(level: LogLevel, message: &str) {
    // SAFETY: `message` is live for the whole call; the host only reads it.
    let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
}

/// The response's `:status`.
pub fn response_status() -> Option<u32> {
    status_of(MapType::HttpResponseHeaders)
}

/// The `:status` in a map of response headers.
fn status_of(map: MapType) -> Option<u32> {
    let status = map_value(map, ":status")?;
    std::str::from_utf8(&status).ok()?.parse().ok()
}
