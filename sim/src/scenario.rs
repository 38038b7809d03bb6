//! Scenarios: a load generator that pushes MQ messages onto the cluster's queues as a client
//! would, an observer that follows the global channel for `ws_created`, `turn_complete`,
//! refusals and errors, and the faults (node kills) — all outside the nodes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::time::Instant;
use turnstone_actors::mq::protocol::{CloseMsg, CreateMsg, SendMsg};
use turnstone_actors::mq::{Inbound, Keys};
use turnstone_runtime::remote::{
    MemoryTransport, RedisServer, STREAM_START, Subscription, Transport, TransportError,
};

use crate::cluster::{ClusterError, ClusterSpec, SimCluster, node_id};
use crate::partition::Link;
use crate::report::{self, Host, Report, Throughput, Utilization};

/// Which load and faults a run applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Sends to the shared queue at `mps` for `duration`.
    Steady,
    /// `burst_size` sends at once.
    Burst,
    /// Steady load while `kill_count` nodes are killed every `kill_interval`.
    #[value(name = "node_failure")]
    NodeFailure,
    /// `min(burst_size, nodes)` sends, round-robin to each node's own queue.
    Directed,
    /// Creates workstreams, sends a message to each through its owner, closes half.
    Lifecycle,
    /// Steady load while one node at a time is cut off from the transport every
    /// `kill_interval`, for two heartbeat TTLs, then reconnected.
    Partition,
    /// Steady load while Redis goes down every `kill_interval` for `outage` and comes back
    /// with its data (Redis mode: a private `redis-server` killed and started again; in
    /// memory: every connection fails for the outage). Messages due meanwhile are pushed
    /// when it is back, as a client that holds them would.
    #[value(name = "redis_restart")]
    RedisRestart,
}

impl Scenario {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Burst => "burst",
            Self::NodeFailure => "node_failure",
            Self::Directed => "directed",
            Self::Lifecycle => "lifecycle",
            Self::Partition => "partition",
            Self::RedisRestart => "redis_restart",
        }
    }
}

/// One run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The nodes.
    pub cluster: ClusterSpec,
    /// The scenario.
    pub scenario: Scenario,
    /// How long load is applied.
    pub duration: Duration,
    /// Messages per second (steady, node_failure).
    pub mps: f64,
    /// Messages at once (burst, directed).
    pub burst_size: usize,
    /// Time between node kills (node_failure).
    pub kill_interval: Duration,
    /// Nodes killed each time (node_failure; at most half of them in all).
    pub kill_count: usize,
    /// How long to wait after the load for the last turns.
    pub drain_timeout: Duration,
    /// Width of the timeline's buckets.
    pub bucket: Duration,
    /// Redis URL, to count the commands Redis processed (Redis mode).
    pub redis_url: Option<String>,
    /// How long Redis stays down at each restart (redis_restart).
    pub outage: Duration,
    /// The Redis that redis_restart kills and starts again. Without one, every connection
    /// to the transport is cut for the outage instead (in memory).
    pub redis_server: Option<Arc<Mutex<RedisServer>>>,
}

/// A run failed before it could report.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The runtime of an in-memory run could not be built.
    #[error("runtime: {0}")]
    Runtime(String),
    /// Starting the nodes.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The transport.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The Redis that redis_restart restarts did not come back.
    #[error("redis-server did not start again: {0}")]
    Restart(String),
}

/// Tells a progress display how far the run is.
pub trait Progress: Send + Sync {
    /// A new phase with `total` steps.
    fn phase(&self, name: &str, total: u64);
    /// `done` steps of the phase, with a short status.
    fn update(&self, done: u64, status: &str);
}

/// No progress display.
#[derive(Debug)]
pub struct Quiet;

impl Progress for Quiet {
    fn phase(&self, _: &str, _: u64) {}
    fn update(&self, _: u64, _: &str) {}
}

/// The fields of an outbound event the observer needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Seen {
    #[serde(rename = "type")]
    kind: String,
    ws_id: String,
    correlation_id: String,
    node_id: String,
    status: String,
}

