//! `/openapi.json`: the node API as OpenAPI 3.1, generated with utoipa from the request types
//! and the route table below (a test checks that every documented route is served).
#![allow(dead_code)]

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::web;
use crate::web::openapi::{ErrorReply, StatusReply};

use super::api::{
    ApproveRequest, CloseRequest, CommandRequest, NewRequest, PlanRequest, SendRequest,
};

/// A created or resumed workstream.
#[derive(Serialize, ToSchema)]
struct NewReply {
    ws_id: String,
    name: String,
    resumed: bool,
    session_id: String,
    message_count: u64,
}

#[utoipa::path(post, path = "/v1/api/send", tag = "workstreams", request_body = SendRequest,
    responses((status = 200, body = StatusReply, description = "Accepted, or busy while a turn runs"),
        (status = 400, body = ErrorReply), (status = 404, body = ErrorReply, description = "Unknown workstream")))]
fn send() {}

#[utoipa::path(post, path = "/v1/api/approve", tag = "workstreams", request_body = ApproveRequest,
    responses((status = 200, body = StatusReply), (status = 404, body = ErrorReply),
        (status = 409, body = ErrorReply, description = "Nothing waits for approval")))]
fn approve() {}

#[utoipa::path(post, path = "/v1/api/plan", tag = "workstreams", request_body = PlanRequest,
    responses((status = 200, body = StatusReply), (status = 404, body = ErrorReply)))]
fn plan() {}

#[utoipa::path(post, path = "/v1/api/command", tag = "workstreams", request_body = CommandRequest,
    responses((status = 200, body = StatusReply, description = "Output arrives as SSE info/error events"),
        (status = 400, body = ErrorReply), (status = 404, body = ErrorReply)))]
fn command() {}

#[utoipa::path(get, path = "/v1/api/workstreams", tag = "workstreams",
    responses((status = 200, description = "`{workstreams: [{id, name, state, session_id}]}` in creation order")))]
fn workstreams() {}

#[utoipa::path(post, path = "/v1/api/workstreams/new", tag = "workstreams", request_body = NewRequest,
    responses((status = 200, body = NewReply), (status = 400, body = ErrorReply, description = "All workstreams are active"),
        (status = 500, body = ErrorReply, description = "Unknown model alias")))]
fn workstreams_new() {}

#[utoipa::path(post, path = "/v1/api/workstreams/close", tag = "workstreams", request_body = CloseRequest,
    responses((status = 200, body = StatusReply), (status = 400, body = ErrorReply)))]
fn workstreams_close() {}

#[utoipa::path(get, path = "/v1/api/dashboard", tag = "workstreams",
    responses((status = 200, description = "Every workstream with tokens, context, activity and model; aggregate totals")))]
fn dashboard() {}

#[utoipa::path(get, path = "/v1/api/sessions", tag = "sessions",
    responses((status = 200, description = "Up to 50 saved sessions, most recently updated first")))]
fn sessions() {}

#[utoipa::path(get, path = "/v1/api/events", tag = "events",
    params(("ws_id" = String, Query, description = "The workstream"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, content_type = "text/event-stream", description = "The workstream's events"),
        (status = 404, body = ErrorReply)))]
fn events() {}

#[utoipa::path(get, path = "/v1/api/events/global", tag = "events",
    responses((status = 200, content_type = "text/event-stream", description = "ws_state, ws_rename, ws_closed")))]
fn events_global() {}

#[utoipa::path(get, path = "/health", tag = "operations", security(),
    responses((status = 200, description = "ok or degraded (the backend circuit is not closed)")))]
fn health() {}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Turnstone node API",
        description = "One node's workstreams over HTTP and SSE."
    ),
    paths(
        send,
        approve,
        plan,
        command,
        workstreams,
        workstreams_new,
        workstreams_close,
        dashboard,
        sessions,
        events,
        events_global,
        health
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub fn routes() -> BoxedFilter<(Response,)> {
    web::openapi::route(&web::openapi::complete(ApiDoc::openapi()))
}
