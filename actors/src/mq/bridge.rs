//! The bridge: one supervised actor per node between the cluster's queues and the node.
//!
//! It takes inbound messages (directed queue first, then the shared one) into the node's
//! in-flight list, routes them (target node → owner → here), drives the node through its
//! [`NodePort`], turns the node's events into MQ events (pub/sub as 0.4.1, plus a durable
//! capped stream per workstream), answers approvals through reply lists, heartbeats while it
//! can really work, and reclaims the work of nodes that stopped heartbeating. A `send` stays in
//! flight until its turn ends, so a node that dies mid-turn loses nothing: its messages return
//! to the queue and the node that takes them over restores the workstream from the database.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::{Value, json};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::remote::{Attempt, Delivery, Emit, Transport, TransportError};

use super::keys::Keys;
use super::outbound::{Outbound, WsFrame};
use super::port::{
    CreateRequest, EventReceiver, EventSink, NodePort, PortError, PortEvent, SendOutcome,
};
use super::protocol::{
    ApproveMsg, CreateMsg, Inbound, PlanFeedbackMsg, SendMsg, new_id, node_entry, now,
};
use super::spans::delivery_span;

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
        match msg {
            BridgeMsg::Inbound(delivery, _permit) => {
                let span = delivery_span(&delivery, "process");
                state.dispatch(&myself, delivery).instrument(span).await
            }
            BridgeMsg::Event(event) => state.on_event(event).await,
            BridgeMsg::Reply { key, payload } => state.on_reply(&key, &payload).await,
            BridgeMsg::Held {
                ws_id,
                send,
                delivery,
                span,
            } => {
                state
                    .start_turn(&ws_id, &send, Some(delivery), false)
                    .instrument(span)
                    .await
            }
            BridgeMsg::Tick => state.tick().await,
        }
        Ok(())
    }
}

impl BridgeState {
    fn out(&self, out: Out) {
        let _ = self.outbox.send(out);
    }

    /// Publishes `event` on `channel`, kept in `stream` if given.
    fn emit(&self, channel: String, stream: Option<String>, event: &Outbound) {
        self.out(Out::Event(Emit {
            stream,
            channel,
            payload: event.to_json(),
        }));
    }

    fn emit_ws(&self, ws_id: &str, event: &Outbound) {
        self.emit_ws_json(ws_id, event.to_json());
    }

    /// Publishes an event's JSON on `ws_id`'s channel, kept in its stream.
    fn emit_ws_json(&self, ws_id: &str, payload: String) {
        self.out(Out::Event(Emit {
            stream: Some(self.keys.ws_stream(ws_id)),
            channel: self.keys.ws_channel(ws_id),
            payload,
        }));
    }

    /// Publishes `event` on `ws_id`'s channel (kept in its stream) and on the global channel
    /// (not kept), serialised once.
    fn emit_ws_and_global(&self, ws_id: &str, event: &Outbound) {
        let payload = event.to_json();
        self.emit_ws_json(ws_id, payload.clone());
        self.out(Out::Event(Emit {
            stream: None,
            channel: self.keys.global_channel(),
            payload,
        }));
    }

    fn emit_global(&self, event: &Outbound) {
        self.emit(
            self.keys.global_channel(),
            Some(self.keys.global_stream()),
            event,
        );
    }

    fn emit_cluster(&self, event: &Outbound) {
        self.emit(self.keys.cluster_channel(), None, event);
    }

    /// An error about a message: on its workstream's channel if it names one, else global.
    fn emit_error(&self, ws_id: &str, cid: &str, message: &str) {
        let event = Outbound::error(ws_id, cid, message);
        if ws_id.is_empty() {
            self.emit_global(&event);
        } else {
            self.emit_ws(ws_id, &event);
        }
    }

    fn ack(&self, delivery: Delivery) {
        self.out(Out::Ack(delivery));
    }

    fn reject(&self, delivery: Delivery, ws_id: &str, cid: &str, reason: &str) {
        tracing::warn!(%reason, ws_id, "inbound message dead-lettered");
        self.emit_error(ws_id, cid, reason);
        self.out(Out::DeadLetter(delivery, reason.to_owned()));
    }

    async fn alive(&self, node: &str) -> bool {
        let node = [node.to_owned()];
        matches!(
            self.transport.heartbeating(&node).await.as_deref(),
            Ok([true])
        )
    }

