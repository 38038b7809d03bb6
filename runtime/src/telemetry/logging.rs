//! The tracing subscriber.

use std::io::IsTerminal;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::otel;
use super::traces::TraceSettings;

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

impl LogFormat {
    /// The concrete format for an output that is (or is not) a terminal.
    pub fn resolve(self, is_terminal: bool) -> Self {
        match self {
            Self::Auto if is_terminal => Self::Text,
            Self::Auto => Self::Json,
            Self::Json | Self::Text => self,
        }
    }
}

impl TryFrom<String> for LogFormat {
    type Error = TelemetryError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            _ => Err(TelemetryError::UnknownFormat(s.to_owned())),
        }
    }
}

/// What [`init_logging`] sets up.
#[derive(Clone, Debug, PartialEq)]
pub struct LogSettings {
    /// A level (`info`) or filter directives (`info,turnstone_runtime=debug`).
    pub level: String,
    /// The line format.
    pub format: LogFormat,
    /// The service name in exported spans (unless the settings name another).
    pub service: String,
    /// Span export ([`TraceSettings::resolve`]; the default exports nothing).
    pub traces: TraceSettings,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Auto,
            service: "turnstone".into(),
            traces: TraceSettings::default(),
        }
    }
}

/// Setting up telemetry failed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The level or filter does not parse.
    #[error("invalid log level {level:?}: {reason}")]
    InvalidLevel {
        /// What was given.
        level: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Not `auto`, `json` or `text`.
    #[error("unknown log format {0:?}: expected auto, json or text")]
    UnknownFormat(String),
    /// A global subscriber is already installed.
    #[error("logging already initialised: {0}")]
    AlreadyInitialised(String),
    /// The OTLP exporter could not be built, or the feature is missing.
    #[error("OTLP export: {0}")]
    Otlp(String),
}

/// Keeps exporters alive; dropping it flushes pending spans.
#[derive(Debug)]
pub struct TelemetryGuard {
    _otel: Option<otel::OtelGuard>,
}

/// Parses a plain level (`debug`) or filter directives (`info,turnstone_runtime=debug`). A bare
/// word that is not a level is refused rather than read as a target name that matches nothing.
fn level_filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let invalid = |reason: String| TelemetryError::InvalidLevel {
        level: level.to_owned(),
        reason,
    };
    let is_directive = level.contains([',', '=', '[']);
    if !is_directive && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
        return Err(invalid(format!("expected one of {}", LEVELS.join(", "))));
    }
    EnvFilter::try_new(level.to_ascii_lowercase()).map_err(|e| invalid(e.to_string()))
}

fn quiet(target: &str) -> tracing_subscriber::filter::Directive {
    format!("{target}=off")
        .parse()
        .unwrap_or_else(|_| tracing_subscriber::filter::LevelFilter::OFF.into())
}

/// Installs the global tracing subscriber.
pub fn init_logging(settings: &LogSettings) -> Result<TelemetryGuard, TelemetryError> {
    // The exporter's own chatter stays out of the logs: its failures are reported once.
    let filter = level_filter(&settings.level)?
        .add_directive(quiet("opentelemetry"))
        .add_directive(quiet("opentelemetry_sdk"))
        .add_directive(quiet("opentelemetry_otlp"));
    let format = settings.format.resolve(std::io::stderr().is_terminal());
    let (otel_layer, otel_guard) =
        otel::layer::<tracing_subscriber::Registry>(&settings.service, &settings.traces)?;
    let installed = match otel_layer {
        // Exporting, each layer filters for itself: the log level says which lines are
        // written, not which spans are exported (a simulator logging warnings only still
        // traces its turns).
        Some(otel_layer) => {
            let (json, text) = match format {
                LogFormat::Json => (Some(json_layer().with_filter(filter)), None),
                LogFormat::Text | LogFormat::Auto => (None, Some(text_layer().with_filter(filter))),
            };
            tracing_subscriber::registry()
                .with(otel_layer)
                .with(json)
                .with(text)
                .try_init()
        }
        // Not exporting: one global filter, which disabled call sites skip without asking
        // any layer (what the process did before it could export).
        None => {
            let (json, text) = match format {
                LogFormat::Json => (Some(json_layer()), None),
                LogFormat::Text | LogFormat::Auto => (None, Some(text_layer())),
            };
            tracing_subscriber::registry()
                .with(filter)
                .with(json)
                .with(text)
                .try_init()
        }
    };
    installed.map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))?;
    Ok(TelemetryGuard { _otel: otel_guard })
}

fn json_layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_writer(std::io::stderr)
}

fn text_layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer().with_writer(std::io::stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_means_text_on_a_terminal_and_json_otherwise() {
        assert_eq!(LogFormat::Auto.resolve(true), LogFormat::Text);
        assert_eq!(LogFormat::Auto.resolve(false), LogFormat::Json);
        assert_eq!(LogFormat::Json.resolve(true), LogFormat::Json);
        assert_eq!(LogFormat::Text.resolve(false), LogFormat::Text);
    }

    #[test]
    fn formats_parse_and_bad_ones_are_named() {
        assert_eq!("JSON".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!(
            "yaml".parse::<LogFormat>().unwrap_err().to_string(),
            "unknown log format \"yaml\": expected auto, json or text"
        );
    }

    #[test]
    fn levels_and_directives_parse_and_bad_ones_are_clear_errors() {
        assert!(level_filter("DEBUG").is_ok());
        assert!(level_filter("info,turnstone_runtime=trace").is_ok());
        assert_eq!(
            level_filter("verbose").unwrap_err().to_string(),
            "invalid log level \"verbose\": expected one of trace, debug, info, warn, error, off"
        );
        let err = level_filter("info,x=loudest").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid log level \"info,x=loudest\""),
            "{err}"
        );
    }
}
