//! The bridge: one supervised actor per node between the cluster's queues and the node.
//!
//! It takes inbound messages (directed queue first, then the shared one) into the node's
//! in-flight list, routes them (target node → owner → here), drives the node through its
//! [`NodePort`], turns the node's events into MQ events (pub/sub as 0.4.1, plus a durable
//! capped stream per workstream), answers approvals through reply lists, heartbeats while it
//! can really work, and reclaims the work of nodes that stopped heartbeating. A `send` stays in
//! flight until its turn ends, so a node that dies mid-turn loses nothing: its messages return
//! to the queue and the node that takes them over restores the workstream from the database.
//!
//! This module holds the actor, its mailbox and its state; the state's work is split by
//! responsibility: `routing` (where a message goes), `turns` (a workstream's creation, turns
//! and end), `events` (node events into MQ events, reviews and their answers), `emit` (what
//! is written, in order), `liveness` (heartbeat, time-outs, reaping) and `queues` (the
//! consumer, publisher and reply-waiter tasks).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;
use turnstone_runtime::remote::{Delivery, Emit, Transport};

use super::keys::Keys;
use super::port::{EventReceiver, EventSink, NodePort, PortEvent};
use super::protocol::{SendMsg, now};
use super::spans::delivery_span;

mod emit;
mod events;
mod liveness;
mod queues;
mod routing;
mod turns;

use self::queues::{Consumer, await_replies, consume, publish};

/// Tools whose calls a queue client's workstream approves without asking, unless the
/// `send` names its own (0.4.1's default set).
pub const DEFAULT_AUTO_TOOLS: [&str; 6] =
    ["read_file", "search", "man", "remember", "recall", "forget"];

/// Event types forwarded from a workstream's stream unchanged.
const FORWARDED: [&str; 9] = [
    "content",
    "reasoning",
    "tool_info",
    "tool_output_chunk",
    "tool_result",
    "status",
    "error",
    "info",
    "stream_end",
];

/// How long a finished turn's acknowledgement waits for the turn to be stored.
const PERSIST_WAIT: Duration = Duration::from_secs(10);

/// Whether the bridge does anything with a workstream event of type `kind`: the forwarded
/// types, approval requests and plan reviews. A port drops the others (`thinking_start`, …)
/// before they reach the bridge's mailbox.
pub fn relays(kind: &str) -> bool {
    FORWARDED.contains(&kind) || kind == "approve_request" || kind == "plan_review"
}

/// A bridge's mailbox as the receiver of its port's events.
#[derive(Debug)]
struct Mailbox(ActorRef<BridgeMsg>);

impl EventReceiver for Mailbox {
    /// Events the bridge does nothing with ([`relays`]) are dropped here, in the sender's
    /// task, before they cost a hop.
    fn deliver(&self, event: PortEvent) -> bool {
        if let PortEvent::Ws { event: frame, .. } = &event
            && !relays(frame.kind())
        {
            return !self.is_closed();
        }
        self.0.cast(BridgeMsg::Event(event)).is_ok()
    }

    fn is_closed(&self) -> bool {
        matches!(
            self.0.get_status(),
            ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped
        )
    }
}

/// Reaps that find a dead node empty before it is forgotten.
const FORGET_AFTER: u32 = 10;

/// Tries to acknowledge a delivery while Redis is unreachable (about 2 minutes with backoff).
const ACK_ATTEMPTS: u32 = 30;

/// How long a reply list lives (SPEC §18).
pub const REPLY_TTL: Duration = Duration::from_secs(600);

/// The bridge's knobs.
#[derive(Clone, Debug)]
pub struct BridgeSettings {
    /// Heartbeat key TTL; the heartbeat is renewed every half of it.
    pub heartbeat_ttl: Duration,
    /// How long an approval or plan review waits for its answer.
    pub approval_timeout: Duration,
    /// How long the first events of a workstream created for a 0.4.1 client wait for that
    /// client to subscribe (it subscribes only after `ws_created`).
    pub subscriber_wait: Duration,
    /// Entries kept per durable event stream.
    pub stream_cap: usize,
    /// Inbound messages taken but not yet dispatched.
    pub prefetch: usize,
    /// How long one receive blocks.
    pub poll: Duration,
    /// How long a closed workstream's event stream stays readable (for a client that
    /// reconnects after the end); then it is removed, so streams do not pile up.
    pub closed_stream_ttl: Duration,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        Self {
            heartbeat_ttl: Duration::from_secs(60),
            approval_timeout: Duration::from_secs(3600),
            subscriber_wait: Duration::from_secs(2),
            stream_cap: 1000,
            prefetch: 64,
            poll: Duration::from_secs(1),
            closed_stream_ttl: REPLY_TTL,
        }
    }
}