    /// Serves a workstream from here on: owner key, events.
    async fn claim(&mut self, ws_id: &str) {
        self.ws.entry(ws_id.to_owned()).or_default();
        if let Err(e) = self
            .transport
            .set(&self.keys.owner(ws_id), self.me.clone(), None)
            .await
        {
            tracing::warn!(error = %e, ws_id, "could not record workstream ownership");
        }
        self.port.watch(ws_id).await;
    }

    async fn dispatch(&mut self, myself: &ActorRef<BridgeMsg>, delivery: Delivery) {
        let message = match Inbound::decode(&delivery.payload) {
            Ok(m) => m,
            Err(e) => {
                let peeked = Inbound::peek(&delivery.payload);
                self.reject(
                    delivery,
                    &peeked.ws_id,
                    &peeked.correlation_id,
                    &e.to_string(),
                );
                return;
            }
        };
        let cid = message.correlation_id().to_owned();
        let target = message.target_node();
        if !target.is_empty() && target != self.me {
            let ws_id = message.ws_id().to_owned();
            if self.alive(target).await {
                self.forward(target.to_owned(), delivery).await;
            } else {
                let reason = format!("Unknown node {target:?}: no live node has that id");
                self.reject(delivery, &ws_id, &cid, &reason);
            }
            return;
        }
        match message {
            Inbound::Approve(ApproveMsg { request_id, .. })
            | Inbound::PlanFeedback(PlanFeedbackMsg { request_id, .. }) => {
                let key = self.keys.resp(&request_id);
                match self
                    .transport
                    .reply(&key, delivery.payload.clone(), REPLY_TTL)
                    .await
                {
                    Ok(()) => self.ack(delivery),
                    Err(e) => tracing::warn!(error = %e, "could not pass an answer on"),
                }
            }
            Inbound::ListWorkstreams(_) => {
                let answer = match self.port.list().await {
                    Ok(list) => Outbound::new("ws_list", "", &cid, json!({"workstreams": list})),
                    Err(e) => Outbound::error("", &cid, e.to_string()),
                };
                self.emit_global(&answer);
                self.ack(delivery);
            }
            Inbound::Health(_) => {
                let data = self
                    .port
                    .health()
                    .await
                    .unwrap_or_else(|e| json!({"status": "error", "error": e.to_string()}));
                self.emit_global(&Outbound::new(
                    "health_response",
                    "",
                    &cid,
                    json!({"data": data}),
                ));
                self.ack(delivery);
            }
            Inbound::ListNodes(_) => {
                let nodes = self.nodes().await;
                self.emit_global(&Outbound::new(
                    "node_list",
                    "",
                    &cid,
                    json!({"nodes": nodes}),
                ));
                self.ack(delivery);
            }
            Inbound::CreateWorkstream(create) => {
                self.create(myself, create, delivery).await;
            }
            Inbound::Send(send) if send.ws_id.is_empty() => {
                let create = CreateMsg {
                    correlation_id: send.correlation_id.clone(),
                    name: send.name.clone(),
                    auto_approve: send.auto_approve,
                    auto_approve_tools: send.auto_approve_tools.clone(),
                    initial_message: send.message.clone(),
                    reads_stream: send.reads_stream,
                    ..CreateMsg::default()
                };
                self.create(myself, create, delivery).await;
            }
            message => {
                let ws_id = message.ws_id().to_owned();
                match self.route(&ws_id).await {
                    Route::Forward(owner) => self.forward(owner, delivery).await,
                    Route::Unknown => {
                        self.reject(delivery, &ws_id, &cid, "Unknown workstream");
                    }
                    Route::Here { adopted } => self.handle_here(message, delivery, adopted).await,
                }
            }
        }
    }

    async fn forward(&self, node: String, delivery: Delivery) {
        let to = self.keys.directed(&node);
        match self.transport.push(&to, delivery.payload.clone()).await {
            Ok(()) => self.ack(delivery),
            Err(e) => tracing::warn!(error = %e, %node, "could not forward; retried after reclaim"),
        }
    }

