//! `/openapi.json` of the console: the cluster API (SPEC §3) with the common sign-in parts.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::web;
use crate::web::openapi::ErrorReply;

/// Workstream creation with node targeting.
#[derive(Serialize, ToSchema)]
struct NewWorkstream {
    /// `pool` (the shared queue), `auto` or "" (the reachable node with the most room), or a
    /// node id.
    node_id: Option<String>,
    /// Name (≤ 256 characters).
    name: Option<String>,
    /// Model alias (≤ 128).
    model: Option<String>,
    /// First message (≤ 4096).
    initial_message: Option<String>,
}

/// The dispatched creation.
#[derive(Serialize, ToSchema)]
struct Dispatched {
    status: String,
    correlation_id: String,
    target_node: String,
}

#[utoipa::path(get, path = "/v1/api/cluster/overview", tag = "cluster",
    responses((status = 200, description = "`{nodes, workstreams, states, aggregate, version_drift, versions}`")))]
fn overview() {}

#[utoipa::path(get, path = "/v1/api/cluster/nodes", tag = "cluster",
    params(("sort" = Option<String>, Query, description = "activity (default), tokens or name"),
        ("limit" = Option<u32>, Query, description = "1–1000, default 100"),
        ("offset" = Option<u32>, Query, description = "rows to skip")),
    responses((status = 200, description = "`{nodes: [...], total}`")))]
fn nodes() {}

#[utoipa::path(get, path = "/v1/api/cluster/workstreams", tag = "cluster",
    params(("state" = Option<String>, Query, description = "only this state"),
        ("node" = Option<String>, Query, description = "only this node"),
        ("search" = Option<String>, Query, description = "substring of name, title or node, any case"),
        ("sort" = Option<String>, Query, description = "state (default), tokens or name"),
        ("page" = Option<u32>, Query, description = "from 1"),
        ("per_page" = Option<u32>, Query, description = "1–200, default 50")),
    responses((status = 200, description = "`{workstreams, total, page, per_page, pages}`")))]
fn workstreams() {}

#[utoipa::path(get, path = "/v1/api/cluster/node/{node_id}", tag = "cluster",
    params(("node_id" = String, Path, description = "The node")),
    responses((status = 200, description = "`{node_id, server_url, health, workstreams, aggregate, reachable}`"),
        (status = 400, body = ErrorReply), (status = 404, body = ErrorReply)))]
fn node() {}

#[utoipa::path(post, path = "/v1/api/cluster/workstreams/new", tag = "cluster", request_body = NewWorkstream,
    responses((status = 200, body = Dispatched), (status = 400, body = ErrorReply),
        (status = 404, body = ErrorReply, description = "Unknown node"),
        (status = 503, body = ErrorReply, description = "No reachable node, or Redis unreachable")))]
fn create() {}

#[utoipa::path(get, path = "/v1/api/cluster/events", tag = "cluster",
    responses((status = 200, content_type = "text/event-stream",
        description = "Cluster events (cluster_state, ws_created, ws_closed, ws_rename) and node_joined / node_lost")))]
fn events() {}

#[utoipa::path(get, path = "/health", tag = "operations", security(),
    responses((status = 200, description = "`{status, service: \"turnstone-console\", nodes, workstreams, version_drift, versions}`")))]
fn health() {}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Turnstone console API",
        description = "The cluster: nodes, workstreams, events."
    ),
    paths(overview, nodes, workstreams, node, create, events, health)
)]
struct ApiDoc;

/// `GET /openapi.json`.
pub fn routes() -> BoxedFilter<(Response,)> {
    web::openapi::route(&web::openapi::complete(ApiDoc::openapi()))
}
