//! The scheduler (SPEC §3.2): every tick, under a Redis lease so that of several consoles one
//! dispatches, it fires the schedules that are due — a `create_workstream` to the best node,
//! the shared queue, every reachable node or a named one — records a run and moves each
//! schedule to its next firing.
//!
//! A firing is dispatched once however it is interrupted: the push carries a marker named by
//! the schedule and the firing's due time, set in the same atomic step as the push; the run's
//! id is derived from the same names. A console that dies after the push, restarts, or races
//! another finds the marker, records the run it did not record, and moves on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use turnstone_actors::mq::Inbound;
use turnstone_actors::mq::protocol::CreateMsg;
use turnstone_actors::storage::{
    ScheduleChange, Store, StoreError, scheduled_task, scheduled_task_run,
};
use turnstone_runtime::ractor::{Actor, ActorProcessingErr, ActorRef};
use turnstone_runtime::remote::{Transport, TransportError};

use super::rules::{self, Timing};
use crate::console::collector::Collector;

/// Scheduler timings and limits.
#[derive(Clone, Debug)]
pub struct SchedulerSettings {
    /// Between two ticks (15 s).
    pub interval: Duration,
    /// How long a tick's lease holds (60 s).
    pub lease: Duration,
    /// Nodes an `all` schedule fires on at most (20).
    pub fan_out: usize,
    /// Ticks between two prunings of old runs (240: about an hour).
    pub prune_every: u64,
    /// Runs kept (90 days).
    pub retention: chrono::Duration,
    /// How long a firing's marker is kept: far longer than any tick or restart.
    pub marker_ttl: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            lease: Duration::from_secs(60),
            fan_out: 20,
            prune_every: 240,
            retention: chrono::Duration::days(90),
            marker_ttl: Duration::from_secs(2 * 3600),
        }
    }
}

/// The time the scheduler reads: the system's, or one that follows tokio's (paused) clock.
#[derive(Debug, Clone)]
pub enum Clock {
    /// `Utc::now()`.
    System,
    /// `epoch` plus the tokio time since `start`.
    Tokio {
        /// The time at `start`.
        epoch: DateTime<Utc>,
        /// When it was made.
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock at `epoch` now, moving with tokio's time.
    pub fn tokio_at(epoch: DateTime<Utc>) -> Self {
        Clock::Tokio {
            epoch,
            start: tokio::time::Instant::now(),
        }
    }

    /// The time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { epoch, start } => {
                *epoch + chrono::Duration::from_std(start.elapsed()).unwrap_or_default()
            }
        }
    }
}

/// Why a tick stopped.
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    /// Redis failed.
    #[error("cluster unavailable: {0}")]
    Redis(#[from] TransportError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Another console held the lease: nothing was looked at.
    pub skipped: bool,
    /// Schedules due.
    pub due: usize,
    /// Messages pushed by this tick.
    pub dispatched: usize,
    /// Firings another attempt had pushed already (recorded, not pushed again).
    pub already: usize,
    /// Firings that found no node and were recorded failed.
    pub failed: usize,
    /// Firings that found no node and will be tried again.
    pub retrying: usize,
}

/// Where one message of a firing goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Pool,
    Node(String),
}

impl Target {
    fn name(&self) -> &str {
        match self {
            Target::Pool => "pool",
            Target::Node(node) => node,
        }
    }
}

/// The scheduler's work, driven by its actor's ticks (or a test's).
#[derive(Debug)]
pub struct Scheduler {
    collector: Arc<Collector>,
    store: Store,
    settings: SchedulerSettings,
    clock: Clock,
    /// This console's name on the lease.
    owner: String,
    ticks: AtomicU64,
}

fn digest(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}

