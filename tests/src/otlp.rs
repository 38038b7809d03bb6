//! An OTLP/HTTP trace receiver for tests, built on the official protobuf definitions: services
//! export to it, and tests ask for spans by trace and check their parent/child structure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use tokio::sync::oneshot;
use warp::Filter;

/// One received span, flattened.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// `service.name` of its resource.
    pub service: String,
    /// Resource attributes.
    pub resource: BTreeMap<String, String>,
    /// Name.
    pub name: String,
    /// Trace id (hex).
    pub trace_id: String,
    /// Span id (hex).
    pub span_id: String,
    /// Parent span id (hex, empty for a root).
    pub parent_id: String,
    /// Attributes, as text.
    pub attributes: BTreeMap<String, String>,
    /// Event names.
    pub events: Vec<String>,
    /// Kind (1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    /// Start, nanoseconds since the epoch.
    pub start_ns: u64,
    /// End, nanoseconds since the epoch.
    pub end_ns: u64,
}

impl Span {
    /// An attribute's text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn text(v: Option<&AnyValue>) -> String {
    match v {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kv: &[KeyValue]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|a| {
            (
                a.key.clone(),
                text(a.value.as_ref().and_then(|v| v.value.as_ref())),
            )
        })
        .collect()
}

/// The receiver: `endpoint()` is its base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`).
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    _stop: oneshot::Sender<()>,
}

impl OtlpReceiver {
    /// Makes this test process export its spans here, as `service` (logs at `level`): for
    /// tests that run a service in process. Keep the guard for the test's length.
    pub fn export_this_process(
        &self,
        service: &str,
        level: &str,
    ) -> turnstone_runtime::telemetry::TelemetryGuard {
        use turnstone_runtime::telemetry::{LogSettings, TraceSettings, init_logging, traces_url};
        init_logging(&LogSettings {
            level: level.into(),
            service: service.into(),
            traces: TraceSettings {
                endpoint: Some(traces_url(&self.endpoint())),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("telemetry: {e}"))
    }

    /// Starts one on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let sink = spans.clone();
        let route = warp::post()
            .and(warp::path!("v1" / "traces"))
            .and(warp::body::bytes())
            .map(move |body: bytes::Bytes| {
                let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
                    return warp::http::StatusCode::BAD_REQUEST;
                };
                let mut got = Vec::new();
                for rs in request.resource_spans {
                    let resource = rs
                        .resource
                        .map(|r| attributes(&r.attributes))
                        .unwrap_or_default();
                    let service = resource.get("service.name").cloned().unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            got.push(Span {
                                service: service.clone(),
                                resource: resource.clone(),
                                name: s.name,
                                trace_id: hex::encode(&s.trace_id),
                                span_id: hex::encode(&s.span_id),
                                parent_id: hex::encode(&s.parent_span_id),
                                attributes: attributes(&s.attributes),
                                events: s.events.into_iter().map(|e| e.name).collect(),
                                kind: s.kind,
                                start_ns: s.start_time_unix_nano,
                                end_ns: s.end_time_unix_nano,
                            });
                        }
                    }
                }
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(got);
                warp::http::StatusCode::OK
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(route)
                .incoming(listener)
                .graceful(async move {
                    let _ = stopped.await;
                })
                .run(),
        );
        Ok(Self {
            addr,
            spans,
            _stop: stop,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits (at most `timeout`) until `done` holds for the spans received, and returns them.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[Span]) -> bool,
    ) -> Result<Vec<Span>, Vec<Span>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(spans);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether `descendant` is below `ancestor` in `spans` (following parent ids).
pub fn descends_from(spans: &[Span], descendant: &Span, ancestor_id: &str) -> bool {
    let mut parent = descendant.parent_id.clone();
    for _ in 0..64 {
        if parent.is_empty() {
            return false;
        }
        if parent == ancestor_id {
            return true;
        }
        match spans.iter().find(|s| s.span_id == parent) {
            Some(p) => parent = p.parent_id.clone(),
            None => return false,
        }
    }
    false
}
