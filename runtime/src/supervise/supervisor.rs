//! The supervisor actor and its handle.

use std::collections::HashSet;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RactorErr, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::record::millis;
use super::{
    ChildContext, ChildSpec, Decision, EvictReason, ExitReason, Observer, Restart,
    RestartIntensity, Strategy, SupervisorSpec, cause_chain,
};
use crate::policy::{ActivityTable, Admission, CapacityError};

/// Requests a supervisor answers.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Start a dynamic child (subject to the capacity policy).
    StartChild(ChildSpec, RpcReplyPort<Result<ActorCell, SupervisorError>>),
    /// Stop a child gracefully and forget it.
    TerminateChild(String, RpcReplyPort<Result<(), SupervisorError>>),
    /// List the children.
    Children(RpcReplyPort<Vec<ChildInfo>>),
    /// A child reports whether it is busy (busy children are never evicted).
    Activity {
        /// The child's id.
        id: String,
        /// Busy now?
        busy: bool,
    },
    /// A restart's backoff has elapsed.
    RestartDue,
    /// Time to look for children idle past the idle timeout.
    IdleSweep,
}

/// A child as its supervisor sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChildInfo {
    /// The child's id.
    pub id: String,
    /// Its restart kind.
    pub restart: Restart,
    /// Its incarnation number.
    pub generation: u64,
    /// Whether it runs now (false while waiting out a restart backoff).
    pub running: bool,
    /// Whether it reported itself busy.
    pub busy: bool,
}

/// Errors of supervisor requests.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The id is taken: pick another or terminate the existing child first.
    #[error("a child with id {0:?} already exists")]
    DuplicateChild(String),
    /// No such child.
    #[error("no child with id {0:?}")]
    NoSuchChild(String),
    /// The child's start function failed (its `pre_start` panicked or returned an error).
    #[error("child {id:?} failed to start: {source}")]
    StartFailed {
        /// The child's id.
        id: String,
        /// What went wrong.
        #[source]
        source: SpawnErr,
    },
    /// No room and nothing idle to evict.
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    /// Too many restarts: the supervisor stopped its children and failed.
    #[error(
        "supervisor {supervisor:?}: restart intensity exceeded ({restarts} restarts within {period:?}) after child {child:?} exited"
    )]
    IntensityExceeded {
        /// The supervisor.
        supervisor: String,
        /// The child whose exit tipped it over.
        child: String,
        /// Restarts counted in the window.
        restarts: u32,
        /// The window.
        period: Duration,
        /// Why the child exited.
        #[source]
        cause: Cause,
    },
    /// The supervisor itself is not running.
    #[error("supervisor is not running: {0}")]
    Unavailable(String),
}

/// A cause chain carried across actor boundaries (each link's message and its source).
#[derive(Debug)]
pub struct Cause {
    message: String,
    source: Option<Box<Cause>>,
}

impl Cause {
    fn from_chain(chain: &[String]) -> Self {
        let mut links = chain.iter().rev();
        let innermost = Cause {
            message: links.next().cloned().unwrap_or_default(),
            source: None,
        };
        links.fold(innermost, |source, message| Cause {
            message: message.clone(),
            source: Some(Box::new(source)),
        })
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Cause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|c| c as &(dyn StdError + 'static))
    }
}

/// A supervisor actor. Its configuration is read-only; a restarted supervisor starts the same
/// children again.
#[derive(Debug)]
pub struct Supervisor {
    spec: SupervisorSpec,
    observer: Observer,
}

impl Supervisor {
    /// A supervisor for `spec` reporting to `observer`.
    pub fn new(spec: SupervisorSpec, observer: Observer) -> Self {
        Self { spec, observer }
    }
}

#[derive(Debug)]
struct PendingRestart {
    due: Instant,
    attempt: u32,
    delay: Duration,
    cause: Vec<String>,
}

#[derive(Debug)]
struct ChildEntry {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    generation: u64,
    started_at: Instant,
    failures: u32,
    pending: Option<PendingRestart>,
}

/// A supervisor's mutable state, rebuilt on restart.
#[derive(Debug)]
pub struct SupervisorState {
    children: Vec<ChildEntry>,
    intensity: RestartIntensity,
    activity: ActivityTable<String>,
    /// Children we are stopping ourselves: their exit is not a failure.
    stopping: HashSet<ActorId>,
}

impl SupervisorState {
    fn position(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|c| c.spec.id == id)
    }
}

