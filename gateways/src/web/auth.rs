//! Authentication and authorisation for the node server (SPEC §14): which scope each route
//! needs, the bearer header or `turnstone_auth` cookie, and the login, logout, status and
//! first-run setup routes with login attempt limiting.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use turnstone_actors::auth::{
    Principal, Scope, check_username, hash_password, mint, verify_password,
};
use turnstone_actors::storage::{NewUser, StoreError};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use std::sync::Arc;

use super::error::ApiError;
use super::{WebState, body, with_state};

/// The cookie the browser UI authenticates with.
pub const COOKIE: &str = "turnstone_auth";
/// Cookie lifetime (the JWT's).
const COOKIE_AGE: u64 = 86_400;
/// Failed logins allowed per window and key.
const LOGIN_FAILURES: usize = 5;
/// The login limiter's window.
const LOGIN_WINDOW: Duration = Duration::from_secs(300);
/// Keys the login limiter tracks at most.
const LOGIN_KEYS: usize = 50_000;

/// The scope a request needs, or `None` for public routes.
pub fn required_scope(method: &str, path: &str) -> Option<Scope> {
    // The console's proxy: `/node/{id}/(v1/)api/x` needs what `/api/x` needs on the node;
    // everything else under `/node/{id}/` (its page, its assets) needs read.
    if let Some(rest) = path.strip_prefix("/node/") {
        let inner = rest.find('/').map_or("", |i| &rest[i..]);
        let inner = inner.strip_prefix("/v1").unwrap_or(inner);
        if inner.starts_with("/api/") {
            return Some(required_scope(method, inner).unwrap_or(Scope::Read));
        }
        return Some(Scope::Read);
    }
    let path = path.trim_end_matches('/');
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let public = path.is_empty()
        || matches!(
            path,
            "/health" | "/health/ready" | "/metrics" | "/openapi.json" | "/docs"
        )
        || path.starts_with("/static/")
        || path.starts_with("/shared/")
        || path.starts_with("/docs/")
        || matches!(
            path,
            "/api/auth/login" | "/api/auth/logout" | "/api/auth/status" | "/api/auth/setup"
        );
    if public {
        return None;
    }
    if path.starts_with("/api/admin/") || (method == "POST" && path == "/api/approve") {
        return Some(Scope::Approve);
    }
    let writes = [
        "/api/send",
        "/api/plan",
        "/api/command",
        "/api/workstreams/new",
        "/api/workstreams/close",
        "/api/cluster/workstreams/new",
    ];
    if method == "POST" && writes.contains(&path) {
        return Some(Scope::Write);
    }
    Some(Scope::Read)
}

/// The token of a request: bearer header, else the cookie.
fn token_of(authorization: Option<&str>, cookie: Option<&str>) -> Option<String> {
    authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .or_else(|| cookie.map(str::to_owned).filter(|c| !c.is_empty()))
}

/// Refuses requests without the scope their route needs.
pub fn authorize<S: WebState>(
    state: Arc<S>,
) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::cookie::optional::<String>(COOKIE))
        .and(with_state(state))
        .and_then(
            |method: warp::http::Method,
             path: warp::path::FullPath,
             authorization: Option<String>,
             cookie: Option<String>,
             state: Arc<S>| async move {
                let auth = state.authenticator();
                if !auth.enabled() || method == warp::http::Method::OPTIONS {
                    return Ok(());
                }
                let Some(scope) = required_scope(method.as_str(), path.as_str()) else {
                    return Ok(());
                };
                let unauthorized = || {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "Unauthorized: missing or invalid token",
                    )
                };
                let token = token_of(authorization.as_deref(), cookie.as_deref())
                    .ok_or_else(unauthorized)?;
                let principal = auth.authenticate(&token).await.ok_or_else(unauthorized)?;
                if !principal.allows(scope) {
                    return Err(warp::reject::custom(ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!("Forbidden: token lacks '{}' scope", scope.as_str()),
                    )));
                }
                Ok(())
            },
        )
        .untuple_one()
}

/// Who is calling, for handlers that record it (a schedule's creator): the principal of the
/// request's token, `None` when auth is off or the token names no one.
pub fn caller<S: WebState>(
    state: Arc<S>,
) -> impl Filter<Extract = (Option<Principal>,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::cookie::optional::<String>(COOKIE))
        .and(with_state(state))
        .then(
            |authorization: Option<String>, cookie: Option<String>, state: Arc<S>| async move {
                let token = token_of(authorization.as_deref(), cookie.as_deref())?;
                state.authenticator().authenticate(&token).await
            },
        )
}

/// Failed logins per key (`ip:…`, `user:…`) in a sliding window.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    fn blocked(&self, keys: &[String], now: Instant) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().any(|k| {
            failures.get_mut(k).is_some_and(|times| {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > LOGIN_WINDOW)
                {
                    times.pop_front();
                }
                times.len() >= LOGIN_FAILURES
            })
        })
    }

    fn fail(&self, keys: &[String], now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= LOGIN_KEYS {
            failures.retain(|_, t| {
                t.back()
                    .is_some_and(|t| now.duration_since(*t) <= LOGIN_WINDOW)
            });
        }
        for k in keys {
            if failures.len() < LOGIN_KEYS || failures.contains_key(k) {
                failures.entry(k.clone()).or_default().push_back(now);
            }
        }
    }

    fn succeed(&self, keys: &[String]) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            failures.remove(k);
        }
    }
}

