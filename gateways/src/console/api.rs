//! The cluster API (SPEC §3): overview, nodes, workstreams, one node, workstream creation
//! with node targeting, the cluster event stream; and the public `/health` and `/metrics`.

use std::collections::HashMap;
use std::convert::Infallible;

use serde_json::{Value, json};
use turnstone_actors::mq::protocol::CreateMsg;
use turnstone_actors::mq::{Inbound, TurnstoneClient};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::sse::Event;

use super::Shared;
use super::model::{NodeSort, WsQuery, WsSort};
use crate::web::error::ApiError;
use crate::web::{body, with_state};

type Query = HashMap<String, String>;

/// An integer parameter: absent or unparsable → `default`, then clamped (as 0.4.1).
fn int_param(q: &Query, name: &str, default: usize, min: usize, max: usize) -> usize {
    q.get(name)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map_or(default, |v| usize::try_from(v.max(0)).unwrap_or(0))
        .clamp(min, max)
}

fn non_empty(q: &Query, name: &str) -> Option<String> {
    q.get(name).filter(|v| !v.is_empty()).cloned()
}

/// Whether `id` may name a node (SPEC §3: `^[A-Za-z0-9._-]+$`, at most 256).
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && id != "."
        && id != ".."
}

async fn overview(state: Shared) -> Result<Response, warp::Rejection> {
    let body = state.collector.model().overview();
    Ok(warp::reply::json(&body).into_response())
}

async fn nodes(state: Shared, q: Query) -> Result<Response, warp::Rejection> {
    let sort = NodeSort::parse(q.get("sort").map_or("activity", String::as_str));
    let limit = int_param(&q, "limit", 100, 1, 1000);
    let offset = int_param(&q, "offset", 0, 0, usize::MAX);
    let model = state.collector.model();
    let (nodes, total) = model.node_page(sort, limit, offset);
    #[derive(serde::Serialize)]
    struct Page<'a> {
        nodes: Vec<super::model::NodeRow<'a>>,
        total: usize,
    }
    Ok(warp::reply::json(&Page { nodes, total }).into_response())
}

async fn workstreams(state: Shared, q: Query) -> Result<Response, warp::Rejection> {
    let query = WsQuery {
        state: non_empty(&q, "state"),
        node: non_empty(&q, "node"),
        search: non_empty(&q, "search"),
        sort: WsSort::parse(q.get("sort").map_or("state", String::as_str)),
        page: int_param(&q, "page", 1, 1, 1_000_000),
        per_page: int_param(&q, "per_page", 50, 1, 200),
    };
    #[derive(serde::Serialize)]
    struct Page<'a> {
        workstreams: Vec<&'a super::model::Workstream>,
        total: usize,
        page: usize,
        per_page: usize,
        pages: usize,
    }
    let model = state.collector.model();
    let (workstreams, total) = model.ws_page(&query);
    let page = Page {
        workstreams,
        total,
        page: query.page,
        per_page: query.per_page,
        pages: total.div_ceil(query.per_page),
    };
    Ok(warp::reply::json(&page).into_response())
}

async fn node(state: Shared, tail: warp::path::Tail) -> Result<Response, warp::Rejection> {
    let id = percent_decode(tail.as_str());
    if id.is_empty() || id.contains('/') || id.len() > 256 {
        return Err(ApiError::bad_request("Invalid node ID").into());
    }
    match state.collector.model().node_detail(&id) {
        Some(detail) => Ok(warp::reply::json(&detail).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "Node not found").into()),
    }
}

/// `%xx` decoded (invalid UTF-8 replaced).
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A string field of the create body: absent or null → "", a string → its first `max`
/// characters, anything else → `None`.
fn string_field(body: &Value, name: &str, max: usize) -> Option<String> {
    match body.get(name) {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(s)) => Some(s.chars().take(max).collect()),
        Some(_) => None,
    }
}

async fn create(state: Shared, body: Value) -> Result<Response, warp::Rejection> {
    let fields = (
        string_field(&body, "node_id", usize::MAX),
        string_field(&body, "name", 256),
        string_field(&body, "model", 128),
        string_field(&body, "initial_message", 4096),
    );
    let (Some(node_id), Some(name), Some(model), Some(initial_message)) = fields else {
        return Err(ApiError::bad_request(
            "node_id, name, model, and initial_message must be strings",
        )
        .into());
    };
    let target = match node_id.as_str() {
        "pool" => String::new(),
        "" | "auto" => state.collector.model().best_node().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "No reachable nodes available",
            )
        })?,
        id => {
            if !valid_node_id(id) {
                return Err(ApiError::bad_request("Invalid node ID").into());
            }
            if state.collector.model().node(id).is_none() {
                return Err(ApiError::new(StatusCode::NOT_FOUND, "Node not found").into());
            }
            id.to_owned()
        }
    };
    let Some(transport) = state.collector.link.current() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Cluster unavailable: Redis is not reachable",
        )
        .into());
    };
    let message = Inbound::CreateWorkstream(CreateMsg {
        name,
        model,
        initial_message,
        target_node: target.clone(),
        ..CreateMsg::default()
    });
    let cid = TurnstoneClient::new(transport)
        .push(message)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Cluster unavailable: {e}"),
            )
        })?;
    let target_node = if target.is_empty() {
        "pool".into()
    } else {
        target
    };
    Ok(warp::reply::json(&json!({
        "status": "ok",
        "correlation_id": cid,
        "target_node": target_node,
    }))
    .into_response())
}

