//! # turnstone-runtime
//!
//! A domain-free actor runtime on [ractor](https://docs.rs/ractor) and tokio, embeddable on its
//! own. It adds what ractor leaves to the application:
//!
//! - [`supervise`]: OTP supervision — one-for-one / one-for-all / rest-for-one strategies,
//!   permanent / transient / temporary children, restart intensity with escalation, backoff,
//!   and a typed record of every decision;
//! - [`policy`]: capacity with idle eviction, idle timeout, circuit breaker, backoff and
//!   placement, as pure state machines;
//! - [`mailbox`]: bounded mailboxes with backpressure;
//! - [`remote`]: typed, versioned envelopes over a [`remote::Transport`] with reliable delivery;
//! - [`config`]: layered configuration (defaults < file < environment < flags);
//! - [`telemetry`]: logs (text or JSON), optional OTLP span export, Prometheus exposition.
//!
//! The guarantees are stated on one page in `docs/architecture.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod mailbox;
pub mod policy;
pub mod remote;
pub mod supervise;
pub mod telemetry;

pub use ractor;
