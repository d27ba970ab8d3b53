//! Native only, never in the filter: what behaves like WeChat for the CLI, the tests
//! and the bench, and the operator's tools. [`wechat`] signs queries, builds pushes
//! and opens sealed replies as WeChat's servers do; [`client`] is the one HTTP(S) client
//! of `send` and the doctor; [`http1`] is HTTP/1.1 by hand (the one request reader, and
//! the tests' byte-exact client); [`mock_api`] stands in for
//! WeChat's API server; [`doctor`] checks an account's setup against WeChat's API;
//! [`secret_env`] reads the CLI's secrets.

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
// Functions fit on a screen (clippy.toml sets the bound); tests may be longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod client;
pub mod doctor;
pub mod http1;
pub mod mock_api;
pub mod secret_env;
pub mod wechat;
