//! `turnstone-server`: a node's HTTP/SSE API (SPEC §2) and browser UI, on warp.
//!
//! The server owns a running [`Node`]; each request is a short conversation with the node's
//! actors (the workstream manager and the workstream actors). Events reach browsers through
//! the [`EventHub`](hub::EventHub), which any number of SSE readers follow.

mod api;
pub mod cli;
pub mod cluster;
mod commands;
mod health;
pub mod hub;
pub mod metrics;
mod openapi;
mod sse;
mod ui;
mod workstream_errors;

pub use crate::web::{MAX_BODY, auth, body, error, ratelimit};
pub use sse::KEEP_ALIVE;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use turnstone_actors::auth::{Audience, Authenticator, random_secret};
use turnstone_actors::node::Node;
use turnstone_actors::workstream::{GlobalEvent, WorkstreamHandle};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use self::hub::{EventHub, WsLog};
use self::metrics::ServerMetrics;

/// What a workstream is doing, as the global stream last told.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Activity {
    /// Text for people.
    pub activity: String,
    /// `thinking`, `tool`, `approval` or empty.
    pub activity_state: String,
    /// Context used, 0–1.
    pub context_ratio: f64,
}

/// Options of the server (beyond the node's configuration).
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// `--skip-permissions`: every workstream approves its tools itself.
    pub skip_permissions: bool,
}

/// Everything the handlers share.
pub struct ServerState {
    /// The node.
    pub node: Node,
    /// Event logs.
    pub hub: EventHub,
    /// Metrics.
    pub metrics: Arc<ServerMetrics>,
    /// Start time.
    pub started: Instant,
    /// Options.
    pub options: ServerOptions,
    /// Token checks.
    pub auth: Authenticator,
    /// Failed logins.
    pub login_limiter: auth::LoginLimiter,
    /// Requests per client.
    pub ratelimit: ratelimit::RateLimiter,
    /// Whether the node is in a cluster, and how joining it goes.
    pub cluster: cluster::Membership,
    activity: Mutex<HashMap<String, Activity>>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("node_id", &self.node.node_id)
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

/// Shared server state.
pub type Shared = Arc<ServerState>;

impl ServerState {
    /// Wraps a started node; registers the server metrics in its registry and starts
    /// following the node-wide events.
    pub fn new(mut node: Node, options: ServerOptions) -> Shared {
        let metrics = ServerMetrics::register(&mut node.registry);
        let model = node
            .router
            .lane(node.router.default_alias())
            .map(|l| l.model.get())
            .unwrap_or_default();
        metrics
            .build_info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("model", model),
            ])
            .set(1);
        let secret = node
            .config
            .auth
            .jwt_secret
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(random_secret);
        let authenticator = Authenticator::new(
            node.config.auth.clone(),
            secret,
            Audience::Server,
            node.store.clone(),
        );
        let ratelimit = ratelimit::RateLimiter::new(&node.config.ratelimit);
        let state = Arc::new(Self {
            node,
            hub: EventHub::default(),
            metrics,
            started: Instant::now(),
            options,
            auth: authenticator,
            login_limiter: auth::LoginLimiter::default(),
            ratelimit,
            cluster: cluster::Membership::default(),
            activity: Mutex::new(HashMap::new()),
        });
        for ws in state.node.manager.list() {
            state.follow(&ws);
        }
        let mut global = state.node.global.subscribe();
        let weak = Arc::downgrade(&state);
        tokio::spawn(async move {
            loop {
                let event = match global.recv().await {
                    Ok(event) => event,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                let Some(state) = weak.upgrade() else { break };
                state.on_global(&event);
            }
        });
        state
    }

    fn on_global(&self, event: &GlobalEvent) {
        match event {
            GlobalEvent::WsState {
                ws_id,
                tokens: _,
                context_ratio,
                activity,
                activity_state,
                ..
            } => {
                self.activities().insert(
                    ws_id.clone(),
                    Activity {
                        activity: activity.clone(),
                        activity_state: activity_state.clone(),
                        context_ratio: *context_ratio,
                    },
                );
            }
            GlobalEvent::WsClosed { ws_id, reason, .. } => {
                if reason == "evicted" || reason == "idle" {
                    self.metrics.workstreams_evicted.inc();
                }
                self.activities().remove(ws_id);
                self.hub.remove(ws_id);
            }
            GlobalEvent::WsRename { .. } => {}
        }
    }

    fn activities(&self) -> std::sync::MutexGuard<'_, HashMap<String, Activity>> {
        self.activity.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a workstream is doing.
    pub fn activity(&self, ws_id: &str) -> Activity {
        self.activities().get(ws_id).cloned().unwrap_or_default()
    }

    /// The event log of a workstream (following it from now on if new, with its metrics).
    pub fn follow(&self, ws: &WorkstreamHandle) -> Arc<WsLog> {
        self.hub.log(ws, || {
            metrics::WorkstreamMetrics::new(self.metrics.clone(), ws)
        })
    }

    /// A workstream by id, or 404.
    pub fn workstream(&self, ws_id: &str) -> Result<WorkstreamHandle, error::ApiError> {
        self.node
            .manager
            .get(ws_id)
            .ok_or_else(error::ApiError::unknown_workstream)
    }
}

impl WebState for ServerState {
    fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    fn login_limiter(&self) -> &auth::LoginLimiter {
        &self.login_limiter
    }

    fn rate_limiter(&self) -> &ratelimit::RateLimiter {
        &self.ratelimit
    }

    fn http_metrics(&self) -> &HttpMetrics {
        &self.metrics.http
    }

    fn request_done(&self, method: &str, endpoint: &str, status: u16, seconds: f64) {
        self.metrics.request(method, endpoint, status, seconds);
    }
}

use crate::web::metrics::HttpMetrics;
use crate::web::{WebState, with_state};

/// Every route, with JSON errors and request metrics.
pub fn routes(state: Shared) -> BoxedFilter<(Response,)> {
    let guarded = warp::path("v1")
        .and(warp::path("api"))
        .and(
            api::routes(state.clone())
                .or(sse::routes(state.clone()))
                .unify(),
        )
        .boxed();
    let public = health::routes(state.clone())
        .or(ui::routes())
        .unify()
        .or(openapi::routes())
        .unify()
        .boxed();
    crate::web::compose(state, guarded, public)
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    state: Shared,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    crate::web::serve(routes(state), listener, shutdown).await;
}

pub use crate::web::{bind, listen};

/// The first `n` characters of an id.
pub(crate) fn short(id: &str, n: usize) -> &str {
    turnstone_actors::text::prefix(id, n)
}
