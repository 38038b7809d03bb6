//! The reverse proxy to the nodes' UIs (SPEC §3): `/node/{id}/…` is forwarded to the node's
//! `server_url` with the console's own service token — the user's token and cookie never
//! leave the console — so only the console's port needs to be reachable.
//!
//! The node's page is rewritten to load its assets through the proxy and gets a back-link
//! banner and a small script (served by the console, so no inline script is needed under
//! the node's Content-Security-Policy) that prefixes the page's root-relative `fetch` and
//! `EventSource` URLs with `/node/{id}`. Answers are streamed, not buffered — event streams
//! flow as the node writes them and at the pace the browser reads them. Redirects are passed
//! on, never followed; a node that cannot be reached is a 502.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::json;
use turnstone_actors::auth::{Audience, Scope};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::hyper::body::Bytes;
use warp::reply::{Reply, Response};

use super::Shared;
use super::api::{percent_decode, valid_node_id};
use super::metrics::ConsoleMetrics;
use super::model::is_http;
use crate::web::MAX_BODY;
use crate::web::error::ApiError;
use crate::web::service_token::{Credentials, ServiceToken};
use crate::web::with_state;

/// Time for a proxied request (SPEC §3).
const TIMEOUT: Duration = Duration::from_secs(30);
/// Time to connect an event stream.
const SSE_CONNECT: Duration = Duration::from_secs(5);
/// Longest silence on an event stream (nodes send a keep-alive every 5 s).
const SSE_READ: Duration = Duration::from_secs(30);

/// Request headers passed to the node (never `authorization` or `cookie`).
const FORWARD_REQUEST: [&str; 4] = ["content-type", "accept", "last-event-id", "accept-language"];
/// Answer headers passed back.
const FORWARD_RESPONSE: [&str; 6] = [
    "content-type",
    "cache-control",
    "content-disposition",
    "etag",
    "last-modified",
    "content-security-policy",
];

/// The proxy's clients and credentials.
pub struct Proxy {
    http: reqwest::Client,
    sse: reqwest::Client,
    token: ServiceToken,
    metrics: std::sync::Arc<ConsoleMetrics>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy authenticating as `console-proxy` (every scope, audience server).
    pub fn new(credentials: Credentials, metrics: std::sync::Arc<ConsoleMetrics>) -> Self {
        turnstone_actors::provider::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let sse = reqwest::Client::builder()
            .connect_timeout(SSE_CONNECT)
            .read_timeout(SSE_READ)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            http,
            sse,
            token: ServiceToken::new(
                credentials,
                "console-proxy",
                &Scope::Approve.expand(),
                Audience::Server,
            ),
            metrics,
        }
    }
}

fn unreachable() -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "Node unreachable")
}

/// The node's page with its asset paths under `prefix`, the banner and the script injected
/// right after `<body …>` (at the start when the page has none).
pub fn rewrite_index(page: &str, node_id: &str, prefix: &str) -> String {
    let mut page = page.to_owned();
    for attr in ["href", "src"] {
        for dir in ["static", "shared"] {
            for quote in ['"', '\''] {
                page = page.replace(
                    &format!("{attr}={quote}/{dir}/"),
                    &format!("{attr}={quote}{prefix}/{dir}/"),
                );
            }
        }
    }
    let escaped = html_escape::encode_double_quoted_attribute(prefix);
    let banner = format!(
        "<link rel=\"stylesheet\" href=\"/static/node-banner.css\">\
         <div class=\"turnstone-console-banner\" role=\"navigation\" aria-label=\"Console\">\
         <a href=\"/\">&larr; Console</a><span aria-hidden=\"true\">\u{2502}</span>\
         <span class=\"node\">{}</span></div>\
         <script src=\"/static/node-shim.js\" data-prefix=\"{escaped}\"></script>",
        html_escape::encode_text(node_id),
    );
    let lower = page.to_ascii_lowercase();
    let at = lower
        .find("<body")
        .and_then(|start| lower[start..].find('>').map(|end| start + end + 1))
        .unwrap_or(0);
    page.insert_str(at, &banner);
    page
}