impl Scheduler {
    /// A scheduler over the collector's view of the cluster and the schedules in `store`.
    pub fn new(
        collector: Arc<Collector>,
        store: Store,
        settings: SchedulerSettings,
        clock: Clock,
    ) -> Arc<Self> {
        Arc::new(Self {
            collector,
            store,
            settings,
            clock,
            owner: uuid::Uuid::new_v4().simple().to_string(),
            ticks: AtomicU64::new(0),
        })
    }

    /// Its timings.
    pub fn settings(&self) -> &SchedulerSettings {
        &self.settings
    }

    /// The time now, by its clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn lease_key(&self) -> String {
        format!("{}:scheduler:lock", self.collector.link.prefix())
    }

    /// One tick at the clock's time.
    pub async fn tick(&self) -> Result<TickReport, TickError> {
        self.tick_at(self.now()).await
    }

    /// One tick at `now`: under the lease, every due schedule fired.
    pub async fn tick_at(&self, now: DateTime<Utc>) -> Result<TickReport, TickError> {
        let transport = self.collector.link.transport().await?;
        let key = self.lease_key();
        if !transport
            .acquire_lease(&key, &self.owner, self.settings.lease)
            .await?
        {
            return Ok(TickReport {
                skipped: true,
                ..TickReport::default()
            });
        }
        let result = self.fire_due(transport.as_ref(), now).await;
        if let Err(e) = transport.release_lease(&key, &self.owner).await {
            tracing::warn!(error = %e, "could not give the scheduler's lease back; it expires");
        }
        let ticks = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        if ticks.is_multiple_of(self.settings.prune_every.max(1)) {
            let cutoff = rules::stored(now - self.settings.retention);
            match self.store.prune_runs(&cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "pruned old schedule runs"),
                Err(e) => tracing::warn!(error = %e, "could not prune schedule runs"),
            }
        }
        result
    }

    async fn fire_due(
        &self,
        transport: &dyn Transport,
        now: DateTime<Utc>,
    ) -> Result<TickReport, TickError> {
        let due = self.store.due_schedules(&rules::stored(now)).await?;
        let mut report = TickReport {
            due: due.len(),
            ..TickReport::default()
        };
        for task in due {
            let span = turnstone_runtime::telemetry::traced(|| {
                tracing::info_span!(
                    "schedule",
                    otel.name = format!("fire schedule {}", task.name),
                    turnstone.schedule.id = %task.task_id,
                    turnstone.schedule.target_mode = %task.target_mode,
                    turnstone.schedule.due = %task.next_run.as_deref().unwrap_or_default(),
                    trace_id = tracing::field::Empty,
                    span_id = tracing::field::Empty,
                )
            });
            turnstone_runtime::telemetry::annotate(&span);
            tracing::Instrument::instrument(self.fire(transport, &task, now, &mut report), span)
                .await?;
        }
        Ok(report)
    }

    fn targets(&self, task: &scheduled_task::Model) -> Vec<Target> {
        match task.target_mode.as_str() {
            "pool" => vec![Target::Pool],
            "auto" => self
                .collector
                .model()
                .best_node()
                .map(Target::Node)
                .into_iter()
                .collect(),
            "all" => {
                let nodes = self
                    .collector
                    .model()
                    .reachable_by_activity(self.settings.fan_out + 1);
                if nodes.len() > self.settings.fan_out {
                    tracing::warn!(
                        task_id = %task.task_id,
                        fan_out = self.settings.fan_out,
                        "schedule reaches more nodes than the fan-out; the busiest are skipped"
                    );
                }
                nodes
                    .into_iter()
                    .take(self.settings.fan_out)
                    .map(Target::Node)
                    .collect()
            }
            node => vec![Target::Node(node.to_owned())],
        }
    }

    async fn fire(
        &self,
        transport: &dyn Transport,
        task: &scheduled_task::Model,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), TickError> {
        let due = task.next_run.clone().unwrap_or_default();
        let targets = self.targets(task);
        if targets.is_empty() {
            let window = chrono::Duration::seconds(i64::from(task.retry_window.max(0)));
            let still_trying = rules::parse_stored(&due).is_some_and(|d| now < d + window);
            if still_trying {
                report.retrying += 1;
                tracing::info!(task_id = %task.task_id, due = %due, "no reachable node; will retry");
                return Ok(());
            }
            let error = if task.target_mode == "all" {
                "No reachable nodes for fan-out"
            } else {
                "No reachable nodes"
            };
            let run = self.run(task, &due, now, ("", ""), ("failed", error));
            self.store.record_run(run).await?;
            report.failed += 1;
            tracing::warn!(task_id = %task.task_id, due = %due, error, "schedule could not fire");
            self.advance(task, &due, now, None).await?;
            return Ok(());
        }
        let per_node = task.target_mode == "all";
        for target in &targets {
            let mut marker = format!(
                "{}:scheduler:fired:{}:{}",
                transport.prefix(),
                task.task_id,
                due
            );
            if per_node {
                marker.push(':');
                marker.push_str(target.name());
            }
            let mut message = Inbound::CreateWorkstream(CreateMsg {
                name: task.name.clone(),
                model: task.model.clone(),
                initial_message: task.initial_message.clone(),
                auto_approve: task.auto_approve != 0,
                auto_approve_tools: rules::split_tools(&task.auto_approve_tools),
                target_node: match target {
                    Target::Pool => String::new(),
                    Target::Node(node) => node.clone(),
                },
                user_id: task.created_by.clone(),
                ..CreateMsg::default()
            });
            let to = match target {
                Target::Pool => self.collector.keys.shared(),
                Target::Node(node) => self.collector.keys.directed(node),
            };
            let (span, payload) =
                turnstone_actors::mq::spans::encode_published(&mut message, |_| {
                    turnstone_actors::mq::spans::destination_name(&to)
                });
            let cid = message.correlation_id().to_owned();
            let recorded = format!("{}|{cid}", target.name());
            let earlier = tracing::Instrument::instrument(
                transport.push_once(&to, payload, &marker, &recorded, self.settings.marker_ttl),
                span,
            )
            .await?;
            let (node, cid) = match &earlier {
                // Pushed by an earlier attempt: record what that attempt pushed.
                Some(value) => match value.split_once('|') {
                    Some((node, cid)) => (node.to_owned(), cid.to_owned()),
                    None => (target.name().to_owned(), value.clone()),
                },
                None => (target.name().to_owned(), cid),
            };
            if earlier.is_some() {
                report.already += 1;
            } else {
                report.dispatched += 1;
            }
            let run = self.run(task, &due, now, (&node, &cid), ("dispatched", ""));
            self.store.record_run(run).await?;
            log_dispatch(task, &node, earlier.is_some());
        }
        self.advance(task, &due, now, Some(now)).await
    }

    /// The run record of a firing: `(node, correlation id)`, `(status, error)`.
    fn run(
        &self,
        task: &scheduled_task::Model,
        due: &str,
        now: DateTime<Utc>,
        (node, cid): (&str, &str),
        (status, error): (&str, &str),
    ) -> scheduled_task_run::Model {
        let target = if task.target_mode == "all" { node } else { "" };
        scheduled_task_run::Model {
            run_id: digest(&[&task.task_id, due, target]),
            task_id: task.task_id.clone(),
            node_id: node.to_owned(),
            ws_id: String::new(),
            correlation_id: cid.to_owned(),
            started: rules::stored(now),
            status: status.to_owned(),
            error: error.to_owned(),
            scheduled_for: due.to_owned(),
        }
    }

    /// Moves the schedule past the firing due at `due`: a one-off is done (disabled); a cron
    /// schedule goes to its first firing after now (firings missed while no console ran are
    /// not made up, as cron does).
    async fn advance(
        &self,
        task: &scheduled_task::Model,
        due: &str,
        now: DateTime<Utc>,
        fired: Option<DateTime<Utc>>,
    ) -> Result<(), TickError> {
        let last_run = fired.map(rules::stored);
        let change = match Timing::parse(
            &task.schedule_type,
            &task.cron_expr,
            &task.at_time,
            &task.timezone,
        ) {
            Ok(timing @ Timing::Cron(..)) => ScheduleChange {
                last_run,
                next_run: timing
                    .next_after(now)
                    .map(rules::stored)
                    .unwrap_or_default(),
                enabled: true,
            },
            Ok(Timing::At(_)) => ScheduleChange {
                last_run,
                next_run: String::new(),
                enabled: false,
            },
            Err(e) => {
                // Written by something that skipped the rules: stop it rather than refire.
                tracing::warn!(task_id = %task.task_id, error = %e, "schedule disabled: invalid timing");
                ScheduleChange {
                    last_run,
                    next_run: String::new(),
                    enabled: false,
                }
            }
        };
        self.store
            .advance_schedule(&task.task_id, due, change)
            .await?;
        Ok(())
    }
}