/// What the observer and the load generator recorded.
#[derive(Debug, Default)]
struct Record {
    /// Send correlation id → injection time (seconds since start).
    sends: HashMap<String, f64>,
    /// Sends already answered (completed or refused).
    answered: HashSet<String>,
    /// Injection times of every message.
    injected: Vec<f64>,
    /// (completion time, latency).
    completed: Vec<(f64, f64)>,
    rejections: u64,
    errors: u64,
    duplicates: u64,
    /// Create correlation id → (workstream, node).
    created: HashMap<String, (String, String)>,
    /// Workstream → node.
    owner: HashMap<String, String>,
    turns_per_node: BTreeMap<String, u64>,
    /// Times the observer may have missed events: its subscription dropped (Redis restarting)
    /// and was renewed, or it had no room for what was published while the process was too
    /// busy to read.
    gaps: u64,
}

#[derive(Clone)]
struct Recorder {
    start: Instant,
    /// Unix time of `start` in milliseconds (Redis stream ids carry Unix milliseconds).
    epoch_ms: u64,
    record: Arc<Mutex<Record>>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// An event seen live on the global channel.
    fn observe(&self, payload: &str) {
        self.take(payload, self.now(), false);
    }

    /// An event read back from a durable stream at `at` (it may have been seen already: only
    /// what can be recognised twice counts).
    fn recover(&self, payload: &str, at: f64) {
        self.take(payload, at, true);
    }

    fn take(&self, payload: &str, now: f64, replayed: bool) {
        // Most of the global channel is state changes, which nothing below counts: they are
        // skipped unread (an event names its type first).
        if payload.starts_with("{\"type\":\"state_change\"") {
            return;
        }
        let Ok(seen) = serde_json::from_str::<Seen>(payload) else {
            return;
        };
        let mut r = self.lock();
        match seen.kind.as_str() {
            "ws_created" => {
                r.owner.insert(seen.ws_id.clone(), seen.node_id.clone());
                r.created
                    .insert(seen.correlation_id, (seen.ws_id, seen.node_id));
            }
            "turn_complete" => {
                let Some(sent) = r.sends.get(&seen.correlation_id).copied() else {
                    return;
                };
                if !r.answered.insert(seen.correlation_id) {
                    if !replayed {
                        r.duplicates += 1;
                    }
                    return;
                }
                r.completed.push((now, (now - sent).max(0.0)));
                let node = r.owner.get(&seen.ws_id).cloned().unwrap_or_default();
                *r.turns_per_node.entry(node).or_default() += 1;
            }
            "ack"
                if seen.status == "error"
                    && r.sends.contains_key(&seen.correlation_id)
                    && r.answered.insert(seen.correlation_id) =>
            {
                r.rejections += 1;
            }
            "error" if !replayed => r.errors += 1,
            _ => {}
        }
    }

    /// Seconds since start of a Redis stream id (`{unix ms}-{n}`).
    fn at_entry(&self, id: &str) -> Option<f64> {
        let ms: u64 = id.split('-').next()?.parse().ok()?;
        Some((ms as f64 - self.epoch_ms as f64) / 1000.0)
    }

    fn outstanding(&self) -> usize {
        let r = self.lock();
        r.sends.len() - r.answered.len()
    }
}

/// Attempts at a push before the run fails (50 ms apart).
const PUSH_ATTEMPTS: u32 = 200;

/// Pushes the load generator has under way at once when it is behind its rate.
const PUSHES_AT_ONCE: u64 = 256;

/// Pushes messages as a client would.
struct Injector {
    transport: Arc<dyn Transport>,
    keys: Keys,
    recorder: Recorder,
    next: u64,
}

impl Injector {
    fn cid(&mut self) -> String {
        self.next += 1;
        format!("{:012x}", self.next)
    }