impl Supervisor {
    fn record(&self, child: Option<&str>, decision: Decision, cause: Vec<String>) {
        self.observer
            .decide(&self.spec.name, child, decision, cause);
    }

    async fn start_new(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        spec: ChildSpec,
    ) -> Result<ActorCell, SupervisorError> {
        let ctx = ChildContext {
            supervisor: myself.get_cell(),
            id: spec.id.clone(),
            generation: 1,
        };
        let cell = spec
            .start(ctx)
            .await
            .map_err(|source| SupervisorError::StartFailed {
                id: spec.id.clone(),
                source,
            })?;
        let now = Instant::now();
        state.activity.insert(spec.id.clone(), now);
        self.record(Some(&spec.id), Decision::Started, Vec::new());
        state.children.push(ChildEntry {
            spec,
            cell: Some(cell.clone()),
            generation: 1,
            started_at: now,
            failures: 0,
            pending: None,
        });
        Ok(cell)
    }

    /// Stops one child gracefully (killing it after the shutdown timeout); its exit is ignored.
    async fn shut_down(&self, state: &mut SupervisorState, idx: usize, reason: &str) {
        let entry = &mut state.children[idx];
        if let Some(cell) = entry.cell.take() {
            entry.spec.detach();
            state.stopping.insert(cell.get_id());
            let stopped = cell
                .stop_and_wait(Some(reason.to_owned()), Some(self.spec.shutdown_timeout))
                .await;
            match stopped {
                Ok(()) => {}
                Err(RactorErr::Timeout) => {
                    tracing::warn!(
                        supervisor = %self.spec.name, child = %entry.spec.id,
                        timeout = ?self.spec.shutdown_timeout,
                        "child did not stop in time; killing it"
                    );
                    cell.kill();
                }
                // Already gone: its exit notice is still queued behind this request.
                Err(_) => {}
            }
        }
    }

    /// Stops and forgets the child at `idx`.
    async fn remove_child(&self, state: &mut SupervisorState, idx: usize, decision: Decision) {
        self.shut_down(state, idx, &decision_reason(&decision))
            .await;
        let entry = state.children.remove(idx);
        state.activity.remove(&entry.spec.id);
        self.record(Some(&entry.spec.id), decision, Vec::new());
    }

    async fn evict(&self, state: &mut SupervisorState, id: &str, reason: EvictReason) {
        let Some(idx) = state.position(id) else {
            return;
        };
        let idle_ms = state.activity.get(&id.to_owned()).map_or(0, |a| {
            millis(Instant::now().saturating_duration_since(a.last_active))
        });
        self.remove_child(state, idx, Decision::Evicted { reason, idle_ms })
            .await;
    }

    /// Stops every child in reverse start order.
    async fn shut_down_all(&self, state: &mut SupervisorState, reason: &str) {
        for idx in (0..state.children.len()).rev() {
            let was_running = state.children[idx].cell.is_some();
            self.shut_down(state, idx, reason).await;
            if was_running {
                let id = state.children[idx].spec.id.clone();
                self.record(
                    Some(&id),
                    Decision::Stopped {
                        reason: ExitReason::Shutdown(reason.to_owned()),
                    },
                    Vec::new(),
                );
            }
        }
        state.children.clear();
    }

