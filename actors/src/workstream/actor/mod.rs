//! The workstream actor: the turn loop as a state machine driven by messages.
//!
//! ```text
//! Send ─▶ thinking ──ModelDone(no calls)──▶ idle
//!            │ ModelDone(calls)
//!            ▼
//!         attention ◀─(needs approval)── prepare ──(auto)──▶ running ──ToolDone×n──▶ thinking …
//!            │ Approve / PlanFeedback                          ▲
//!            └─────────────────────────────────────────────────┘
//! ```
//! The model stream runs in a task and each tool call in a `ToolCallActor`; both report back as
//! messages, so `Status`, `Approve` and `Cancel` are handled at any point of a turn.
//!
//! This module holds the messages, the actor and its data; the work is split by
//! responsibility: `messages` (start, stop and each message), `rounds` (model requests and
//! their answers), `tool_calls` (batches of tool calls, approval and cancel), `compaction`
//! (summarising a long conversation, titles), `settings` (a session's settings) and
//! `session` (opening the stored session and its ordered writer).

use ractor::{ActorRef, RpcReplyPort};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use turnstone_runtime::remote::TraceContext;
use turnstone_runtime::supervise::SupervisorHandle;

use self::compaction::Compaction;
use self::session::Persist;
use self::tool_calls::Batch;
use super::transcript::Transcript;
use super::{
    EventChannel, GlobalEvent, WorkstreamDeps, WorkstreamError, WorkstreamSpec, WorkstreamStatus,
    WsEvent, WsState,
};
use crate::provider::{ChatMessage, Completion, ProviderError, Usage};
use crate::tools::{ApprovalDecision, ToolItem, ToolOutcome};

mod compaction;
mod messages;
mod rounds;
mod session;
mod settings;
mod tool_calls;

pub use self::settings::{SessionSettings, Setting};

/// Requests and internal notices a workstream handles.
pub enum WorkstreamMsg {
    /// Start a turn with this user message (in the caller's trace, if any).
    Send(
        String,
        Option<TraceContext>,
        RpcReplyPort<Result<(), WorkstreamError>>,
    ),
    /// Re-run the turn of this user message if the conversation ends with it unanswered (its
    /// node died mid-turn); answers whether a turn started.
    ResumeTurn(String, Option<TraceContext>, RpcReplyPort<bool>),
    /// Answer a pending approval request.
    Approve {
        /// Run the calls that need approval?
        approved: bool,
        /// Text for the model (appended after the results).
        feedback: Option<String>,
        /// Approve everything from now on.
        always: bool,
        /// Whether something was waiting.
        reply: Option<RpcReplyPort<Result<(), WorkstreamError>>>,
    },
    /// Answer a pending plan review ("" accepts, "n"/"no"/"reject" rejects, else feedback).
    PlanFeedback(String, Option<RpcReplyPort<Result<(), WorkstreamError>>>),
    /// A call inside a running tool needs approval (from [`WorkstreamApprover`]).
    SubApproval(Vec<ToolItem>, RpcReplyPort<ApprovalDecision>),
    /// Stop the turn in progress.
    Cancel,
    /// Switch the model alias.
    SetModel(String, RpcReplyPort<Result<(), WorkstreamError>>),
    /// Summarise older messages to free context (refused mid-turn); answered when done.
    Compact(RpcReplyPort<Result<(), WorkstreamError>>),
    /// A compaction summary arrived (internal).
    CompactDone {
        /// Round it belongs to.
        round: u64,
        /// Messages before this index were summarised.
        cut: usize,
        /// The summary, or why there is none.
        result: Result<String, ProviderError>,
    },
    /// Rename the workstream.
    Rename(String),
    /// Change a setting (refused mid-turn).
    Configure(Setting, RpcReplyPort<Result<(), WorkstreamError>>),
    /// Current settings.
    Settings(RpcReplyPort<SessionSettings>),
    /// Report status.
    Status(RpcReplyPort<WorkstreamStatus>),
    /// The conversation so far.
    History(RpcReplyPort<Vec<ChatMessage>>),
    /// Answered once everything queued for the database so far has landed (at once without
    /// a database).
    Persisted(RpcReplyPort<()>),
    /// A model request finished (internal).
    ModelDone {
        /// Round it belongs to.
        round: u64,
        /// The alias that answered and the reply, or the error with what arrived.
        result: Result<(String, Completion), (ProviderError, Completion)>,
    },
    /// A tool-call actor stopped normally (internal); its result, if it sent one, is already
    /// queued ahead of this message.
    ToolGone {
        /// Round it belongs to.
        round: u64,
        /// Index in the batch.
        index: usize,
        /// Why it stopped.
        reason: String,
    },
    /// A tool call finished (internal).
    ToolDone {
        /// Round it belongs to.
        round: u64,
        /// Index in the batch.
        index: usize,
        /// Its outcome.
        outcome: ToolOutcome,
    },
}

