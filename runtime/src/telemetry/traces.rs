//! Where and how spans are exported, from the standard `OTEL_*` variables (which win) and a
//! service's `[telemetry]` configuration: no endpoint (or `OTEL_SDK_DISABLED=true`) means no
//! exporter at all.

use serde::{Deserialize, Serialize};

use super::TelemetryError;

/// Which traces are kept.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Follow the caller's decision when a request carries one.
    pub parent_based: bool,
    /// Share of new traces kept, 0–1.
    pub ratio: f64,
}

impl Default for Sampling {
    /// `parentbased_always_on`, the OpenTelemetry default.
    fn default() -> Self {
        Self {
            parent_based: true,
            ratio: 1.0,
        }
    }
}

impl Sampling {
    /// Parses `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    pub fn parse(sampler: &str, arg: Option<&str>) -> Result<Self, TelemetryError> {
        let ratio = || -> Result<f64, TelemetryError> {
            match arg.map(str::trim).filter(|a| !a.is_empty()) {
                None => Ok(1.0),
                Some(a) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        TelemetryError::Otlp(format!(
                            "OTEL_TRACES_SAMPLER_ARG {a:?} is not a ratio between 0 and 1"
                        ))
                    }),
            }
        };
        let (parent_based, ratio) = match sampler.trim().to_ascii_lowercase().as_str() {
            "always_on" => (false, 1.0),
            "always_off" => (false, 0.0),
            "traceidratio" => (false, ratio()?),
            "parentbased_always_on" => (true, 1.0),
            "parentbased_always_off" => (true, 0.0),
            "parentbased_traceidratio" => (true, ratio()?),
            other => {
                return Err(TelemetryError::Otlp(format!(
                    "unknown OTEL_TRACES_SAMPLER {other:?}: expected always_on, always_off, \
                     traceidratio or their parentbased_ forms"
                )));
            }
        };
        Ok(Self {
            parent_based,
            ratio,
        })
    }
}

/// Span export settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceSettings {
    /// The OTLP/HTTP traces URL (None: no export).
    pub endpoint: Option<String>,
    /// `service.name` (None: the service's own name).
    pub service_name: Option<String>,
    /// `service.instance.id` (a node's id).
    pub instance_id: Option<String>,
    /// More resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Vec<(String, String)>,
    /// Which traces are kept.
    pub sampling: Sampling,
}

/// The `[telemetry]` section of a configuration: the same settings as the variables.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: a collector's base URL (`/v1/traces` is added).
    pub endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES` (`key=value,key=value`).
    pub resource_attributes: Option<String>,
    /// `OTEL_TRACES_SAMPLER`.
    pub sampler: Option<String>,
    /// `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler_arg: Option<String>,
    /// `OTEL_SDK_DISABLED`.
    pub disabled: bool,
}

/// `key=value,key=value` (values percent-decoded as the specification asks).
fn resource_attributes(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_owned(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl TraceSettings {
    /// The settings from the `OTEL_*` variables (`var` looks one up), falling back to
    /// `config` key by key.
    pub fn resolve(
        var: impl Fn(&str) -> Option<String>,
        config: &TelemetryConfig,
    ) -> Result<Self, TelemetryError> {
        let var = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let disabled = match var("OTEL_SDK_DISABLED") {
            Some(v) => v.trim().eq_ignore_ascii_case("true"),
            None => config.disabled,
        };
        if disabled {
            return Ok(Self::default());
        }
        let endpoint = match var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            // The signal's own URL is used as given.
            Some(full) => Some(full),
            None => var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .or_else(|| config.endpoint.clone().filter(|e| !e.trim().is_empty()))
                .map(|base| traces_url(&base)),
        };
        let sampler = var("OTEL_TRACES_SAMPLER").or_else(|| config.sampler.clone());
        let sampler_arg = var("OTEL_TRACES_SAMPLER_ARG").or_else(|| config.sampler_arg.clone());
        let sampling = match sampler {
            Some(s) => Sampling::parse(&s, sampler_arg.as_deref())?,
            None => Sampling::default(),
        };
        let resource = var("OTEL_RESOURCE_ATTRIBUTES")
            .or_else(|| config.resource_attributes.clone())
            .map(|r| resource_attributes(&r))
            .unwrap_or_default();
        Ok(Self {
            endpoint,
            service_name: var("OTEL_SERVICE_NAME").or_else(|| config.service_name.clone()),
            instance_id: None,
            resource,
            sampling,
        })
    }

    /// Whether spans are exported.
    pub fn enabled(&self) -> bool {
        self.endpoint.is_some()
    }
}

/// A collector's base URL as its traces URL (`http://host:4318` → `…/v1/traces`).
pub fn traces_url(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(vars: &[(&str, &str)], config: &TelemetryConfig) -> TraceSettings {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TraceSettings::resolve(|k| vars.get(k).cloned(), config).unwrap()
    }

    #[test]
    fn nothing_set_means_no_export() {
        let s = resolve(&[], &TelemetryConfig::default());
        assert!(!s.enabled());
        assert_eq!(s.sampling, Sampling::default());
    }

    #[test]
    fn the_variables_win_over_the_configuration() {
        let config = TelemetryConfig {
            endpoint: Some("http://config:4318".into()),
            service_name: Some("from-config".into()),
            sampler: Some("always_off".into()),
            ..TelemetryConfig::default()
        };
        let s = resolve(&[], &config);
        assert_eq!(s.endpoint.as_deref(), Some("http://config:4318/v1/traces"));
        assert_eq!(s.service_name.as_deref(), Some("from-config"));
        assert_eq!(s.sampling.ratio, 0.0);
        let s = resolve(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318/"),
                ("OTEL_SERVICE_NAME", "from-env"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,team=a%2Cb",
                ),
            ],
            &config,
        );
        assert_eq!(s.endpoint.as_deref(), Some("http://env:4318/v1/traces"));
        assert_eq!(s.service_name.as_deref(), Some("from-env"));
        assert_eq!(
            s.sampling,
            Sampling {
                parent_based: true,
                ratio: 0.25
            }
        );
        assert_eq!(
            s.resource,
            vec![
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "a,b".to_owned())
            ]
        );
        let s = resolve(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://traces:9999/custom",
                ),
            ],
            &config,
        );
        assert_eq!(
            s.endpoint.as_deref(),
            Some("http://traces:9999/custom"),
            "used as given"
        );
    }

    #[test]
    fn disabled_turns_everything_off_and_bad_samplers_are_named() {
        let s = resolve(
            &[
                ("OTEL_SDK_DISABLED", "TRUE"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:4318"),
            ],
            &TelemetryConfig::default(),
        );
        assert!(!s.enabled());
        let err = Sampling::parse("sometimes", None).unwrap_err().to_string();
        assert!(
            err.contains("unknown OTEL_TRACES_SAMPLER \"sometimes\""),
            "{err}"
        );
        let err = Sampling::parse("traceidratio", Some("2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a ratio between 0 and 1"), "{err}");
    }
}
