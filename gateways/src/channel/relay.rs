//! A workstream's events shown in its thread (SPEC §13): one relay actor per routed
//! workstream reads the workstream's event stream and turns its content into one message,
//! edited at most every [`EDIT_EVERY`] while the answer is written, split into more messages
//! when it outgrows the platform's limit, and finished on `turn_complete`. Approval requests
//! and plan reviews become prompts; errors a short notice. A platform that says "slow down"
//! is waited for, and the edits due meanwhile collapse into one.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use turnstone_actors::mq::{Event, EventStream, TurnstoneClient};
use turnstone_runtime::ractor::{Actor, ActorProcessingErr, ActorRef};

use super::adapter::{Adapter, AdapterError, ApprovalPrompt, patiently};
use super::chunk::{chunks, truncate};

/// The shortest time between two edits of one message.
pub const EDIT_EVERY: Duration = Duration::from_millis(1500);

/// Characters of an error shown in chat.
pub const ERROR_CHARS: usize = 500;

/// How long one read of the event stream waits.
const READ_SLICE: Duration = Duration::from_secs(5);

/// Where a relay starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// The workstream's first event (a workstream made just now).
    Start,
    /// Events from now on.
    Now,
}

/// What a relay is started with.
#[derive(Clone)]
pub struct RelayArgs {
    /// The workstream.
    pub ws_id: String,
    /// Its thread.
    pub channel_id: String,
    /// The thread's platform.
    pub adapter: Arc<dyn Adapter>,
    /// The queue client.
    pub client: TurnstoneClient,
    /// Where to start.
    pub from: From,
    /// Tools approved in chat without asking (beside the workstream's own set).
    pub auto_approve_tools: Vec<String>,
    /// Approve everything without asking.
    pub auto_approve: bool,
}

impl std::fmt::Debug for RelayArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayArgs")
            .field("ws_id", &self.ws_id)
            .field("channel_id", &self.channel_id)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// The relay actor.
#[derive(Debug)]
pub struct Relay;

/// Its messages.
#[derive(Debug)]
pub enum RelayMsg {
    /// An event of the workstream.
    Event(Box<Event>),
    /// Show what is pending now (an edit came due).
    Flush,
    /// The event stream failed.
    Ended(String),
}

/// A run of answer text shown as one message (or several, past the platform's limit): a
/// turn's answer, or the part of it before a prompt.
#[derive(Debug, Default)]
struct Segment {
    /// The text so far.
    text: String,
    /// The messages showing it, with the text each shows.
    shown: Vec<(String, String)>,
}

/// Its state: the answer being written and the messages showing it.
pub struct RelayState {
    args: RelayArgs,
    pump: Option<JoinHandle<()>>,
    /// Oldest first; the last is being written. Earlier ones are kept only while the platform
    /// has not let the bot show them whole (a rate limit at the end of a turn).
    segments: std::collections::VecDeque<Segment>,
    last_edit: Option<Instant>,
    flush_due: bool,
    blocked_until: Option<Instant>,
}

