//! [`Host`] inside Envoy: every hostcall made through the proxy-wasm ABI, and the only
//! code that names it. The SDK's trait methods unwrap and its `hostcalls` panic on any
//! status they do not expect, so this calls the ABI itself and turns every status
//! into a value. (One exception, [`ProxyWasm::dispatch_http_call`], says why.)

mod abi;

use super::{Body, Headers, Host, Level, MetricKind, Refused, Shared};
use abi::*;
use gate::header_map::{self, HeaderMap};
use log::LevelFilter;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
use std::fmt;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

const OK: u32 = 0;

/// The proxy-wasm host the VM runs in (it has no data: every call goes to the ABI).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyWasm;

/// A status as a `Result`.
fn done(status: u32) -> Result<(), Refused> {
    match status {
        OK => Ok(()),
        status => Err(Refused(status)),
    }
}

/// A hostcall that hands back bytes the host allocated through this module's
/// `proxy_on_memory_allocate` (the SDK's allocator: a boxed `[u8]` of exactly `size`):
/// `Ok(None)` when the host returned no buffer. The buffer is taken back as an owned
/// Vec exactly once, as the SDK does.
fn returned_bytes(
    call: impl FnOnce(*mut *mut u8, *mut usize) -> u32,
) -> Result<Option<Vec<u8>>, Refused> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    match call(&mut data, &mut size) {
        OK if data.is_null() => Ok(None),
        // SAFETY: see above; the host gave up the buffer to us.
        OK => Ok(Some(unsafe { Vec::from_raw_parts(data, size, size) })),
        status => Err(Refused(status)),
    }
}

fn map_type(map: Headers) -> u32 {
    (match map {
        Headers::Request => MapType::HttpRequestHeaders,
        Headers::RequestTrailers => MapType::HttpRequestTrailers,
        Headers::Response => MapType::HttpResponseHeaders,
        Headers::CallResponse => MapType::HttpCallResponseHeaders,
    }) as u32
}

fn buffer_type(which: Body) -> u32 {
    (match which {
        Body::Request => BufferType::HttpRequestBody,
        Body::Response => BufferType::HttpResponseBody,
        Body::CallResponse => BufferType::HttpCallResponseBody,
    }) as u32
}

/// Up to `size` bytes of a buffer, from its start.
fn buffer(which: u32, size: usize) -> Result<Option<Vec<u8>>, Refused> {
    // SAFETY: the out-pointers are locals; see `returned_bytes`.
    returned_bytes(|data, returned| unsafe {
        proxy_get_buffer_bytes(which, 0, size, data, returned)
    })
}

impl Host for ProxyWasm {
    fn header_map(&self, map: Headers) -> Option<HeaderMap> {
        #[cfg(feature = "attribution-twice-header-map")]
        if map == Headers::Request {
            // SAFETY: as below.
            let _ = std::hint::black_box(
                returned_bytes(|data, size| unsafe {
                    proxy_get_header_map_pairs(map_type(map), data, size)
                })
                .map(|pairs| HeaderMap::from_serialized(pairs.unwrap_or_default())),
            );
        }
        // SAFETY: the out-pointers are locals; see `returned_bytes`.
        let pairs = returned_bytes(|data, size| unsafe {
            proxy_get_header_map_pairs(map_type(map), data, size)
        })
        .ok()?;
        HeaderMap::from_serialized(pairs.unwrap_or_default())
    }

    fn header(&self, map: Headers, name: &str) -> Option<Vec<u8>> {
        // SAFETY: `name` is a live slice for the whole call; the out-pointers are locals.
        returned_bytes(|data, size| unsafe {
            proxy_get_header_map_value(map_type(map), name.as_ptr(), name.len(), data, size)
        })
        .ok()
        .flatten()
    }

    fn set_header(&self, map: Headers, name: &[u8], value: &[u8]) -> Result<(), Refused> {
        // SAFETY: the pointers and lengths describe live slices for the whole call;
        // the host only reads them.
        done(unsafe {
            proxy_replace_header_map_value(
                map_type(map),
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        })
    }

    fn remove_header(&self, map: Headers, name: &[u8]) -> Result<(), Refused> {
        // SAFETY: `name` is a live slice for the whole call; the host only reads it.
        done(unsafe { proxy_remove_header_map_value(map_type(map), name.as_ptr(), name.len()) })
    }

    fn body(&self, which: Body, size: usize) -> Option<Vec<u8>> {
        if size == 0 {
            return Some(Vec::new());
        }
        buffer(buffer_type(which), size)
            .ok()
            .map(Option::unwrap_or_default)
    }

    fn replace_body(&self, which: Body, value: &[u8]) -> Result<(), Refused> {
        // SAFETY: `value` is a live slice for the whole call; the host only reads it.
        done(unsafe {
            proxy_set_buffer_bytes(
                buffer_type(which),
                0,
                usize::MAX,
                value.as_ptr(),
                value.len(),
            )
        })
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        // The ABI takes the path's parts joined by NULs.
        let path = path.join("\0");
        // SAFETY: `path` is live for the whole call; the out-pointers are locals.
        returned_bytes(|data, size| unsafe {
            proxy_get_property(path.as_ptr(), path.len(), data, size)
        })
        .ok()
        .flatten()
    }

    fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), Refused> {
        let pairs: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        let map = header_map::encode(&pairs);
        const DETAILS: &str = "wechat_gate";
        // SAFETY: every pointer and length describes a live buffer for the whole
        // call; the host only reads them.
        done(unsafe {
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
        })
    }

