//! The node's Prometheus metrics, with the names, types and labels of SPEC §10, registered in
//! the node's prometheus-client registry next to the supervision metrics. Counters are
//! registered without `_total` (prometheus-client adds it).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use turnstone_actors::workstream::WsEvent;

use crate::web::metrics::{HttpMetrics, Labels};

/// Every server metric.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    /// `turnstone_build_info{version,model}` = 1.
    pub build_info: Family<Labels, Gauge>,
    /// Seconds since start.
    pub uptime_seconds: Gauge<f64, AtomicU64>,
    /// Workstreams open.
    pub workstreams_active: Gauge,
    /// Workstreams per state.
    pub workstreams_by_state: Family<Labels, Gauge>,
    /// Requests, their latency and rate-limit refusals.
    pub http: HttpMetrics,
    /// Messages accepted by `send`.
    pub messages_sent: Counter,
    /// Error answers and error events.
    pub errors: Counter,
    /// Workstreams evicted (capacity or idle).
    pub workstreams_evicted: Counter,
    /// Tokens by `type` (prompt, completion).
    pub tokens: Family<Labels, Counter>,
    /// Tool calls by tool.
    pub tool_calls: Family<Labels, Counter>,
    /// Context used by the most recent request, 0–1.
    pub context_window_used_ratio: Gauge<f64, AtomicU64>,
    /// Open SSE connections.
    pub sse_connections_active: Gauge,
    /// 1 when the default model's circuit is closed.
    pub backend_up: Gauge,
    /// 0 closed, 1 open, 2 half-open.
    pub circuit_state: Gauge,
    /// `turnstone_workstream_info{ws_id,name,session_id}` = 1.
    pub workstream_info: Family<Labels, Gauge>,
    /// Prompt tokens per workstream.
    pub workstream_prompt_tokens: Family<Labels, Counter>,
    /// Completion tokens per workstream.
    pub workstream_completion_tokens: Family<Labels, Counter>,
    /// Messages sent to each workstream.
    pub workstream_messages: Family<Labels, Counter>,
    /// Tool calls per workstream and tool.
    pub workstream_tool_calls: Family<Labels, Counter>,
    /// Context ratio per workstream.
    pub workstream_context_ratio: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Tools each workstream used (to drop their series when it closes).
    tools_seen: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl ServerMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> std::sync::Arc<Self> {
        let r = registry;
        let m = Self {
            http: HttpMetrics::register(r),
            ..Self::default()
        };
        r.register(
            "turnstone_build_info",
            "Build information",
            m.build_info.clone(),
        );
        r.register(
            "turnstone_uptime_seconds",
            "Seconds since the server started",
            m.uptime_seconds.clone(),
        );
        r.register(
            "turnstone_workstreams_active_total",
            "Workstreams open",
            m.workstreams_active.clone(),
        );
        r.register(
            "turnstone_workstreams_by_state",
            "Workstreams per state",
            m.workstreams_by_state.clone(),
        );
        r.register(
            "turnstone_messages_sent",
            "Messages sent to workstreams",
            m.messages_sent.clone(),
        );
        r.register("turnstone_errors", "Errors", m.errors.clone());
        r.register(
            "turnstone_workstreams_evicted",
            "Workstreams evicted",
            m.workstreams_evicted.clone(),
        );
        r.register("turnstone_tokens", "Tokens used", m.tokens.clone());
        r.register("turnstone_tool_calls", "Tool calls", m.tool_calls.clone());
        r.register(
            "turnstone_context_window_used_ratio",
            "Context used by the latest request",
            m.context_window_used_ratio.clone(),
        );
        r.register(
            "turnstone_sse_connections_active",
            "Open SSE connections",
            m.sse_connections_active.clone(),
        );
        r.register(
            "turnstone_backend_up",
            "Whether the model backend is reachable",
            m.backend_up.clone(),
        );
        r.register(
            "turnstone_circuit_state",
            "Circuit breaker state (0 closed, 1 open, 2 half-open)",
            m.circuit_state.clone(),
        );
        r.register(
            "turnstone_workstream_info",
            "Workstream identity",
            m.workstream_info.clone(),
        );
        r.register(
            "turnstone_workstream_prompt_tokens",
            "Prompt tokens per workstream",
            m.workstream_prompt_tokens.clone(),
        );
        r.register(
            "turnstone_workstream_completion_tokens",
            "Completion tokens per workstream",
            m.workstream_completion_tokens.clone(),
        );
        r.register(
            "turnstone_workstream_messages",
            "Messages per workstream",
            m.workstream_messages.clone(),
        );
        r.register(
            "turnstone_workstream_tool_calls",
            "Tool calls per workstream",
            m.workstream_tool_calls.clone(),
        );
        r.register(
            "turnstone_workstream_context_ratio",
            "Context ratio per workstream",
            m.workstream_context_ratio.clone(),
        );
        std::sync::Arc::new(m)
    }

    /// Counts one finished request.
    pub fn request(&self, method: &str, endpoint: &str, status: u16, seconds: f64) {
        self.http.request(method, endpoint, status, seconds);
        if status >= 500 {
            self.errors.inc();
        }
    }

    /// Updates the metrics a workstream event tells about.
    pub fn observe(&self, ws_id: &str, name: &str, event: &WsEvent) {
        let ws = || vec![("ws_id", ws_id.to_owned()), ("name", name.to_owned())];
        match event {
            WsEvent::Status {
                prompt_tokens,
                completion_tokens,
                pct,
                ..
            } => {
                self.tokens
                    .get_or_create(&vec![("type", "prompt".to_owned())])
                    .inc_by(*prompt_tokens);
                self.tokens
                    .get_or_create(&vec![("type", "completion".to_owned())])
                    .inc_by(*completion_tokens);
                self.workstream_prompt_tokens
                    .get_or_create(&ws())
                    .inc_by(*prompt_tokens);
                self.workstream_completion_tokens
                    .get_or_create(&ws())
                    .inc_by(*completion_tokens);
                self.context_window_used_ratio.set(pct / 100.0);
                self.workstream_context_ratio
                    .get_or_create(&ws())
                    .set(pct / 100.0);
            }
            WsEvent::ToolResult { name: tool, .. } => {
                self.tool_calls
                    .get_or_create(&vec![("tool", tool.clone())])
                    .inc();
                let mut labels = ws();
                labels.push(("tool", tool.clone()));
                self.workstream_tool_calls.get_or_create(&labels).inc();
                self.tools_seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(ws_id.to_owned())
                    .or_default()
                    .insert(tool.clone());
            }
            WsEvent::Error { .. } => {
                self.errors.inc();
            }
            _ => {}
        }
    }

    /// Drops a closed workstream's series.
    pub fn forget(&self, ws_id: &str, name: &str, session_id: &str) {
        let ws = vec![("ws_id", ws_id.to_owned()), ("name", name.to_owned())];
        self.workstream_info.remove(&vec![
            ("ws_id", ws_id.to_owned()),
            ("name", name.to_owned()),
            ("session_id", session_id.to_owned()),
        ]);
        self.workstream_prompt_tokens.remove(&ws);
        self.workstream_completion_tokens.remove(&ws);
        self.workstream_messages.remove(&ws);
        self.workstream_context_ratio.remove(&ws);
        let tools = self
            .tools_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(ws_id)
            .unwrap_or_default();
        for tool in tools {
            let mut labels = ws.clone();
            labels.push(("tool", tool));
            self.workstream_tool_calls.remove(&labels);
        }
    }
}

