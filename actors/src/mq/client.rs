//! `TurnstoneClient`: queue-driven work from Rust (SPEC §1), async and blocking.
//!
//! Messages are routed as 0.4.1's client routes them (target node → the workstream's owner →
//! the shared queue). Events are read from the durable per-workstream and global streams the
//! bridges keep beside their pub/sub channels, from a position taken *before* the message is
//! pushed — so a fast node, a late subscription or a reconnect never loses an event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use turnstone_runtime::remote::{Route, STREAM_START, Transport, TransportError};

use super::keys::Keys;
use super::protocol::{
    ApproveMsg, CloseMsg, CommandMsg, CreateMsg, Event, Inbound, PlanFeedbackMsg, QueryMsg,
    SendMsg, node_entry,
};

/// The longest single blocking read.
const READ_SLICE: Duration = Duration::from_secs(1);

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Redis (or the transport) failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The blocking client could not start its runtime.
    #[error("cannot start the client runtime: {0}")]
    Runtime(String),
}

/// Sees each event of a turn.
pub type EventCallback = Box<dyn FnMut(&Event) + Send>;

/// What `send_and_wait` sends and how long it waits.
pub struct SendRequest {
    /// The user message.
    pub message: String,
    /// The workstream ("" creates one).
    pub ws_id: String,
    /// Name of a created workstream.
    pub name: String,
    /// Approve every tool call (default true, as 0.4.1's client).
    pub auto_approve: bool,
    /// Tools approved without asking.
    pub auto_approve_tools: Vec<String>,
    /// The node that must handle it ("" for any).
    pub target_node: String,
    /// How long to wait for the turn (default 600 s).
    pub timeout: Duration,
    /// Sees every event of the turn as it arrives.
    pub on_event: Option<EventCallback>,
}

impl std::fmt::Debug for SendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRequest")
            .field("ws_id", &self.ws_id)
            .field("target_node", &self.target_node)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SendRequest {
    /// A message with 0.4.1's defaults.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ws_id: String::new(),
            name: String::new(),
            auto_approve: true,
            auto_approve_tools: Vec::new(),
            target_node: String::new(),
            timeout: Duration::from_secs(600),
            on_event: None,
        }
    }

    /// To this workstream.
    pub fn ws(mut self, ws_id: impl Into<String>) -> Self {
        self.ws_id = ws_id.into();
        self
    }

    /// To this node.
    pub fn target(mut self, node: impl Into<String>) -> Self {
        self.target_node = node.into();
        self
    }

    /// Approve every call or not.
    pub fn auto_approve(mut self, yes: bool) -> Self {
        self.auto_approve = yes;
        self
    }

    /// Approve calls to only these tools.
    pub fn auto_approve_tools(mut self, tools: &[&str]) -> Self {
        self.auto_approve_tools = tools.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// Wait at most this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Watch the events.
    pub fn on_event(mut self, f: impl FnMut(&Event) + Send + 'static) -> Self {
        self.on_event = Some(Box::new(f));
        self
    }
}

/// A turn's outcome (0.4.1's `TurnResult`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TurnResult {
    /// The `send`'s correlation id.
    pub correlation_id: String,
    /// The workstream (created if none was given).
    pub ws_id: String,
    /// Answer text, as streamed.
    pub content_parts: Vec<String>,
    /// Reasoning text, as streamed.
    pub reasoning_parts: Vec<String>,
    /// `(tool name, output)` of each call.
    pub tool_results: Vec<(String, String)>,
    /// Error messages.
    pub errors: Vec<String>,
    /// No `turn_complete` in time.
    pub timed_out: bool,
}

impl TurnResult {
    /// The whole answer.
    pub fn content(&self) -> String {
        self.content_parts.concat()
    }

    /// The whole reasoning.
    pub fn reasoning(&self) -> String {
        self.reasoning_parts.concat()
    }

    /// Completed without errors.
    pub fn ok(&self) -> bool {
        !self.timed_out && self.errors.is_empty()
    }
}