    fn resume_request(&self) -> Result<(), Refused> {
        // SAFETY: plain value arguments (0: the request stream).
        done(unsafe { proxy_continue_stream(0) })
    }

    fn act_on(&self, context_id: u32) -> Result<(), Refused> {
        // SAFETY: plain value arguments.
        done(unsafe { proxy_set_effective_context(context_id) })
    }

    fn plugin_configuration(&self) -> Option<Vec<u8>> {
        buffer(BufferType::PluginConfiguration as u32, usize::MAX)
            .ok()
            .flatten()
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn now(&self) -> Result<Duration, Refused> {
        let mut nanos: u64 = 0;
        // SAFETY: the host writes one u64 to a live local.
        done(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
        Ok(Duration::from_nanos(nanos))
    }

    fn random16(&self) -> Option<[u8; 16]> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).ok()?;
        Some(bytes)
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), Refused> {
        let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
        // SAFETY: a plain value argument.
        done(unsafe { proxy_set_tick_period_milliseconds(ms) })
    }

    fn get_shared(&self, key: &str) -> Result<Shared, Refused> {
        let mut cas: u32 = 0;
        // SAFETY: `key` is live for the whole call; the out-pointers are locals.
        let value = returned_bytes(|data, size| unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), data, size, &mut cas)
        });
        match value {
            Ok(value) => Ok(Shared {
                value,
                cas: (cas != 0).then_some(cas),
            }),
            Err(Refused::NOT_FOUND) => Ok(Shared::default()),
            Err(refused) => Err(refused),
        }
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Refused> {
        // SAFETY: `key` and `value` are live slices for the whole call; the host only
        // reads them.
        done(unsafe {
            proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            )
        })
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, Refused> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        let mut id: u32 = 0;
        // SAFETY: `name` is live for the whole call; the host writes the id to a local.
        done(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
        Ok(id)
    }

    fn increment_metric(&self, id: u32, by: i64) -> Result<(), Refused> {
        // SAFETY: plain value arguments.
        done(unsafe { proxy_increment_metric(id, by) })
    }

    fn record_metric(&self, id: u32, value: u64) -> Result<(), Refused> {
        // SAFETY: plain value arguments.
        done(unsafe { proxy_record_metric(id, value) })
    }

    /// The one SDK wrapper left: the SDK routes a call's reply
    /// (`proxy_on_http_call_response`, which it exports) only to calls it registered
    /// itself, and panics on any other, so a call made through the ABI directly would
    /// trap on its reply. The wrapper panics only on a status other than Ok,
    /// BadArgument and InternalFailure, which are all proxy-wasm-cpp-host's
    /// `http_call` returns for the arguments built here (the others are
    /// InvalidMemoryAccess, a bad pointer of ours, and Unimplemented, a host without
    /// HTTP calls).
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, Refused> {
        hostcalls::dispatch_http_call(cluster, headers, body, vec![], timeout)
            .map_err(|status| Refused(status as u32))
    }

    fn follow_log_level(&self) -> Result<(), Refused> {
        let level = host_log_level();
        log::set_max_level(level.unwrap_or(LevelFilter::Info));
        level.map(|_| ())
    }

    fn logs(&self, level: Level) -> bool {
        level <= log::max_level()
    }

    fn log(&self, level: Level, message: fmt::Arguments<'_>) -> Result<(), Refused> {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        match message.as_str() {
            Some(line) => write_log(level, line),
            None => write_log(level, &message.to_string()),
        }
    }

    fn notes_said(&self) -> &AtomicU32 {
        // One VM, one module instance: a static is the VM's.
        static SAID: AtomicU32 = AtomicU32::new(0);
        &SAID
    }
}

/// The host's log level as the `log` crate's filter (critical: off, as the SDK's
/// logger has it).
fn host_log_level() -> Result<LevelFilter, Refused> {
    let mut level: u32 = 0;
    // SAFETY: the host writes one u32 to a live local (read as a number: a value out
    // of the enum's range must not become a `LogLevel`).
    done(unsafe { proxy_get_log_level(&mut level) })?;
    Ok(match level {
        0 => LevelFilter::Trace,
        1 => LevelFilter::Debug,
        2 => LevelFilter::Info,
        3 => LevelFilter::Warn,
        4 => LevelFilter::Error,
        _ => LevelFilter::Off,
    })
}

impl ProxyWasm {
    /// Sends the `log` crate's lines (the SDK's own) to the host's log (at info and
    /// up until the host's level is known), and a panic's message at critical before
    /// the VM aborts. The SDK's logger would do the same but unwraps every
    /// `proxy_log` status. Called once, when the VM starts.
    pub fn start_logging() {
        let _ = log::set_logger(&HOST_LOG);
        log::set_max_level(LevelFilter::Info);
        std::panic::set_hook(Box::new(|panic| {
            let _ = write_log(LogLevel::Critical, &panic.to_string());
        }));
    }
}

struct HostLog;

static HOST_LOG: HostLog = HostLog;

impl log::Log for HostLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        ProxyWasm.logs(metadata.level())
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let _ = ProxyWasm.log(record.level(), *record.args());
        }
    }

    fn flush(&self) {}
}

/// One line to the host's log.
fn write_log(level: LogLevel, message: &str) -> Result<(), Refused> {
    // SAFETY: `message` is live for the whole call; the host only reads it.
    done(unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) })
}
