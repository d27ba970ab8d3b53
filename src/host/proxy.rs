//! Every hostcall the filter makes, in one place, wrapped so that nothing a request
//! carries can make one panic: the SDK's own trait methods unwrap, so the gate uses
//! `proxy_wasm::hostcalls` and, where even those panic on a status, the ABI itself.
//! Everything else in `host` reaches the proxy through here.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};
use std::time::{Duration, UNIX_EPOCH};

use crate::gate::header_map::{self, HeaderMap};

/// The host's log level.
fn host_log_level() -> LogLevel {
    hostcalls::get_log_level().unwrap_or(LogLevel::Info)
}

fn response_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
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

pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// Envoy's byte count for the effective context's request, `request.total_size`:
/// its headers and every body byte the connection manager has received, counted
/// before any filter is handed them (works from the root's tick too).
pub fn request_total_size() -> Option<Vec<u8>> {
    property(&["request", "total_size"])
}

/// The proxy's clock, since the Unix epoch.
pub fn now() -> Duration {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default()
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
    hostcalls::get_buffer(
        proxy_wasm::types::BufferType::PluginConfiguration,
        0,
        usize::MAX,
    )
    .ok()
    .flatten()
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
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut returned: usize = 0;
    // SAFETY: as in `request_header_names`: the host hands over a buffer it allocated
    // through this module's allocator, taken back as an owned Vec exactly once.
    let status =
        unsafe { proxy_get_buffer_bytes(which.buffer_type(), 0, size, &mut data, &mut returned) };
    if status != 0 {
        return None;
    }
    if data.is_null() || returned == 0 {
        return Some(Vec::new());
    }
    // SAFETY: see above.
    Some(unsafe { Vec::from_raw_parts(data, returned, returned) })
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

#[link(wasm_import_module = "env")]
extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
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
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through this module's
    // `proxy_on_memory_allocate` (the SDK's allocator, a `Vec<u8>` of `size`
    // capacity), which we take back as an owned Vec exactly once.
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    if status != 0 {
        return None;
    }
    if data.is_null() || size == 0 {
        return HeaderMap::from_serialized(Vec::new());
    }
    // SAFETY: see above.
    let buffer = unsafe { Vec::from_raw_parts(data, size, size) };
    HeaderMap::from_serialized(buffer)
}

// ---------------------------------------------------------------- shared data

/// A shared-data value and its CAS; `None` if the host refuses.
pub fn shared_get(key: &str) -> Option<(Option<Vec<u8>>, Option<u32>)> {
    hostcalls::get_shared_data(key).ok()
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
    match hostcalls::set_shared_data(key, Some(value), cas) {
        Ok(()) => Write::Done,
        Err(Status::CasMismatch) => Write::CasMismatch,
        Err(_) => Write::Failed,
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
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::error!("could not define metric {name}: {status:?}");
            None
        }
    }
}

pub fn increment_metric(id: u32, by: i64) {
    let _ = hostcalls::increment_metric(id, by);
}

pub fn record_metric(id: u32, value: u64) {
    let _ = hostcalls::record_metric(id, value);
}

// ---------------------------------------------------------------- calls out

/// An HTTP call through `cluster`; the call id, or why the host refused it.
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
    hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok())
}

/// The body of the reply to an HTTP call, up to `size` bytes.
pub fn call_response_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
}

// ---------------------------------------------------------------- the VM

pub fn set_tick_period(period: Duration) {
    let _ = hostcalls::set_tick_period(period);
}

/// Sets the SDK logger's level (the host's, so debug lines are not even formatted
/// when Envoy drops them).
pub fn follow_host_log_level() {
    proxy_wasm::set_log_level(host_log_level());
}

/// The response's `:status`.
pub fn response_status() -> Option<u32> {
    response_header(":status").and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok())
}
