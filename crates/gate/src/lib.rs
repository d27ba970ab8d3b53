//! Every decision the filter makes, pure: no proxy-wasm, no I/O. Time, randomness
//! and whatever the proxy knows about a request come in as arguments; what to do
//! comes out as values. It builds and tests natively.
//!
//! - [`request`]: a request's head judged (method, query, source, signature,
//!   freshness) into a [`request::Verdict`]; [`rejection`] names every refusal.
//! - [`exchange`]: a request's whole life as a state machine: events in, effects out.
//! - [`safe_mode`]: the body checks and sealed replies of `encrypt_type=aes`.
//! - [`dedupe`]: the tables of retries and replays; [`held`]: held pushes' deadlines.
//! - [`token`]: the access token and the callback IP list kept fresh by a machine of
//!   the exchange's kind (events in, effects out); [`errcodes`]: what WeChat's errcodes
//!   mean and ask of the operator (the filter's logs, doctor).
//! - [`config`], [`query`], [`signature`], [`allowlist`], [`xml`], [`header_map`]:
//!   the parsers and checks the others use.

// Nothing a request carries may make the filter panic: no unwrap, expect, panic or
// unchecked indexing outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod allowlist;
pub mod config;
pub mod dedupe;
pub mod errcodes;
pub mod exchange;
pub mod header_map;
pub mod held;
pub mod message;
pub mod metrics;
pub mod query;
pub mod rejection;
pub mod request;
pub mod safe_mode;
pub mod signature;
pub mod token;
pub mod xml;
