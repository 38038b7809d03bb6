//! `/openapi.json`: the node API as OpenAPI 3.1, generated with utoipa from the request types
//! and the route table below (a test checks that every documented route is served).
#![allow(dead_code)]

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};

use super::api::{
    ApproveRequest, CloseRequest, CommandRequest, NewRequest, PlanRequest, SendRequest,
};

/// `{"status": "ok"}` (or `"busy"` from send).
#[derive(Serialize, ToSchema)]
struct StatusReply {
    status: String,
}

/// `{"error": "…"}` with a 4xx/5xx status.
#[derive(Serialize, ToSchema)]
struct ErrorReply {
    error: String,
}

/// A created or resumed workstream.
#[derive(Serialize, ToSchema)]
struct NewReply {
    ws_id: String,
    name: String,
    resumed: bool,
    session_id: String,
    message_count: u64,
}

/// Login by password or token.
#[derive(Serialize, ToSchema)]
struct LoginBody {
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
}

/// First-run account.
#[derive(Serialize, ToSchema)]
struct SetupBody {
    username: String,
    display_name: Option<String>,
    password: String,
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

#[utoipa::path(post, path = "/v1/api/auth/login", tag = "auth", request_body = LoginBody, security(),
    responses((status = 200, description = "Session with a JWT; sets the turnstone_auth cookie"),
        (status = 401, body = ErrorReply), (status = 429, body = ErrorReply)))]
fn login() {}

#[utoipa::path(post, path = "/v1/api/auth/logout", tag = "auth", security(),
    responses((status = 200, body = StatusReply)))]
fn logout() {}

#[utoipa::path(get, path = "/v1/api/auth/status", tag = "auth", security(),
    responses((status = 200, description = "`{auth_enabled, has_users, setup_required}`")))]
fn auth_status() {}

#[utoipa::path(post, path = "/v1/api/auth/setup", tag = "auth", request_body = SetupBody, security(),
    responses((status = 200, description = "The first user, with a JWT"), (status = 409, body = ErrorReply),
        (status = 503, body = ErrorReply)))]
fn setup() {}

#[utoipa::path(get, path = "/health", tag = "operations", security(),
    responses((status = 200, description = "ok or degraded (the backend circuit is not closed)")))]
fn health() {}

#[utoipa::path(get, path = "/metrics", tag = "operations", security(),
    responses((status = 200, content_type = "text/plain", description = "Prometheus text format 0.0.4")))]
fn metrics() {}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("turnstone_auth"))),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Turnstone node API", description = "One node's workstreams over HTTP and SSE."),
    paths(send, approve, plan, command, workstreams, workstreams_new, workstreams_close, dashboard,
        sessions, events, events_global, login, logout, auth_status, setup, health, metrics),
    modifiers(&Security),
    security(("bearer" = []), ("cookie" = []))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub fn routes() -> BoxedFilter<(Response,)> {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let json = doc.to_json().unwrap_or_else(|_| "{}".into());
    warp::get()
        .and(warp::path("openapi.json"))
        .and(warp::path::end())
        .map(move || {
            warp::reply::with_header(json.clone(), "content-type", "application/json")
                .into_response()
        })
        .boxed()
}
