//! The API role in the filter (DESIGN.md "The API role"): it carries out what
//! `gate::api` decides. [`desk::ApiDesk`] is one worker's part: the calls that wait
//! for a token, the token fetch it holds the lease for, the calls its root context
//! made for them, and the bodies it waits for; [`http::ApiHttp`] is one caller's
//! request. Every hostcall goes through [`crate::host::Host`].
//!
//! A call is sent by the caller's own HTTP context when the shared token is at hand
//! (its reply comes back to that context), else by the root context from its tick
//! once a token is there (its reply comes back to the root, which answers the caller
//! on the caller's context).

pub mod desk;
pub mod http;
