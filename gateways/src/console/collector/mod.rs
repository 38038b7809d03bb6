//! The collector (SPEC §3.1) as supervised actors:
//!
//! ```text
//! collector (one-for-one)
//! ├── pollers (one-for-one) ── poller per http(s) node   poller.rs
//! ├── subscriber                                          subscriber.rs
//! └── discovery                                           discovery.rs
//! ```
//!
//! The subscriber follows the cluster channel and applies its events to the model; discovery
//! reads the nodes' heartbeats every 15 s (and when an event names an unknown node) and starts
//! and stops pollers; each poller asks its node for `/v1/api/dashboard` and `/health`. An
//! actor that needs Redis or a node fails when they do not answer, and its supervisor restarts
//! it with backoff; the model — and so the API and the dashboard — stays as it was meanwhile.

mod discovery;
mod poller;
mod subscriber;

use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use turnstone_actors::auth::{Audience, Scope};
use turnstone_actors::mq::Keys;
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::supervise::{
    ChildRef, ChildSpec, Observer, Restart, SupervisorHandle, SupervisorMsg, SupervisorSpec,
};

use self::discovery::{Discovery, DiscoveryMsg};
use self::subscriber::Subscriber;
use super::link::Link;
use super::metrics::ConsoleMetrics;
use super::model::{Applied, ClusterModel};
use super::schedules::Scheduler;
use super::schedules::scheduler::SchedulerActor;
use crate::server::hub::WsLog;
use crate::web::service_token::{Credentials, ServiceToken};

/// Cluster events a dashboard reader may fall behind the live stream before it is dropped
/// (reconnecting, it is replayed what the log's ring still holds).
const EVENT_BUFFER: usize = 4096;

/// The collector's timings and bounds.
#[derive(Clone, Debug)]
pub struct CollectorSettings {
    /// Between two polls of a node (`--poll-interval`, 10 s).
    pub poll_interval: Duration,
    /// Between two discoveries (15 s).
    pub discovery_interval: Duration,
    /// Time for one poll request (5 s).
    pub http_timeout: Duration,
    /// Polls under way at once (50).
    pub max_polls: usize,
    /// A node missing from discoveries this long is lost (one discovery period).
    pub lost_after: Duration,
    /// Largest poll answer read (bytes).
    pub max_answer: usize,
}

impl Default for CollectorSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(10),
            discovery_interval: Duration::from_secs(15),
            http_timeout: Duration::from_secs(5),
            max_polls: 50,
            lost_after: Duration::from_secs(15),
            max_answer: 8 * 1024 * 1024,
        }
    }
}

/// Epoch seconds that follow tokio's clock (paused in tests).
#[derive(Debug)]
struct Clock {
    epoch: f64,
    start: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            epoch,
            start: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> f64 {
        self.epoch + self.start.elapsed().as_secs_f64()
    }
}

/// What the collector's actors share with each other and with the HTTP handlers.
pub struct Collector {
    model: RwLock<ClusterModel>,
    /// Cluster events for dashboard readers (raw events, `node_joined`, `node_lost`).
    pub events: WsLog,
    /// The cluster's Redis.
    pub link: Link,
    /// Its keys.
    pub keys: Keys,
    /// Timings.
    pub settings: CollectorSettings,
    /// Metrics.
    pub metrics: Arc<ConsoleMetrics>,
    http: reqwest::Client,
    token: ServiceToken,
    polls: Semaphore,
    clock: Clock,
    discovery: OnceLock<ChildRef<DiscoveryMsg>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("link", &self.link)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// A collector over `link`, polling with `credentials` (sub `console-collector`, read).
    pub fn new(
        link: Link,
        credentials: Credentials,
        settings: CollectorSettings,
        metrics: Arc<ConsoleMetrics>,
    ) -> Arc<Self> {
        turnstone_actors::provider::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(settings.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let keys = Keys::new(link.prefix());
        Arc::new(Self {
            model: RwLock::new(ClusterModel::default()),
            events: WsLog::new(EVENT_BUFFER),
            link,
            keys,
            polls: Semaphore::new(settings.max_polls.max(1)),
            settings,
            metrics,
            http,
            token: ServiceToken::new(
                credentials,
                "console-collector",
                &[Scope::Read],
                Audience::Server,
            ),
            clock: Clock::new(),
            discovery: OnceLock::new(),
        })
    }

    /// The model, to read.
    pub fn model(&self) -> RwLockReadGuard<'_, ClusterModel> {
        self.model.read().unwrap_or_else(|p| p.into_inner())
    }

