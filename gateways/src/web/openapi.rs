//! The OpenAPI pieces every service documents the same way: the error and status replies, the
//! sign-in routes, `/metrics`, the bearer and cookie security schemes, and the route that
//! serves a finished document as `/openapi.json`.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};

/// `{"status": "ok"}`.
#[derive(Serialize, ToSchema)]
pub struct StatusReply {
    status: String,
}

/// `{"error": "…"}` with a 4xx/5xx status.
#[derive(Serialize, ToSchema)]
pub struct ErrorReply {
    error: String,
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

/// What every service's document holds.
#[derive(OpenApi)]
#[openapi(
    paths(login, logout, auth_status, setup, metrics),
    components(schemas(StatusReply, ErrorReply)),
    modifiers(&Security),
    security(("bearer" = []), ("cookie" = []))
)]
struct Common;

/// `doc` with the common parts merged in and this build's version.
pub fn complete(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    doc.merge(Common::openapi());
    doc.security = Common::openapi().security;
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// `GET /openapi.json` serving `doc`.
pub fn route(doc: &utoipa::openapi::OpenApi) -> BoxedFilter<(Response,)> {
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
