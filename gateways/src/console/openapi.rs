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

/// A new user.
#[derive(Serialize, ToSchema)]
struct NewUser {
    /// 1–64 of letters, digits, `.`, `_`, `-`.
    username: String,
    /// Shown name.
    display_name: String,
    /// At least 8 characters.
    password: String,
}

/// A new API token.
#[derive(Serialize, ToSchema)]
struct NewToken {
    /// Label.
    name: Option<String>,
    /// `read`, `write`, `approve`, comma-separated (default all three).
    scopes: Option<String>,
    /// Days until it expires (default never).
    expires_days: Option<u32>,
}

/// A chat account to link.
#[derive(Serialize, ToSchema)]
struct NewLink {
    /// `discord`, `slack`, `matrix` … (≤ 64, stored lower-case).
    channel_type: String,
    /// The account on that platform (≤ 256).
    channel_user_id: String,
}

/// A schedule (create: `name`, `schedule_type`, its expression or time and `initial_message`
/// are required; update: any subset).
#[derive(Serialize, ToSchema)]
struct ScheduleBody {
    /// ≤ 256.
    name: Option<String>,
    /// ≤ 1024.
    description: Option<String>,
    /// `cron` or `at`.
    schedule_type: Option<String>,
    /// Five fields: minute hour day month weekday.
    cron_expr: Option<String>,
    /// ISO-8601 with an offset, in the future.
    at_time: Option<String>,
    /// IANA zone the cron expression is read in ("" = UTC).
    timezone: Option<String>,
    /// `auto` (default), `pool`, `all` or a node id.
    target_mode: Option<String>,
    /// ≤ 128.
    model: Option<String>,
    /// The workstream's first message (≤ 4096).
    initial_message: Option<String>,
    /// Approve every tool call.
    auto_approve: Option<bool>,
    /// Tools approved without asking.
    auto_approve_tools: Option<Vec<String>>,
    /// Default true.
    enabled: Option<bool>,
    /// Seconds a firing that found no node is retried (0–86400).
    retry_window: Option<u32>,
}

#[utoipa::path(get, path = "/v1/api/admin/users", tag = "admin",
    responses((status = 200, description = "`{users: [{user_id, username, display_name, created}]}`"),
        (status = 503, body = ErrorReply, description = "No database")))]
fn users() {}

#[utoipa::path(post, path = "/v1/api/admin/users", tag = "admin", request_body = NewUser,
    responses((status = 200, description = "`{user_id, username, display_name, created}`"),
        (status = 400, body = ErrorReply), (status = 409, body = ErrorReply, description = "Username taken")))]
fn create_user() {}

#[utoipa::path(delete, path = "/v1/api/admin/users/{user_id}", tag = "admin",
    params(("user_id" = String, Path, description = "The user; their tokens and links go too")),
    responses((status = 200, description = "`{status: \"ok\"}`"), (status = 404, body = ErrorReply)))]
fn delete_user() {}

#[utoipa::path(get, path = "/v1/api/admin/users/{user_id}/tokens", tag = "admin",
    params(("user_id" = String, Path, description = "The user")),
    responses((status = 200, description = "`{tokens: [{token_id, token_prefix, user_id, name, scopes, created, expires?}]}`")))]
fn tokens() {}

#[utoipa::path(post, path = "/v1/api/admin/users/{user_id}/tokens", tag = "admin", request_body = NewToken,
    params(("user_id" = String, Path, description = "The user")),
    responses((status = 200, description = "`{token, token_id, token_prefix, scopes}` — the only time the token is shown"),
        (status = 400, body = ErrorReply), (status = 404, body = ErrorReply)))]
fn create_token() {}

#[utoipa::path(delete, path = "/v1/api/admin/tokens/{token_id}", tag = "admin",
    params(("token_id" = String, Path, description = "The token")),
    responses((status = 200, description = "Revoked: refused from the next request on"), (status = 404, body = ErrorReply)))]
fn revoke_token() {}

#[utoipa::path(get, path = "/v1/api/admin/users/{user_id}/channels", tag = "admin",
    params(("user_id" = String, Path, description = "The user")),
    responses((status = 200, description = "`{channels: [{channel_type, channel_user_id, user_id, created}]}`")))]