/// The actor. Its fields are read-only; the conversation lives in [`WorkstreamData`].
#[derive(Debug)]
pub struct WorkstreamActor {
    spec: WorkstreamSpec,
    deps: WorkstreamDeps,
    events: EventChannel,
}

impl WorkstreamActor {
    /// A workstream publishing to `events`.
    pub fn new(spec: WorkstreamSpec, deps: WorkstreamDeps, events: EventChannel) -> Self {
        Self { spec, deps, events }
    }
}

enum Pending {
    Approval,
    Plan,
    /// A call inside a running tool (a sub-agent's) waits for a person.
    SubAgent {
        reply: RpcReplyPort<ApprovalDecision>,
        items: usize,
    },
}

/// A workstream's mutable state.
pub struct WorkstreamData {
    state: WsState,
    transcript: Transcript,
    alias: String,
    auto_approve: bool,
    round: u64,
    turn: u64,
    model_task: Option<JoinHandle<()>>,
    pending: Option<Pending>,
    batch: Option<Batch>,
    usage: Usage,
    tokens: u64,
    tool_calls: u64,
    chunks: mpsc::UnboundedSender<(String, String)>,
    writer: Option<mpsc::UnboundedSender<Persist>>,
    settings: SessionSettings,
    name: String,
    compaction: Option<Compaction>,
    titled: bool,
    /// The running turn's span (`Span::none()` between turns).
    turn_span: tracing::Span,
    /// The wait for a person's approval of the batch, below the turn span (open while
    /// `pending` is an approval).
    approval_span: tracing::Span,
}

impl WorkstreamActor {
    fn emit(&self, event: WsEvent) {
        // No subscriber is fine: nobody is watching this workstream right now.
        let _ = self.events.send(event);
    }

    /// Appends a message to the conversation and queues it for the database.
    fn record(&self, data: &mut WorkstreamData, message: ChatMessage) {
        if let Some(writer) = &data.writer {
            let _ = writer.send(Persist::Message(message.clone()));
        }
        data.transcript.push(message);
    }

    fn context_window(&self, data: &WorkstreamData) -> u32 {
        self.deps
            .router
            .lane(&data.alias)
            .map_or(self.deps.config.model.context_window, |l| l.context_window)
    }

    fn set_state(
        &self,
        myself: &ActorRef<WorkstreamMsg>,
        data: &mut WorkstreamData,
        state: WsState,
        activity: &str,
    ) {
        data.state = state;
        if let Some(writer) = &data.writer {
            let _ = writer.send(Persist::State(state));
        }
        let activity_state = match state {
            WsState::Thinking => "thinking",
            WsState::Running => "tool",
            WsState::Attention => "approval",
            WsState::Idle | WsState::Error => "",
        };
        let ratio = f64::from(u32::try_from(data.usage.prompt_tokens).unwrap_or(u32::MAX))
            / f64::from(self.context_window(data).max(1));
        let _ = self.deps.global.send(GlobalEvent::WsState {
            ws_id: self.spec.ws_id.clone(),
            state,
            tokens: data.tokens,
            context_ratio: (ratio * 1000.0).round() / 1000.0,
            activity: activity.to_owned(),
            activity_state: activity_state.to_owned(),
        });
        // Tell the supervisor, whose capacity and idle policies never evict a busy child.
        if let Some(supervisor) = myself.try_get_supervisor()
            && supervisor.is_message_type_of::<turnstone_runtime::supervise::SupervisorMsg>()
                == Some(true)
        {
            let _ = SupervisorHandle::from_ref(supervisor.into())
                .report_activity(&self.spec.ws_id, state.is_busy());
        }
    }
}