    fn model_mut(&self) -> RwLockWriteGuard<'_, ClusterModel> {
        self.model.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Epoch seconds.
    pub fn now(&self) -> f64 {
        self.clock.now()
    }

    /// Hands an event to the dashboard readers.
    fn publish(&self, event: String) {
        self.events.publish(event);
    }

    /// One raw message of the cluster channel.
    fn on_cluster_event(&self, raw: String) {
        self.metrics.cluster_events.inc();
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(&raw) else {
            return;
        };
        let applied = self.model_mut().apply(&event);
        self.publish(raw);
        if applied == Applied::UnknownNode {
            self.nudge_discovery();
        }
    }

    /// Asks discovery to look now (debounced by discovery itself).
    pub fn nudge_discovery(&self) {
        if let Some(d) = self.discovery.get() {
            let _ = d.cast(DiscoveryMsg::Nudge);
        }
    }

    fn announce(&self, kind: &str, node_id: &str) {
        self.publish(json!({"type": kind, "node_id": node_id}).to_string());
    }
}

/// Starts the console's supervision tree: the collector's actors, and the scheduler if given.
pub async fn start(
    collector: Arc<Collector>,
    scheduler: Option<Arc<Scheduler>>,
    registry: &mut Registry,
) -> Result<SupervisorHandle, turnstone_runtime::ractor::SpawnErr> {
    let observer = Observer::new(registry);
    let settings = &collector.settings;
    // Pollers: one per node, each restarted with backoff while its node fails; many nodes
    // may fail at once, so the intensity is not what limits them — the backoff is.
    let restart_backoff = Backoff::exponential(
        Duration::from_secs(1),
        settings.poll_interval.max(Duration::from_secs(30)),
    );
    let mut pollers = SupervisorSpec::new("pollers")
        .intensity(u32::MAX, Duration::from_secs(1))
        .backoff(restart_backoff);
    pollers.backoff_reset = settings.poll_interval * 2 + settings.http_timeout;
    let (pollers_spec, pollers_ref): (ChildSpec, ChildRef<SupervisorMsg>) =
        ChildSpec::supervisor("pollers", Restart::Permanent, pollers, observer.clone());
    let c = collector.clone();
    let (subscriber_spec, _) = ChildSpec::actor("subscriber", Restart::Permanent, move || {
        (Subscriber, c.clone())
    });
    let c = collector.clone();
    let pollers_for_discovery = pollers_ref.clone();
    let (discovery_spec, discovery_ref) =
        ChildSpec::actor("discovery", Restart::Permanent, move || {
            (
                Discovery,
                discovery::DiscoveryArgs {
                    collector: c.clone(),
                    pollers: pollers_for_discovery.clone(),
                },
            )
        });
    // The subscriber nudges discovery through the collector (the reference follows restarts).
    let _ = collector.discovery.set(discovery_ref);
    let mut root = SupervisorSpec::new("collector")
        .intensity(u32::MAX, Duration::from_secs(1))
        .backoff(Backoff::exponential(
            Duration::from_secs(1),
            Duration::from_secs(30),
        ))
        .child(pollers_spec)
        .child(discovery_spec)
        .child(subscriber_spec);
    if let Some(scheduler) = scheduler {
        let (scheduler_spec, _) = ChildSpec::actor("scheduler", Restart::Permanent, move || {
            (SchedulerActor, scheduler.clone())
        });
        root = root.child(scheduler_spec);
    }
    let (handle, _) = SupervisorHandle::start(root, observer).await?;
    Ok(handle)
}