/// `GET /v1/api/cluster/events`: the cluster channel's events and `node_joined` /
/// `node_lost`, each with its sequence number as `id:` (a reconnecting `EventSource` is
/// replayed what it missed while the console still holds it). A reader that falls too far
/// behind is dropped; the collector never waits for one.
async fn events(state: Shared, last_event_id: Option<String>) -> Result<Response, warp::Rejection> {
    let last = last_event_id.and_then(|id| id.trim().parse::<u64>().ok());
    let follow = state.collector.events.follow(last);
    let replay: std::collections::VecDeque<_> = follow.replay.into_iter().collect();
    let stream =
        futures::stream::unfold((replay, follow.live), |(mut replay, mut live)| async move {
            let frame = match replay.pop_front() {
                Some(frame) => frame,
                None => match live.recv().await {
                    Ok(frame) => frame,
                    // Too slow: dropped (its browser reconnects and is replayed the rest).
                    Err(_) => return None,
                },
            };
            let event = Event::default()
                .id(frame.seq.to_string())
                .data(frame.json.clone());
            Some((Ok::<_, Infallible>(event), (replay, live)))
        });
    Ok(warp::sse::reply(
        warp::sse::keep_alive()
            .interval(crate::server::KEEP_ALIVE)
            .stream(stream),
    )
    .into_response())
}

/// The cluster routes (after `/v1/api`).
pub fn routes(state: Shared) -> BoxedFilter<(Response,)> {
    let s = move || with_state(state.clone());
    let cluster = || warp::path("cluster");
    let overview = cluster()
        .and(warp::path!("overview"))
        .and(warp::get())
        .and(s())
        .and_then(overview);
    let nodes = cluster()
        .and(warp::path!("nodes"))
        .and(warp::get())
        .and(s())
        .and(warp::query::<Query>())
        .and_then(nodes);
    let workstreams = cluster()
        .and(warp::path!("workstreams"))
        .and(warp::get())
        .and(s())
        .and(warp::query::<Query>())
        .and_then(workstreams);
    let node = cluster()
        .and(warp::path("node"))
        .and(warp::get())
        .and(s())
        .and(warp::path::tail())
        .and_then(node);
    let create = cluster()
        .and(warp::path!("workstreams" / "new"))
        .and(warp::post())
        .and(s())
        .and(body::json::<Value>())
        .and_then(create);
    let events = cluster()
        .and(warp::path!("events"))
        .and(warp::get())
        .and(s())
        .and(warp::header::optional::<String>("last-event-id"))
        .and_then(events);
    overview
        .or(nodes)
        .unify()
        .or(workstreams)
        .unify()
        .or(node)
        .unify()
        .or(create)
        .unify()
        .or(events)
        .unify()
        .boxed()
}

async fn health(state: Shared) -> Result<Response, warp::Rejection> {
    let model = state.collector.model();
    let versions = model.versions();
    let redis = state.collector.link.current().is_some();
    Ok(warp::reply::json(&json!({
        "status": "ok",
        "service": "turnstone-console",
        "nodes": model.node_count(),
        "workstreams": model.ws_count(),
        "version_drift": versions.len() > 1,
        "versions": versions,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": (state.started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        "redis": if redis { "connected" } else { "unreachable" },
    }))
    .into_response())
}

async fn metrics(state: Shared) -> Result<Response, warp::Rejection> {
    state.metrics.observe(&state.collector.model());
    crate::web::metrics::exposition(&state.registry)
}

/// `/health` and `/metrics`.
pub fn public_routes(state: Shared) -> BoxedFilter<(Response,)> {
    crate::web::operations(state, health, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_follow_the_pattern() {
        assert!(valid_node_id("gpu-east_01.a"));
        for bad in ["", "a/b", "..", ".", "ünï", "a b", &"x".repeat(257)] {
            assert!(!valid_node_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn integers_fall_back_and_clamp() {
        let q: Query = [("limit", "5000"), ("offset", "-3"), ("page", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(int_param(&q, "limit", 100, 1, 1000), 1000);
        assert_eq!(int_param(&q, "offset", 0, 0, 10), 0);
        assert_eq!(int_param(&q, "page", 1, 1, 10), 1);
        assert_eq!(int_param(&q, "missing", 50, 1, 200), 50);
    }

    #[test]
    fn create_fields_are_strings_cut_to_size() {
        let body = json!({"name": "é".repeat(300), "model": null});
        assert_eq!(
            string_field(&body, "name", 256).map(|s| s.chars().count()),
            Some(256)
        );
        assert_eq!(string_field(&body, "model", 128).as_deref(), Some(""));
        assert_eq!(string_field(&json!({"name": 3}), "name", 256), None);
    }
}
