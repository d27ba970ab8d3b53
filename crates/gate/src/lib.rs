//! Every decision the filter makes, pure: no proxy-wasm, no I/O. Time, randomness
//! and whatever the proxy knows about a request come in as arguments; what to do
//! comes out as values. It builds and tests natively.
//!
//! - [`request`]: a request's head judged (method, query, source, signature,
//!   freshness) into a [`request::Verdict`]; [`rejection`] names every refusal.
//! - [`exchange`]: a request's whole life as a state machine: events in, effects out.
//! - [`body`]: reading a verified push's body: the plan, hold or stream, held
//!   pushes' deadlines, the whole body checked.
//! - [`safe_mode`]: `encrypt_type=aes`: `msg_signature`, decryption, sealed replies.
//! - [`tables`]: the retry table (WeChat's retries) and the replay table (used
//!   queries).
//! - [`park`]: pushes answered `success` for want of a backend, kept and redelivered.
//! - [`token`]: the access token and the callback IP list kept fresh by a machine of
//!   the exchange's kind (events in, effects out); [`errcodes`]: what WeChat's errcodes
//!   mean and ask of the operator (the filter's logs, doctor).
//! - [`config`], [`query`], [`signature`], [`allowlist`], [`message`], [`xml`],
//!   [`header_map`], [`metrics`]: the parsers, checks and names the others use.
//! - `testing` (the `testing` feature): the fake proxy the exchange is tested
//!   against, by the unit tests and the fuzz target.

// Nothing a request carries may make the filter panic: no unwrap, expect, panic or
// unchecked indexing outside tests.
// Functions fit on a screen (STYLE.md; the threshold is in clippy.toml).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
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
pub mod api;
pub mod body;
pub mod config;
pub mod errcodes;
pub mod exchange;
pub mod header_map;
pub mod message;
pub mod metrics;
pub mod park;
pub mod query;
pub mod rejection;
pub mod request;
pub mod safe_mode;
pub mod signature;
pub mod tables;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod token;
pub mod xml;