impl Actor for Relay {
    type Msg = RelayMsg;
    type State = RelayState;
    type Arguments = RelayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RelayMsg>,
        args: RelayArgs,
    ) -> Result<RelayState, ActorProcessingErr> {
        let stream = match args.from {
            From::Start => args.client.replay(&args.ws_id),
            From::Now => args.client.subscribe(&args.ws_id).await?,
        };
        let pump = tokio::spawn(pump(stream, myself));
        Ok(RelayState {
            args,
            pump: Some(pump),
            segments: std::collections::VecDeque::from([Segment::default()]),
            last_edit: None,
            flush_due: false,
            blocked_until: None,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<RelayMsg>,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(pump) = state.pump.take() {
            pump.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RelayMsg>,
        msg: RelayMsg,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RelayMsg::Event(event) => state.on_event(&myself, *event).await,
            RelayMsg::Flush => {
                // A timer set for an earlier message may fire early for this one: the
                // schedule is checked again.
                state.flush_due = false;
                state.edit_soon(&myself).await;
            }
            RelayMsg::Ended(why) => return Err(why.into()),
        }
        Ok(())
    }
}

/// Moves the stream's events into the relay's mailbox.
async fn pump(mut stream: EventStream, relay: ActorRef<RelayMsg>) {
    loop {
        match stream.next(READ_SLICE).await {
            Ok(Some(event)) => {
                if relay.cast(RelayMsg::Event(Box::new(event))).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = relay.cast(RelayMsg::Ended(format!("the event stream failed: {e}")));
                return;
            }
        }
    }
}

impl RelayState {
    async fn on_event(&mut self, myself: &ActorRef<RelayMsg>, event: Event) {
        match event.kind.as_str() {
            "content" => {
                self.current().text.push_str(event.str("text"));
                self.edit_soon(myself).await;
            }
            "turn_complete" => {
                self.render(myself).await;
                self.end_turn();
            }
            "error" => {
                self.settle(myself).await;
                self.end_turn();
                let text = format!("⚠️ {}", truncate(event.str("message"), ERROR_CHARS));
                self.say(&text).await;
            }
            "approval_request" => {
                // What was written so far is shown whole before the prompt, and what comes
                // after the answer starts a message below it.
                self.settle(myself).await;
                self.end_turn();
                self.ask_approval(&event).await;
            }
            "plan_review" => {
                self.settle(myself).await;
                let plan = event.str("content");
                let (adapter, args) = (&self.args.adapter, &self.args);
                let sent = patiently(|| {
                    adapter.send_plan_review(
                        &args.channel_id,
                        &args.ws_id,
                        &event.correlation_id,
                        plan,
                    )
                })
                .await;
                if let Err(e) = sent {
                    tracing::warn!(ws_id = %self.args.ws_id, error = %e, "cannot show the plan");
                }
                self.end_turn();
            }
            "session_resumed" => {
                let count = event
                    .fields
                    .get("message_count")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                self.say(&format!(
                    "↩️ Resumed the earlier conversation ({count} messages)."
                ))
                .await;
            }
            _ => {}
        }
    }

    /// A turn (or the part of it before a prompt) ended: the next content starts a new
    /// message.
    fn end_turn(&mut self) {
        if !self.current().text.is_empty() {
            self.segments.push_back(Segment::default());
        }
    }

    fn current(&mut self) -> &mut Segment {
        if self.segments.is_empty() {
            self.segments.push_back(Segment::default());
        }
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Shows new content now if the last edit is old enough, else when it will be.
    async fn edit_soon(&mut self, myself: &ActorRef<RelayMsg>) {
        let now = Instant::now();
        let due = match (self.blocked_until, self.last_edit) {
            (Some(until), _) if until > now => until,
            // A new message is posted at once.
            _ if self.segments.back().is_none_or(|s| s.shown.is_empty()) => now,
            (_, Some(last)) => last + EDIT_EVERY,
            (_, None) => now,
        };
        if due <= now {
            self.render(myself).await;
        } else {
            self.flush_at(myself, due);
        }
    }

    fn flush_at(&mut self, myself: &ActorRef<RelayMsg>, at: Instant) {
        if self.flush_due {
            return;
        }
        self.flush_due = true;
        myself.send_after(at.saturating_duration_since(Instant::now()), || {
            RelayMsg::Flush
        });
    }

    /// Brings the thread's messages up to the text written so far, oldest segment first.
    async fn render(&mut self, myself: &ActorRef<RelayMsg>) {
        let now = Instant::now();
        if let Some(until) = self.blocked_until {
            if until > now {
                self.flush_at(myself, until);
                return;
            }
            self.blocked_until = None;
        }
        let adapter = self.args.adapter.clone();
        let limit = adapter.message_limit();
        let (ws_id, channel_id) = (self.args.ws_id.clone(), self.args.channel_id.clone());
        let mut index = 0;
        while index < self.segments.len() {
            let segment = &mut self.segments[index];
            let parts = chunks(&segment.text, limit);
            for (i, part) in parts.iter().enumerate() {
                if segment.text.is_empty() {
                    break;
                }
                let result = match segment.shown.get(i) {
                    Some((_, shown)) if shown == part => continue,
                    Some((id, _)) => adapter
                        .edit_message(&channel_id, id, part)
                        .await
                        .map(|()| None),
                    None => adapter.send(&channel_id, part).await.map(Some),
                };
                self.last_edit = Some(Instant::now());
                match result {
                    Ok(Some(id)) => segment.shown.push((id, part.clone())),
                    Ok(None) => segment.shown[i].1.clone_from(part),
                    Err(AdapterError::RateLimited(wait)) => {
                        tracing::debug!(%ws_id, ?wait, "rate limited; edits wait");
                        let until = Instant::now() + wait;
                        self.blocked_until = Some(until);
                        self.flush_at(myself, until);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(%ws_id, error = %e, "cannot show the answer");
                        // A finished part the platform refuses is given up, not retried forever.
                        if index + 1 < self.segments.len() {
                            self.segments.remove(index);
                        }
                        return;
                    }
                }
            }
            index += 1;
        }
        // Finished segments are shown whole now: only the one being written is kept.
        while self.segments.len() > 1 {
            self.segments.pop_front();
        }
    }

    /// Shows everything written so far before what comes next (a prompt, a notice), waiting
    /// out the platform's rate limit if it must (a few times at most).
    async fn settle(&mut self, myself: &ActorRef<RelayMsg>) {
        for _ in 0..5 {
            if let Some(until) = self.blocked_until {
                tokio::time::sleep_until(until).await;
            }
            self.render(myself).await;
            if self.blocked_until.is_none() {
                return;
            }
        }
    }

    /// A notice in the thread (logged when it cannot be posted).
    async fn say(&self, text: &str) {
        let adapter = &self.args.adapter;
        if let Err(e) = patiently(|| adapter.send(&self.args.channel_id, text)).await {
            tracing::warn!(ws_id = %self.args.ws_id, error = %e, "cannot post to the thread");
        }
    }

    async fn ask_approval(&self, event: &Event) {
        let items: Vec<serde_json::Value> = event
            .fields
            .get("items")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        let whitelisted = |item: &serde_json::Value| {
            let allowed = |key: &str| {
                item.get(key)
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|name| self.args.auto_approve_tools.iter().any(|t| t == name))
            };
            allowed("func_name") || allowed("approval_label")
        };
        if self.args.auto_approve || (!items.is_empty() && items.iter().all(whitelisted)) {
            let answered = self
                .args
                .client
                .approve(&self.args.ws_id, &event.correlation_id, true, None, false)
                .await;
            if let Err(e) = answered {
                tracing::warn!(ws_id = %self.args.ws_id, error = %e, "cannot approve");
            }
            return;
        }
        let prompt = ApprovalPrompt {
            ws_id: self.args.ws_id.clone(),
            request_id: event.correlation_id.clone(),
            items,
        };
        let adapter = &self.args.adapter;
        if let Err(e) =
            patiently(|| adapter.send_approval_request(&self.args.channel_id, &prompt)).await
        {
            tracing::warn!(ws_id = %self.args.ws_id, error = %e, "cannot ask for approval");
        }
    }
}