fn channels() {}

#[utoipa::path(post, path = "/v1/api/admin/users/{user_id}/channels", tag = "admin", request_body = NewLink,
    params(("user_id" = String, Path, description = "The user")),
    responses((status = 200, description = "The link"), (status = 400, body = ErrorReply),
        (status = 404, body = ErrorReply), (status = 409, body = ErrorReply, description = "Linked already")))]
fn link_channel() {}

#[utoipa::path(delete, path = "/v1/api/admin/channels/{channel_type}/{channel_user_id}", tag = "admin",
    params(("channel_type" = String, Path, description = "The platform"),
        ("channel_user_id" = String, Path, description = "The account")),
    responses((status = 200, description = "Unlinked"), (status = 404, body = ErrorReply)))]
fn unlink_channel() {}

#[utoipa::path(get, path = "/v1/api/admin/schedules", tag = "admin",
    responses((status = 200, description = "`{schedules: [...]}`, newest first")))]
fn schedules() {}

#[utoipa::path(post, path = "/v1/api/admin/schedules", tag = "admin", request_body = ScheduleBody,
    responses((status = 200, description = "The schedule, with `next_run` (UTC)"),
        (status = 400, body = ErrorReply, description = "A field is invalid; the message names it"),
        (status = 409, body = ErrorReply, description = "200 schedules exist")))]
fn create_schedule() {}

#[utoipa::path(get, path = "/v1/api/admin/schedules/preview", tag = "admin",
    params(("schedule_type" = Option<String>, Query, description = "cron (default) or at"),
        ("cron_expr" = Option<String>, Query, description = "Five fields"),
        ("at_time" = Option<String>, Query, description = "ISO-8601 with an offset"),
        ("timezone" = Option<String>, Query, description = "IANA zone"),
        ("count" = Option<u32>, Query, description = "1–20, default 5")),
    responses((status = 200, description = "`{next_runs: [UTC …], local: [in the zone …], timezone}`"),
        (status = 400, body = ErrorReply)))]
fn preview() {}

#[utoipa::path(get, path = "/v1/api/admin/schedules/{task_id}", tag = "admin",
    params(("task_id" = String, Path, description = "The schedule")),
    responses((status = 200, description = "The schedule"), (status = 404, body = ErrorReply)))]
fn schedule() {}

#[utoipa::path(put, path = "/v1/api/admin/schedules/{task_id}", tag = "admin", request_body = ScheduleBody,
    params(("task_id" = String, Path, description = "The schedule")),
    responses((status = 200, description = "The schedule, `next_run` recomputed when its timing or `enabled` changed"),
        (status = 400, body = ErrorReply), (status = 404, body = ErrorReply)))]
fn update_schedule() {}

#[utoipa::path(delete, path = "/v1/api/admin/schedules/{task_id}", tag = "admin",
    params(("task_id" = String, Path, description = "The schedule; its runs go too")),
    responses((status = 200, description = "Deleted"), (status = 404, body = ErrorReply)))]
fn delete_schedule() {}

#[utoipa::path(get, path = "/v1/api/admin/schedules/{task_id}/runs", tag = "admin",
    params(("task_id" = String, Path, description = "The schedule"),
        ("limit" = Option<u32>, Query, description = "1–200, default 50")),
    responses((status = 200, description = "`{runs: [{run_id, task_id, node_id, ws_id, correlation_id, started, status, error, scheduled_for}]}`, newest first"),
        (status = 404, body = ErrorReply)))]
fn runs() {}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Turnstone console API",
        description = "The cluster: nodes, workstreams, events; and its administration: users, tokens, chat links, schedules."
    ),
    paths(
        overview,
        nodes,
        workstreams,
        node,
        create,
        events,
        health,
        users,
        create_user,
        delete_user,
        tokens,
        create_token,
        revoke_token,
        channels,
        link_channel,
        unlink_channel,
        schedules,
        create_schedule,
        preview,
        schedule,
        update_schedule,
        delete_schedule,
        runs
    )
)]
struct ApiDoc;

/// `GET /openapi.json`.
pub fn routes() -> BoxedFilter<(Response,)> {
    web::openapi::route(&web::openapi::complete(ApiDoc::openapi()))
}