/// What the bridge is started with.
#[derive(Clone)]
pub struct BridgeArgs {
    /// The cluster's queues and channels.
    pub transport: Arc<dyn Transport>,
    /// The node.
    pub port: Arc<dyn NodePort>,
    /// Knobs.
    pub settings: BridgeSettings,
}

impl std::fmt::Debug for BridgeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeArgs")
            .field("node_id", &self.port.node_id())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The bridge actor.
#[derive(Clone, Debug, Default)]
pub struct Bridge;

/// The bridge's mailbox.
#[derive(Debug)]
pub enum BridgeMsg {
    /// A message taken from a queue (the permit limits how many wait here).
    Inbound(Delivery, OwnedSemaphorePermit),
    /// An event of the node.
    Event(PortEvent),
    /// An answer arrived on a reply list.
    Reply {
        /// The reply list.
        key: String,
        /// The answer.
        payload: String,
    },
    /// A workstream created for a message may start now that its client listens (or waited
    /// long enough).
    Held {
        /// The workstream.
        ws_id: String,
        /// The `send` (or `create_workstream` with an initial message).
        send: Box<SendMsg>,
        /// Its delivery.
        delivery: Delivery,
        /// The span of handling the delivery, which the turn continues.
        span: tracing::Span,
    },
    /// Once a second: heartbeat, reaping, timeouts.
    Tick,
}

/// What the publisher does, in order.
enum Out {
    Event(Emit),
    Ack(Delivery),
    DeadLetter(Delivery, String),
    /// Back to the queue it came from (for a node with room), then acknowledged here.
    Return(Delivery),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Review {
    Approval,
    Plan,
}

#[derive(Debug)]
struct Waiting {
    ws_id: String,
    request_id: String,
    review: Review,
    deadline: Instant,
}

#[derive(Debug)]
struct WsEntry {
    auto_approve: bool,
    tools: BTreeSet<String>,
    /// The `send` whose turn is running: its correlation id and delivery.
    active: Option<(String, Option<Delivery>)>,
    /// The reply list of the review waiting for an answer.
    pending: Option<String>,
    /// The running turn's trace id, while spans are exported.
    trace_id: Option<String>,
}

impl Default for WsEntry {
    fn default() -> Self {
        Self {
            auto_approve: false,
            tools: DEFAULT_AUTO_TOOLS.iter().map(|t| (*t).to_owned()).collect(),
            active: None,
            pending: None,
            trace_id: None,
        }
    }
}

/// The bridge's state.
pub struct BridgeState {
    transport: Arc<dyn Transport>,
    port: Arc<dyn NodePort>,
    settings: BridgeSettings,
    keys: Keys,
    me: String,
    started: f64,
    ws: HashMap<String, WsEntry>,
    waiting: Arc<Mutex<HashMap<String, Waiting>>>,
    waiting_changed: Arc<Notify>,
    outbox: mpsc::UnboundedSender<Out>,
    /// Milliseconds since start of the consumer's last completed receive.
    last_poll: Arc<AtomicU64>,
    /// The node can work: the consumer takes messages only while this holds.
    accepting: Arc<AtomicBool>,
    /// The node may have a free workstream: the consumer takes shared work only while this
    /// holds (a full node leaves it to the others).
    room: Arc<AtomicBool>,
    epoch: Instant,
    next_heartbeat: Instant,
    /// No reaping before this: after this node could not reach Redis, the others could not
    /// either (a restart), and their heartbeats may have lapsed meanwhile — they get one
    /// heartbeat interval to renew them before they are taken for dead.
    reap_after: Instant,
    /// Dead nodes found with nothing to return, and how many times in a row.
    empty_reaps: HashMap<String, u32>,
    /// Helper tasks, aborted when the state goes — also when the actor is killed (a crash:
    /// `post_stop` does not run, and the node's in-flight work stays for the reaper).
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for BridgeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeState")
            .field("node_id", &self.me)
            .field("workstreams", &self.ws.len())
            .finish_non_exhaustive()
    }
}