    /// Counts a restart against the intensity; on overflow stops everything and returns the
    /// error the supervisor fails with.
    async fn count_restart(
        &self,
        state: &mut SupervisorState,
        child: &str,
        cause: &[String],
    ) -> Result<(), SupervisorError> {
        if state.intensity.record(Instant::now()) {
            return Ok(());
        }
        let limit = state.intensity.limit();
        let restarts = u32::try_from(state.intensity.recent()).unwrap_or(u32::MAX);
        self.record(
            Some(child),
            Decision::Escalated {
                restarts,
                period_ms: millis(limit.period),
            },
            cause.to_vec(),
        );
        self.shut_down_all(state, "supervisor escalating").await;
        Err(SupervisorError::IntensityExceeded {
            supervisor: self.spec.name.clone(),
            child: child.to_owned(),
            restarts,
            period: limit.period,
            cause: Cause::from_chain(cause),
        })
    }

    async fn on_child_exit(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        id: ActorId,
        reason: ExitReason,
        cause: Vec<String>,
    ) -> Result<(), SupervisorError> {
        if state.stopping.remove(&id) {
            return Ok(());
        }
        let Some(idx) = state
            .children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|cell| cell.get_id() == id))
        else {
            return Ok(());
        };
        let entry = &mut state.children[idx];
        entry.cell = None;
        entry.spec.detach();
        let child_id = entry.spec.id.clone();
        let failed = matches!(reason, ExitReason::Failed(_));
        let restart = match entry.spec.restart {
            Restart::Permanent => true,
            Restart::Transient => failed,
            Restart::Temporary => false,
        };
        if !restart {
            state.children.remove(idx);
            state.activity.remove(&child_id);
            self.record(Some(&child_id), Decision::Stopped { reason }, cause);
            return Ok(());
        }
        self.count_restart(state, &child_id, &cause).await?;

        let now = Instant::now();
        let entry = &mut state.children[idx];
        if now.saturating_duration_since(entry.started_at) >= self.spec.backoff_reset {
            entry.failures = 0;
        }
        let attempt = entry.failures;
        entry.failures = entry.failures.saturating_add(1);
        let delay = self.spec.backoff.delay(attempt);

        let affected: Vec<String> = match self.spec.strategy {
            Strategy::OneForOne => vec![child_id.clone()],
            Strategy::OneForAll => state.children.iter().map(|c| c.spec.id.clone()).collect(),
            Strategy::RestForOne => state.children[idx..]
                .iter()
                .map(|c| c.spec.id.clone())
                .collect(),
        };
        let sibling_reason = format!("restarting with sibling {child_id:?}");
        // Stop the affected siblings, last started first; temporary ones are not restarted.
        for sibling in affected.iter().rev().filter(|s| **s != child_id) {
            let Some(i) = state.position(sibling) else {
                continue;
            };
            if state.children[i].spec.restart == Restart::Temporary {
                let stopped = Decision::Stopped {
                    reason: ExitReason::Shutdown(sibling_reason.clone()),
                };
                self.remove_child(state, i, stopped).await;
            } else {
                self.shut_down(state, i, &sibling_reason).await;
            }
        }
        for entry in state
            .children
            .iter_mut()
            .filter(|c| affected.contains(&c.spec.id))
        {
            let own = entry.spec.id == child_id;
            entry.pending = Some(PendingRestart {
                due: now + delay,
                attempt: if own { attempt } else { 0 },
                delay,
                cause: if own {
                    cause.clone()
                } else {
                    vec![sibling_reason.clone()]
                },
            });
        }
        if delay.is_zero() {
            self.restart_due(myself, state).await
        } else {
            myself.send_after(delay, || SupervisorMsg::RestartDue);
            Ok(())
        }
    }

    /// Restarts, in start order, every child whose backoff has elapsed.
    async fn restart_due(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), SupervisorError> {
        let now = Instant::now();
        for idx in 0..state.children.len() {
            let entry = &mut state.children[idx];
            let due = entry.pending.as_ref().is_some_and(|p| p.due <= now);
            if !due || entry.cell.is_some() {
                continue;
            }
            let ctx = ChildContext {
                supervisor: myself.get_cell(),
                id: entry.spec.id.clone(),
                generation: entry.generation + 1,
            };
            match entry.spec.start(ctx).await {
                Ok(cell) => {
                    let entry = &mut state.children[idx];
                    entry.cell = Some(cell);
                    entry.generation += 1;
                    entry.started_at = Instant::now();
                    let pending = entry.pending.take();
                    let id = entry.spec.id.clone();
                    let generation = entry.generation;
                    state.activity.insert(id.clone(), Instant::now());
                    let (attempt, delay_ms, cause) = pending.map_or((0, 0, Vec::new()), |p| {
                        (p.attempt, millis(p.delay), p.cause)
                    });
                    self.record(
                        Some(&id),
                        Decision::Restarted {
                            generation,
                            attempt,
                            delay_ms,
                        },
                        cause,
                    );
                }
                Err(err) => {
                    // A failed restart counts as another failure of the child.
                    let id = entry.spec.id.clone();
                    let cause = cause_chain(&err);
                    self.count_restart(state, &id, &cause).await?;
                    let entry = &mut state.children[idx];
                    let attempt = entry.failures;
                    entry.failures = entry.failures.saturating_add(1);
                    let delay = self.spec.backoff.delay(attempt);
                    entry.pending = Some(PendingRestart {
                        due: Instant::now() + delay,
                        attempt,
                        delay,
                        cause,
                    });
                    myself.send_after(delay, || SupervisorMsg::RestartDue);
                }
            }
        }
        Ok(())
    }
}