/// `/node/{id}/{rest}` split and checked: the node id and the rest.
fn split(tail: &str) -> Result<(String, Option<&str>), ApiError> {
    let (raw, rest) = match tail.split_once('/') {
        Some((raw, rest)) => (raw, Some(rest)),
        None => (tail, None),
    };
    let id = percent_decode(raw);
    if !valid_node_id(&id) {
        return Err(ApiError::bad_request("Invalid node ID"));
    }
    if let Some(rest) = rest
        && rest
            .split('/')
            .any(|seg| matches!(percent_decode(seg).as_str(), "." | ".."))
    {
        return Err(ApiError::bad_request("Invalid path"));
    }
    Ok((id, rest))
}

fn is_event_stream(method: &Method, rest: &str) -> bool {
    method == Method::GET && (rest.ends_with("api/events") || rest.ends_with("api/events/global"))
}

struct Forward {
    method: Method,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

async fn forward(state: Shared, tail: String, fwd: Forward) -> Result<Response, warp::Rejection> {
    let (id, rest) = split(&tail)?;
    let Some(rest) = rest else {
        // `/node/{id}` → `/node/{id}/`.
        let location = format!("/node/{}/", raw_segment(&tail));
        let mut r = Response::new(Vec::new().into());
        *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert("location", v);
        }
        return Ok(r);
    };
    let base = state
        .collector
        .model()
        .node(&id)
        .map(|n| n.server_url.trim_end_matches('/').to_owned())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Node not found"))?;
    if !is_http(&base) {
        return Err(unreachable().into());
    }
    let prefix = format!("/node/{}", raw_segment(&tail));
    let api = rest.strip_prefix("v1/").unwrap_or(rest);
    // Through the console the user is the console's: the node's own sign-in is not shown.
    if api == "api/auth/status" {
        return Ok(warp::reply::json(
            &json!({"auth_enabled": false, "has_users": true, "setup_required": false}),
        )
        .into_response());
    }
    if matches!(api, "api/auth/login" | "api/auth/logout" | "api/auth/setup") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Sign in to the console; the proxy signs in to the node",
        )
        .into());
    }
    let started = std::time::Instant::now();
    let proxy = &state.proxy;
    let stream = is_event_stream(&fwd.method, rest);
    let mut url = format!("{base}/{rest}");
    if !fwd.query.is_empty() {
        url.push('?');
        url.push_str(&fwd.query);
    }
    let client = if stream { &proxy.sse } else { &proxy.http };
    let mut request = client.request(fwd.method.clone(), &url);
    for name in FORWARD_REQUEST {
        if let Some(v) = fwd.headers.get(name) {
            request = request.header(name, v);
        }
    }
    if !fwd.body.is_empty() {
        request = request.body(fwd.body);
    }
    let upstream = match proxy.token.authorize(request).send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(node = %id, %url, error = %e, "proxy request failed");
            proxy
                .metrics
                .proxied("error", started.elapsed().as_secs_f64());
            return Err(unreachable().into());
        }
    };
    let status = upstream.status();
    proxy
        .metrics
        .proxied(status.as_str(), started.elapsed().as_secs_f64());
    if stream && status != StatusCode::OK {
        let text = format!(
            "event: error\ndata: Upstream returned status {}\n\n",
            status.as_u16()
        );
        let mut r = Response::new(text.into());
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        return Ok(r);
    }
    if rest.is_empty() && status.is_success() {
        let page = upstream.text().await.map_err(|_| unreachable())?;
        let mut r = Response::new(rewrite_index(&page, &id, &prefix).into());
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-cache"));
        r.headers_mut().insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        return Ok(r);
    }
    let mut headers = HeaderMap::new();
    for name in FORWARD_RESPONSE {
        if let Some(v) = upstream.headers().get(name) {
            headers.insert(name, v.clone());
        }
    }
    // A redirect stays on the node: relative locations are put under the prefix, others
    // dropped.
    if status.is_redirection()
        && let Some(location) = upstream
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .filter(|l| l.starts_with('/') && !l.starts_with("//"))
        && let Ok(v) = HeaderValue::from_str(&format!("{prefix}{location}"))
    {
        headers.insert("location", v);
    }
    if stream {
        return Ok(relay(upstream));
    }
    let body = upstream.bytes().await.map_err(|_| unreachable())?;
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    Ok(r)
}