    async fn nodes(&self) -> Vec<Value> {
        self.transport
            .live_nodes()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(node, metadata)| node_entry(node, &metadata))
            .collect()
    }

    /// Target node → owner → here; a workstream whose owner died is taken over (restored
    /// from the shared database).
    async fn route(&mut self, ws_id: &str) -> Route {
        if self.ws.contains_key(ws_id) || self.port.has(ws_id).await {
            if !self.ws.contains_key(ws_id) {
                self.claim(ws_id).await;
            }
            return Route::Here { adopted: false };
        }
        let key = self.keys.owner(ws_id);
        for _ in 0..3 {
            let owner = self.transport.get(&key).await.ok().flatten();
            if let Some(owner) = &owner
                && owner != &self.me
                && self.alive(owner).await
            {
                return Route::Forward(owner.clone());
            }
            // Unowned, ours but gone from this node, or its node died: take it over.
            match self
                .transport
                .compare_and_set(&key, owner.as_deref(), self.me.clone())
                .await
            {
                Ok(true) => {
                    return match self.port.adopt(ws_id).await {
                        Ok(true) => {
                            tracing::info!(ws_id, previous = ?owner, "took over a workstream");
                            self.claim(ws_id).await;
                            Route::Here { adopted: true }
                        }
                        _ => {
                            let _ = self.transport.delete(&key).await;
                            Route::Unknown
                        }
                    };
                }
                Ok(false) => continue, // another node was faster: look again
                Err(e) => {
                    tracing::warn!(error = %e, ws_id, "ownership check failed");
                    return Route::Unknown;
                }
            }
        }
        Route::Unknown
    }

    async fn handle_here(&mut self, message: Inbound, delivery: Delivery, adopted: bool) {
        match message {
            Inbound::Send(send) => {
                if let Some(entry) = self.ws.get_mut(&send.ws_id) {
                    if send.auto_approve {
                        entry.auto_approve = true;
                    }
                    if !send.auto_approve_tools.is_empty() {
                        entry.tools = send.auto_approve_tools.iter().cloned().collect();
                    }
                }
                let ws_id = send.ws_id.clone();
                self.start_turn(&ws_id, &send, Some(delivery), adopted)
                    .await;
            }
            Inbound::Command(command) => {
                let result = self.port.command(&command.ws_id, &command.command).await;
                let detail = result.as_ref().err().map(ToString::to_string);
                self.emit_ws(
                    &command.ws_id,
                    &Outbound::ack(
                        &command.ws_id,
                        &command.correlation_id,
                        result.is_ok(),
                        detail.as_deref().unwrap_or(""),
                    ),
                );
                self.ack(delivery);
            }
            Inbound::CloseWorkstream(close) => {
                let result = self.port.close(&close.ws_id).await;
                let detail = result.as_ref().err().map(ToString::to_string);
                self.emit_ws(
                    &close.ws_id,
                    &Outbound::ack(
                        &close.ws_id,
                        &close.correlation_id,
                        result.is_ok(),
                        detail.as_deref().unwrap_or(""),
                    ),
                );
                if result.is_ok() {
                    self.forget(&close.ws_id).await;
                }
                self.ack(delivery);
            }
            _ => self.ack(delivery),
        }
    }

    async fn create(
        &mut self,
        myself: &ActorRef<BridgeMsg>,
        create: CreateMsg,
        delivery: Delivery,
    ) {
        let cid = create.correlation_id.clone();
        let request = CreateRequest {
            name: create.name.clone(),
            auto_approve: create.auto_approve,
            auto_approve_tools: create.auto_approve_tools.clone(),
            model: create.model.clone(),
            resume_session: create.resume_session.clone(),
        };
        let created = match self.port.create(request).await {
            Ok(c) => c,
            Err(PortError::AtCapacity(reason)) if delivery.from == self.keys.shared() => {
                // Every workstream here is busy: leave the work to a node with room, and take
                // no shared work until one is free here.
                self.room.store(false, Ordering::Relaxed);
                tracing::debug!(%reason, "full: the message goes back to the shared queue");
                self.out(Out::Return(delivery));
                return;
            }
            Err(e) => {
                self.emit_global(&Outbound::ack("", &cid, false, &e.to_string()));
                self.ack(delivery);
                return;
            }
        };
        let ws_id = created.ws_id.clone();
        self.claim(&ws_id).await;
        if let Some(entry) = self.ws.get_mut(&ws_id) {
            entry.auto_approve = create.auto_approve;
            if !create.auto_approve_tools.is_empty() {
                entry.tools = create.auto_approve_tools.iter().cloned().collect();
            }
        }
        let mut announced = json!({
            "name": created.name, "resumed": created.resumed,
            "message_count": created.message_count, "node_id": self.me,
        });
        if created.resumed {
            announced["session_id"] = Value::from(created.session_id.clone());
        }
        self.emit_global(&Outbound::new("ws_created", &ws_id, &cid, announced));
        self.emit_cluster(&Outbound::new(
            "ws_created",
            &ws_id,
            &cid,
            json!({"name": created.name, "node_id": self.me}),
        ));
        if created.resumed {
            self.emit_ws(
                &ws_id,
                &Outbound::new(
                    "session_resumed",
                    &ws_id,
                    &cid,
                    json!({"session_id": created.session_id,
                        "message_count": created.message_count, "name": created.name}),
                ),
            );
        }
        if create.initial_message.trim().is_empty() || created.resumed {
            self.ack(delivery);
            return;
        }
        let send = SendMsg {
            correlation_id: cid,
            ws_id: ws_id.clone(),
            message: create.initial_message.clone(),
            ..SendMsg::default()
        };
        if create.reads_stream {
            self.start_turn(&ws_id, &send, Some(delivery), false).await;
            return;
        }
        // A 0.4.1 client subscribes to the workstream's channel only once it has seen
        // `ws_created`: start the turn when it listens, so it cannot miss the first events.
        let transport = self.transport.clone();
        let channel = self.keys.ws_channel(&ws_id);
        let wait = self.settings.subscriber_wait;
        let me = myself.clone();
        let span = tracing::Span::current();
        tokio::spawn(async move {
            let deadline = Instant::now() + wait;
            let mut pause = Duration::from_millis(1);
            while Instant::now() < deadline {
                if transport.subscribers(&channel).await.unwrap_or(0) > 0 {
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            let _ = me.cast(BridgeMsg::Held {
                ws_id,
                send: Box::new(send),
                delivery,
                span,
            });
        });
    }

    /// Sends a user message (or resumes the turn a dead node left unfinished) and keeps the
    /// delivery in flight until the turn ends.
    async fn start_turn(
        &mut self,
        ws_id: &str,
        send: &SendMsg,
        delivery: Option<Delivery>,
        adopted: bool,
    ) {
        let cid = send.correlation_id.clone();
        let resumed = adopted
            && self
                .port
                .resume_turn(ws_id, &send.message)
                .await
                .unwrap_or(false);
        let outcome = if resumed {
            Ok(SendOutcome::Started)
        } else {
            self.port.send(ws_id, &send.message).await
        };
        let (ok, detail) = match &outcome {
            Ok(SendOutcome::Started) => (true, String::new()),
            Ok(SendOutcome::Busy) => (false, "Workstream is busy".to_owned()),
            Err(e) => (false, e.to_string()),
        };
        // Inside the message's span: its trace is the turn's.
        let trace_id = turnstone_runtime::telemetry::ids(&tracing::Span::current()).map(|(t, _)| t);
        self.emit_ws(
            ws_id,
            &Outbound::ack(ws_id, &cid, ok, &detail).traced(trace_id.as_deref()),
        );
        match (ok, self.ws.get_mut(ws_id)) {
            (true, Some(entry)) => {
                entry.active = Some((cid, delivery));
                entry.trace_id = trace_id;
            }
            _ => {
                if let Some(delivery) = delivery {
                    self.ack(delivery);
                }
            }
        }
    }

    async fn forget(&mut self, ws_id: &str) {
        if let Some(entry) = self.ws.remove(ws_id) {
            if let Some(key) = entry.pending {
                lock(&self.waiting).remove(&key);
            }
            if let Some((cid, delivery)) = entry.active {
                // The turn ends with the workstream: tell the waiting client.
                self.complete_turn(ws_id, &cid, delivery, entry.trace_id.as_deref());
            }
        }
        let key = self.keys.owner(ws_id);
        if matches!(self.transport.get(&key).await, Ok(Some(owner)) if owner == self.me) {
            let _ = self.transport.delete(&key).await;
        }
        let _ = self.transport.delete(&self.keys.pending(ws_id)).await;
        let stream = self.keys.ws_stream(ws_id);
        if let Err(e) = self
            .transport
            .expire(&stream, self.settings.closed_stream_ttl)
            .await
        {
            tracing::warn!(error = %e, ws_id, "could not expire a closed workstream's stream");
        }
    }

    async fn on_event(&mut self, event: PortEvent) {
        match event {
            PortEvent::Ws { ws_id, event } => self.on_ws_event(&ws_id, &event).await,
            PortEvent::Global(event) => self.on_global(&event).await,
        }
    }

    async fn on_ws_event(&mut self, ws_id: &str, event: &WsFrame) {
        match event.kind() {
            "approve_request" => {
                let items = event.fields().get("items").cloned().unwrap_or(json!([]));
                self.review(ws_id, Review::Approval, json!({"items": items}))
                    .await;
            }
            "plan_review" => {
                let content = event.fields().get("content").cloned().unwrap_or(json!(""));
                self.review(ws_id, Review::Plan, json!({"content": content}))
                    .await;
            }
            kind if FORWARDED.contains(&kind) => {
                self.emit_ws_json(ws_id, event.outbound(ws_id, ""));
                if kind == "stream_end"
                    && let Some(entry) = self.ws.get_mut(ws_id)
                    && let Some((cid, delivery)) = entry.active.take()
                {
                    let trace_id = entry.trace_id.take();
                    self.complete_turn(ws_id, &cid, delivery, trace_id.as_deref());
                }
            }
            _ => {}
        }
    }

    /// Announces the end of the turn of `send` `cid` — on the workstream's channel and stream
    /// for its client, and on the global channel (as 0.4.1's simulated nodes do) for
    /// dashboards and load generators that follow every turn — then acknowledges the send
    /// once the turn is stored ([`NodePort::persisted`], at most [`PERSIST_WAIT`]); until
    /// then it stays in flight, for the reaper if this node dies.
    fn complete_turn(
        &self,
        ws_id: &str,
        cid: &str,
        delivery: Option<Delivery>,
        trace_id: Option<&str>,
    ) {
        let done = Outbound::new("turn_complete", ws_id, cid, json!({})).traced(trace_id);
        self.emit_ws_and_global(ws_id, &done);
        if let Some(delivery) = delivery {
            let (port, outbox, ws_id) = (self.port.clone(), self.outbox.clone(), ws_id.to_owned());
            tokio::spawn(async move {
                if tokio::time::timeout(PERSIST_WAIT, port.persisted(&ws_id))
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        ws_id,
                        "the turn was not stored in time; acknowledged anyway"
                    );
                }
                let _ = outbox.send(Out::Ack(delivery));
            });
        }
    }

    async fn review(&mut self, ws_id: &str, review: Review, fields: Value) {
        let Some(entry) = self.ws.get(ws_id) else {
            return;
        };
        let automatic = match review {
            Review::Approval => {
                let asking: Vec<&str> = fields["items"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter(|i| i["needs_approval"].as_bool().unwrap_or(true))
                            .filter_map(|i| i["func_name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                entry.auto_approve
                    || (!asking.is_empty() && asking.iter().all(|n| entry.tools.contains(*n)))
            }
            Review::Plan => entry.auto_approve,
        };
        if automatic {
            let answered = match review {
                Review::Approval => self.port.approve(ws_id, true, None, false).await,
                Review::Plan => self.port.plan_feedback(ws_id, "").await,
            };
            if let Err(e) = answered {
                tracing::warn!(error = %e, ws_id, "automatic approval failed");
            }
            return;
        }
        if entry.pending.is_some() {
            return; // the same review again (a replay)
        }
        // A node that took the workstream over asks under the request id clients know.
        let pending_key = self.keys.pending(ws_id);
        let request_id = match self.transport.get(&pending_key).await {
            Ok(Some(id)) => id,
            _ => new_id(),
        };
        let _ = self
            .transport
            .set(
                &pending_key,
                request_id.clone(),
                Some(self.settings.approval_timeout),
            )
            .await;
        let key = self.keys.resp(&request_id);
        lock(&self.waiting).insert(
            key.clone(),
            Waiting {
                ws_id: ws_id.to_owned(),
                request_id: request_id.clone(),
                review,
                deadline: Instant::now() + self.settings.approval_timeout,
            },
        );
        self.waiting_changed.notify_one();
        if let Some(entry) = self.ws.get_mut(ws_id) {
            entry.pending = Some(key);
        }
        let kind = match review {
            Review::Approval => "approval_request",
            Review::Plan => "plan_review",
        };
        self.emit_ws(ws_id, &Outbound::new(kind, ws_id, &request_id, fields));
    }

    async fn on_reply(&mut self, key: &str, payload: &str) {
        let Some(waiting) = lock(&self.waiting).remove(key) else {
            return;
        };
        let answered = match waiting.review {
            Review::Approval => {
                let answer: ApproveMsg = serde_json::from_str(payload).unwrap_or_default();
                if answer.always
                    && answer.approved
                    && let Some(entry) = self.ws.get_mut(&waiting.ws_id)
                {
                    entry.auto_approve = true;
                }
                let feedback = answer.feedback.filter(|f| !f.trim().is_empty());
                self.port
                    .approve(&waiting.ws_id, answer.approved, feedback, answer.always)
                    .await
            }
            Review::Plan => {
                let answer: PlanFeedbackMsg = serde_json::from_str(payload).unwrap_or_default();
                self.port
                    .plan_feedback(&waiting.ws_id, &answer.feedback)
                    .await
            }
        };
        if let Err(e) = answered {
            tracing::warn!(error = %e, ws_id = %waiting.ws_id, "answer not accepted");
        }
        self.settle(&waiting).await;
    }

    async fn settle(&mut self, waiting: &Waiting) {
        if let Some(entry) = self.ws.get_mut(&waiting.ws_id) {
            entry.pending = None;
        }
        let _ = self
            .transport
            .delete(&self.keys.pending(&waiting.ws_id))
            .await;
    }

    async fn on_global(&mut self, event: &Value) {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let ws_id = event
            .get("ws_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match kind {
            "ws_state" => {
                if !self.ws.contains_key(&ws_id) {
                    self.claim(&ws_id).await; // opened on the node directly
                }
                let state = event.get("state").cloned().unwrap_or(json!(""));
                if state == "idle" || state == "error" {
                    self.room.store(true, Ordering::Relaxed);
                }
                if state != "attention" {
                    // Answered elsewhere (the browser UI): stop waiting.
                    let pending = self.ws.get(&ws_id).and_then(|e| e.pending.clone());
                    if let Some(key) = pending {
                        let removed = lock(&self.waiting).remove(&key);
                        if let Some(waiting) = removed {
                            self.settle(&waiting).await;
                        }
                    }
                }
                let change = Outbound::new("state_change", &ws_id, "", json!({"state": state}));
                self.emit_ws_and_global(&ws_id, &change);
                let mut fields = event.clone();
                fields["node_id"] = Value::from(self.me.clone());
                self.emit_cluster(&Outbound::new("cluster_state", &ws_id, "", fields));
            }
            "ws_rename" => {
                let event = Outbound::new("ws_rename", &ws_id, "", event.clone());
                self.emit_global(&event);
                self.emit_cluster(&event);
            }
            "ws_closed" => {
                self.room.store(true, Ordering::Relaxed);
                let event = Outbound::new("ws_closed", &ws_id, "", event.clone());
                self.emit_global(&event);
                self.emit_cluster(&event);
                self.forget(&ws_id).await;
            }
            _ => {}
        }
    }

    async fn tick(&mut self) {
        // A full node looks for room again once a second, whatever it heard.
        self.room.store(true, Ordering::Relaxed);
        let now = Instant::now();
        let expired: Vec<Waiting> = {
            let mut waiting = lock(&self.waiting);
            let keys: Vec<String> = waiting
                .iter()
                .filter(|(_, w)| w.deadline <= now)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| waiting.remove(k)).collect()
        };
        for waiting in expired {
            tracing::warn!(ws_id = %waiting.ws_id, request_id = %waiting.request_id, "review timed out");
            let answered = match waiting.review {
                Review::Approval => {
                    self.port
                        .approve(
                            &waiting.ws_id,
                            false,
                            Some("Approval timed out".into()),
                            false,
                        )
                        .await
                }
                Review::Plan => self.port.plan_feedback(&waiting.ws_id, "reject").await,
            };
            if let Err(e) = answered {
                tracing::warn!(error = %e, "timed-out review not answered");
            }
            self.settle(&waiting).await;
        }
        if now >= self.next_heartbeat {
            self.heartbeat().await;
            if let Err(e) = self.reap().await {
                tracing::warn!(error = %e, "reaping failed");
            }
        }
    }

    /// Returns the work of nodes whose heartbeat expired: their in-flight messages to the
    /// queues they came from, and what waits in their own queue to the shared one (clients
    /// still route follow-ups to a dead owner until another node takes its workstreams over).
    /// A dead node found empty [`FORGET_AFTER`] times in a row is forgotten.
    async fn reap(&mut self) -> Result<(), TransportError> {
        if Instant::now() < self.reap_after {
            return Ok(());
        }
        let workers = self.transport.workers().await?;
        let live = self.transport.heartbeating(&workers).await?;
        for (node, live) in workers.into_iter().zip(live) {
            if node == self.me || live {
                self.empty_reaps.remove(&node);
                continue;
            }
            let returned = self.transport.reclaim(&node).await?;
            let moved = self
                .transport
                .requeue(&self.keys.directed(&node), &self.keys.shared())
                .await?;
            if returned + moved > 0 {
                tracing::warn!(%node, returned, moved, "returned a dead node's work to the queues");
                self.empty_reaps.remove(&node);
                continue;
            }
            let empty = self.empty_reaps.entry(node.clone()).or_insert(0);
            *empty += 1;
            if *empty >= FORGET_AFTER {
                self.transport.forget_worker(&node).await?;
                self.empty_reaps.remove(&node);
            }
        }
        Ok(())
    }

    /// Renews the heartbeat — only while the node really works: the consumer took a turn at
    /// the queue recently and the node answers a health check. A node that is up but stuck
    /// stops heartbeating, so it is no longer routed to and its work is reclaimed.
    async fn heartbeat(&mut self) {
        let interval = (self.settings.heartbeat_ttl / 2).max(Duration::from_millis(500));
        self.next_heartbeat = Instant::now() + interval;
        let since_start = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last_poll = self.last_poll.load(Ordering::Relaxed);
        let stalled_after = self.settings.poll.as_millis() as u64 * 3 + 5_000;
        let consuming = last_poll == 0 && since_start < stalled_after
            || since_start.saturating_sub(last_poll) < stalled_after;
        let health = tokio::time::timeout(Duration::from_secs(5), self.port.health()).await;
        // "degraded": the model backend's circuit is open, so turns would fail here.
        let healthy = matches!(&health, Ok(Ok(h)) if h["status"] == "ok");
        let accepting = consuming && healthy;
        if self.accepting.swap(accepting, Ordering::Relaxed) != accepting {
            if accepting {
                tracing::info!("node can work again: taking messages and heartbeating");
            } else {
                tracing::error!(
                    consuming,
                    healthy,
                    "node cannot work: no longer taking messages or heartbeating"
                );
                // Blocking fetches still pending would go on taking messages (also those the
                // reaper returns to this node's queue): dropped now, giving back what they
                // took.
                self.transport.release(&self.me).await;
            }
        }
        if !accepting {
            // Look again soon: a node waiting for its model should take work once it can.
            self.next_heartbeat = Instant::now() + interval.min(RECHECK_WHILE_UNABLE);
            return;
        }
        let mut metadata = json!({
            "server_url": self.port.server_url(),
            "started": self.started,
            "workstreams": self.ws.len(),
        });
        if let Some(max) = self.port.max_workstreams() {
            metadata["max_ws"] = json!(max);
        }
        if let Err(e) = self
            .transport
            .heartbeat(&self.me, metadata.to_string(), self.settings.heartbeat_ttl)
            .await
        {
            // Retry at the next tick, not a whole interval later: the key has at most half of
            // its TTL left, and Redis may just be restarting.
            self.next_heartbeat = Instant::now();
            self.reap_after = Instant::now() + interval;
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
}

/// How soon a node that cannot work is checked again.
const RECHECK_WHILE_UNABLE: Duration = Duration::from_secs(2);

/// The loop that takes inbound messages for the bridge.
struct Consumer {
    transport: Arc<dyn Transport>,
    keys: Keys,
    me: String,
    settings: BridgeSettings,
    last_poll: Arc<AtomicU64>,
    accepting: Arc<AtomicBool>,
    room: Arc<AtomicBool>,
    epoch: Instant,
    bridge: ActorRef<BridgeMsg>,
}

/// Takes inbound messages (directed queue first) while the bridge keeps up and the node can
/// work.
async fn consume(consumer: Consumer) {
    let Consumer {
        transport,
        keys,
        me,
        settings,
        last_poll,
        accepting,
        room,
        epoch,
        bridge,
    } = consumer;
    let from = [keys.directed(&me), keys.shared()];
    let directed_only = [keys.directed(&me)];
    let prefetch = Arc::new(Semaphore::new(settings.prefetch.max(1)));
    let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5));
    let mut failures = 0u32;
    loop {
        let Ok(permit) = prefetch.clone().acquire_owned().await else {
            return;
        };
        if !accepting.load(Ordering::Relaxed) {
            // Out of the cluster until the node can work again: other nodes take the work.
            tokio::time::sleep(settings.poll).await;
        } else {
            let queues: &[_] = if room.load(Ordering::Relaxed) {
                &from
            } else {
                &directed_only
            };
            match transport.receive(&me, queues, settings.poll).await {
                // Taken while the node stopped being able to work (the receive was under
                // way): back to its queue, for the other nodes.
                Ok(Some(delivery)) if !accepting.load(Ordering::Relaxed) => {
                    failures = 0;
                    settle_delivery(&*transport, &Out::Return(delivery), &backoff).await;
                }
                Ok(Some(delivery)) => {
                    failures = 0;
                    if bridge.cast(BridgeMsg::Inbound(delivery, permit)).is_err() {
                        return;
                    }
                    // Let the other nodes' consumers at the queue too.
                    tokio::task::yield_now().await;
                }
                Ok(None) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "receiving failed; retrying");
                    tokio::time::sleep(backoff.delay(failures)).await;
                }
            }
        }
        let elapsed = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        last_poll.store(elapsed.max(1), Ordering::Relaxed);
    }
}

