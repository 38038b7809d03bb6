//! What a supervisor supervises and how: strategies, restart kinds, child specifications.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use serde::Serialize;

use super::{ChildRef, Intensity, Observer, SupervisorHandle, SupervisorMsg};
use crate::policy::{Backoff, Capacity, IdleTimeout};

/// Which children restart when one exits and must be restarted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the exited child restarts. Children are independent.
    #[default]
    OneForOne,
    /// Every child is stopped and all restart in start order. Children depend on each other.
    OneForAll,
    /// The exited child and every child started after it restart, in start order. Later
    /// children depend on earlier ones.
    RestForOne,
}

/// When a child is restarted after it exits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Always restarted, whether it failed or stopped normally.
    #[default]
    Permanent,
    /// Restarted only when it fails (panic or error); a normal stop removes it.
    Transient,
    /// Never restarted; removed when it exits.
    Temporary,
}

/// What a child's start function receives.
#[derive(Clone, Debug)]
pub struct ChildContext {
    /// The supervisor to link to (pass to `Actor::spawn_linked`).
    pub supervisor: ActorCell,
    /// The child's id within its supervisor.
    pub id: String,
    /// Incarnation number: 1 on first start, +1 on each restart.
    pub generation: u64,
}

impl ChildContext {
    /// A handle to the supervisor, e.g. to report activity.
    pub fn supervisor_handle(&self) -> SupervisorHandle {
        SupervisorHandle::from_ref(self.supervisor.clone().into())
    }
}

type StartFuture = Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>;
type StartFn = Arc<dyn Fn(ChildContext) -> StartFuture + Send + Sync>;
type DetachFn = Arc<dyn Fn() + Send + Sync>;

/// How to start (and restart) one child.
#[derive(Clone)]
pub struct ChildSpec {
    /// Unique id within the supervisor.
    pub id: String,
    /// When to restart it.
    pub restart: Restart,
    start: StartFn,
    detach: Option<DetachFn>,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// A child started by `start`, which must spawn the actor linked to
    /// [`ChildContext::supervisor`] and return its cell.
    pub fn new<F, Fut>(id: impl Into<String>, restart: Restart, start: F) -> Self
    where
        F: Fn(ChildContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ActorCell, SpawnErr>> + Send + 'static,
    {
        Self {
            id: id.into(),
            restart,
            start: Arc::new(move |ctx| Box::pin(start(ctx))),
            detach: None,
        }
    }

    /// A child actor built by `make` on every (re)start, plus a [`ChildRef`] that follows its
    /// restarts.
    pub fn actor<A, F>(id: impl Into<String>, restart: Restart, make: F) -> (Self, ChildRef<A::Msg>)
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        Self::followed(id, restart, move |ctx: ChildContext| {
            let (actor, args) = make();
            async move {
                let (actor_ref, _) = Actor::spawn_linked(None, actor, args, ctx.supervisor).await?;
                Ok(actor_ref)
            }
        })
    }

    /// A nested supervisor built from `spec`: when it escalates, this supervisor's policy applies.
    pub fn supervisor(
        id: impl Into<String>,
        restart: Restart,
        spec: SupervisorSpec,
        observer: Observer,
    ) -> (Self, ChildRef<SupervisorMsg>) {
        Self::followed(id, restart, move |ctx: ChildContext| {
            let (spec, observer) = (spec.clone(), observer.clone());
            async move {
                let (handle, _) =
                    SupervisorHandle::start_linked(spec, observer, ctx.supervisor).await?;
                Ok(handle.actor().clone())
            }
        })
    }

    /// A child started by `start`, with a [`ChildRef`] set on every start and cleared on exit.
    fn followed<M, F, Fut>(id: impl Into<String>, restart: Restart, start: F) -> (Self, ChildRef<M>)
    where
        M: ractor::Message,
        F: Fn(ChildContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ActorRef<M>, SpawnErr>> + Send + 'static,
    {
        let child_ref = ChildRef::new();
        let (on_start, on_exit) = (child_ref.clone(), child_ref.clone());
        let mut spec = Self::new(id, restart, move |ctx| {
            let started = start(ctx);
            let on_start = on_start.clone();
            async move {
                let actor = started.await?;
                let cell = actor.get_cell();
                on_start.set(Some(actor));
                Ok(cell)
            }
        });
        spec.detach = Some(Arc::new(move || on_exit.set(None)));
        (spec, child_ref)
    }

    pub(crate) async fn start(&self, ctx: ChildContext) -> Result<ActorCell, SpawnErr> {
        (self.start)(ctx).await
    }

    pub(crate) fn detach(&self) {
        if let Some(detach) = &self.detach {
            detach();
        }
    }
}

/// A supervisor's configuration: read-only, so a restarted supervisor starts the same way.
#[derive(Clone, Debug)]
pub struct SupervisorSpec {
    /// Name used in records and logs (not registered globally).
    pub name: String,
    /// Which children restart together.
    pub strategy: Strategy,
    /// Restarts tolerated before escalating.
    pub intensity: Intensity,
    /// Delay schedule between consecutive restarts of a crashing child.
    pub backoff: Backoff,
    /// A child that ran at least this long before exiting restarts with a fresh backoff.
    pub backoff_reset: Duration,
    /// How long a child may take to stop gracefully before it is killed.
    pub shutdown_timeout: Duration,
    /// Maximum number of children, with eviction of idle ones.
    pub capacity: Option<Capacity>,
    /// Stop children idle this long.
    pub idle_timeout: Option<IdleTimeout>,
    /// Idle eviction never takes the number of children below this (e.g. 1: the last
    /// workstream stays).
    pub keep_at_least: usize,
    /// Children started, in order, when the supervisor starts.
    pub children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// One-for-one, 3 restarts in 5 s, default backoff, 5 s shutdown, no capacity limit.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            strategy: Strategy::default(),
            intensity: Intensity::default(),
            backoff: Backoff::default(),
            backoff_reset: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            capacity: None,
            idle_timeout: None,
            keep_at_least: 0,
            children: Vec::new(),
        }
    }

    /// Sets the strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the restart intensity: more than `max_restarts` within `period` escalates.
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Self {
        self.intensity = Intensity {
            max_restarts,
            period,
        };
        self
    }

    /// Sets the backoff between restarts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the graceful shutdown timeout per child.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Limits the number of children.
    pub fn capacity(mut self, capacity: Capacity) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Stops children idle for longer than `timeout`.
    pub fn idle_timeout(mut self, timeout: IdleTimeout) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Idle eviction keeps at least `n` children.
    pub fn keep_at_least(mut self, n: usize) -> Self {
        self.keep_at_least = n;
        self
    }

    /// Adds a child started with the supervisor.
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }
}
