//! Logs, traces and metrics.
//!
//! - [`init_logging`]: a tracing subscriber writing human text on a terminal and JSON otherwise,
//!   with the level from a flag or environment, and span export over OTLP/HTTP when the
//!   standard `OTEL_*` variables (or a `[telemetry]` section) name a collector.
//! - [`encode_text`]: Prometheus text exposition of a prometheus-client registry, served by the
//!   gateways at `/metrics`.

mod logging;
mod metrics;
mod otel;
mod traces;

pub use logging::{LogFormat, LogSettings, TelemetryError, TelemetryGuard, init_logging};
pub use metrics::{METRICS_CONTENT_TYPE, encode_text};
pub(crate) use otel::current_trace_context;
pub use otel::{annotate, exporting, ids, set_parent, traced};
pub use traces::{Sampling, TelemetryConfig, TraceSettings, traces_url};