/// Publishes events in order, batching what is queued into one round trip; acknowledges
/// deliveries only after the events before them went out.
async fn publish(
    transport: Arc<dyn Transport>,
    mut queue: mpsc::UnboundedReceiver<Out>,
    cap: usize,
) {
    let backoff = Backoff::exponential(Duration::from_millis(50), Duration::from_secs(5));
    let mut batch = Vec::new();
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < 512 {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut events = Vec::new();
        for out in batch.drain(..) {
            match out {
                Out::Event(emit) => events.push(emit),
                done => {
                    flush(transport.as_ref(), &mut events, cap, &backoff).await;
                    settle_delivery(transport.as_ref(), &done, &backoff).await;
                }
            }
        }
        flush(transport.as_ref(), &mut events, cap, &backoff).await;
    }
}

/// Acknowledges (or dead-letters, or returns) a delivery, retrying while Redis is
/// unreachable: a lost acknowledgement would leave the message in flight, to be run again if
/// this node dies.
async fn settle_delivery(transport: &dyn Transport, out: &Out, backoff: &Backoff) {
    match out {
        Out::Event(_) => {}
        Out::Ack(delivery) => {
            retrying("acknowledgement", backoff, || transport.ack(delivery)).await;
        }
        Out::DeadLetter(delivery, reason) => {
            retrying("dead-lettering", backoff, || {
                transport.dead_letter(delivery, reason)
            })
            .await;
        }
        // Pushed back once only (a retried push could queue it twice), then acknowledged;
        // while it is not pushed, it stays in flight here, for the reaper if this node dies.
        Out::Return(delivery) => {
            let pushed = retrying("returning a message", backoff, || {
                transport.push(&delivery.from, delivery.payload.clone())
            })
            .await;
            if pushed {
                retrying("acknowledgement", backoff, || transport.ack(delivery)).await;
            }
        }
    }
}

