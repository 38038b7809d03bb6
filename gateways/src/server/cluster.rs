//! `turnstone-server --redis-host …`: the node joins a cluster. The bridge actor runs under
//! the node's supervisor and drives this node in-process through [`LocalPort`] — the same
//! operations the HTTP routes perform, without HTTP.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use turnstone_actors::mq::{
    Bridge, BridgeArgs, BridgeMsg, BridgeSettings, CreateRequest, Created, EventForwarding,
    EventSink, NodePort, PortError, SendOutcome, WsFrame,
};
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::remote::{Transport, TransportError};
use turnstone_runtime::supervise::{ChildRef, ChildSpec, Restart};

use super::error::ApiError;
use super::{ServerState, Shared, api, commands, health, workstream_errors};

/// How the node stands with its cluster, for `/health` and `/health/ready`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// Not configured: the node runs alone.
    Alone,
    /// Configured; Redis has not answered yet.
    Joining {
        /// Connection attempts so far.
        attempts: u32,
        /// Why the last one failed.
        error: String,
    },
    /// Connected; the bridge runs.
    Joined,
}

/// The node's [`ClusterState`], shared.
#[derive(Debug)]
pub struct Membership(Mutex<ClusterState>);

impl Default for Membership {
    fn default() -> Self {
        Self(Mutex::new(ClusterState::Alone))
    }
}

impl Membership {
    /// The state now.
    pub fn get(&self) -> ClusterState {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, state: ClusterState) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    /// `/health`'s `cluster` object (`None` when alone).
    pub fn report(&self) -> Option<Value> {
        match self.get() {
            ClusterState::Alone => None,
            ClusterState::Joining { attempts, error } => Some(serde_json::json!({
                "status": "unreachable",
                "attempts": attempts,
                "error": error,
            })),
            ClusterState::Joined => Some(serde_json::json!({"status": "connected"})),
        }
    }
}

