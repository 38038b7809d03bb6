//! What a workstream tells the world, in Turnstone's SSE event shapes (SPEC §2.1, §2.2).

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::tools::ToolItem;

/// A workstream's event channel, for any number of subscribers and taps.
///
/// - A **subscriber** gets a receiver on a broadcast ring of shared pointers: each event is
///   allocated once and every subscriber gets the same one (a ring of 512 whole events, 57 KB,
///   was most of an idle workstream's memory, and every subscriber received a deep copy of
///   each event). The ring is allocated when the first subscriber comes, so a workstream that
///   nobody follows this way costs none.
/// - A **tap** is called with each event, in order, inside `send`: for a consumer that only
///   hands events on without waiting (a cast into a bridge's mailbox), it saves the ring, a
///   task and a wake-up per event, and cannot fall behind and lose events as a lagging
///   subscriber does.
#[derive(Clone)]
pub struct EventChannel {
    capacity: usize,
    live: Arc<OnceLock<broadcast::Sender<Arc<WsEvent>>>>,
    taps: Arc<Mutex<Vec<Tap>>>,
}

/// A tap: false once it wants no more events.
type Tap = Box<dyn FnMut(&WsEvent) -> bool + Send>;

impl std::fmt::Debug for EventChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventChannel")
            .field("capacity", &self.capacity)
            .field(
                "subscribers",
                &self.live.get().map_or(0, broadcast::Sender::receiver_count),
            )
            .field("taps", &self.taps().len())
            .finish()
    }
}

impl EventChannel {
    /// A channel keeping the last `capacity` events for subscribers that fall behind.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            live: Arc::default(),
            taps: Arc::default(),
        }
    }

    fn taps(&self) -> MutexGuard<'_, Vec<Tap>> {
        self.taps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes `event` to the taps, then to the subscribers; returns how many subscribers
    /// will see it (none is fine: nobody is watching the workstream right now).
    pub fn send(&self, event: WsEvent) -> usize {
        {
            let mut taps = self.taps();
            if !taps.is_empty() {
                taps.retain_mut(|tap| tap(&event));
            }
        }
        match self.live.get() {
            Some(live) if live.receiver_count() > 0 => live.send(Arc::new(event)).unwrap_or(0),
            _ => 0,
        }
    }

    /// The events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WsEvent>> {
        self.live
            .get_or_init(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Calls `tap` with every event from now on, in the sending task, until it returns false
    /// or the channel goes. It must not wait: it runs inside every `send`.
    pub fn tap(&self, tap: impl FnMut(&WsEvent) -> bool + Send + 'static) {
        self.taps().push(Box::new(tap));
    }
}

/// A workstream's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WsState {
    /// Waiting for a message.
    #[default]
    Idle,
    /// The model is streaming.
    Thinking,
    /// Tools are running.
    Running,
    /// Waiting for a person (approval or plan review).
    Attention,
    /// The last turn failed.
    Error,
}

impl WsState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Thinking => "thinking",
            Self::Running => "running",
            Self::Attention => "attention",
            Self::Error => "error",
        }
    }

    /// Whether a turn is in progress (the workstream must not be evicted).
    pub fn is_busy(self) -> bool {
        matches!(self, Self::Thinking | Self::Running | Self::Attention)
    }
}

/// An event on one workstream's stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WsEvent {
    /// The model started.
    ThinkingStart,
    /// The model stopped.
    ThinkingStop,
    /// The turn ended.
    StreamEnd,
    /// Answer text.
    Content {
        /// The text.
        text: String,
    },
    /// Reasoning text.
    Reasoning {
        /// The text.
        text: String,
    },
    /// Calls that run without asking.
    ToolInfo {
        /// The calls.
        items: Vec<ToolItem>,
    },
    /// Calls waiting for approval.
    ApproveRequest {
        /// The calls.
        items: Vec<ToolItem>,
    },
    /// A call's result.
    ToolResult {
        /// The call.
        call_id: String,
        /// The tool.
        name: String,
        /// What it returned.
        output: String,
    },
    /// Streamed output of a running call.
    ToolOutputChunk {
        /// The call.
        call_id: String,
        /// The chunk.
        chunk: String,
    },
    /// Token usage after a model request.
    Status {
        /// Prompt tokens of the last request (the context in use).
        prompt_tokens: u64,
        /// Completion tokens of the last request.
        completion_tokens: u64,
        /// Their sum.
        total_tokens: u64,
        /// The model's context window.
        context_window: u32,
        /// Context used, percent, one decimal.
        pct: f64,
        /// Reasoning effort.
        effort: String,
    },
    /// A plan waiting for review.
    PlanReview {
        /// The plan.
        content: String,
    },
    /// Information.
    Info {
        /// The message.
        message: String,
    },
    /// An error.
    Error {
        /// The message.
        message: String,
    },
    /// A message arrived while a turn was running.
    BusyError {
        /// The message.
        message: String,
    },
}

/// An event on the node-wide stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GlobalEvent {
    /// A workstream changed state.
    WsState {
        /// Which.
        ws_id: String,
        /// New state.
        state: WsState,
        /// Cumulative prompt + completion tokens.
        tokens: u64,
        /// Context used, 0–1.
        context_ratio: f64,
        /// What it is doing, for people.
        activity: String,
        /// `thinking`, `tool`, `approval` or empty.
        activity_state: String,
    },
    /// A workstream was renamed.
    WsRename {
        /// Which.
        ws_id: String,
        /// New name.
        name: String,
    },
    /// A workstream went away.
    WsClosed {
        /// Which.
        ws_id: String,
        /// `evicted`, `idle` or `closed`.
        reason: String,
        /// Its name.
        name: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> WsEvent {
        WsEvent::Content { text: t.into() }
    }

    #[tokio::test]
    async fn taps_see_every_event_in_order_until_they_decline_and_subscribers_still_get_theirs() {
        let channel = EventChannel::new(8);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        channel.tap(move |e| {
            let mut log = log.lock().unwrap();
            log.push(e.clone());
            log.len() < 2 // declines after the second event
        });
        assert_eq!(channel.send(text("before anyone subscribed")), 0);
        let mut live = channel.subscribe();
        assert_eq!(channel.send(text("one")), 1);
        assert_eq!(channel.send(text("two")), 1);
        assert_eq!(
            *seen.lock().unwrap(),
            [text("before anyone subscribed"), text("one")]
        );
        assert_eq!(*live.recv().await.unwrap(), text("one"));
        assert_eq!(*live.recv().await.unwrap(), text("two"));
        assert!(format!("{channel:?}").contains("taps: 0"));
    }
}
