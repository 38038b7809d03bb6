#![allow(clippy::unwrap_used, clippy::expect_used)]
//! With the `otlp` feature, spans reach a real OTLP collector (rotel, started by scripts/test),
//! and an envelope sent inside a span carries that span's trace id.

use std::time::{Duration, Instant};

use turnstone_runtime::remote::Envelope;
use turnstone_runtime::telemetry::{LogFormat, LogSettings, init_logging};

#[test]
fn spans_are_exported_and_envelopes_carry_their_trace_context() {
    let endpoint = std::env::var("TURNSTONE_TEST_OTLP_ENDPOINT")
        .expect("TURNSTONE_TEST_OTLP_ENDPOINT: run with scripts/test, which starts rotel");
    let collector_log = std::env::var("TURNSTONE_TEST_OTLP_LOG").expect("TURNSTONE_TEST_OTLP_LOG");
    let marker = uuid::Uuid::new_v4().simple().to_string();

    let guard = init_logging(&LogSettings {
        level: "info".into(),
        format: LogFormat::Text,
        service: "turnstone-otlp-test".into(),
        traces: turnstone_runtime::telemetry::TraceSettings {
            endpoint: Some(turnstone_runtime::telemetry::traces_url(&endpoint)),
            ..Default::default()
        },
    })
    .unwrap();

    let traceparent = {
        let span = tracing::info_span!("turnstone_export_check", marker = %marker);
        let _entered = span.enter();
        let envelope = Envelope::new(serde_json::json!({"type": "health"}));
        let trace = envelope
            .meta
            .trace
            .clone()
            .expect("trace context inside an exported span");
        let decoded = Envelope::<serde_json::Value>::decode(&envelope.encode().unwrap()).unwrap();
        assert_eq!(
            decoded.meta.trace.as_ref(),
            Some(&trace),
            "it survives the wire"
        );
        trace.traceparent
    };
    // W3C: version-traceid-spanid-flags
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    let trace_id = parts[1];
    assert_eq!(trace_id.len(), 32);

    drop(guard); // flushes the batch exporter

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = std::fs::read_to_string(&collector_log).unwrap_or_default();
        if log.contains(&marker) {
            assert!(log.contains("turnstone_export_check"), "span name exported");
            assert!(log.contains("turnstone-otlp-test"), "service name exported");
            assert!(
                log.contains(trace_id),
                "the envelope's trace id is the span's"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "collector never logged span {marker}; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