fn log_dispatch(task: &scheduled_task::Model, node: &str, earlier: bool) {
    if earlier {
        tracing::info!(task_id = %task.task_id, node, "schedule firing was dispatched by an earlier attempt; recorded");
    } else if task.auto_approve != 0 {
        tracing::warn!(
            task_id = %task.task_id,
            node,
            created_by = %task.created_by,
            auto_approve_tools = %task.auto_approve_tools,
            "schedule dispatched with auto-approval"
        );
    } else {
        tracing::info!(task_id = %task.task_id, node, "schedule dispatched");
    }
}

/// The scheduler's actor: ticks every interval. A tick that fails (Redis or the database
/// down) is logged and the next one tries again; nothing is fired twice or lost, since a
/// schedule moves on only after its firing is recorded.
#[derive(Debug)]
pub struct SchedulerActor;

/// Its messages.
#[derive(Debug)]
pub enum SchedulerMsg {
    /// Time to look.
    Tick,
}

/// Its state.
#[derive(Debug)]
pub struct SchedulerState {
    scheduler: Arc<Scheduler>,
    /// Whether the last tick failed (a failure is logged when it starts and when it ends).
    failing: bool,
}

impl Actor for SchedulerActor {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = Arc<Scheduler>;

    async fn pre_start(
        &self,
        myself: ActorRef<SchedulerMsg>,
        scheduler: Arc<Scheduler>,
    ) -> Result<SchedulerState, ActorProcessingErr> {
        myself.send_after(scheduler.settings.interval, || SchedulerMsg::Tick);
        Ok(SchedulerState {
            scheduler,
            failing: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SchedulerMsg>,
        msg: SchedulerMsg,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        let SchedulerMsg::Tick = msg;
        myself.send_after(state.scheduler.settings.interval, || SchedulerMsg::Tick);
        match state.scheduler.tick().await {
            Ok(report) => {
                if state.failing {
                    tracing::info!("scheduler ticks again");
                }
                state.failing = false;
                if report.due > 0 {
                    tracing::debug!(?report, "scheduler tick");
                }
            }
            Err(e) => {
                if !state.failing {
                    tracing::warn!(error = %e, "scheduler tick skipped; retrying every tick");
                }
                state.failing = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_clock_follows_paused_time_and_run_ids_name_their_firing() {
        let epoch: DateTime<Utc> = "2026-12-06T22:00:00Z".parse().unwrap();
        let clock = Clock::tokio_at(epoch);
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(clock.now(), epoch + chrono::Duration::seconds(15));
        let a = digest(&["task", "2026-12-07T00:00:00", ""]);
        assert_eq!(a, digest(&["task", "2026-12-07T00:00:00", ""]));
        assert_ne!(a, digest(&["task", "2026-12-07T00:00:01", ""]));
        // Parts are separated: ("ab", "c") is not ("a", "bc").
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
        assert_eq!(a.len(), 32);
    }
}
