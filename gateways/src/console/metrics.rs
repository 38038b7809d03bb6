//! The console's `/metrics` (0.4.1's console has none): nodes, reachable nodes, workstreams by
//! state, proxy requests and latency by status, collector polls and their failures, cluster
//! events — beside the request metrics every service has and the supervision metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::model::{ClusterModel, STATES};
use crate::web::metrics::{BUCKETS, HttpMetrics, Labels, RequestDurations};

/// Every console metric.
#[derive(Debug)]
pub struct ConsoleMetrics {
    /// Requests, latency, rate-limit refusals.
    pub http: HttpMetrics,
    /// Nodes known.
    pub nodes: Gauge,
    /// Nodes whose last poll succeeded.
    pub nodes_reachable: Gauge,
    /// Workstreams per state.
    pub workstreams: Family<Labels, Gauge>,
    /// Proxied requests by upstream status (`error` when the node could not be reached).
    pub proxy_requests: Family<Labels, Counter>,
    /// Proxy latency by status.
    pub proxy_duration: RequestDurations,
    /// Node polls' latency.
    pub poll_duration: Histogram,
    /// Node polls that failed.
    pub poll_failures: Counter,
    /// Cluster events received.
    pub cluster_events: Counter,
}

impl ConsoleMetrics {
    /// Creates and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            http: HttpMetrics::register(registry),
            nodes: Gauge::default(),
            nodes_reachable: Gauge::default(),
            workstreams: Family::default(),
            proxy_requests: Family::default(),
            proxy_duration: RequestDurations::default(),
            poll_duration: Histogram::new(BUCKETS),
            poll_failures: Counter::default(),
            cluster_events: Counter::default(),
        };
        let r = registry;
        r.register("turnstone_console_nodes", "Nodes known", m.nodes.clone());
        r.register(
            "turnstone_console_nodes_reachable",
            "Nodes whose last poll succeeded",
            m.nodes_reachable.clone(),
        );
        r.register(
            "turnstone_console_workstreams",
            "Workstreams per state",
            m.workstreams.clone(),
        );
        r.register(
            "turnstone_console_proxy_requests",
            "Requests proxied to nodes, by upstream status",
            m.proxy_requests.clone(),
        );
        r.register(
            "turnstone_console_proxy_request_duration_seconds",
            "Latency of proxied requests, by upstream status",
            m.proxy_duration.0.clone(),
        );
        r.register(
            "turnstone_console_poll_duration_seconds",
            "Latency of node polls",
            m.poll_duration.clone(),
        );
        r.register(
            "turnstone_console_poll_failures",
            "Node polls that failed",
            m.poll_failures.clone(),
        );
        r.register(
            "turnstone_console_cluster_events",
            "Cluster events received",
            m.cluster_events.clone(),
        );
        m
    }

    /// Sets the gauges from the model (at scrape time).
    pub fn observe(&self, model: &ClusterModel) {
        self.nodes.set(model.node_count() as i64);
        self.nodes_reachable.set(model.reachable_count() as i64);
        let counts = model.state_counts();
        for s in STATES {
            self.workstreams
                .get_or_create(&vec![("state", s.to_owned())])
                .set(counts.get(s) as i64);
        }
    }

    /// Counts one proxied request.
    pub fn proxied(&self, status: &str, seconds: f64) {
        let labels = vec![("status", status.to_owned())];
        self.proxy_requests.get_or_create(&labels).inc();
        self.proxy_duration
            .0
            .get_or_create(&labels)
            .observe(seconds);
    }
}