    async fn push(&self, to: Option<&str>, mut message: Inbound) -> Result<(), SimError> {
        let at = to.map_or_else(|| self.keys.shared(), |node| self.keys.directed(node));
        let payload = message.encode();
        // Redis may be coming back from a restart: retry as a client would.
        let mut failures = 0u32;
        while let Err(e) = self.transport.push(&at, payload.clone()).await {
            failures += 1;
            if failures >= PUSH_ATTEMPTS {
                return Err(e.into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let now = self.recorder.now();
        self.recorder.lock().injected.push(now);
        Ok(())
    }

    /// A send: to a new workstream (no `ws_id`), or to `ws_id` through `node`'s queue.
    async fn send(&mut self, ws_id: &str, to: Option<&str>) -> Result<(), SimError> {
        let message = self.new_send(ws_id, to);
        self.push(to, message).await
    }

    /// `count` sends to new workstreams, pushed [`PUSHES_AT_ONCE`] at a time as many clients
    /// would: one push after another, each waiting for its round trip, could not keep up with
    /// a thousand nodes (the load generator, not the cluster, set the pace).
    async fn send_many(&mut self, count: u64) -> Result<(), SimError> {
        let mut left = count;
        while left > 0 {
            let n = left.min(PUSHES_AT_ONCE);
            let messages: Vec<Inbound> = (0..n).map(|_| self.new_send("", None)).collect();
            futures::future::try_join_all(messages.into_iter().map(|m| self.push(None, m))).await?;
            left -= n;
        }
        Ok(())
    }

    /// A send message, its send time recorded.
    fn new_send(&mut self, ws_id: &str, to: Option<&str>) -> Inbound {
        let cid = self.cid();
        let message = Inbound::Send(SendMsg {
            correlation_id: cid.clone(),
            ws_id: ws_id.to_owned(),
            message: format!("simulated message {}", self.next),
            auto_approve: true,
            target_node: to.unwrap_or("").to_owned(),
            // It follows events on the global channel, so no node need hold a new
            // workstream's first events for it.
            reads_stream: true,
            ..SendMsg::default()
        });
        let now = self.recorder.now();
        self.recorder.lock().sends.insert(cid, now);
        message
    }

    async fn create(&mut self) -> Result<String, SimError> {
        let cid = self.cid();
        let message = Inbound::CreateWorkstream(CreateMsg {
            correlation_id: cid.clone(),
            name: format!("sim-ws-{}", self.next),
            auto_approve: true,
            ..CreateMsg::default()
        });
        self.push(None, message).await?;
        Ok(cid)
    }

    async fn close(&mut self, ws_id: &str, owner: &str) -> Result<(), SimError> {
        let message = Inbound::CloseWorkstream(CloseMsg {
            correlation_id: self.cid(),
            ws_id: ws_id.to_owned(),
            ..CloseMsg::default()
        });
        self.push(Some(owner), message).await
    }
}

fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses): utime is the 14th overall.
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let hz = rustix::param::clock_ticks_per_second() as f64;
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / hz.max(1.0),
        _ => 0.0,
    }
}

/// Counts the commands Redis processed during the run, across its restarts (each restart
/// starts its count from zero).
struct Commands {
    url: Option<String>,
    /// Counted before the last restart.
    counted: u64,
    /// Redis's count when counting (re)started.
    since: Option<u64>,
}

impl Commands {
    async fn start(url: Option<String>) -> Self {
        let since = redis_commands(url.as_deref()).await;
        Self {
            url,
            counted: 0,
            since,
        }
    }

    /// Before Redis stops.
    async fn pause(&mut self) {
        if let (Some(since), Some(now)) = (self.since, redis_commands(self.url.as_deref()).await) {
            self.counted += now.saturating_sub(since);
        }
        self.since = None;
    }

    /// After it is back.
    async fn resume(&mut self) {
        self.since = redis_commands(self.url.as_deref()).await;
    }

    async fn total(&mut self) -> Option<u64> {
        self.url.as_ref()?;
        self.pause().await;
        Some(self.counted)
    }
}

/// Takes Redis down: kills the run's redis-server, or cuts every connection in memory.
async fn redis_down(
    config: &SimConfig,
    cluster: &SimCluster,
    client: &Link,
    commands: &mut Commands,
) {
    commands.pause().await;
    match &config.redis_server {
        Some(server) => server.lock().unwrap_or_else(PoisonError::into_inner).kill(),
        None => {
            cluster.cut_all().await;
            client.cut().await;
        }
    }
    tracing::info!("redis down");
}

