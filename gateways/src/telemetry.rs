//! Span export settings of a service: the standard `OTEL_*` variables over `[telemetry]`, with
//! the node's id as `service.instance.id`.

use turnstone_actors::config::TurnstoneConfig;
use turnstone_runtime::telemetry::{TelemetryError, TraceSettings};

/// The span export settings for a service of `config`, naming `instance` (a node id).
pub fn traces(
    config: &TurnstoneConfig,
    instance: Option<&str>,
) -> Result<TraceSettings, TelemetryError> {
    let mut settings = TraceSettings::resolve(|k| std::env::var(k).ok(), &config.telemetry)?;
    settings.instance_id = instance.map(str::to_owned);
    Ok(settings)
}
