//! What the bridge needs from a node: the node in the same process (`turnstone-server
//! --redis-host`) or a node server over HTTP (`turnstone-bridge --server-url`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::broadcast;

use super::outbound::WsFrame;
use crate::workstream::GlobalEvent;

/// A new workstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateRequest {
    /// Display name ("" for a generated one).
    pub name: String,
    /// Approve every call.
    pub auto_approve: bool,
    /// Calls to only these tools are approved without asking.
    pub auto_approve_tools: Vec<String>,
    /// Model alias ("" for the default).
    pub model: String,
    /// A stored session to continue ("" for none).
    pub resume_session: String,
}

/// A created workstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Created {
    /// Its id.
    pub ws_id: String,
    /// Its name.
    pub name: String,
    /// Whether it continues a stored session.
    pub resumed: bool,
    /// Its session.
    pub session_id: String,
    /// Messages it starts with.
    pub message_count: usize,
}

impl Created {
    /// Reads the answer of `POST /v1/api/workstreams/new`
    /// (`{ws_id, name, resumed, session_id, message_count}`).
    pub fn from_json(created: &serde_json::Value) -> Self {
        let text = |k: &str| created[k].as_str().unwrap_or("").to_owned();
        Self {
            ws_id: text("ws_id"),
            name: text("name"),
            resumed: created["resumed"].as_bool().unwrap_or(false),
            session_id: text("session_id"),
            message_count: created["message_count"]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0),
        }
    }
}

/// What a send did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The turn started.
    Started,
    /// A turn is already running.
    Busy,
}

/// A node's refusal or failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// No such workstream on this node.
    #[error("Unknown workstream")]
    UnknownWorkstream,
    /// The node refused the request.
    #[error("{0}")]
    Rejected(String),
    /// Every workstream of the node is busy: another node may take the work.
    #[error("{0}")]
    AtCapacity(String),
    /// The node could not be reached.
    #[error("node unreachable: {0}")]
    Unreachable(String),
}

impl PortError {
    /// A node's refusal, as its API words it: "All N workstreams are active" (Turnstone's
    /// answer when every workstream is busy) is [`PortError::AtCapacity`].
    pub fn refused(message: String) -> Self {
        if message.starts_with("All ") && message.ends_with(" workstreams are active") {
            Self::AtCapacity(message)
        } else {
            Self::Rejected(message)
        }
    }
}

/// An event of the node, in its SSE shape (SPEC §2.1, §2.2).
#[derive(Clone, Debug, PartialEq)]
pub enum PortEvent {
    /// On one workstream's stream.
    Ws {
        /// Which (shared: every event of a workstream names it).
        ws_id: Arc<str>,
        /// The event, as the node serialised it.
        event: WsFrame,
    },
    /// On the node-wide stream (`ws_state`, `ws_rename`, `ws_closed`) of a node over HTTP.
    Global(Value),
    /// On the node-wide stream of this process's node, as it broadcast it.
    Node(GlobalEvent),
}

/// What takes a node's events: the bridge incarnation that attached the port (its mailbox,
/// in `mq::bridge`). Implemented there, so this module needs nothing of the bridge's.
pub trait EventReceiver: Send + Sync + std::fmt::Debug + 'static {
    /// Takes `event`; false once the receiver has stopped.
    fn deliver(&self, event: PortEvent) -> bool;

    /// Whether the receiver has stopped.
    fn is_closed(&self) -> bool;
}

/// Where a node's events go: cast straight into the attached bridge's mailbox, with no task
/// in between; the mailbox is unbounded, so a bridge that falls behind holds events rather
/// than losing them.
#[derive(Clone, Debug)]
pub struct EventSink(Arc<dyn EventReceiver>);

impl EventSink {
    /// Events for `receiver`.
    pub fn new(receiver: impl EventReceiver) -> Self {
        Self(Arc::new(receiver))
    }

    /// Hands `event` over; false once the receiver has stopped.
    pub fn send(&self, event: PortEvent) -> bool {
        self.0.deliver(event)
    }

    /// Whether the receiver has stopped.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// The node a bridge fronts.
#[async_trait]
pub trait NodePort: Send + Sync + 'static {
    /// The node's id.
    fn node_id(&self) -> &str;

    /// The node's URL for clients ("" if it has none).
    fn server_url(&self) -> &str;

    /// Workstreams the node holds at most, announced in its heartbeat as `max_ws` (what the
    /// console places `auto` work by); `None` when the port cannot tell.
    fn max_workstreams(&self) -> Option<usize> {
        None
    }

    /// Sends the node's events to `sink` from now on. Each bridge incarnation attaches once,
    /// at start, before it watches any workstream; what was watched for an earlier
    /// incarnation is watched again only when the new one asks.
    fn attach(&self, sink: EventSink);

    /// Forwards a workstream's events from now on (idempotent).
    async fn watch(&self, ws_id: &str);

    /// Whether the node has this workstream open.
    async fn has(&self, ws_id: &str) -> bool;

    /// Creates a workstream.
    async fn create(&self, request: CreateRequest) -> Result<Created, PortError>;

    /// Opens a workstream another node served, from the shared database, with its id and
    /// history. `Ok(false)`: nothing stored under that id (or the node cannot adopt).
    async fn adopt(&self, ws_id: &str) -> Result<bool, PortError>;