fn cookie(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

fn with_cookie(body: serde_json::Value, cookie: String) -> Response {
    let mut response = warp::reply::json(&body).into_response();
    if let Ok(value) = warp::http::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert("set-cookie", value);
    }
    response
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginRequest {
    username: String,
    password: String,
    token: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SetupRequest {
    username: String,
    display_name: String,
    password: String,
}

fn is_https(forwarded_proto: Option<&str>) -> bool {
    forwarded_proto.is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn session_body(principal: &Principal, jwt: &str) -> serde_json::Value {
    json!({
        "status": "ok",
        "role": principal.role(),
        "scopes": Scope::csv(&principal.scopes),
        "jwt": jwt,
        "user_id": principal.user_id,
    })
}

async fn login<S: WebState>(
    state: Arc<S>,
    peer: Option<SocketAddr>,
    forwarded_proto: Option<String>,
    bytes: warp::hyper::body::Bytes,
) -> Result<Response, warp::Rejection> {
    let req: LoginRequest = match body::parse(&bytes) {
        Ok(r) => r,
        Err(e) => return Ok(e.into_response()),
    };
    let ip = peer.map_or_else(|| IpAddr::from([0, 0, 0, 0]), |p| p.ip());
    let mut keys = vec![format!("ip:{ip}")];
    if !req.username.is_empty() {
        keys.push(format!("user:{}", req.username));
    }
    let now = Instant::now();
    if state.login_limiter().blocked(&keys, now) {
        return Ok(
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many login attempts").into_response(),
        );
    }
    let auth = state.authenticator();
    let principal = if !req.token.is_empty() {
        auth.authenticate(&req.token).await.map(|p| (p, "token"))
    } else if !req.username.is_empty() {
        let user = match auth.store() {
            Some(store) => store.user_by_name(&req.username).await.ok().flatten(),
            None => None,
        };
        let password = req.password.clone();
        match user {
            Some(user) => {
                let hash = user.password_hash.clone();
                let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
                    .await
                    .unwrap_or(false);
                ok.then(|| {
                    (
                        Principal {
                            scopes: Scope::Approve.expand(),
                            user_id: Some(user.user_id),
                            source: "jwt",
                        },
                        "password",
                    )
                })
            }
            None => None,
        }
    } else {
        None
    };
    let Some((principal, src)) = principal else {
        state.login_limiter().fail(&keys, now);
        return Ok(ApiError::new(StatusCode::UNAUTHORIZED, "Invalid credentials").into_response());
    };
    state.login_limiter().succeed(&keys);
    let sub = principal.user_id.clone().unwrap_or_else(|| "token".into());
    let jwt = mint(auth.secret(), &sub, &principal.scopes, src, auth.audience())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let secure = is_https(forwarded_proto.as_deref());
    Ok(with_cookie(
        session_body(&principal, &jwt),
        cookie(&jwt, COOKIE_AGE, secure),
    ))
}

async fn logout(forwarded_proto: Option<String>) -> Result<Response, warp::Rejection> {
    Ok(with_cookie(
        json!({"status": "ok"}),
        cookie("", 0, is_https(forwarded_proto.as_deref())),
    ))
}

async fn status<S: WebState>(state: Arc<S>) -> Result<Response, warp::Rejection> {
    let auth = state.authenticator();
    let users = match auth.store() {
        Some(store) => store.count_users().await.unwrap_or(0),
        None => 0,
    };
    let enabled = auth.enabled();
    Ok(warp::reply::json(&json!({
        "auth_enabled": enabled,
        "has_users": users > 0,
        // Without a database there is no account to set up: tokens only.
        "setup_required": enabled && users == 0 && auth.store().is_some(),
    }))
    .into_response())
}

async fn setup<S: WebState>(
    state: Arc<S>,
    forwarded_proto: Option<String>,
    bytes: warp::hyper::body::Bytes,
) -> Result<Response, warp::Rejection> {
    let req: SetupRequest = match body::parse(&bytes) {
        Ok(r) => r,
        Err(e) => return Ok(e.into_response()),
    };
    let auth = state.authenticator();
    let Some(store) = auth.store().cloned() else {
        return Ok(
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Setup needs the database")
                .into_response(),
        );
    };
    if let Err(e) = check_username(req.username.trim()) {
        return Ok(ApiError::bad_request(e.to_string()).into_response());
    }
    if store.count_users().await.unwrap_or(0) > 0 {
        return Ok(ApiError::new(StatusCode::CONFLICT, "Setup already completed").into_response());
    }
    let password = req.password.clone();
    let hash = match tokio::task::spawn_blocking(move || hash_password(&password)).await {
        Ok(Ok(hash)) => hash,
        Ok(Err(e)) => return Ok(ApiError::bad_request(e.to_string()).into_response()),
        Err(e) => return Ok(ApiError::internal(e.to_string()).into_response()),
    };
    let username = req.username.trim();
    let display = Some(req.display_name.trim())
        .filter(|d| !d.is_empty())
        .unwrap_or(username);
    let user = match store
        .create_first_user(NewUser {
            username,
            display_name: display,
            password_hash: &hash,
        })
        .await
    {
        Ok(user) => user,
        Err(StoreError::Conflict(message)) => {
            return Ok(ApiError::new(StatusCode::CONFLICT, message).into_response());
        }
        Err(e) => return Ok(ApiError::internal(e.to_string()).into_response()),
    };
    let scopes = Scope::Approve.expand();
    let jwt = mint(
        auth.secret(),
        &user.user_id,
        &scopes,
        "password",
        auth.audience(),
    )
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(with_cookie(
        json!({"status": "ok", "user_id": user.user_id, "username": user.username,
            "role": "full", "scopes": Scope::csv(&scopes), "jwt": jwt}),
        cookie(&jwt, COOKIE_AGE, is_https(forwarded_proto.as_deref())),
    ))
}

/// `/v1/api/auth/{login,logout,status,setup}` (after `/v1/api`). They answer errors
/// themselves so that no other route's rejection can shadow them.
pub fn routes<S: WebState>(state: Arc<S>) -> BoxedFilter<(Response,)> {
    let proto = || warp::header::optional::<String>("x-forwarded-proto");
    let bytes = || warp::body::content_length_limit(64 * 1024).and(warp::body::bytes());
    let login = warp::path!("auth" / "login")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(warp::addr::remote())
        .and(proto())
        .and(bytes())
        .and_then(login::<S>);
    let logout = warp::path!("auth" / "logout")
        .and(warp::post())
        .and(proto())
        .and_then(logout);
    let status = warp::path!("auth" / "status")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and_then(status::<S>);
    let setup = warp::path!("auth" / "setup")
        .and(warp::post())
        .and(with_state(state))
        .and(proto())
        .and(bytes())
        .and_then(setup::<S>);
    login
        .or(logout)
        .unify()
        .or(status)
        .unify()
        .or(setup)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_per_route_follow_turnstone() {
        assert_eq!(required_scope("GET", "/health"), None);
        assert_eq!(required_scope("GET", "/"), None);
        assert_eq!(required_scope("GET", "/static/app.js"), None);
        assert_eq!(required_scope("POST", "/v1/api/auth/login"), None);
        assert_eq!(
            required_scope("GET", "/v1/api/workstreams"),
            Some(Scope::Read)
        );
        assert_eq!(required_scope("GET", "/v1/api/events"), Some(Scope::Read));
        assert_eq!(required_scope("POST", "/v1/api/send"), Some(Scope::Write));
        assert_eq!(
            required_scope("POST", "/v1/api/workstreams/new/"),
            Some(Scope::Write)
        );
        assert_eq!(
            required_scope("POST", "/v1/api/approve"),
            Some(Scope::Approve)
        );
        assert_eq!(
            required_scope("GET", "/v1/api/admin/users"),
            Some(Scope::Approve)
        );
        assert_eq!(required_scope("GET", "/v1/api/send"), Some(Scope::Read));
        assert_eq!(
            required_scope("POST", "/v1/api/cluster/workstreams/new"),
            Some(Scope::Write)
        );
        // Through the console's proxy: the node's rule for the API, read for the rest.
        assert_eq!(required_scope("GET", "/node/n1/"), Some(Scope::Read));
        assert_eq!(
            required_scope("GET", "/node/n1/static/app.js"),
            Some(Scope::Read)
        );
        assert_eq!(
            required_scope("POST", "/node/n1/v1/api/send"),
            Some(Scope::Write)
        );
        assert_eq!(
            required_scope("POST", "/node/n1/api/approve"),
            Some(Scope::Approve)
        );
        assert_eq!(
            required_scope("POST", "/node/n1/v1/api/auth/login"),
            Some(Scope::Read)
        );
    }

    #[test]
    fn login_attempts_are_limited_per_key_and_window() {
        let limiter = LoginLimiter::default();
        let keys = vec!["ip:1.2.3.4".to_owned(), "user:ada".to_owned()];
        let t0 = Instant::now();
        for _ in 0..LOGIN_FAILURES {
            assert!(!limiter.blocked(&keys, t0));
            limiter.fail(&keys, t0);
        }
        assert!(limiter.blocked(&keys, t0));
        assert!(
            limiter.blocked(&["user:ada".to_owned()], t0),
            "by user from any IP"
        );
        assert!(!limiter.blocked(&keys, t0 + LOGIN_WINDOW + Duration::from_secs(1)));
        limiter.succeed(&keys);
        assert!(!limiter.blocked(&keys, t0));
    }
}
