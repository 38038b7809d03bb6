//! What every HTTP service of Turnstone shares — the node server and the console: the error
//! shape, bounded JSON bodies, authentication and its routes, per-IP rate limiting, request
//! metrics, embedded static assets and the OpenAPI/Swagger pages.
//!
//! A service exposes its pieces through [`WebState`]; the filters here take any state that
//! does.

pub mod assets;
pub mod auth;
pub mod body;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
pub mod service_token;
pub mod starting;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use turnstone_actors::auth::Authenticator;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};

/// Largest request body accepted.
pub const MAX_BODY: u64 = 1024 * 1024;

/// The parts of a service the shared filters use.
pub trait WebState: Send + Sync + 'static {
    /// Token checks (its audience is the one login JWTs are minted for).
    fn authenticator(&self) -> &Authenticator;
    /// Failed logins.
    fn login_limiter(&self) -> &auth::LoginLimiter;
    /// Requests per client.
    fn rate_limiter(&self) -> &ratelimit::RateLimiter;
    /// Request metrics.
    fn http_metrics(&self) -> &metrics::HttpMetrics;
    /// Counts one finished request.
    fn request_done(&self, method: &str, endpoint: &str, status: u16, seconds: f64) {
        self.http_metrics()
            .request(method, endpoint, status, seconds);
    }
}

/// A filter that hands out the state.
pub fn with_state<S: WebState>(
    state: Arc<S>,
) -> impl Filter<Extract = (Arc<S>,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// The common frame around a service's routes: rate limit first, then the routes, every
/// rejection as `{"error": …}`, and request metrics (unmatched paths counted as `unmatched`,
/// so scanners cannot grow the series).
pub fn frame<S: WebState>(
    state: Arc<S>,
    routes: BoxedFilter<(Response,)>,
) -> BoxedFilter<(Response,)> {
    let observer = state.clone();
    let log = warp::log::custom(move |info| {
        let endpoint = if info.status() == warp::http::StatusCode::NOT_FOUND {
            "unmatched"
        } else {
            info.path()
        };
        observer.request_done(
            info.method().as_str(),
            endpoint,
            info.status().as_u16(),
            info.elapsed().as_secs_f64(),
        );
    });
    let framed = ratelimit::filter(state)
        .and(routes)
        .recover(error::recover)
        .unify()
        .with(log)
        .map(Reply::into_response);
    // A server span per request only while spans are exported: without an exporter it (and
    // warp's two log lines per request inside it) would cost every request for nothing.
    if !turnstone_runtime::telemetry::exporting() {
        return framed.boxed();
    }
    framed
        .map(|reply: Response| {
            tracing::Span::current().record("http.response.status_code", reply.status().as_u16());
            reply
        })
        .with(warp::trace(request_span))
        .map(Reply::into_response)
        .boxed()
}

/// The span of one request: a server span below the caller's (its `traceparent` header).
fn request_span(info: warp::trace::Info<'_>) -> tracing::Span {
    let method = info.method().as_str();
    let path = info.path();
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {path}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = path,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let headers = info.request_headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(traceparent) = header("traceparent") {
        let parent = turnstone_runtime::remote::TraceContext {
            traceparent: traceparent.to_owned(),
            tracestate: header("tracestate").map(str::to_owned),
        };
        turnstone_runtime::telemetry::set_parent(&span, &parent);
    }
    turnstone_runtime::telemetry::annotate(&span);
    span
}

/// Serves `routes` on `listener` until `shutdown` resolves.
pub async fn serve(
    routes: BoxedFilter<(Response,)>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    warp::serve(routes)
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// Binds `addr` (port 0 picks a free one) with `TCP_NODELAY`, which accepted connections
/// inherit: SSE writes are small, and Nagle's algorithm meeting delayed ACKs would hold them
/// for tens of milliseconds.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Binds `host:port` for a service; the error says what went wrong in words for the command
/// line, with the exit code (2 for a bad address, 1 when it cannot be bound).
pub fn listen(host: &str, port: u16) -> Result<tokio::net::TcpListener, (String, u8)> {
    let addr: std::net::SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| (format!("cannot listen on {host}:{port}: {e}"), 2))?;
    bind(addr).map_err(|e| (format!("cannot listen on {addr}: {e}"), 1))
}

/// A service's whole route table: the sign-in routes under `/v1/api`, the `guarded` routes
/// behind the scope check, the `public` ones, all in [`frame`].
pub fn compose<S: WebState>(
    state: Arc<S>,
    guarded: BoxedFilter<(Response,)>,
    public: BoxedFilter<(Response,)>,
) -> BoxedFilter<(Response,)> {
    let sign_in = warp::path("v1")
        .and(warp::path("api"))
        .and(auth::routes(state.clone()));
    let guarded = auth::authorize(state.clone()).and(guarded).boxed();
    let routes = sign_in.or(guarded).unify().or(public).unify().boxed();
    frame(state, routes)
}

/// `GET /health` and `GET /metrics` answered by `health` and `metrics`.
pub fn operations<S, H, HF, M, MF>(state: Arc<S>, health: H, metrics: M) -> BoxedFilter<(Response,)>
where
    S: WebState,
    H: Fn(Arc<S>) -> HF + Clone + Send + Sync + 'static,
    HF: std::future::Future<Output = Result<Response, warp::Rejection>> + Send,
    M: Fn(Arc<S>) -> MF + Clone + Send + Sync + 'static,
    MF: std::future::Future<Output = Result<Response, warp::Rejection>> + Send,
{
    let health = warp::path("health")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state(state.clone()))
        .and_then(health);
    let metrics = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state(state))
        .and_then(metrics);
    health.or(metrics).unify().boxed()
}