/// Joins the cluster: connects with `connect` — again and again, after 1, 2, 4 … 30 s, while
/// Redis does not answer (logging each failure) — then starts the bridge under the node's
/// supervisor, which restarts it if it fails later. Meanwhile the node serves its own users
/// and `/health` names the cluster unreachable. Returns once joined (or when the node is gone).
pub async fn join<F, Fut>(
    state: Weak<ServerState>,
    connect: F,
    server_url: String,
    settings: BridgeSettings,
    backoff: Backoff,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Arc<dyn Transport>, TransportError>>,
{
    if let Some(state) = state.upgrade() {
        state.cluster.set(ClusterState::Joining {
            attempts: 0,
            error: "connecting".into(),
        });
    }
    let mut attempts = 0u32;
    loop {
        let outcome = connect().await;
        let Some(state) = state.upgrade() else { return };
        let error = match outcome {
            Ok(transport) => {
                match start_bridge(&state, transport, server_url.clone(), settings.clone()).await {
                    Ok(_) => {
                        state.cluster.set(ClusterState::Joined);
                        tracing::info!(node_id = %state.node.node_id, attempts, "joined the cluster");
                        return;
                    }
                    Err(e) => e,
                }
            }
            Err(e) => e.to_string(),
        };
        let wait = backoff.delay(attempts);
        attempts = attempts.saturating_add(1);
        tracing::warn!(
            attempt = attempts,
            error = %error,
            retry_in_s = wait.as_secs_f64(),
            "the cluster's Redis does not answer; serving local users meanwhile"
        );
        state.cluster.set(ClusterState::Joining { attempts, error });
        drop(state);
        tokio::time::sleep(wait).await;
    }
}

/// The back-off between attempts to reach the cluster: 1, 2, 4 … up to 30 s.
pub const JOIN_BACKOFF: Backoff =
    Backoff::exponential(Duration::from_secs(1), Duration::from_secs(30));

/// This node, as the bridge sees it.
pub struct LocalPort {
    state: Weak<ServerState>,
    node_id: String,
    server_url: String,
    events: Arc<EventForwarding>,
}

impl std::fmt::Debug for LocalPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPort")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

fn rejected(e: ApiError) -> PortError {
    if e.status == warp::http::StatusCode::NOT_FOUND {
        PortError::UnknownWorkstream
    } else {
        PortError::refused(e.message)
    }
}

impl LocalPort {
    /// A port on `state`'s node, advertised to clients at `server_url`; forwards the node-wide
    /// events at once.
    pub fn new(state: &Shared, server_url: String) -> Arc<Self> {
        let events = EventForwarding::new(state.node.global.subscribe());
        Arc::new(Self {
            state: Arc::downgrade(state),
            node_id: state.node.node_id.clone(),
            server_url,
            events,
        })
    }

    fn state(&self) -> Result<Shared, PortError> {
        self.state
            .upgrade()
            .ok_or_else(|| PortError::Unreachable("the node is shutting down".into()))
    }

    fn workstream(
        &self,
        ws_id: &str,
    ) -> Result<(Shared, turnstone_actors::workstream::WorkstreamHandle), PortError> {
        let state = self.state()?;
        let ws = state.workstream(ws_id).map_err(rejected)?;
        Ok((state, ws))
    }
}

#[async_trait]
impl NodePort for LocalPort {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn server_url(&self) -> &str {
        &self.server_url
    }

    fn max_workstreams(&self) -> Option<usize> {
        self.state
            .upgrade()
            .map(|s| s.node.config.server.max_workstreams)
    }

    fn attach(&self, sink: EventSink) {
        self.events.attach(sink);
    }

    async fn watch(&self, ws_id: &str) {
        let Ok((state, ws)) = self.workstream(ws_id) else {
            return;
        };
        let Some(watch) = self.events.watch(ws_id) else {
            return;
        };
        let follow = state.follow(&ws).follow(None);
        tokio::spawn(async move {
            for json in follow.pending {
                if let Some(event) = WsFrame::from_node(json)
                    && !watch.send(event)
                {
                    return;
                }
            }
            watch
                .forward(follow.live, |frame| WsFrame::from_node(frame.json.clone()))
                .await;
        });
    }

    async fn persisted(&self, ws_id: &str) {
        if let Ok((_, ws)) = self.workstream(ws_id) {
            ws.persisted().await;
        }
    }

    async fn has(&self, ws_id: &str) -> bool {
        self.state()
            .is_ok_and(|state| state.node.manager.get(ws_id).is_some())
    }

    async fn create(&self, request: CreateRequest) -> Result<Created, PortError> {
        let state = self.state()?;
        let req = api::NewRequest {
            name: request.name,
            model: request.model,
            auto_approve: request.auto_approve,
            resume_session: request.resume_session,
        };
        let created = api::open_workstream(&state, &req, &request.auto_approve_tools)
            .await
            .map_err(rejected)?;
        Ok(Created::from_json(&created))
    }

    async fn adopt(&self, ws_id: &str) -> Result<bool, PortError> {
        let state = self.state()?;
        match state.node.manager.adopt(ws_id).await {
            Ok(Some(ws)) => {
                state.follow(&ws);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(rejected(workstream_errors::manager_error(e))),
        }
    }

    async fn send(&self, ws_id: &str, message: &str) -> Result<SendOutcome, PortError> {
        let (state, ws) = self.workstream(ws_id)?;
        match api::send_message(&state, &ws, message).await {
            Ok(true) => Ok(SendOutcome::Started),
            Ok(false) => Ok(SendOutcome::Busy),
            Err(e) => Err(rejected(e)),
        }
    }

    async fn resume_turn(&self, ws_id: &str, message: &str) -> Result<bool, PortError> {
        let (_, ws) = self.workstream(ws_id)?;
        ws.resume_turn(message)
            .await
            .map_err(|e| rejected(workstream_errors::manager_error(e)))
    }

    async fn approve(
        &self,
        ws_id: &str,
        approved: bool,
        feedback: Option<String>,
        always: bool,
    ) -> Result<(), PortError> {
        let (_, ws) = self.workstream(ws_id)?;
        ws.approve(approved, feedback, always)
            .await
            .map_err(|e| rejected(workstream_errors::manager_error(e)))
    }

    async fn plan_feedback(&self, ws_id: &str, feedback: &str) -> Result<(), PortError> {
        let (_, ws) = self.workstream(ws_id)?;
        ws.plan_feedback(feedback)
            .await
            .map_err(|e| rejected(workstream_errors::manager_error(e)))
    }

    async fn command(&self, ws_id: &str, command: &str) -> Result<(), PortError> {
        let (state, ws) = self.workstream(ws_id)?;
        let log = state.follow(&ws);
        commands::run(&state, &ws, &log, command.trim()).await;
        Ok(())
    }

    async fn close(&self, ws_id: &str) -> Result<(), PortError> {
        let state = self.state()?;
        api::close_workstream(&state, ws_id).await.map_err(rejected)
    }

    async fn list(&self) -> Result<Vec<Value>, PortError> {
        Ok(api::list_json(&self.state()?).await)
    }

    async fn health(&self) -> Result<Value, PortError> {
        Ok(health::report(&self.state()?).await)
    }
}

/// Starts the bridge actor under the node's supervisor (restarted if it fails).
pub async fn start_bridge(
    state: &Shared,
    transport: Arc<dyn Transport>,
    server_url: String,
    settings: BridgeSettings,
) -> Result<ChildRef<BridgeMsg>, String> {
    let args = BridgeArgs {
        transport,
        port: LocalPort::new(state, server_url),
        settings,
    };
    let (child, handle) =
        ChildSpec::actor("bridge", Restart::Permanent, move || (Bridge, args.clone()));
    state
        .node
        .supervisor
        .start_child(child)
        .await
        .map_err(|e| e.to_string())?;
    Ok(handle)
}