    /// Sends a user message.
    async fn send(&self, ws_id: &str, message: &str) -> Result<SendOutcome, PortError>;

    /// Re-runs a turn that was cut off (its node died) if the conversation ends with exactly
    /// this user message; `Ok(false)` if there is nothing to resume.
    async fn resume_turn(&self, ws_id: &str, message: &str) -> Result<bool, PortError>;

    /// Answers a pending approval.
    async fn approve(
        &self,
        ws_id: &str,
        approved: bool,
        feedback: Option<String>,
        always: bool,
    ) -> Result<(), PortError>;

    /// Answers a plan review ("" approves).
    async fn plan_feedback(&self, ws_id: &str, feedback: &str) -> Result<(), PortError>;

    /// Runs a slash command.
    async fn command(&self, ws_id: &str, command: &str) -> Result<(), PortError>;

    /// Returns once what the workstream queued for the database so far has landed, so that a
    /// send is acknowledged only when its turn is stored: a node killed after the
    /// acknowledgement leaves the whole turn in the history another node adopts. At once for
    /// a node without a database, or one whose storage the bridge cannot see.
    async fn persisted(&self, _ws_id: &str) {}

    /// Closes a workstream.
    async fn close(&self, ws_id: &str) -> Result<(), PortError>;

    /// The workstreams, as `GET /v1/api/workstreams` lists them.
    async fn list(&self) -> Result<Vec<Value>, PortError>;

    /// The node's health, as `GET /health` answers.
    async fn health(&self) -> Result<Value, PortError>;
}

/// The event side of a port on a node in the same process: the node-wide events and the
/// events of each watched workstream go to the current bridge incarnation's mailbox. A
/// restarted bridge attaches again, and its workstreams are watched again for it.
#[derive(Debug, Default)]
pub struct EventForwarding {
    state: Mutex<Forwarding>,
}

#[derive(Debug, Default)]
struct Forwarding {
    sink: Option<EventSink>,
    generation: u64,
    watched: HashSet<String>,
}

/// One workstream's events on their way to one bridge incarnation; it stops being watched
/// when this is dropped.
#[derive(Debug)]
pub struct Watch {
    sink: EventSink,
    generation: u64,
    ws_id: Arc<str>,
    forwarding: Arc<EventForwarding>,
}

impl EventForwarding {
    /// Forwards the node-wide events of `global` to whichever bridge is attached, from now on.
    pub fn new(mut global: broadcast::Receiver<GlobalEvent>) -> Arc<Self> {
        let forwarding = Arc::new(Self::default());
        let current = forwarding.clone();
        tokio::spawn(async move {
            loop {
                match global.recv().await {
                    Ok(event) => {
                        let Some(sink) = current.state().sink.clone() else {
                            continue;
                        };
                        sink.send(PortEvent::Node(event));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "bridge fell behind the node's events");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        forwarding
    }

    fn state(&self) -> MutexGuard<'_, Forwarding> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends to a (re)started bridge from now on ([`NodePort::attach`]); nothing is watched
    /// for it yet.
    pub fn attach(&self, sink: EventSink) {
        let mut state = self.state();
        state.generation += 1;
        state.watched.clear();
        state.sink = Some(sink);
    }

    /// Starts forwarding `ws_id`'s events, unless they already are or no bridge is attached.
    pub fn watch(self: &Arc<Self>, ws_id: &str) -> Option<Watch> {
        let mut state = self.state();
        let sink = state.sink.clone()?;
        if !state.watched.insert(ws_id.to_owned()) {
            return None;
        }
        Some(Watch {
            sink,
            generation: state.generation,
            ws_id: ws_id.into(),
            forwarding: self.clone(),
        })
    }
}

impl Watch {
    /// Forwards one event of the workstream; false once the bridge is gone.
    pub fn send(&self, event: WsFrame) -> bool {
        self.sink.send(PortEvent::Ws {
            ws_id: Arc::clone(&self.ws_id),
            event,
        })
    }

    /// The workstream.
    pub fn ws_id(&self) -> &str {
        &self.ws_id
    }

    /// A tap for a workstream's [`EventChannel`](crate::workstream::EventChannel): forwards
    /// each event `convert` makes of what it sees, and asks for no more once the bridge is
    /// gone (which drops this watch).
    pub fn relay<T>(self, convert: impl Fn(&T) -> Option<WsFrame>) -> impl FnMut(&T) -> bool {
        move |item| convert(item).is_none_or(|event| self.send(event))
    }

    /// Forwards what `live` carries, as `convert` turns it into events, until the bridge or
    /// the workstream goes; a lag is logged (the events it skipped are lost to the bridge).
    pub async fn forward<T: Clone>(
        self,
        mut live: broadcast::Receiver<T>,
        convert: impl Fn(&T) -> Option<WsFrame>,
    ) {
        loop {
            match live.recv().await {
                Ok(item) => {
                    if let Some(event) = convert(&item)
                        && !self.send(event)
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, ws_id = %self.ws_id, "bridge fell behind a workstream");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut state = self.forwarding.state();
        if state.generation == self.generation {
            state.watched.remove(&*self.ws_id);
        }
    }
}
