//! The workstream manager: a supervisor of workstream actors with Turnstone's capacity and idle
//! policies — at most `max_workstreams`, the least recently active idle one evicted to make room,
//! idle ones closed after the idle timeout, busy ones never, and the last one never.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorCell, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;
use turnstone_runtime::policy::{Capacity, CapacityError, IdleTimeout};
use turnstone_runtime::supervise::{
    ChildRef, ChildSpec, Decision, EvictReason, Observer, Restart, SupervisorError,
    SupervisorHandle, SupervisorSpec,
};

use super::{
    EventChannel, GlobalEvent, WorkstreamActor, WorkstreamDeps, WorkstreamError, WorkstreamMsg,
    WorkstreamOptions, WorkstreamSpec, WorkstreamStatus, WsEvent,
};
use crate::provider::ChatMessage;

/// Events buffered per workstream before a subscriber that lags further loses the oldest (it is
/// told how many). The ring is allocated per workstream, so it dominates an idle one's memory.
const EVENT_BUFFER: usize = 512;

/// Manager errors, worded as Turnstone's API answers.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// Every workstream is busy.
    #[error("All {0} workstreams are active")]
    AllActive(usize),
    /// No such workstream.
    #[error("Unknown workstream")]
    Unknown,
    /// The last workstream stays.
    #[error("Cannot close last workstream")]
    LastWorkstream,
    /// The workstream is not running (restarting or gone).
    #[error("workstream {0} is not running")]
    NotRunning(String),
    /// The workstream refused.
    #[error(transparent)]
    Workstream(#[from] WorkstreamError),
    /// The supervisor failed.
    #[error("workstream supervisor: {0}")]
    Supervisor(String),
    /// Resuming needs the database.
    #[error("resuming a session needs a database")]
    NoStorage,
    /// The session to resume cannot be found or loaded.
    #[error(transparent)]
    Storage(#[from] crate::storage::StoreError),
}

#[derive(Clone, Debug)]
struct Entry {
    ws_id: String,
    name: String,
    session_id: String,
    actor: ChildRef<WorkstreamMsg>,
    events: EventChannel,
}

/// A handle to one workstream; it follows restarts.
#[derive(Clone, Debug)]
pub struct WorkstreamHandle {
    entry: Entry,
}

impl WorkstreamHandle {
    /// The workstream's id.
    pub fn ws_id(&self) -> &str {
        &self.entry.ws_id
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// Its session id.
    pub fn session_id(&self) -> &str {
        &self.entry.session_id
    }

    /// Its events from now on (any number of subscribers).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WsEvent>> {
        self.entry.events.subscribe()
    }

    /// Returns once everything it queued for the database so far has landed (at once without
    /// a database, or if it stopped).
    pub async fn persisted(&self) {
        let _ = self.ask(WorkstreamMsg::Persisted).await;
    }

    /// Calls `tap` with each of its events from now on, as they are sent, until it returns
    /// false ([`EventChannel::tap`]).
    pub fn tap(&self, tap: impl FnMut(&WsEvent) -> bool + Send + 'static) {
        self.entry.events.tap(tap);
    }

    fn actor(&self) -> Result<ActorRef<WorkstreamMsg>, ManagerError> {
        self.entry
            .actor
            .get()
            .ok_or_else(|| ManagerError::NotRunning(self.entry.ws_id.clone()))
    }

    async fn ask<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> WorkstreamMsg,
    ) -> Result<T, ManagerError> {
        match self.actor()?.call(msg, None).await {
            Ok(CallResult::Success(v)) => Ok(v),
            Ok(_) | Err(_) => Err(ManagerError::NotRunning(self.entry.ws_id.clone())),
        }
    }

    /// Starts a turn.
    pub async fn send(&self, message: &str) -> Result<(), ManagerError> {
        let message = message.to_owned();
        let trace = turnstone_runtime::remote::TraceContext::current();
        Ok(self
            .ask(|r| WorkstreamMsg::Send(message, trace, r))
            .await??)
    }

    /// Re-runs the turn of `message` if the conversation ends with it unanswered.
    pub async fn resume_turn(&self, message: &str) -> Result<bool, ManagerError> {
        let message = message.to_owned();
        let trace = turnstone_runtime::remote::TraceContext::current();
        self.ask(|r| WorkstreamMsg::ResumeTurn(message, trace, r))
            .await
    }

    /// Answers the pending approval.
    pub async fn approve(
        &self,
        approved: bool,
        feedback: Option<String>,
        always: bool,
    ) -> Result<(), ManagerError> {
        Ok(self
            .ask(|r| WorkstreamMsg::Approve {
                approved,
                feedback,
                always,
                reply: Some(r),
            })
            .await??)
    }

    /// Answers the pending plan review.
    pub async fn plan_feedback(&self, feedback: &str) -> Result<(), ManagerError> {
        let feedback = feedback.to_owned();
        Ok(self
            .ask(|r| WorkstreamMsg::PlanFeedback(feedback, Some(r)))
            .await??)
    }

    /// Cancels the running turn.
    pub fn cancel(&self) -> Result<(), ManagerError> {
        self.actor()?
            .cast(WorkstreamMsg::Cancel)
            .map_err(|_| ManagerError::NotRunning(self.entry.ws_id.clone()))
    }

    /// Switches the model alias.
    pub async fn set_model(&self, alias: &str) -> Result<(), ManagerError> {
        let alias = alias.to_owned();
        Ok(self.ask(|r| WorkstreamMsg::SetModel(alias, r)).await??)
    }

    /// Summarises older messages; returns when done.
    pub async fn compact(&self) -> Result<(), ManagerError> {
        Ok(self.ask(WorkstreamMsg::Compact).await??)
    }

    /// Changes a setting.
    pub async fn configure(&self, setting: super::Setting) -> Result<(), ManagerError> {
        Ok(self.ask(|r| WorkstreamMsg::Configure(setting, r)).await??)
    }

    /// Current settings.
    pub async fn settings(&self) -> Result<super::SessionSettings, ManagerError> {
        self.ask(WorkstreamMsg::Settings).await
    }

    /// Current status (answered mid-turn).
    pub async fn status(&self) -> Result<WorkstreamStatus, ManagerError> {
        self.ask(WorkstreamMsg::Status).await
    }

    /// The conversation so far.
    pub async fn history(&self) -> Result<Vec<ChatMessage>, ManagerError> {
        self.ask(WorkstreamMsg::History).await
    }
}

