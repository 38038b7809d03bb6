//! OpenTelemetry span export over OTLP/HTTP, compiled only with the `otlp` feature.

use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use super::{LogSettings, TelemetryError};
use crate::remote::TraceContext;

#[cfg(feature = "otlp")]
mod export {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use tracing_subscriber::Layer;

    use super::*;

    /// Flushes and shuts the exporter down when dropped.
    #[derive(Debug)]
    pub struct OtelGuard {
        provider: SdkTracerProvider,
    }

    impl Drop for OtelGuard {
        fn drop(&mut self) {
            if let Err(err) = self.provider.shutdown() {
                eprintln!("OTLP exporter shutdown: {err}");
            }
        }
    }

    pub fn layer<S>(
        settings: &LogSettings,
    ) -> Result<(Option<impl Layer<S>>, Option<OtelGuard>), TelemetryError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(endpoint) = &settings.otlp_endpoint else {
            return Ok((None, None));
        };
        // Accept a collector's base URL (`http://host:4318`) as well as the full traces URL.
        let endpoint = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
            endpoint.clone()
        } else {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        };
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("turnstone");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer);
        Ok((Some(layer), Some(OtelGuard { provider })))
    }

    pub fn current_trace_context() -> Option<TraceContext> {
        let cx = tracing::Span::current().context();
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        Some(TraceContext {
            traceparent: carrier.remove("traceparent")?,
            tracestate: carrier.remove("tracestate").filter(|s| !s.is_empty()),
        })
    }
}

#[cfg(not(feature = "otlp"))]
mod export {
    use super::*;

    /// Nothing to flush without the `otlp` feature.
    #[derive(Debug)]
    pub struct OtelGuard;

    // `S` keeps the signature identical to the `otlp` build's.
    #[allow(clippy::extra_unused_type_parameters)]
    pub fn layer<S>(
        settings: &LogSettings,
    ) -> Result<
        (
            Option<tracing_subscriber::layer::Identity>,
            Option<OtelGuard>,
        ),
        TelemetryError,
    >
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        match &settings.otlp_endpoint {
            Some(endpoint) => Err(TelemetryError::Otlp(format!(
                "span export to {endpoint} needs a build with the `otlp` feature"
            ))),
            None => Ok((None, None)),
        }
    }

    pub fn current_trace_context() -> Option<TraceContext> {
        None
    }
}

pub(crate) use export::{OtelGuard, current_trace_context, layer};