/// Runs `op` until it succeeds, retrying with backoff while Redis is unreachable; false if it
/// was refused (e.g. the message is already gone: reclaimed by another node after a long
/// outage) or given up after [`ACK_ATTEMPTS`] (the message stays in flight).
async fn retrying<F, Fut>(what: &str, backoff: &Backoff, mut op: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), TransportError>>,
{
    for attempt in 0..ACK_ATTEMPTS {
        match op().await {
            Ok(()) => return true,
            Err(TransportError::Backend(e)) => {
                tracing::warn!(error = %e, attempt, "{what} failed; retrying");
                tokio::time::sleep(backoff.delay(attempt + 1)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what} refused");
                return false;
            }
        }
    }
    tracing::error!("{what} given up; the message stays in flight");
    false
}

/// Emits until Redis takes the events (it may be restarting).
async fn flush(transport: &dyn Transport, events: &mut Vec<Emit>, cap: usize, backoff: &Backoff) {
    if events.is_empty() {
        return;
    }
    let mut failures = 0u32;
    let mut attempt = Attempt::First;
    while let Err(e) = transport.emit(events, cap, attempt).await {
        attempt = Attempt::Retry;
        failures += 1;
        tracing::warn!(error = %e, failures, "publishing events failed; retrying");
        tokio::time::sleep(backoff.delay(failures)).await;
    }
    events.clear();
}

/// Waits on the reply lists of the reviews in progress.
async fn await_replies(
    transport: Arc<dyn Transport>,
    waiting: Arc<Mutex<HashMap<String, Waiting>>>,
    changed: Arc<Notify>,
    bridge: ActorRef<BridgeMsg>,
) {
    loop {
        let keys: Vec<String> = lock(&waiting).keys().cloned().collect();
        if keys.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), changed.notified()).await;
            continue;
        }
        match transport
            .take_reply(&keys, Duration::from_millis(500))
            .await
        {
            Ok(Some((key, payload))) => {
                if bridge.cast(BridgeMsg::Reply { key, payload }).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "waiting for answers failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
