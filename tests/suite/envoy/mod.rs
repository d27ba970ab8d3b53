//! The gate in a real Envoy 1.40 (V8): each test starts its own Envoy on free ports
//! and stops it, so tests run in parallel.

mod backend_headers;
mod hardening;
mod hostile_input;
mod live_list;
mod retries_and_replays;
mod safe_mode;
mod shipped_configs;
mod signatures;
mod sources;
mod status_codes;
mod upstream_failure;