/// Brings Redis back.
async fn redis_up(
    config: &SimConfig,
    cluster: &SimCluster,
    client: &Link,
    commands: &mut Commands,
) -> Result<(), SimError> {
    match &config.redis_server {
        Some(server) => {
            let server = server.clone();
            tokio::task::spawn_blocking(move || {
                server.lock().unwrap_or_else(PoisonError::into_inner).up()
            })
            .await
            .map_err(|e| SimError::Restart(e.to_string()))?
            .map_err(|e| SimError::Restart(e.to_string()))?;
        }
        None => {
            cluster.heal_all();
            client.heal();
        }
    }
    commands.resume().await;
    tracing::info!("redis back");
    Ok(())
}

/// Follows the global channel. When the subscription drops (Redis restarting) it subscribes
/// again and reads back the `ws_created` events the global stream kept meanwhile. Events its
/// buffer had no room for (the process too busy to read them in time) are counted, and the
/// drain reads them back from the streams.
async fn observe(
    transport: Arc<dyn Transport>,
    keys: Keys,
    recorder: Recorder,
    mut events: Subscription,
) {
    loop {
        let mut missed = 0;
        while let Some(payload) = events.next().await {
            recorder.observe(&payload);
            if events.missed() > missed {
                missed = events.missed();
                recorder.lock().gaps += 1;
            }
        }
        let mut pause = Duration::from_millis(10);
        events = loop {
            match transport.subscribe(&keys.global_channel()).await {
                Ok(events) => break events,
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
            }
        };
        recorder.lock().gaps += 1;
        recover_created(&*transport, &keys, &recorder).await;
    }
}

/// Reads back the `ws_created` events the global stream keeps.
async fn recover_created(transport: &dyn Transport, keys: &Keys, recorder: &Recorder) {
    let kept = transport
        .read_streams(
            &[(keys.global_stream(), STREAM_START.to_owned())],
            Duration::from_millis(1),
        )
        .await
        .unwrap_or_default();
    for entry in kept {
        let at = recorder
            .at_entry(&entry.id)
            .unwrap_or_else(|| recorder.now());
        recorder.recover(&entry.payload, at);
    }
}

/// Reads the `turn_complete` of sends still unanswered from their workstreams' streams: they
/// ended while the observer was not subscribed.
async fn recover_turns(transport: &dyn Transport, keys: &Keys, recorder: &Recorder) {
    let streams: Vec<(String, String)> = {
        let r = recorder.lock();
        let unanswered: HashSet<&String> = r
            .sends
            .keys()
            .filter(|cid| !r.answered.contains(*cid))
            .collect();
        let ws: HashSet<&String> = unanswered
            .iter()
            .filter_map(|cid| r.created.get(*cid).map(|(ws, _)| ws))
            .collect();
        ws.into_iter()
            .map(|ws| (keys.ws_stream(ws), STREAM_START.to_owned()))
            .collect()
    };
    for chunk in streams.chunks(64) {
        let Ok(entries) = transport
            .read_streams(chunk, Duration::from_millis(1))
            .await
        else {
            continue;
        };
        for entry in entries {
            if let Some(at) = recorder.at_entry(&entry.id) {
                recorder.recover(&entry.payload, at);
            }
        }
    }
}

async fn redis_commands(url: Option<&str>) -> Option<u64> {
    let client = redis::Client::open(url?).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Sleeps until `at` seconds after the recorder's start.
async fn until(recorder: &Recorder, at: f64) {
    tokio::time::sleep_until(recorder.start + Duration::from_secs_f64(at.max(0.0))).await;
}

/// Runs `config` on the in-memory transport, on virtual time, in a runtime of its own (one
/// thread, paused clock): simulated minutes pass in seconds, and the same configuration and
/// seed give the same report, except its `host` measurements, byte for byte.
pub fn run_in_memory(config: &SimConfig, progress: &dyn Progress) -> Result<Report, SimError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| SimError::Runtime(e.to_string()))?;
    let transport = Arc::new(MemoryTransport::new());
    let report = runtime.block_on(run(config, transport, progress));
    // Tasks of killed nodes that are still sleeping go with the runtime.
    runtime.shutdown_background();
    let mut report = report?;
    report.transport = "memory".into();
    Ok(report)
}