/// The manager.
#[derive(Clone, Debug)]
pub struct WorkstreamManager {
    supervisor: SupervisorHandle,
    supervisor_name: String,
    deps: WorkstreamDeps,
    max: usize,
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl WorkstreamManager {
    /// Starts the manager's supervisor with `max` workstreams and the idle timeout.
    pub async fn start(
        deps: WorkstreamDeps,
        max: usize,
        idle_timeout: Duration,
        observer: Observer,
        parent: Option<ActorCell>,
    ) -> Result<Self, ManagerError> {
        let supervisor_name = format!(
            "workstreams-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let spec = SupervisorSpec::new(supervisor_name.clone())
            .capacity(Capacity::new(max.max(1)))
            .idle_timeout(IdleTimeout::new(idle_timeout))
            .keep_at_least(1)
            // A crash loop of one conversation must not take the others down.
            .intensity(10, Duration::from_secs(60));
        let records = observer.subscribe();
        let started = match parent {
            Some(parent) => SupervisorHandle::start_linked(spec, observer, parent).await,
            None => SupervisorHandle::start(spec, observer).await,
        };
        let (supervisor, _) = started.map_err(|e| ManagerError::Supervisor(e.to_string()))?;
        let manager = Self {
            supervisor,
            supervisor_name,
            deps,
            max: max.max(1),
            entries: Arc::new(Mutex::new(Vec::new())),
        };
        manager.watch_evictions(records);
        Ok(manager)
    }

    fn entries(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Turns the supervisor's evictions into `ws_closed` events and forgets the workstream.
    fn watch_evictions(
        &self,
        mut records: broadcast::Receiver<turnstone_runtime::supervise::SupervisionRecord>,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let record = match records.recv().await {
                    Ok(r) => r,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if record.supervisor != me.supervisor_name {
                    continue;
                }
                let Decision::Evicted { reason, .. } = record.decision else {
                    continue;
                };
                let Some(ws_id) = record.child else { continue };
                let name = me.forget(&ws_id).map(|e| e.name);
                let reason = match reason {
                    EvictReason::Capacity => "evicted",
                    EvictReason::Idle => "idle",
                };
                let _ = me.deps.global.send(GlobalEvent::WsClosed {
                    ws_id,
                    reason: reason.into(),
                    name,
                });
            }
        });
    }

    fn forget(&self, ws_id: &str) -> Option<Entry> {
        let mut entries = self.entries();
        let i = entries.iter().position(|e| e.ws_id == ws_id)?;
        Some(entries.remove(i))
    }

    /// Creates a workstream; when full, evicts the least recently active idle one. With
    /// `resume` (an alias, id or unique id prefix) it continues that stored session.
    pub async fn create(
        &self,
        name: Option<&str>,
        options: WorkstreamOptions,
        resume: Option<&str>,
    ) -> Result<WorkstreamHandle, ManagerError> {
        let ws_id = uuid::Uuid::new_v4().simple().to_string();
        let (session_id, history, stored_name) = match resume.filter(|r| !r.trim().is_empty()) {
            None => (uuid::Uuid::new_v4().simple().to_string(), Vec::new(), None),
            Some(key) => {
                let store = self.deps.store.as_ref().ok_or(ManagerError::NoStorage)?;
                let session_id = store.resolve_session(key).await?;
                let history = store.load_history(&session_id).await?;
                let stored_name = store
                    .session(&session_id)
                    .await?
                    .and_then(|s| s.alias.or(s.title));
                (session_id, history, stored_name)
            }
        };
        let name = name
            .filter(|n| !n.trim().is_empty())
            .map(str::to_owned)
            .or(stored_name)
            .unwrap_or_else(|| format!("ws-{}", &ws_id[..4]));
        self.open(ws_id, name, session_id, options, history).await
    }

    /// Opens a workstream another node served (it died), under the same id, with its stored
    /// conversation; `Ok(None)` if the database knows no such workstream.
    pub async fn adopt(&self, ws_id: &str) -> Result<Option<WorkstreamHandle>, ManagerError> {
        if let Some(open) = self.get(ws_id) {
            return Ok(Some(open));
        }
        let store = self.deps.store.as_ref().ok_or(ManagerError::NoStorage)?;
        let Some(record) = store.workstream(ws_id).await? else {
            return Ok(None);
        };
        let Some(session_id) = store.session_of_workstream(ws_id).await? else {
            return Ok(None);
        };
        let history = store.load_history(&session_id).await?;
        self.open(
            ws_id.to_owned(),
            record.name,
            session_id,
            WorkstreamOptions::default(),
            history,
        )
        .await
        .map(Some)
    }

    async fn open(
        &self,
        ws_id: String,
        name: String,
        session_id: String,
        options: WorkstreamOptions,
        history: Vec<ChatMessage>,
    ) -> Result<WorkstreamHandle, ManagerError> {
        let spec = WorkstreamSpec {
            ws_id: ws_id.clone(),
            name: name.clone(),
            session_id,
            options,
            history,
        };
        let events = EventChannel::new(EVENT_BUFFER);
        let deps = self.deps.clone();
        let actor_events = events.clone();
        let actor_spec = spec.clone();
        let (child, actor) = ChildSpec::actor(ws_id.clone(), Restart::Transient, move || {
            (
                WorkstreamActor::new(actor_spec.clone(), deps.clone(), actor_events.clone()),
                (),
            )
        });
        let entry = Entry {
            ws_id,
            name,
            session_id: spec.session_id,
            actor,
            events,
        };
        // Registered before it starts, so an eviction it causes finds its peers' entries.
        self.entries().push(entry.clone());
        if let Err(e) = self.supervisor.start_child(child).await {
            self.forget(&entry.ws_id);
            return Err(match e {
                SupervisorError::Capacity(CapacityError::AllBusy { .. } | CapacityError::Zero) => {
                    ManagerError::AllActive(self.max)
                }
                other => ManagerError::Supervisor(other.to_string()),
            });
        }
        Ok(WorkstreamHandle { entry })
    }

    /// A workstream by id.
    pub fn get(&self, ws_id: &str) -> Option<WorkstreamHandle> {
        self.entries()
            .iter()
            .find(|e| e.ws_id == ws_id)
            .map(|entry| WorkstreamHandle {
                entry: entry.clone(),
            })
    }

    /// All workstreams, in creation order.
    pub fn list(&self) -> Vec<WorkstreamHandle> {
        self.entries()
            .iter()
            .map(|entry| WorkstreamHandle {
                entry: entry.clone(),
            })
            .collect()
    }

    /// Renames a workstream; announced as `ws_rename` and saved.
    pub fn rename(&self, ws_id: &str, name: &str) -> Result<WorkstreamHandle, ManagerError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ManagerError::Workstream(WorkstreamError::Empty));
        }
        let entry = {
            let mut entries = self.entries();
            let entry = entries
                .iter_mut()
                .find(|e| e.ws_id == ws_id)
                .ok_or(ManagerError::Unknown)?;
            entry.name = name.to_owned();
            entry.clone()
        };
        if let Some(actor) = entry.actor.get() {
            let _ = actor.cast(WorkstreamMsg::Rename(name.to_owned()));
        }
        let _ = self.deps.global.send(GlobalEvent::WsRename {
            ws_id: ws_id.to_owned(),
            name: name.to_owned(),
        });
        Ok(WorkstreamHandle { entry })
    }

    /// Closes a workstream (never the last one).
    pub async fn close(&self, ws_id: &str) -> Result<(), ManagerError> {
        {
            let entries = self.entries();
            if !entries.iter().any(|e| e.ws_id == ws_id) {
                return Err(ManagerError::Unknown);
            }
            if entries.len() <= 1 {
                return Err(ManagerError::LastWorkstream);
            }
        }
        self.supervisor
            .terminate_child(ws_id)
            .await
            .map_err(|e| ManagerError::Supervisor(e.to_string()))?;
        let name = self.forget(ws_id).map(|e| e.name);
        let _ = self.deps.global.send(GlobalEvent::WsClosed {
            ws_id: ws_id.to_owned(),
            reason: "closed".into(),
            name,
        });
        Ok(())
    }

    /// The supervisor.
    pub fn supervisor(&self) -> &SupervisorHandle {
        &self.supervisor
    }
}
