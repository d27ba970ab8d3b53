//! Reading a verified push's body, pure: the one place the exchange asks what to do
//! with a body.
//!
//! - plan.rs: decided on the headers: the size rule every push obeys
//!   ([`check_declared`], and [`check_received`] as it arrives), and whether the
//!   body must be read at all ([`BodyPlan`]: safe mode, or retries to spot).
//! - mode.rs: hold or stream: how the host hands a Wasm filter a body
//!   ([`BodyMode`], learnt from [`Observation`]s of the host alone), how a push waits
//!   for its body ([`wait_for_body`]) and what a tick's look at a held push says
//!   ([`probe`]).
//! - held.rs: the pushes a worker holds, answered 408 from its tick at their
//!   deadline, a bounded number per tick ([`HeldRequests`]).
//! - check.rs: the whole body checked against its plan ([`verify`], then
//!   [`open`]): a plaintext push read for its identity only; a safe-mode push
//!   handed to [`crate::safe_mode`].
//!
//! Nothing here forwards anything: the exchange holds or buffers the body, and lets
//! it go only once [`open`] has said yes.

mod check;
mod held;
mod mode;
mod plan;

pub use check::{check, open, verify, Checked, Verified};
pub use held::{
    deadlines_per_tick, tick_period, HeldRequests, ANSWERS_PER_TICK, PROBES_PER_TICK, PROBE_MS,
};
pub use mode::{
    probe, wait_for_body, BodyMode, BodyModeLearner, ByteCount, Observation, Probed, Wait,
    BODY_DEADLINE_MS, MAX_STREAMED_UNVERIFIED, MAX_WAITING,
};
pub use plan::{check_declared, check_received, declared_length, BodyPlan};
