//! Workstreams: one conversation each, as a supervised actor that drives the turn loop, runs
//! tool calls as child actors and answers status, approvals and cancel at any time.

mod actor;
mod context;
mod events;
mod manager;
mod prompt;
mod transcript;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

pub use actor::{SessionSettings, Setting, WorkstreamActor, WorkstreamMsg};
pub use context::TITLE_PROMPT;
pub use events::{EventChannel, GlobalEvent, WsEvent, WsState};
pub use manager::{ManagerError, WorkstreamHandle, WorkstreamManager};
pub use prompt::system_prompt;

use crate::config::TurnstoneConfig;
use crate::provider::{ChatMessage, ModelRouter};
use crate::storage::Store;
use crate::tools::ToolRegistry;

/// What every workstream of a node shares.
#[derive(Clone, Debug)]
pub struct WorkstreamDeps {
    /// The model lanes.
    pub router: ModelRouter,
    /// The tools.
    pub tools: ToolRegistry,
    /// The configuration.
    pub config: Arc<TurnstoneConfig>,
    /// Node-wide events.
    pub global: broadcast::Sender<GlobalEvent>,
    /// Where tools run.
    pub workdir: PathBuf,
    /// The database (None: conversations live in memory only).
    pub store: Option<Store>,
    /// This node's id, recorded with sessions and workstreams.
    pub node_id: String,
}

/// Per-workstream choices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkstreamOptions {
    /// Approve every call without asking (also set by "always").
    pub auto_approve: bool,
    /// Calls to only these tools are approved without asking.
    pub auto_approve_tools: BTreeSet<String>,
    /// Model alias (None: the router's default).
    pub model_alias: Option<String>,
    /// No tools, creative brief.
    pub creative: bool,
    /// Replaces the built-in system message (the prompt `turnstone-eval` scores).
    pub system_prompt: Option<String>,
}

/// Identity and options of one workstream.
#[derive(Clone, Debug)]
pub struct WorkstreamSpec {
    /// Workstream id (32 hex).
    pub ws_id: String,
    /// Display name.
    pub name: String,
    /// Session id (32 hex).
    pub session_id: String,
    /// Options.
    pub options: WorkstreamOptions,
    /// Conversation to start from (a resumed session).
    pub history: Vec<ChatMessage>,
}

/// A workstream's answer to a status query.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkstreamStatus {
    /// Id.
    pub ws_id: String,
    /// Name.
    pub name: String,
    /// State.
    pub state: WsState,
    /// Model alias in use.
    pub model_alias: String,
    /// Messages in the conversation (without the system message).
    pub messages: usize,
    /// Prompt tokens of the last request.
    pub prompt_tokens: u64,
    /// Cumulative prompt + completion tokens.
    pub tokens: u64,
    /// Tool calls run.
    pub tool_calls: u64,
    /// Whether calls are approved without asking.
    pub auto_approve: bool,
    /// Calls waiting for approval, if any.
    pub pending_approval: usize,
}

/// Requests a workstream refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkstreamError {
    /// A turn is running; wait for it or cancel it.
    #[error("workstream is busy")]
    Busy,
    /// The message is empty.
    #[error("Empty message")]
    Empty,
    /// Nothing is waiting for this answer.
    #[error("nothing is waiting for {0}")]
    NothingPending(&'static str),
    /// No such model alias.
    #[error("unknown model alias {0:?}")]
    UnknownModel(String),
    /// Too little conversation to summarise.
    #[error("nothing to compact yet")]
    NothingToCompact,
    /// The summary request failed; the conversation is unchanged.
    #[error("compaction failed: {0}")]
    CompactionFailed(String),
}
