//! `turnstone-console`: the cluster dashboard (SPEC §3) — a collector of every node and
//! workstream, the cluster API and its event stream, workstream creation with node targeting,
//! and a reverse proxy to each node's UI, so only the console's port needs to be reachable.
//!
//! The console shares the node server's web pieces ([`crate::web`]): auth and sign-in, JSON
//! bodies and errors, rate limiting, request metrics, embedded assets and OpenAPI.

mod admin;
mod api;
pub mod cli;
pub mod collector;
pub mod link;
pub mod metrics;
pub mod model;
mod openapi;
pub mod proxy;
pub mod schedules;
mod ui;

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::registry::Registry;
use turnstone_actors::auth::{Audience, Authenticator, random_secret};
use turnstone_actors::config::{AuthConfig, RateLimitConfig};
use turnstone_actors::storage::Store;
use turnstone_runtime::supervise::SupervisorHandle;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use self::collector::{Collector, CollectorSettings};
use self::link::Link;
use self::metrics::ConsoleMetrics;
use self::schedules::{Clock, Scheduler, SchedulerSettings};
use crate::web::metrics::HttpMetrics;
use crate::web::service_token::Credentials;
use crate::web::{WebState, auth, ratelimit};

/// What a console is started with.
#[derive(Debug)]
pub struct ConsoleOptions {
    /// The cluster's Redis.
    pub link: Link,
    /// How the console authenticates to nodes (collector polls and the proxy).
    pub credentials: Credentials,
    /// Collector timings.
    pub collector: CollectorSettings,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[ratelimit]`.
    pub ratelimit: RateLimitConfig,
    /// Users, API tokens and schedules (the nodes' database), if any.
    pub store: Option<Store>,
    /// Scheduler timings (it runs when there is a database).
    pub scheduler: SchedulerSettings,
    /// The time the scheduler and the admin API read.
    pub clock: Clock,
}

/// Everything the console's handlers share.
pub struct ConsoleState {
    /// The collector and its model.
    pub collector: Arc<Collector>,
    /// The reverse proxy.
    pub proxy: proxy::Proxy,
    /// Metrics.
    pub metrics: Arc<ConsoleMetrics>,
    /// Every registered metric (the console's, request and supervision metrics).
    pub registry: Registry,
    /// Token checks (audience `turnstone-console`).
    pub auth: Authenticator,
    /// Failed logins.
    pub login_limiter: auth::LoginLimiter,
    /// Requests per client.
    pub ratelimit: ratelimit::RateLimiter,
    /// Start time.
    pub started: Instant,
    /// Users, tokens, chat links and schedules, if the console has a database.
    pub store: Option<Store>,
    /// The scheduler, when there is a database.
    pub scheduler: Option<Arc<Scheduler>>,
    /// The time schedules are computed at.
    pub clock: Clock,
    supervisor: SupervisorHandle,
}

impl std::fmt::Debug for ConsoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleState")
            .field("collector", &self.collector)
            .finish_non_exhaustive()
    }
}

/// Shared console state.
pub type Shared = Arc<ConsoleState>;

impl WebState for ConsoleState {
    fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    fn login_limiter(&self) -> &auth::LoginLimiter {
        &self.login_limiter
    }

    fn rate_limiter(&self) -> &ratelimit::RateLimiter {
        &self.ratelimit
    }

    fn http_metrics(&self) -> &HttpMetrics {
        &self.metrics.http
    }
}

impl ConsoleState {
    /// Starts the collector and builds the state.
    pub async fn start(
        options: ConsoleOptions,
    ) -> Result<Shared, turnstone_runtime::ractor::SpawnErr> {
        let mut registry = Registry::default();
        let metrics = Arc::new(ConsoleMetrics::register(&mut registry));
        let collector = Collector::new(
            options.link,
            options.credentials.clone(),
            options.collector,
            metrics.clone(),
        );
        let scheduler = options.store.clone().map(|store| {
            Scheduler::new(
                collector.clone(),
                store,
                options.scheduler.clone(),
                options.clock.clone(),
            )
        });
        let supervisor =
            collector::start(collector.clone(), scheduler.clone(), &mut registry).await?;
        let secret = options
            .auth
            .jwt_secret
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(random_secret);
        let auth = Authenticator::new(
            options.auth,
            secret,
            Audience::Console,
            options.store.clone(),
        );
        Ok(Arc::new(Self {
            proxy: proxy::Proxy::new(options.credentials, metrics.clone()),
            collector,
            metrics,
            registry,
            auth,
            login_limiter: auth::LoginLimiter::default(),
            ratelimit: ratelimit::RateLimiter::new(&options.ratelimit),
            started: Instant::now(),
            store: options.store,
            scheduler,
            clock: options.clock,
            supervisor,
        }))
    }

    /// Stops the collector.
    pub async fn shutdown(&self) {
        let _ = self
            .supervisor
            .shutdown(Some(std::time::Duration::from_secs(5)))
            .await;
    }
}

/// Every route, with JSON errors and request metrics.
pub fn routes(state: Shared) -> BoxedFilter<(Response,)> {
    let v1 = warp::path("v1").and(warp::path("api"));
    let guarded = v1
        .and(
            api::routes(state.clone())
                .or(admin::routes(state.clone()))
                .unify(),
        )
        .or(proxy::routes(state.clone()))
        .unify()
        .boxed();
    let public = api::public_routes(state.clone())
        .or(ui::routes())
        .unify()
        .or(openapi::routes())
        .unify()
        .boxed();
    crate::web::compose(state, guarded, public)
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    state: Shared,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    crate::web::serve(routes(state), listener, shutdown).await;
}

pub use crate::web::{bind, listen};
