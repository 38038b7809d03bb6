//! Request metrics every service exposes with SPEC §10's names: requests by method, endpoint
//! and status, latency by method and endpoint, and rate-limit refusals. Counters are
//! registered without `_total` (prometheus-client adds it).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label pairs.
pub type Labels = Vec<(&'static str, String)>;

/// Request-duration buckets (seconds).
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Makes the request-duration histograms.
#[derive(Clone, Debug, Default)]
pub struct Durations;

impl prometheus_client::metrics::family::MetricConstructor<Histogram> for Durations {
    fn new_metric(&self) -> Histogram {
        Histogram::new(BUCKETS)
    }
}

/// A histogram family with [`BUCKETS`].
#[derive(Clone, Debug)]
pub struct RequestDurations(pub Family<Labels, Histogram, Durations>);

impl Default for RequestDurations {
    fn default() -> Self {
        Self(Family::new_with_constructor(Durations))
    }
}

/// The request metrics of one service.
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    /// Requests by method, endpoint and status.
    pub requests: Family<Labels, Counter>,
    /// Request latency by method and endpoint.
    pub duration: RequestDurations,
    /// Requests refused by the rate limiter.
    pub ratelimit_rejected: Counter,
}

impl HttpMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "turnstone_http_requests",
            "HTTP requests",
            m.requests.clone(),
        );
        registry.register(
            "turnstone_http_request_duration_seconds",
            "HTTP request latency",
            m.duration.0.clone(),
        );
        registry.register(
            "turnstone_ratelimit_rejected",
            "Requests refused by the rate limiter",
            m.ratelimit_rejected.clone(),
        );
        m
    }

    /// Counts one finished request.
    pub fn request(&self, method: &str, endpoint: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("endpoint", endpoint.to_owned()),
                ("status_code", status.to_string()),
            ])
            .inc();
        self.duration
            .0
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("endpoint", endpoint.to_owned()),
            ])
            .observe(seconds);
    }
}

/// `registry` in Prometheus' text format, as `/metrics` answers.
pub fn exposition(registry: &Registry) -> Result<warp::reply::Response, warp::Rejection> {
    use warp::Reply;
    let text = turnstone_runtime::telemetry::encode_text(registry)
        .map_err(|e| warp::reject::custom(super::error::ApiError::internal(e.to_string())))?;
    Ok(warp::reply::with_header(
        text,
        "content-type",
        "text/plain; version=0.0.4; charset=utf-8",
    )
    .into_response())
}