/// Starts the cluster on `transport`, runs the scenario and reports. On the in-memory
/// transport, [`run_in_memory`] gives reproducible reports.
pub async fn run(
    config: &SimConfig,
    transport: Arc<dyn Transport>,
    progress: &dyn Progress,
) -> Result<Report, SimError> {
    let wall = std::time::Instant::now();
    let keys = Keys::new(transport.prefix());
    let events = transport.subscribe(&keys.global_channel()).await?;

    progress.phase("starting nodes", config.cluster.nodes as u64);
    let started = std::sync::atomic::AtomicU64::new(0);
    let on_started = || {
        let n = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress.update(n, "");
    };
    let mut cluster = SimCluster::start(&config.cluster, transport.clone(), &on_started).await?;
    let startup_seconds = wall.elapsed().as_secs_f64();
    let ids: Vec<String> = (0..config.cluster.nodes).map(node_id).collect();

    let recorder = Recorder {
        start: Instant::now(),
        epoch_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        record: Arc::default(),
    };
    let observer = tokio::spawn(observe(
        transport.clone(),
        keys.clone(),
        recorder.clone(),
        events,
    ));
    let mut commands = Commands::start(config.redis_url.clone()).await;
    let cpu_before = cpu_seconds();
    // The load generator's own connection, cut with the nodes' when Redis is down in memory.
    let client = Link::new(transport.clone(), "sim-client");
    let mut injector = Injector {
        transport: client.clone(),
        keys: keys.clone(),
        recorder: recorder.clone(),
        next: 0,
    };
    let mut rng = StdRng::seed_from_u64(config.cluster.seed ^ 0x5EED);
    let mut kills = 0u64;
    let mut partitions = 0u64;
    let mut restarts = 0u64;
    let kept = Kept {
        transport: transport.as_ref(),
        keys: &keys,
    };
    let duration = config.duration.as_secs_f64();

    progress.phase(config.scenario.name(), config.duration.as_secs().max(1));
    match config.scenario {
        Scenario::Steady | Scenario::NodeFailure | Scenario::Partition | Scenario::RedisRestart => {
            let mps = config.mps.max(1e-6);
            let total = (duration * mps).floor() as u64;
            let kill_every = config.kill_interval.as_secs_f64().max(1e-3);
            let kill_budget = config.cluster.nodes / 2;
            let mut next_kill = if config.scenario == Scenario::Steady {
                f64::INFINITY
            } else {
                kill_every
            };
            let cut_for = 2.0 * config.cluster.heartbeat_ttl.as_secs_f64();
            // Partitioned nodes and when they reconnect.
            let mut cut: Vec<(usize, f64)> = Vec::new();
            // When Redis, down, comes back.
            let mut down_until: Option<f64> = None;
            let mut sent = 0u64;
            while sent < total {
                let now = recorder.now();
                if down_until.is_some_and(|t| t <= now) {
                    down_until = None;
                    redis_up(config, &cluster, &client, &mut commands).await?;
                }
                // Everything due by now goes out, so the rate holds whatever the timer's grain
                // (and what fell due while Redis was down goes out when it is back).
                let due = ((now * mps).floor() as u64 + 1).min(total);
                if sent < due && down_until.is_none() {
                    injector.send_many(due - sent).await?;
                    sent = due;
                }
                cut.retain(|(node, until)| {
                    let healed = *until <= now;
                    if healed {
                        cluster.heal(*node);
                    }
                    !healed
                });
                if config.scenario == Scenario::RedisRestart && now >= next_kill {
                    next_kill += kill_every;
                    if down_until.is_none() {
                        redis_down(config, &cluster, &client, &mut commands).await;
                        restarts += 1;
                        down_until = Some(now + config.outage.as_secs_f64());
                    }
                } else if config.scenario == Scenario::Partition && now >= next_kill {
                    next_kill += kill_every;
                    let whole: Vec<usize> = (0..cluster.nodes().len())
                        .filter(|i| !cut.iter().any(|(c, _)| c == i))
                        .collect();
                    if whole.len() > 1 {
                        let victim = whole[rng.random_range(0..whole.len())];
                        if cluster.partition(victim).await {
                            partitions += 1;
                            cut.push((victim, now + cut_for));
                        }
                    }
                } else if now >= next_kill {
                    next_kill += kill_every;
                    for _ in 0..config.kill_count {
                        if kills as usize >= kill_budget {
                            break;
                        }
                        let alive: Vec<usize> = (0..cluster.nodes().len())
                            .filter(|i| cluster.nodes()[*i].alive())
                            .collect();
                        if alive.len() <= 1 {
                            break;
                        }
                        let victim = alive[rng.random_range(0..alive.len())];
                        if cluster.kill(victim).await {
                            kills += 1;
                        }
                    }
                }
                progress.update(now as u64, &format!("{sent} sent"));
                let next_due = (sent as f64 / mps).max(now + 0.001);
                let next_heal = cut
                    .iter()
                    .map(|(_, t)| *t)
                    .chain(down_until)
                    .fold(f64::INFINITY, f64::min);
                until(&recorder, next_due.min(next_kill).min(next_heal)).await;
            }
            // Whatever is still cut off reconnects for the drain.
            for (node, _) in cut {
                cluster.heal(node);
            }
            if let Some(t) = down_until {
                until(&recorder, t).await;
                redis_up(config, &cluster, &client, &mut commands).await?;
            }
        }
        Scenario::Burst => injector.send_many(config.burst_size as u64).await?,
        Scenario::Directed => {
            let alive: Vec<String> = cluster.nodes().iter().map(|n| n.id.clone()).collect();
            for i in 0..config.burst_size.min(alive.len()) {
                let to = alive[i % alive.len()].clone();
                injector.send("", Some(&to)).await?;
            }
        }
        Scenario::Lifecycle => {
            let n = (2 * config.cluster.nodes).min(50);
            let mut creates = Vec::new();
            for i in 0..n {
                creates.push(injector.create().await?);
                until(&recorder, 0.05 * (i + 1) as f64).await;
            }
            let settle = recorder.now() + 3.0;
            until(&recorder, settle).await;
            let made: Vec<(String, String)> = {
                let r = recorder.lock();
                creates
                    .iter()
                    .filter_map(|cid| r.created.get(cid).cloned())
                    .collect()
            };
            let begin = recorder.now();
            for (i, (ws_id, owner)) in made.iter().enumerate() {
                injector.send(ws_id, Some(owner)).await?;
                until(&recorder, begin + 0.1 * (i + 1) as f64).await;
            }
            drain(config, &recorder, progress, &kept).await;
            for (ws_id, owner) in made.iter().take(made.len() / 2) {
                injector.close(ws_id, owner).await?;
            }
            // The closes are answered on their workstreams' channels: wait for the queues.
            let deadline = Instant::now() + config.drain_timeout;
            while backlog(transport.as_ref(), &keys, &ids).await? > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drain(config, &recorder, progress, &kept).await;

    // What is left where.
    let backlog = backlog(transport.as_ref(), &keys, &ids).await?;
    let mut in_flight = 0;
    for id in &ids {
        in_flight += transport.in_flight_len(id).await?;
    }
    let dead_letters = transport.dead_letters(usize::MAX).await?.len();
    let cpu = cpu_seconds() - cpu_before;
    let commands = commands.total().await;
    // Open workstreams of the nodes still alive, at the end.
    let live: Vec<usize> = cluster
        .nodes()
        .iter()
        .filter(|n| n.alive())
        .map(|n| n.workstreams())
        .collect();
    cluster.shutdown().await;
    observer.abort();

    let r = recorder.lock();
    let turns = r.completed.len() as u64;
    let unanswered = (r.sends.len() - r.answered.len()) as u64;
    let first = r.injected.first().copied().unwrap_or(0.0);
    let last = r.completed.iter().map(|(t, _)| *t).fold(first, f64::max);
    let window = last - first;
    let per_sec = |n: f64| {
        if window > 0.0 {
            report::round(n / window)
        } else {
            0.0
        }
    };
    let mut latencies: Vec<f64> = r.completed.iter().map(|(_, l)| *l).collect();
    let (min_turns, max_turns, with_turns) = report::spread(&r.turns_per_node, &ids);
    let report = Report {
        scenario: config.scenario.name().to_owned(),
        transport: String::new(),
        nodes: config.cluster.nodes,
        seed: config.cluster.seed,
        messages_injected: r.injected.len() as u64,
        total_turns: turns,
        rejections: r.rejections,
        total_errors: r.errors,
        backlog: backlog as u64,
        in_flight: in_flight as u64,
        dead_letters: dead_letters as u64,
        lost_messages: unanswered.saturating_sub((backlog + in_flight) as u64),
        duplicate_turns: r.duplicates,
        duration_seconds: report::round(window),
        throughput: Throughput {
            messages_per_sec: per_sec(r.injected.len() as f64),
            turns_per_sec: per_sec(turns as f64),
        },
        steady_state: report::steady_state(
            &r.injected,
            &r.sends.values().copied().collect::<Vec<_>>(),
            &r.completed,
        ),
        latency: report::latency(&mut latencies),
        utilization: Utilization {
            mean_ws_per_node: if live.is_empty() {
                0.0
            } else {
                report::round(live.iter().sum::<usize>() as f64 / live.len() as f64)
            },
            max_ws_per_node: live.iter().copied().max().unwrap_or(0),
            nodes_with_zero_ws: live.iter().filter(|c| **c == 0).count(),
            min_turns_per_node: min_turns,
            max_turns_per_node: max_turns,
            nodes_with_turns: with_turns,
        },
        node_kills: kills,
        partitions,
        redis_restarts: restarts,
        turns_per_node: r.turns_per_node.clone(),
        timeline: report::timeline(&r.injected, &r.completed, config.bucket.as_secs_f64()),
        host: Host {
            wall_seconds: wall.elapsed().as_secs_f64(),
            startup_seconds,
            cpu_seconds: cpu,
            cpu_ms_per_turn: if turns > 0 {
                cpu * 1000.0 / turns as f64
            } else {
                0.0
            },
            redis_commands: commands,
            redis_commands_per_turn: commands.map(|c| {
                if turns > 0 {
                    c as f64 / turns as f64
                } else {
                    0.0
                }
            }),
        },
    };
    Ok(report)
}

/// Messages waiting in the shared queue and the nodes' own queues.
async fn backlog(
    transport: &dyn Transport,
    keys: &Keys,
    nodes: &[String],
) -> Result<usize, TransportError> {
    let mut waiting = transport.queue_len(&keys.shared()).await?;
    for id in nodes {
        waiting += transport.queue_len(&keys.directed(id)).await?;
    }
    Ok(waiting)
}

/// Waits until every send is answered, or the drain timeout. Once a second, if the observer
/// may have missed events (Redis restarting, or its subscription full), the workstreams
/// created and the turns that ended meanwhile are read back from the streams (before those
/// streams expire).
async fn drain(config: &SimConfig, recorder: &Recorder, progress: &dyn Progress, kept: &Kept<'_>) {
    let deadline = Instant::now() + config.drain_timeout;
    progress.phase("draining", recorder.outstanding() as u64);
    let total = recorder.outstanding() as u64;
    let mut next_recovery = Instant::now();
    while recorder.outstanding() > 0 && Instant::now() < deadline {
        if recorder.lock().gaps > 0 && Instant::now() >= next_recovery {
            recover_created(kept.transport, kept.keys, recorder).await;
            recover_turns(kept.transport, kept.keys, recorder).await;
            next_recovery = Instant::now() + Duration::from_secs(1);
            continue;
        }
        progress.update(
            total.saturating_sub(recorder.outstanding() as u64),
            "waiting for the last turns",
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where the events the observer may have missed are kept.
struct Kept<'a> {
    transport: &'a dyn Transport,
    keys: &'a Keys,
}
