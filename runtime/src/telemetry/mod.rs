//! Logs, traces and metrics.
//!
//! - [`init_logging`]: a tracing subscriber writing human text on a terminal and JSON otherwise,
//!   with the level from a flag or environment, and (with the `otlp` cargo feature and an
//!   endpoint) span export over OTLP/HTTP.
//! - [`encode_text`]: Prometheus text exposition of a prometheus-client registry, served by the
//!   gateways at `/metrics`.

mod logging;
mod metrics;
mod otel;

pub use logging::{LogFormat, LogSettings, TelemetryError, TelemetryGuard, init_logging};
pub use metrics::{METRICS_CONTENT_TYPE, encode_text};
pub(crate) use otel::current_trace_context;
