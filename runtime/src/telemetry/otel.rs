//! OpenTelemetry span export over OTLP/HTTP (the `otlp` cargo feature, on by default): a
//! batch exporter on its own thread, so a turn never waits for it, whose failures are logged
//! once (and its recovery), not once per batch.

use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use super::TelemetryError;
use super::traces::TraceSettings;

/// Whether this process exports spans (an exporter was installed).
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported: work that only feeds exported spans (parsing a message's
/// trace context) can be skipped when not.
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The span `make` builds while spans are exported, else `Span::none()`: without an
/// exporter a span would cost its creation, its fields' formatting for the log layer and
/// every `record`, for nothing (the turn path had no spans before tracing).
pub fn traced(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if exporting() {
        make()
    } else {
        tracing::Span::none()
    }
}
use crate::remote::TraceContext;

#[cfg(feature = "otlp")]
mod export {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use opentelemetry::KeyValue;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData};
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
            // An unreachable collector was reported already; shutting down says nothing new.
            let _ = self.provider.shutdown();
        }
    }

    /// Passes batches on and says once that the collector does not take them.
    #[derive(Debug)]
    struct Reported<E> {
        inner: E,
        endpoint: String,
        failing: Arc<AtomicBool>,
    }

    impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
        for Reported<E>
    {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let result = self.inner.export(batch).await;
            match &result {
                Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                    tracing::warn!(endpoint = %self.endpoint, error = %e,
                        "span export failed; spans are dropped until the collector answers \
                         (said once)");
                }
                Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                    tracing::info!(endpoint = %self.endpoint, "span export works again");
                }
                _ => {}
            }
            result
        }

        fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
            self.inner.shutdown_with_timeout(timeout)
        }

        fn force_flush(&self) -> OTelSdkResult {
            self.inner.force_flush()
        }

        fn set_resource(&mut self, resource: &Resource) {
            self.inner.set_resource(resource);
        }
    }

    fn sampler(settings: &TraceSettings) -> Sampler {
        let ratio = settings.sampling.ratio;
        let root = if ratio >= 1.0 {
            Sampler::AlwaysOn
        } else if ratio <= 0.0 {
            Sampler::AlwaysOff
        } else {
            Sampler::TraceIdRatioBased(ratio)
        };
        if settings.sampling.parent_based {
            Sampler::ParentBased(Box::new(root))
        } else {
            root
        }
    }

    pub fn layer<S>(
        service: &str,
        settings: &TraceSettings,
    ) -> Result<(Option<impl Layer<S>>, Option<OtelGuard>), TelemetryError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(endpoint) = &settings.endpoint else {
            return Ok((None, None));
        };
        // Err: a provider is installed already, which is what is needed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
        let exporter = Reported {
            inner: exporter,
            endpoint: endpoint.clone(),
            failing: Arc::default(),
        };
        let mut resource = Resource::builder_empty()
            .with_service_name(
                settings
                    .service_name
                    .clone()
                    .unwrap_or_else(|| service.to_owned()),
            )
            .with_attributes(
                settings
                    .resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            );
        if let Some(id) = &settings.instance_id {
            resource = resource.with_attribute(KeyValue::new("service.instance.id", id.clone()));
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler(settings))
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("turnstone");
        super::EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
        // ractor's own span per actor (`Actor{id=…}`) lives as long as its actor, rmcp's per
        // MCP connection as long as the connection: not units of work, so not exported. Spans inside actors name their parents explicitly.
        // Lean spans: no source location, thread or idle-time bookkeeping per span, and no
        // OpenTelemetry context switch on every poll of an instrumented future (the trace
        // context is read from the tracing span when a request or message needs it).
        let layer = tracing_opentelemetry::layer()
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                // Spans (and events inside them) at info or above, from Turnstone's code and
                // its libraries, never the exporter's own.
                *meta.level() <= tracing::Level::INFO
                    && !meta.target().starts_with("ractor")
                    && !meta.target().starts_with("rmcp")
                    && !meta.target().starts_with("opentelemetry")
            }));
        Ok((Some(layer), Some(OtelGuard { provider })))
    }

    pub fn current_trace_context() -> Option<TraceContext> {
        if !super::exporting() {
            return None;
        }
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

    /// Makes `parent` (a caller's W3C trace context) the parent of `span`; an invalid one
    /// is ignored.
    pub fn set_parent(span: &tracing::Span, parent: &TraceContext) {
        let mut carrier = HashMap::new();
        carrier.insert("traceparent".to_owned(), parent.traceparent.clone());
        if let Some(state) = &parent.tracestate {
            carrier.insert("tracestate".to_owned(), state.clone());
        }
        let cx = TraceContextPropagator::new().extract(&carrier);
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }

    /// The trace and span ids of `span` (hex), when it is being traced.
    pub fn ids(span: &tracing::Span) -> Option<(String, String)> {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
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
        _service: &str,
        settings: &TraceSettings,
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
        match &settings.endpoint {
            Some(endpoint) => Err(TelemetryError::Otlp(format!(
                "span export to {endpoint} needs a build with the `otlp` feature"
            ))),
            None => Ok((None, None)),
        }
    }

    pub fn current_trace_context() -> Option<TraceContext> {
        None
    }

    /// Nothing to link without the `otlp` feature.
    pub fn set_parent(_span: &tracing::Span, _parent: &TraceContext) {}

    /// No ids without the `otlp` feature.
    pub fn ids(_span: &tracing::Span) -> Option<(String, String)> {
        None
    }
}

pub(crate) use export::{OtelGuard, current_trace_context, layer};
pub use export::{ids, set_parent};

/// Records the span's `trace_id` and `span_id` fields (declared empty at its creation), so
/// JSON log lines written inside it carry them.
pub fn annotate(span: &tracing::Span) {
    if span.is_disabled() {
        return;
    }
    if let Some((trace_id, span_id)) = ids(span) {
        span.record("trace_id", trace_id);
        span.record("span_id", span_id);
    }
}