/// A node's event stream, event by event (ids and names kept) as the browser reads it: the
/// next event is read from the node only when the last one was written out, so a slow
/// browser slows the node's stream, not the console's memory.
fn relay(upstream: reqwest::Response) -> Response {
    let events = upstream
        .bytes_stream()
        .eventsource()
        .take_while(|e| futures::future::ready(e.is_ok()))
        .filter_map(|e| async move {
            let e = e.ok()?;
            let mut event = warp::sse::Event::default().data(e.data);
            if !e.event.is_empty() && e.event != "message" {
                event = event.event(e.event);
            }
            if !e.id.is_empty() {
                event = event.id(e.id);
            }
            Some(Ok::<_, std::convert::Infallible>(event))
        });
    warp::sse::reply(
        warp::sse::keep_alive()
            .interval(crate::server::KEEP_ALIVE)
            .stream(events),
    )
    .into_response()
}

/// The node id's segment of `tail` as the client wrote it (still percent-encoded).
fn raw_segment(tail: &str) -> &str {
    tail.split('/').next().unwrap_or("")
}

/// `/node/{id}/…` for GET, POST, PUT and DELETE.
pub fn routes(state: Shared) -> BoxedFilter<(Response,)> {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let head = move || {
        with_state(state.clone())
            .and(warp::path::tail())
            .and(query)
            .and(warp::header::headers_cloned())
    };
    let bodiless = warp::path("node")
        .and(warp::get().or(warp::delete()).unify())
        .and(warp::method())
        .and(head())
        .and_then(
            |method: Method, state: Shared, tail: warp::path::Tail, query, headers| async move {
                let fwd = Forward {
                    method,
                    query,
                    headers,
                    body: Bytes::new(),
                };
                forward(state, tail.as_str().to_owned(), fwd).await
            },
        );
    let with_body =
        warp::path("node")
            .and(warp::post().or(warp::put()).unify())
            .and(warp::method())
            .and(head())
            .and(warp::body::content_length_limit(MAX_BODY))
            .and(warp::body::bytes())
            .and_then(
                |method: Method,
                 state: Shared,
                 tail: warp::path::Tail,
                 query,
                 headers,
                 body: Bytes| async move {
                    let fwd = Forward {
                        method,
                        query,
                        headers,
                        body,
                    };
                    forward(state, tail.as_str().to_owned(), fwd).await
                },
            );
    bodiless.or(with_body).unify().boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_through_the_proxy_and_gets_the_banner_and_script() {
        let page = "<html><head><link href=\"/static/app.css\"></head>\
                    <BODY class=\"x\"><script src='/static/app.js'></script>\
                    <img src=\"/shared/logo.png\"></body></html>";
        let out = rewrite_index(page, "n<1>", "/node/n1");
        assert!(out.contains("href=\"/node/n1/static/app.css\""));
        assert!(out.contains("src='/node/n1/static/app.js'"));
        assert!(out.contains("src=\"/node/n1/shared/logo.png\""));
        let body_end = out.find("<BODY class=\"x\">").map(|i| i + 16);
        assert_eq!(
            body_end,
            out.find("<link rel=\"stylesheet\" href=\"/static/node-banner.css\"")
        );
        assert!(out.contains("data-prefix=\"/node/n1\""));
        assert!(out.contains("n&lt;1&gt;"), "the node id is escaped");
        // No <body>: injected at the start, still served.
        let bare = rewrite_index("<p>hi</p>", "n", "/node/n");
        assert!(bare.starts_with("<link rel=\"stylesheet\""));
        assert!(bare.ends_with("<p>hi</p>"));
    }

    #[test]
    fn paths_are_checked() {
        assert_eq!(
            split("n1/v1/api/send").ok(),
            Some(("n1".into(), Some("v1/api/send")))
        );
        assert_eq!(split("n1").ok(), Some(("n1".into(), None)));
        assert!(split("n1/static/../../etc").is_err());
        assert!(split("n1/static/%2e%2e/x").is_err());
        assert!(split("%2e%2e/x").is_err());
        assert!(split("a%2Fb/x").is_err());
        assert!(split(&format!("{}/", "x".repeat(257))).is_err());
        assert!(split("%C3%A9/").is_err(), "non-ASCII ids are refused");
        assert!(is_event_stream(&Method::GET, "v1/api/events"));
        assert!(is_event_stream(&Method::GET, "api/events/global"));
        assert!(!is_event_stream(&Method::POST, "v1/api/events"));
    }
}
