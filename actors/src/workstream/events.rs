//! What a workstream tells the world, in Turnstone's SSE event shapes (SPEC §2.1, §2.2).

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::tools::ToolItem;

/// A workstream's event channel, for any number of subscribers. Its ring holds shared
/// pointers: each event is allocated once and every subscriber gets the same one (a ring of
/// 512 whole events, 57 KB, was most of an idle workstream's memory, and every subscriber
/// received a deep copy of each event).
#[derive(Clone, Debug)]
pub struct EventChannel(broadcast::Sender<Arc<WsEvent>>);

impl EventChannel {
    /// A channel keeping the last `capacity` events for subscribers that fall behind.
    pub fn new(capacity: usize) -> Self {
        Self(broadcast::channel(capacity.max(1)).0)
    }

    /// Publishes `event`; returns how many subscribers will see it (none is fine: nobody is
    /// watching the workstream right now).
    pub fn send(&self, event: WsEvent) -> usize {
        self.0.send(Arc::new(event)).unwrap_or(0)
    }

    /// The events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WsEvent>> {
        self.0.subscribe()
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