fn decision_reason(decision: &Decision) -> String {
    match decision {
        Decision::Evicted { reason, .. } => match reason {
            EvictReason::Capacity => "evicted: capacity".to_owned(),
            EvictReason::Idle => "evicted: idle timeout".to_owned(),
        },
        Decision::Stopped {
            reason: ExitReason::Shutdown(why),
        } => why.clone(),
        Decision::Started
        | Decision::Restarted { .. }
        | Decision::Stopped { .. }
        | Decision::Escalated { .. }
        | Decision::BreakerTripped(_) => "stopped by supervisor".to_owned(),
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            children: Vec::with_capacity(self.spec.children.len()),
            intensity: RestartIntensity::new(self.spec.intensity),
            activity: ActivityTable::new(),
            stopping: HashSet::new(),
        };
        for spec in &self.spec.children {
            if let Err(err) = self.start_new(&myself, &mut state, spec.clone()).await {
                self.shut_down_all(&mut state, "sibling failed to start")
                    .await;
                return Err(Box::new(err));
            }
        }
        if let Some(idle) = self.spec.idle_timeout {
            myself.send_interval(idle.check_interval(), || SupervisorMsg::IdleSweep);
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.shut_down_all(state, "supervisor stopping").await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::StartChild(spec, reply) => {
                let result = self.admit_and_start(&myself, state, spec).await;
                let _ = reply.send(result);
            }
            SupervisorMsg::TerminateChild(id, reply) => {
                let result = match state.position(&id) {
                    Some(idx) => {
                        self.remove_child(
                            state,
                            idx,
                            Decision::Stopped {
                                reason: ExitReason::Shutdown("terminated on request".into()),
                            },
                        )
                        .await;
                        Ok(())
                    }
                    None => Err(SupervisorError::NoSuchChild(id)),
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::Children(reply) => {
                let infos = state
                    .children
                    .iter()
                    .map(|c| ChildInfo {
                        id: c.spec.id.clone(),
                        restart: c.spec.restart,
                        generation: c.generation,
                        running: c.cell.is_some(),
                        busy: state.activity.get(&c.spec.id).is_some_and(|a| a.busy),
                    })
                    .collect();
                let _ = reply.send(infos);
            }
            SupervisorMsg::Activity { id, busy } => {
                state.activity.set_busy(&id, busy, Instant::now());
            }
            SupervisorMsg::RestartDue => self.restart_due(&myself, state).await?,
            SupervisorMsg::IdleSweep => {
                if let Some(idle) = self.spec.idle_timeout {
                    for id in idle.expired(&state.activity, Instant::now()) {
                        if state.children.len() <= self.spec.keep_at_least {
                            break;
                        }
                        self.evict(state, &id, EvictReason::Idle).await;
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (id, reason, cause) = match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let cause = cause_chain(err.as_ref());
                (cell.get_id(), ExitReason::Failed(err.to_string()), cause)
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell.get_id(), ExitReason::Normal(reason), Vec::new())
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {
                return Ok(());
            }
        };
        self.on_child_exit(&myself, state, id, reason, cause)
            .await
            .map_err(|e| Box::new(e) as ActorProcessingErr)
    }
}

impl Supervisor {
    async fn admit_and_start(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        spec: ChildSpec,
    ) -> Result<ActorCell, SupervisorError> {
        if state.position(&spec.id).is_some() {
            return Err(SupervisorError::DuplicateChild(spec.id));
        }
        if let Some(capacity) = self.spec.capacity {
            match capacity.admit(&state.activity)? {
                Admission::Free => {}
                Admission::Evict(victim) => {
                    self.evict(state, &victim, EvictReason::Capacity).await;
                }
            }
        }
        self.start_new(myself, state, spec).await
    }
}

/// A handle to a running supervisor.
#[derive(Clone, Debug)]
pub struct SupervisorHandle {
    actor: ActorRef<SupervisorMsg>,
}

impl SupervisorHandle {
    /// Starts a top-level supervisor. The join handle completes when it stops (or escalates
    /// with nobody above it).
    pub async fn start(
        spec: SupervisorSpec,
        observer: Observer,
    ) -> Result<(Self, JoinHandle<()>), SpawnErr> {
        let (actor, join) = Actor::spawn(None, Supervisor::new(spec, observer), ()).await?;
        Ok((Self { actor }, join))
    }

    /// Starts a supervisor linked under `parent`, which is told when it escalates.
    pub async fn start_linked(
        spec: SupervisorSpec,
        observer: Observer,
        parent: ActorCell,
    ) -> Result<(Self, JoinHandle<()>), SpawnErr> {
        let (actor, join) =
            Actor::spawn_linked(None, Supervisor::new(spec, observer), (), parent).await?;
        Ok((Self { actor }, join))
    }

    /// Wraps an existing supervisor reference.
    pub fn from_ref(actor: ActorRef<SupervisorMsg>) -> Self {
        Self { actor }
    }

    /// The supervisor actor.
    pub fn actor(&self) -> &ActorRef<SupervisorMsg> {
        &self.actor
    }

    async fn ask<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> SupervisorMsg,
    ) -> Result<T, SupervisorError> {
        match self.actor.call(msg, None).await {
            Ok(CallResult::Success(v)) => Ok(v),
            Ok(CallResult::Timeout) => Err(SupervisorError::Unavailable("timed out".into())),
            Ok(CallResult::SenderError) => Err(SupervisorError::Unavailable(
                "stopped before replying".into(),
            )),
            Err(e) => Err(SupervisorError::Unavailable(e.to_string())),
        }
    }

    /// Starts a dynamic child; with a capacity policy, may evict an idle child first.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<ActorCell, SupervisorError> {
        self.ask(|reply| SupervisorMsg::StartChild(spec, reply))
            .await?
    }

    /// Stops a child gracefully and forgets it.
    pub async fn terminate_child(&self, id: &str) -> Result<(), SupervisorError> {
        let id = id.to_owned();
        self.ask(|reply| SupervisorMsg::TerminateChild(id, reply))
            .await?
    }

    /// The children, in start order.
    pub async fn children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.ask(SupervisorMsg::Children).await
    }

    /// Tells the supervisor whether child `id` is busy.
    pub fn report_activity(&self, id: &str, busy: bool) -> Result<(), SupervisorError> {
        self.actor
            .cast(SupervisorMsg::Activity {
                id: id.to_owned(),
                busy,
            })
            .map_err(|e| SupervisorError::Unavailable(e.to_string()))
    }

    /// Stops the supervisor and its children (in reverse start order) and waits.
    pub async fn shutdown(&self, timeout: Option<Duration>) -> Result<(), SupervisorError> {
        self.actor
            .stop_and_wait(Some("shutdown".into()), timeout)
            .await
            .map_err(|e| SupervisorError::Unavailable(e.to_string()))
    }
}