/// Where a message for a workstream goes.
enum Route {
    /// This node has it.
    Here {
        /// Restored from the database just now (its last turn may need resuming).
        adopted: bool,
    },
    /// Another live node has it.
    Forward(String),
    /// Nobody has it.
    Unknown,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Actor for Bridge {
    type Msg = BridgeMsg;
    type State = BridgeState;
    type Arguments = BridgeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<BridgeMsg>,
        args: BridgeArgs,
    ) -> Result<BridgeState, ActorProcessingErr> {
        let me = args.port.node_id().to_owned();
        let keys = Keys::new(args.transport.prefix());
        let (outbox, queue) = mpsc::unbounded_channel();
        let epoch = Instant::now();
        let mut state = BridgeState {
            transport: args.transport.clone(),
            port: args.port.clone(),
            settings: args.settings.clone(),
            keys: keys.clone(),
            me: me.clone(),
            started: now(),
            ws: HashMap::new(),
            waiting: Arc::default(),
            waiting_changed: Arc::default(),
            outbox,
            last_poll: Arc::default(),
            accepting: Arc::new(AtomicBool::new(true)),
            room: Arc::new(AtomicBool::new(true)),
            epoch,
            next_heartbeat: epoch,
            reap_after: epoch,
            empty_reaps: HashMap::new(),
            tasks: JoinSet::new(),
        };
        // The node's events come to this incarnation's mailbox, also those of the workstreams
        // claimed below.
        state.port.attach(EventSink::new(Mailbox(myself.clone())));
        // A restarted bridge lost track of what it had taken: give it back to the queues.
        let returned = state.transport.reclaim(&me).await?;
        if returned > 0 {
            tracing::warn!(
                returned,
                "bridge restarted: returned its in-flight messages"
            );
        }
        for ws in state.port.list().await.unwrap_or_default() {
            if let Some(ws_id) = ws.get("id").and_then(Value::as_str) {
                state.claim(ws_id).await;
            }
        }
        state.heartbeat().await;
        state.tasks.spawn(publish(
            state.transport.clone(),
            queue,
            state.settings.stream_cap,
        ));
        state.tasks.spawn(consume(Consumer {
            transport: state.transport.clone(),
            keys: keys.clone(),
            me: me.clone(),
            settings: state.settings.clone(),
            last_poll: state.last_poll.clone(),
            accepting: state.accepting.clone(),
            room: state.room.clone(),
            epoch,
            bridge: myself.clone(),
        }));
        state.tasks.spawn(await_replies(
            state.transport.clone(),
            state.waiting.clone(),
            state.waiting_changed.clone(),
            myself.clone(),
        ));
        let ticker = myself.clone();
        state.tasks.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if ticker.cast(BridgeMsg::Tick).is_err() {
                    break;
                }
            }
        });
        tracing::info!(node_id = %me, prefix = keys.prefix(), "bridge started");
        Ok(state)
    }

    async fn post_stop(
        &self,
        _: ActorRef<BridgeMsg>,
        state: &mut BridgeState,
    ) -> Result<(), ActorProcessingErr> {
        state.tasks.abort_all();
        // Gone at once, so other nodes take over without waiting for the TTL.
        let _ = state.transport.delete(&state.keys.node(&state.me)).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<BridgeMsg>,
        msg: BridgeMsg,
        state: &mut BridgeState,
    ) -> Result<(), ActorProcessingErr> {
        // The hot path (a workstream's forwarded event, most of a turn's messages) needs no
        // await. Every other arm is boxed: ractor moves this future several times per
        // message, and inline it would be as large as the largest arm (about 4 KB, copied
        // four times for every event).
        match msg {
            BridgeMsg::Event(PortEvent::Ws { ws_id, event })
                if FORWARDED.contains(&event.kind()) =>
            {
                state.relay_ws(&ws_id, &event);
            }
            BridgeMsg::Event(event) => Box::pin(state.on_event(event)).await,
            BridgeMsg::Inbound(delivery, _permit) => {
                let span = delivery_span(&delivery, "process");
                Box::pin(state.dispatch(&myself, delivery).instrument(span)).await;
            }
            BridgeMsg::Reply { key, payload } => Box::pin(state.on_reply(&key, &payload)).await,
            BridgeMsg::Held {
                ws_id,
                send,
                delivery,
                span,
            } => {
                Box::pin(
                    state
                        .start_turn(&ws_id, &send, Some(delivery), false)
                        .instrument(span),
                )
                .await;
            }
            BridgeMsg::Tick => Box::pin(state.tick()).await,
        }
        Ok(())
    }
}
