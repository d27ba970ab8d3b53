//! The gate in a real Envoy (V8; `make test` runs these against the oldest and the
//! newest Envoy tested): each test starts its own Envoy on free ports and stops it,
//! so tests run in parallel.

mod adversarial_parking;
mod adversarial_platforms;
mod adversarial_round3;
mod api_calls;
mod api_faults;
mod api_hostile;
mod api_sdks;
mod api_tokens;
mod backend_headers;
mod hardening;
mod hostile_input;
mod istio;
mod live_list;
mod metrics;
mod one_account_many_instances;
mod parking;
mod platforms;
mod refused_lists;
mod retries_and_replays;
mod safe_mode;
mod secrets_in_envoy_logs;
mod shipped_configs;
mod signatures;
mod sources;
mod status_codes;
mod upstream_failure;
