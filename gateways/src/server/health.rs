//! Public routes: `/health` and `/metrics`, plus 404 for the unversioned `/api/…` as 0.4.1.

use std::collections::BTreeMap;

use serde_json::json;
use turnstone_runtime::policy::BreakerState;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};

use super::Shared;

/// The breaker state as the metric's number.
fn circuit_number(state: BreakerState) -> i64 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

fn circuit_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
    }
}

/// The default lane: its model name (empty while being detected) and its actor's status.
struct DefaultLane {
    model: String,
    circuit: BreakerState,
    last_error: Option<String>,
}

impl DefaultLane {
    /// Asks the default lane's actor once.
    async fn of(state: &Shared) -> Option<Self> {
        let router = &state.node.router;
        let lane = router.lane(router.default_alias())?;
        let status = router.status_of(&lane.alias).await;
        Some(Self {
            model: lane.model.get(),
            circuit: status.as_ref().map_or(BreakerState::Closed, |s| s.circuit),
            last_error: status.and_then(|s| s.last_error),
        })
    }

    /// Why there is no model yet, in words.
    fn no_model(&self) -> String {
        self.last_error
            .clone()
            .unwrap_or_else(|| "no model known yet".to_owned())
    }
}

/// The default lane's breaker.
async fn backend(state: &Shared) -> BreakerState {
    DefaultLane::of(state)
        .await
        .map_or(BreakerState::Closed, |l| l.circuit)
}

/// Counts of workstreams per state (every state present).
async fn by_state(state: &Shared) -> BTreeMap<&'static str, u64> {
    let mut counts: BTreeMap<&'static str, u64> =
        ["idle", "thinking", "running", "attention", "error"]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
    for ws in state.node.manager.list() {
        if let Ok(status) = ws.status().await {
            *counts.entry(status.state.as_str()).or_default() += 1;
        }
    }
    counts
}

/// `GET /health`: the node's report, and how it stands with its cluster — `degraded` while
/// the cluster's Redis does not answer.
async fn health(state: Shared) -> Result<Response, warp::Rejection> {
    let mut report = report(&state).await;
    if let Some(cluster) = state.cluster.report() {
        if cluster["status"] == "unreachable" {
            report["status"] = json!("degraded");
        }
        report["cluster"] = cluster;
    }
    Ok(warp::reply::json(&report).into_response())
}

/// The node's own health (the bridge's view of it: whether this node can work), as
/// `GET /health` answers it without the cluster part.
pub async fn report(state: &Shared) -> serde_json::Value {
    let lane = DefaultLane::of(state).await;
    let circuit = lane.as_ref().map_or(BreakerState::Closed, |l| l.circuit);
    let counts = by_state(state).await;
    let total: u64 = counts.values().sum();
    let mut workstreams = json!(counts);
    workstreams["total"] = json!(total);
    let model = lane.as_ref().map(|l| l.model.clone()).unwrap_or_default();
    let uptime = (state.started.elapsed().as_secs_f64() * 100.0).round() / 100.0;
    let status = if circuit == BreakerState::Closed && !model.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    let mut report = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": state.node.node_id,
        "uptime_seconds": uptime,
        "model": model,
        "workstreams": workstreams,
        "backend": {
            "status": if circuit == BreakerState::Open { "down" } else { "up" },
            "circuit_state": circuit_name(circuit),
        },
    });
    if let Some(lane) = lane.filter(|l| l.model.is_empty()) {
        report["reason"] = json!(lane.no_model());
    }
    report
}

/// One readiness check: `ok`, or why not.
fn check(result: Result<(), String>) -> (bool, serde_json::Value) {
    match result {
        Ok(()) => (true, json!("ok")),
        Err(why) => (false, json!(why)),
    }
}

/// `GET /health/ready`: 200 only when the model, the database and (when configured) the
/// cluster's Redis are usable — what an orchestrator waits for before sending traffic.
/// `/health` stays the liveness answer (200 while the process serves).
async fn ready(state: Shared) -> Result<Response, warp::Rejection> {
    let model = match DefaultLane::of(&state).await {
        None => Err("no default model".to_owned()),
        Some(l) if l.model.is_empty() => Err(l.no_model()),
        Some(l) if l.circuit == BreakerState::Open => {
            Err("the model backend is down (circuit open)".to_owned())
        }
        Some(_) => Ok(()),
    };
    let database = match &state.node.store {
        Some(store) => store
            .count_users()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        None => Ok(()),
    };
    let cluster = match state.cluster.get() {
        super::cluster::ClusterState::Alone | super::cluster::ClusterState::Joined => Ok(()),
        super::cluster::ClusterState::Joining { error, .. } => {
            Err(format!("the cluster's Redis is unreachable: {error}"))
        }
    };
    let (model_ok, model) = check(model);
    let (db_ok, database) = check(database);
    let (cluster_ok, cluster) = check(cluster);
    let ok = model_ok && db_ok && cluster_ok;
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": {"model": model, "database": database, "cluster": cluster},
    });
    let status = if ok {
        warp::http::StatusCode::OK
    } else {
        warp::http::StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(warp::reply::with_status(warp::reply::json(&body), status).into_response())
}

async fn metrics(state: Shared) -> Result<Response, warp::Rejection> {
    let m = &state.metrics;
    m.uptime_seconds.set(state.started.elapsed().as_secs_f64());
    let counts = by_state(&state).await;
    m.workstreams_active
        .set(i64::try_from(counts.values().sum::<u64>()).unwrap_or(i64::MAX));
    for (name, n) in counts {
        m.workstreams_by_state
            .get_or_create(&vec![("state", name.to_owned())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    let circuit = backend(&state).await;
    m.circuit_state.set(circuit_number(circuit));
    m.backend_up.set(i64::from(circuit != BreakerState::Open));
    crate::web::metrics::exposition(&state.node.registry)
}

/// `/health`, `/health/ready` and `/metrics`.
pub fn routes(state: Shared) -> BoxedFilter<(Response,)> {
    use warp::Filter;
    let ready = warp::path!("health" / "ready")
        .and(warp::get())
        .and(crate::web::with_state(state.clone()))
        .and_then(ready);
    crate::web::operations(state, health, metrics)
        .or(ready)
        .unify()
        .boxed()
}