/// Events of one workstream (or the global stream), in order, from where it was opened.
pub struct EventStream {
    transport: Arc<dyn Transport>,
    stream: String,
    cursor: String,
    buffered: VecDeque<Event>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("stream", &self.stream)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// The next event, waiting up to `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Ok(Some(event));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let entries = self
                .transport
                .read_streams(
                    &[(self.stream.clone(), self.cursor.clone())],
                    left.min(READ_SLICE),
                )
                .await?;
            for entry in entries {
                self.cursor = entry.id;
                if let Some(event) = Event::parse(&entry.payload) {
                    self.buffered.push_back(event);
                }
            }
        }
    }
}

/// The queue client.
#[derive(Clone)]
pub struct TurnstoneClient {
    transport: Arc<dyn Transport>,
    keys: Keys,
}

impl std::fmt::Debug for TurnstoneClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnstoneClient")
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl TurnstoneClient {
    /// A client on a transport (its prefix names the keys).
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        let keys = Keys::new(transport.prefix());
        Self { transport, keys }
    }

    /// Connects to Redis at `url` (`redis://[:password@]host:port/db`, `rediss://` for TLS).
    #[cfg(feature = "redis")]
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, ClientError> {
        let transport = turnstone_runtime::remote::RedisTransport::connect(url, prefix).await?;
        Ok(Self::new(Arc::new(transport)))
    }

    /// The transport under the client.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// The cluster's key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Pushes a message where it must go; returns its correlation id.
    pub async fn push(&self, mut message: Inbound) -> Result<String, ClientError> {
        let (span, raw) = super::spans::encode_published(&mut message, |m| self.destination(m));
        tracing::Instrument::instrument(self.deliver(&message, raw, None), span).await?;
        Ok(message.correlation_id().to_owned())
    }

    /// The queue `message` is meant for, as spans name it: its target node's directed queue,
    /// else the shared one (which `deliver` may trade for a live owner's).
    fn destination(&self, message: &Inbound) -> String {
        let target = message.target_node();
        super::spans::destination_name(&if target.is_empty() {
            self.keys.shared()
        } else {
            self.keys.directed(target)
        })
    }

    /// Pushes `message` (encoded as `raw`) to its queue: its target node's, else its
    /// workstream owner's while that node lives (any node takes over a dead owner's
    /// workstream), else the shared one — after reading the position of `tail_of`, if given.
    /// One round trip: the route is looked up where the message is pushed.
    async fn deliver(
        &self,
        message: &Inbound,
        raw: String,
        tail_of: Option<&str>,
    ) -> Result<Option<String>, ClientError> {
        let (target, ws_id) = (message.target_node(), message.ws_id());
        let owner_key = self.keys.owner(ws_id);
        let shared = self.keys.shared();
        let route = Route {
            owner: (target.is_empty() && !ws_id.is_empty()).then_some(owner_key.as_str()),
            owner_queue: &shared.queue,
            fallback: if target.is_empty() {
                shared.clone()
            } else {
                self.keys.directed(target)
            },
            tail_of,
        };
        let (_, tail) = self.transport.push_routed(&route, raw).await?;
        Ok(tail)
    }

    /// Sends a message without waiting.
    pub async fn send(&self, message: SendMsg) -> Result<String, ClientError> {
        self.push(Inbound::Send(message)).await
    }

    /// Asks for a workstream; `ws_created` with the returned id announces it.
    pub async fn create_workstream(&self, create: CreateMsg) -> Result<String, ClientError> {
        self.push(Inbound::CreateWorkstream(create)).await
    }

    /// Closes a workstream.
    pub async fn close_workstream(&self, ws_id: &str) -> Result<String, ClientError> {
        self.push(Inbound::CloseWorkstream(CloseMsg {
            ws_id: ws_id.to_owned(),
            ..CloseMsg::default()
        }))
        .await
    }

    /// Runs a slash command.
    pub async fn command(&self, ws_id: &str, command: &str) -> Result<String, ClientError> {
        self.push(Inbound::Command(CommandMsg {
            ws_id: ws_id.to_owned(),
            command: command.to_owned(),
            ..CommandMsg::default()
        }))
        .await
    }

    /// Asks some node for its workstreams (answered as `ws_list`).
    pub async fn list_workstreams(&self) -> Result<String, ClientError> {
        self.push(Inbound::ListWorkstreams(QueryMsg::default()))
            .await
    }

    /// Asks some node for its health (answered as `health_response`).
    pub async fn health(&self) -> Result<String, ClientError> {
        self.push(Inbound::Health(QueryMsg::default())).await
    }

    /// Sends a query and waits for the global event answering it.
    pub async fn ask(&self, message: Inbound, timeout: Duration) -> Result<Event, ClientError> {
        let mut global = self.subscribe_global().await?;
        let cid = self.push(message).await?;
        let deadline = Instant::now() + timeout;
        while let Some(event) = global
            .next(deadline.saturating_duration_since(Instant::now()))
            .await?
        {
            if event.correlation_id == cid {
                return Ok(event);
            }
        }
        Err(ClientError::Timeout(timeout))
    }

    /// The live nodes with their metadata and `node_id`, read from Redis.
    pub async fn list_nodes(&self) -> Result<Vec<Value>, ClientError> {
        Ok(self
            .transport
            .live_nodes()
            .await?
            .into_iter()
            .map(|(node, metadata)| node_entry(node, &metadata))
            .collect())
    }

    /// Answers an `approval_request` (its correlation id is the request id).
    pub async fn approve(
        &self,
        ws_id: &str,
        request_id: &str,
        approved: bool,
        feedback: Option<String>,
        always: bool,
    ) -> Result<(), ClientError> {
        self.answer(
            request_id,
            Inbound::Approve(ApproveMsg {
                ws_id: ws_id.to_owned(),
                request_id: request_id.to_owned(),
                approved,
                feedback,
                always,
                ..ApproveMsg::default()
            }),
        )
        .await
    }

    /// Answers a `plan_review` ("" approves).
    pub async fn plan_feedback(
        &self,
        ws_id: &str,
        request_id: &str,
        feedback: &str,
    ) -> Result<(), ClientError> {
        self.answer(
            request_id,
            Inbound::PlanFeedback(PlanFeedbackMsg {
                ws_id: ws_id.to_owned(),
                request_id: request_id.to_owned(),
                feedback: feedback.to_owned(),
                ..PlanFeedbackMsg::default()
            }),
        )
        .await
    }

    /// Pushes an answer straight to the reply list of `request_id`.
    async fn answer(&self, request_id: &str, mut answer: Inbound) -> Result<(), ClientError> {
        self.transport
            .reply(
                &self.keys.resp(request_id),
                answer.encode(),
                super::bridge::REPLY_TTL,
            )
            .await?;
        Ok(())
    }

    /// A workstream's events from now on.
    pub async fn subscribe(&self, ws_id: &str) -> Result<EventStream, ClientError> {
        self.open_stream(self.keys.ws_stream(ws_id)).await
    }

    /// A workstream's events still kept, from its first.
    pub fn replay(&self, ws_id: &str) -> EventStream {
        EventStream {
            transport: self.transport.clone(),
            stream: self.keys.ws_stream(ws_id),
            cursor: STREAM_START.to_owned(),
            buffered: VecDeque::new(),
        }
    }

    /// Node-wide events from now on.
    pub async fn subscribe_global(&self) -> Result<EventStream, ClientError> {
        self.open_stream(self.keys.global_stream()).await
    }

    async fn open_stream(&self, stream: String) -> Result<EventStream, ClientError> {
        let cursor = self.transport.stream_tail(&stream).await?;
        Ok(self.stream_at(stream, cursor))
    }

    fn stream_at(&self, stream: String, cursor: String) -> EventStream {
        EventStream {
            transport: self.transport.clone(),
            stream,
            cursor,
            buffered: VecDeque::new(),
        }
    }

    /// Sends a message and waits for its turn to complete.
    pub async fn send_and_wait(&self, mut request: SendRequest) -> Result<TurnResult, ClientError> {
        let message = SendMsg {
            ws_id: request.ws_id.clone(),
            message: request.message.clone(),
            auto_approve: request.auto_approve,
            auto_approve_tools: std::mem::take(&mut request.auto_approve_tools),
            name: request.name.clone(),
            target_node: request.target_node.clone(),
            reads_stream: true,
            ..SendMsg::default()
        };
        // The stream's position is read before the push, in the same step: nothing the turn
        // publishes can be missed.
        let mut inbound = Inbound::Send(message);
        let (span, raw) = super::spans::encode_published(&mut inbound, |m| self.destination(m));
        let stream = if request.ws_id.is_empty() {
            self.keys.global_stream()
        } else {
            self.keys.ws_stream(&request.ws_id)
        };
        let cursor =
            tracing::Instrument::instrument(self.deliver(&inbound, raw, Some(&stream)), span)
                .await?
                .unwrap_or_else(|| STREAM_START.to_owned());
        let position = self.stream_at(stream, cursor);
        let (mut global, mut ws) = if request.ws_id.is_empty() {
            (Some(position), None)
        } else {
            (None, Some(position))
        };
        let cid = inbound.correlation_id().to_owned();
        let mut result = TurnResult {
            correlation_id: cid.clone(),
            ws_id: request.ws_id.clone(),
            ..TurnResult::default()
        };
        let deadline = Instant::now() + request.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                result.timed_out = true;
                return Ok(result);
            }
            let slice = left.min(READ_SLICE);
            let event = match (&mut ws, &mut global) {
                (Some(ws), _) => ws.next(slice).await?,
                (None, Some(global)) => global.next(slice).await?,
                (None, None) => None,
            };
            let Some(event) = event else { continue };
            if let Some(f) = request.on_event.as_mut() {
                f(&event);
            }
            let ours = event.correlation_id == cid;
            if ws.is_none() {
                if ours && event.kind == "ws_created" {
                    result.ws_id = event.ws_id.clone();
                    ws = Some(self.replay(&event.ws_id));
                    global = None;
                } else if ours && event.kind == "ack" && event.str("status") == "error" {
                    result.errors.push(event.str("detail").to_owned());
                    return Ok(result);
                } else if ours && event.kind == "error" {
                    result.errors.push(event.str("message").to_owned());
                    return Ok(result);
                }
                continue;
            }
            match event.kind.as_str() {
                "content" => result.content_parts.push(event.str("text").to_owned()),
                "reasoning" => result.reasoning_parts.push(event.str("text").to_owned()),
                "tool_result" => result
                    .tool_results
                    .push((event.str("name").to_owned(), event.str("output").to_owned())),
                "error" => {
                    result.errors.push(event.str("message").to_owned());
                    if ours {
                        return Ok(result); // refused before a turn started
                    }
                }
                "ack" if ours && event.str("status") == "error" => {
                    result.errors.push(event.str("detail").to_owned());
                    return Ok(result);
                }
                "turn_complete" if ours => return Ok(result),
                _ => {}
            }
        }
    }
}

/// The same client for code without an async runtime: each call blocks.
#[derive(Debug)]
pub struct BlockingClient {
    runtime: tokio::runtime::Runtime,
    client: TurnstoneClient,
}

impl BlockingClient {
    /// Connects to Redis at `url`.
    #[cfg(feature = "redis")]
    pub fn connect(url: &str, prefix: &str) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Runtime(e.to_string()))?;
        let client = runtime.block_on(TurnstoneClient::connect(url, prefix))?;
        Ok(Self { runtime, client })
    }

    /// Runs any async client call to completion.
    pub fn run<T>(
        &self,
        f: impl AsyncFnOnce(&TurnstoneClient) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        self.runtime.block_on(f(&self.client))
    }

    /// Sends a message and waits for its turn to complete.
    pub fn send_and_wait(&self, request: SendRequest) -> Result<TurnResult, ClientError> {
        self.runtime.block_on(self.client.send_and_wait(request))
    }

    /// The live nodes.
    pub fn list_nodes(&self) -> Result<Vec<Value>, ClientError> {
        self.runtime.block_on(self.client.list_nodes())
    }
}
