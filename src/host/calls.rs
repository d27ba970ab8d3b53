//! Hostcalls wrapped so that nothing a request carries can make them panic.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};
use std::time::UNIX_EPOCH;

/// The host's log level, so debug lines are not even formatted when Envoy drops them.
pub fn host_log_level() -> LogLevel {
    hostcalls::get_log_level().unwrap_or(LogLevel::Info)
}

pub fn request_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

pub fn response_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

/// Sets (or with `None` removes) a request header; false if the host refused.
pub fn set_request_header(name: &str, value: Option<&str>) -> bool {
    set_header(MapType::HttpRequestHeaders, name, value)
}

/// Sets (or with `None` removes) a response header; false if the host refused.
pub fn set_response_header(name: &str, value: Option<&str>) -> bool {
    set_header(MapType::HttpResponseHeaders, name, value)
}

/// The SDK's own wrappers panic on any status but Ok, so the ABI is called directly.
fn set_header(map: MapType, name: &str, value: Option<&str>) -> bool {
    let map = map as u32;
    // SAFETY: the pointers and lengths describe live `&str`s for the whole call; the
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

/// Seconds since the Unix epoch, by the proxy's clock.
pub fn now_unix() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// A local reply; false if the host refused (the stream is gone, and there is no
/// one to tell). The SDK's wrapper panics on any status but Ok.
pub fn send_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
    let pairs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let map = crate::header_map::encode(&pairs);
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

/// Makes `context_id` the context the next hostcalls act on (from the root context,
/// for a request it holds); false if that request is gone.
pub fn act_on(context_id: u32) -> bool {
    // SAFETY: plain value arguments.
    unsafe { proxy_set_effective_context(context_id) == 0 }
}

/// Milliseconds since the Unix epoch, by the proxy's clock.
pub fn now_unix_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
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

/// Replaces the first `size` bytes of the buffered body with `value`; false if the
/// host refused.
pub fn replace_body(which: Body, size: usize, value: &[u8]) -> bool {
    // SAFETY: `value` is a live slice for the whole call; the host only reads it.
    let status = unsafe {
        proxy_set_buffer_bytes(which.buffer_type(), 0, size, value.as_ptr(), value.len())
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

/// All request headers, fetched in one hostcall (each hostcall costs about as much
/// as the whole verdict, so the gate reads the map once and looks up in it).
pub struct RequestHeaders {
    buffer: Vec<u8>,
    spans: crate::header_map::Spans,
}

impl RequestHeaders {
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .filter_map(|(n, v)| Some((self.buffer.get(n.clone())?, self.buffer.get(v.clone())?)))
    }

    /// The first value of `name` (lower case, as Envoy keeps names).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The names of the headers for which `pick` is true.
    pub fn names_where(&self, pick: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
        self.pairs()
            .filter(|(n, _)| pick(n))
            .map(|(n, _)| n.to_vec())
            .collect()
    }
}

/// The request headers; `None` if the host refuses or the map does not decode.
pub fn request_headers() -> Option<RequestHeaders> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through this module's
    // `proxy_on_memory_allocate` (the SDK's allocator, a `Vec<u8>` of `size`
    // capacity), which we take back as an owned Vec exactly once.
    let status = unsafe {
        proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size)
    };
    if status != 0 {
        return None;
    }
    if data.is_null() || size == 0 {
        return Some(RequestHeaders {
            buffer: Vec::new(),
            spans: Vec::new(),
        });
    }
    // SAFETY: see above.
    let buffer = unsafe { Vec::from_raw_parts(data, size, size) };
    let spans = crate::header_map::spans(&buffer)?;
    Some(RequestHeaders { buffer, spans })
}