/// One workstream's series: created when the hub starts following it, fed by its event pump,
/// removed when the pump ends.
#[derive(Debug)]
pub struct WorkstreamMetrics {
    metrics: std::sync::Arc<ServerMetrics>,
    ws_id: String,
    name: String,
    session_id: String,
}

impl WorkstreamMetrics {
    /// Starts the series of `ws` (its info gauge).
    pub fn new(
        metrics: std::sync::Arc<ServerMetrics>,
        ws: &turnstone_actors::workstream::WorkstreamHandle,
    ) -> Self {
        let this = Self {
            metrics,
            ws_id: ws.ws_id().to_owned(),
            name: ws.name().to_owned(),
            session_id: ws.session_id().to_owned(),
        };
        this.metrics
            .workstream_info
            .get_or_create(&vec![
                ("ws_id", this.ws_id.clone()),
                ("name", this.name.clone()),
                ("session_id", this.session_id.clone()),
            ])
            .set(1);
        this
    }
}

impl super::hub::Observe for WorkstreamMetrics {
    fn event(&mut self, event: &WsEvent) {
        self.metrics.observe(&self.ws_id, &self.name, event);
    }
}

impl Drop for WorkstreamMetrics {
    fn drop(&mut self) {
        self.metrics
            .forget(&self.ws_id, &self.name, &self.session_id);
    }
}
