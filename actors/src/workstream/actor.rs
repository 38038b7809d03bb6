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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use turnstone_runtime::remote::TraceContext;
use turnstone_runtime::supervise::SupervisorHandle;

use super::context;
use super::transcript::Transcript;
use super::{
    EventChannel, GlobalEvent, WorkstreamDeps, WorkstreamError, WorkstreamSpec, WorkstreamStatus,
    WsEvent, WsState, system_prompt,
};
use crate::config::ReasoningEffort;
use crate::provider::{
    ChatMessage, Completion, ModelRequest, ProviderError, Role, StreamEvent, Usage, collect,
};
use crate::storage::{Store, Write};
use crate::text::ellipsize;
use crate::tools::{
    ApprovalDecision, Approver, PreparedCall, ToolCallActor, ToolCallArgs, ToolContext, ToolItem,
    ToolOutcome, ToolOutput, prepare_calls, truncate_output,
};

/// Tool calls of one batch that run at the same time.
const PARALLEL_TOOLS: usize = 4;

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

/// Lets a running tool (a sub-agent) ask this workstream's person for approval.
#[derive(Debug)]
pub struct WorkstreamApprover(ActorRef<WorkstreamMsg>);

#[async_trait::async_trait]
impl Approver for WorkstreamApprover {
    async fn approve(&self, items: Vec<ToolItem>) -> ApprovalDecision {
        match self
            .0
            .call(|reply| WorkstreamMsg::SubApproval(items, reply), None)
            .await
        {
            Ok(ractor::rpc::CallResult::Success(decision)) => decision,
            Ok(_) | Err(_) => ApprovalDecision {
                approved: false,
                feedback: Some("the workstream is no longer waiting for this call".into()),
            },
        }
    }
}

struct Batch {
    calls: Vec<PreparedCall>,
    outcomes: Vec<Option<ToolOutcome>>,
    queue: VecDeque<usize>,
    running: HashMap<ActorId, usize>,
    feedback: Option<String>,
    plan_reviews: VecDeque<String>,
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

/// A compaction in progress.
struct Compaction {
    reply: Option<RpcReplyPort<Result<(), WorkstreamError>>>,
    /// It was started automatically at the end of a turn, which ends when it is done.
    ends_turn: bool,
}

/// A write for the workstream's database writer, applied in order.
enum Persist {
    Message(ChatMessage),
    State(WsState),
    Setting(&'static str, String),
    Rename(String),
    /// Answered once the writes queued before it have landed.
    Barrier(RpcReplyPort<()>),
}

/// How long a workstream's writer holds writes while a turn runs, to write them together.
const WRITE_SETTLE: Duration = Duration::from_millis(20);

impl Persist {
    /// Whether the writes queued so far can go now: the turn settled, or this is not a
    /// turn's write.
    fn settles(&self) -> bool {
        match self {
            Self::State(state) => !matches!(state, WsState::Thinking | WsState::Running),
            Self::Message(_) => false,
            Self::Setting(..) | Self::Rename(_) | Self::Barrier(_) => true,
        }
    }
}

/// Per-session settings (restored on resume, as Turnstone: not the model).
#[derive(Clone, Debug, PartialEq)]
pub struct SessionSettings {
    /// Extra system instructions.
    pub instructions: Option<String>,
    /// Reasoning effort.
    pub reasoning_effort: ReasoningEffort,
    /// Temperature.
    pub temperature: f64,
    /// Completion token limit.
    pub max_tokens: u32,
    /// No tools, creative brief.
    pub creative: bool,
}

impl SessionSettings {
    fn apply_stored(&mut self, stored: &std::collections::BTreeMap<String, String>) {
        for (key, value) in stored {
            match key.as_str() {
                "instructions" => self.instructions = Some(value.clone()).filter(|v| !v.is_empty()),
                "reasoning_effort" => {
                    if let Ok(e) = ReasoningEffort::try_from(value.clone()) {
                        self.reasoning_effort = e;
                    }
                }
                "temperature" => {
                    if let Ok(t) = value.parse() {
                        self.temperature = t;
                    }
                }
                "max_tokens" => {
                    if let Ok(n) = value.parse() {
                        self.max_tokens = n;
                    }
                }
                "creative_mode" => self.creative = value == "true",
                _ => {}
            }
        }
    }
}

/// A change to a workstream's settings (slash commands).
#[derive(Clone, Debug, PartialEq)]
pub enum Setting {
    /// `/instructions [text]` (None or empty clears).
    Instructions(Option<String>),
    /// `/reason level`.
    ReasoningEffort(ReasoningEffort),
    /// Temperature.
    Temperature(f64),
    /// `/creative` on or off.
    Creative(bool),
    /// `/clear`: forget the in-memory conversation.
    Clear,
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

    fn request(&self, data: &mut WorkstreamData) -> ModelRequest {
        let settings = &data.settings;
        let system = match &self.spec.options.system_prompt {
            Some(replaced) => replaced.clone(),
            None => system_prompt(settings.creative, settings.instructions.as_deref(), 0),
        };
        let messages = data.transcript.request(system);
        ModelRequest {
            model: String::new(),
            messages,
            tools: if settings.creative {
                Arc::default()
            } else {
                self.deps.tools.specs()
            },
            temperature: Some(settings.temperature),
            max_tokens: settings.max_tokens,
            reasoning_effort: Some(settings.reasoning_effort),
        }
    }

    /// Starts summarising the older messages in a task. Errors hand the reply back.
    #[allow(clippy::type_complexity)]
    fn start_compaction(
        &self,
        myself: &ActorRef<WorkstreamMsg>,
        data: &mut WorkstreamData,
        reply: Option<RpcReplyPort<Result<(), WorkstreamError>>>,
        ends_turn: bool,
    ) -> Result<
        (),
        (
            WorkstreamError,
            Option<RpcReplyPort<Result<(), WorkstreamError>>>,
        ),
    > {
        let window = usize::try_from(self.context_window(data)).unwrap_or(usize::MAX);
        let keep_fraction = (1.0 - self.deps.config.session.auto_compact_pct).clamp(0.05, 0.5);
        let keep_tokens = (window as f64 * keep_fraction) as usize;
        let Some(cut) = context::split_for_compaction(data.transcript.history(), keep_tokens)
        else {
            return Err((WorkstreamError::NothingToCompact, reply));
        };
        data.round += 1;
        let round = data.round;
        data.compaction = Some(Compaction { reply, ends_turn });
        self.set_state(myself, data, WsState::Thinking, "Compacting…");
        let request = context::summary_request(
            &data.transcript.history()[..cut],
            self.deps.config.session.compact_max_tokens,
        );
        let router = self.deps.router.clone();
        let alias = data.alias.clone();
        let reply_to = myself.clone();
        data.model_task = Some(tokio::spawn(async move {
            let result = match router.open(&alias, &request, &mut |_| {}).await {
                Ok(opened) => collect(opened.stream, &mut |_| {})
                    .await
                    .map_err(|(e, _)| e)
                    .and_then(|done| {
                        done.content
                            .ok_or_else(|| ProviderError::Malformed("empty summary".into()))
                    }),
                Err(e) => Err(e),
            };
            let _ = reply_to.cast(WorkstreamMsg::CompactDone { round, cut, result });
        }));
        Ok(())
    }

    fn on_compacted(
        &self,
        myself: &ActorRef<WorkstreamMsg>,
        data: &mut WorkstreamData,
        cut: usize,
        result: Result<String, ProviderError>,
    ) {
        data.model_task = None;
        let Some(compaction) = data.compaction.take() else {
            return;
        };
        let outcome = match result {
            Ok(summary) if cut <= data.transcript.history().len() => {
                let kept = data.transcript.history().len() - cut;
                let compacted = context::compacted(&summary, &data.transcript.history()[cut..]);
                data.transcript.replace(compacted);
                self.emit(WsEvent::Info {
                    message: format!(
                        "Conversation compacted: {cut} messages summarised, {kept} kept."
                    ),
                });
                Ok(())
            }
            Ok(_) => Err(WorkstreamError::NothingToCompact),
            Err(e) => {
                self.emit(WsEvent::Error {
                    message: format!("Compaction failed: {e}"),
                });
                Err(WorkstreamError::CompactionFailed(e.to_string()))
            }
        };
        if let Some(reply) = compaction.reply {
            let _ = reply.send(outcome);
        }
        if compaction.ends_turn {
            self.finish_turn(myself, data, false);
        } else {
            self.set_state(myself, data, WsState::Idle, "");
        }
    }

    /// Names the session from its first exchange, in the background.
    fn maybe_title(&self, data: &mut WorkstreamData) {
        let Some(store) = self.deps.store.clone() else {
            return;
        };
        if data.titled {
            return;
        }
        data.titled = true;
        let history = data.transcript.history();
        let first_user = history.iter().find(|m| m.role == Role::User);
        let first_answer = history
            .iter()
            .find(|m| m.role == Role::Assistant && m.content.is_some());
        let (Some(user), Some(answer)) = (first_user, first_answer) else {
            return;
        };
        let request = context::title_request(
            user.content.as_deref().unwrap_or(""),
            answer.content.as_deref().unwrap_or(""),
        );
        let router = self.deps.router.clone();
        let alias = data.alias.clone();
        let session = self.spec.session_id.clone();
        tokio::spawn(async move {
            let title = match router.open(&alias, &request, &mut |_| {}).await {
                Ok(opened) => collect(opened.stream, &mut |_| {})
                    .await
                    .ok()
                    .and_then(|c| c.content),
                Err(_) => None,
            };
            if let Some(title) = title.as_deref().and_then(context::clean_title)
                && let Err(e) = store.set_title(&session, &title).await
            {
                tracing::warn!(session, error = %e, "could not save the session title");
            }
        });
    }

    /// Applies a setting; persisted ones are written to the session's settings.
    fn configure(
        &self,
        data: &mut WorkstreamData,
        setting: Setting,
    ) -> Result<(), WorkstreamError> {
        if data.state.is_busy() {
            return Err(WorkstreamError::Busy);
        }
        let stored = match setting {
            Setting::Instructions(text) => {
                let text = text.filter(|t| !t.trim().is_empty());
                data.settings.instructions = text.clone();
                Some(("instructions", text.unwrap_or_default()))
            }
            Setting::ReasoningEffort(effort) => {
                data.settings.reasoning_effort = effort;
                Some(("reasoning_effort", effort_name(effort).to_owned()))
            }
            Setting::Temperature(t) => {
                data.settings.temperature = t;
                Some(("temperature", t.to_string()))
            }
            Setting::Creative(on) => {
                if on && !data.settings.creative {
                    // Tool turns mean nothing without tools: keep only plain text.
                    data.transcript
                        .retain(|m| m.role != Role::Tool && m.tool_calls.is_empty());
                }
                data.settings.creative = on;
                Some(("creative_mode", on.to_string()))
            }
            Setting::Clear => {
                data.transcript.replace(Vec::new());
                data.usage = Usage::default();
                None
            }
        };
        if let (Some((key, value)), Some(writer)) = (stored, &data.writer) {
            let _ = writer.send(Persist::Setting(key, value));
        }
        Ok(())
    }

    fn start_round(&self, myself: &ActorRef<WorkstreamMsg>, data: &mut WorkstreamData) {
        data.round += 1;
        let round = data.round;
        self.set_state(myself, data, WsState::Thinking, "Thinking…");
        self.emit(WsEvent::ThinkingStart);
        let request = self.request(data);
        let router = self.deps.router.clone();
        let alias = data.alias.clone();
        let events = self.events.clone();
        let reply_to = myself.clone();
        let model = router
            .lane(&alias)
            .map(|l| l.model.get())
            .unwrap_or_default();
        let span = turnstone_runtime::telemetry::traced(|| {
            tracing::info_span!(
                parent: &data.turn_span,
                "chat",
                otel.name = format!("chat {model}"),
                otel.kind = "client",
                gen_ai.operation.name = "chat",
                gen_ai.provider.name = provider_name(self.deps.config.api.provider),
                gen_ai.request.model = %model,
                turnstone.model.alias = %alias,
                turnstone.round = round,
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
                gen_ai.response.finish_reasons = tracing::field::Empty,
                error.type = tracing::field::Empty,
            )
        });
        let model_span = span.clone();
        data.model_task = Some(tokio::spawn(tracing::Instrument::instrument(
            async move {
                let notices = events.clone();
                let mut notice = move |message: String| {
                    let _ = notices.send(WsEvent::Info { message });
                };
                let opened = router.open(&alias, &request, &mut notice).await;
                // Not held while the answer streams: the conversation grows in place meanwhile.
                drop(request);
                let result = match opened {
                    Ok(opened) => {
                        let mut on_event = |e: StreamEvent| {
                            let _ = events.send(match e {
                                StreamEvent::Content(text) => WsEvent::Content { text },
                                StreamEvent::Reasoning(text) => WsEvent::Reasoning { text },
                                StreamEvent::Info(message) => WsEvent::Info { message },
                            });
                        };
                        collect(opened.stream, &mut on_event)
                            .await
                            .map(|done| (opened.alias, done))
                    }
                    Err(e) => Err((e, Completion::default())),
                };
                match &result {
                    Ok((_, done)) => {
                        if let Some(usage) = &done.usage {
                            model_span.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
                            model_span
                                .record("gen_ai.usage.output_tokens", usage.completion_tokens);
                        }
                        model_span.record(
                            "gen_ai.response.finish_reasons",
                            format!("{:?}", done.finish).to_lowercase(),
                        );
                    }
                    Err((e, _)) => {
                        model_span.record("error.type", e.kind_name());
                    }
                }
                let _ = reply_to.cast(WorkstreamMsg::ModelDone { round, result });
            },
            span,
        )));
    }

    /// The span of a turn: below the caller's span when the request carried a trace.
    fn turn_span(&self, data: &WorkstreamData, trace: Option<&TraceContext>) -> tracing::Span {
        let span = turnstone_runtime::telemetry::traced(|| {
            tracing::info_span!(
                parent: None,
                "turn",
                otel.name = "workstream turn",
                turnstone.ws.id = %self.spec.ws_id,
                turnstone.node.id = %self.deps.node_id,
                gen_ai.conversation.id = %self.spec.session_id,
                turnstone.turn = data.turn,
                turnstone.outcome = tracing::field::Empty,
                resumed = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            )
        });
        // The caller's context was taken where the turn was asked for (`WorkstreamManager`):
        // inside this actor no request span is current.
        if let Some(parent) = trace {
            turnstone_runtime::telemetry::set_parent(&span, parent);
        }
        turnstone_runtime::telemetry::annotate(&span);
        span
    }

    fn finish_turn(
        &self,
        myself: &ActorRef<WorkstreamMsg>,
        data: &mut WorkstreamData,
        failed: bool,
    ) {
        data.model_task = None;
        data.batch = None;
        data.pending = None;
        data.turn_span
            .record("turnstone.outcome", if failed { "error" } else { "ok" });
        data.turn_span = tracing::Span::none();
        self.emit(WsEvent::StreamEnd);
        let state = if failed {
            WsState::Error
        } else {
            WsState::Idle
        };
        self.set_state(myself, data, state, "");
    }

    fn on_model_done(
        &self,
        myself: &ActorRef<WorkstreamMsg>,
        data: &mut WorkstreamData,
        result: Result<(String, Completion), (ProviderError, Completion)>,
    ) {
        data.model_task = None;
        self.emit(WsEvent::ThinkingStop);
        let (completion, error) = match result {
            Ok((alias, completion)) => {
                if alias != data.alias {
                    self.emit(WsEvent::Info {
                        message: format!("[Answered by fallback model {alias}]"),
                    });
                }
                (completion, None)
            }
            Err((error, partial)) => (partial, Some(error)),
        };
        if let Some(usage) = completion.usage {
            data.usage = usage;
            data.tokens += usage.prompt_tokens + usage.completion_tokens;
            let window = self.context_window(data);
            let pct = usage.prompt_tokens as f64 * 100.0 / f64::from(window.max(1));
            self.emit(WsEvent::Status {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage.prompt_tokens + usage.completion_tokens,
                context_window: window,
                pct: (pct * 10.0).round() / 10.0,
                effort: effort_name(data.settings.reasoning_effort).to_owned(),
            });
        }
        for warning in &completion.warnings {
            self.emit(WsEvent::Error {
                message: warning.clone(),
            });
        }
        if let Some(error) = error {
            // Keep what arrived, but never an unanswered tool call.
            if completion.content.is_some() {
                self.record(data, ChatMessage::assistant(completion.content, Vec::new()));
            }
            self.emit(WsEvent::Error {
                message: format!("Error: {error}"),
            });
            self.finish_turn(myself, data, true);
            return;
        }
        let calls = completion.tool_calls.clone();
        self.record(
            data,
            ChatMessage::assistant(completion.content, completion.tool_calls),
        );
        if calls.is_empty() {
            self.maybe_title(data);
            let window = f64::from(self.context_window(data));
            let used = data.usage.prompt_tokens as f64;
            let threshold = self.deps.config.session.auto_compact_pct;
            if threshold > 0.0 && used > window * threshold {
                self.emit(WsEvent::Info {
                    message: format!(
                        "Context {:.0}% full: compacting the conversation…",
                        used * 100.0 / window.max(1.0)
                    ),
                });
                if self.start_compaction(myself, data, None, true).is_ok() {
                    return;
                }
            }
            self.finish_turn(myself, data, false);
            return;
        }
        let prepared = prepare_calls(&calls, &self.deps.tools);
        let needs_person = prepared.iter().any(|p| p.item.needs_approval)
            && !data.auto_approve
            && !prepared
                .iter()
                .filter(|p| p.item.needs_approval)
                .all(|p| self.spec.options.auto_approve_tools.contains(&p.call.name));
        let items: Vec<_> = prepared.iter().map(|p| p.item.clone()).collect();
        data.batch = Some(Batch {
            outcomes: vec![None; prepared.len()],
            calls: prepared,
            queue: VecDeque::new(),
            running: HashMap::new(),
            feedback: None,
            plan_reviews: VecDeque::new(),
        });
        if needs_person {
            let first = items.iter().find(|i| i.needs_approval);
            let activity = first.map_or(String::new(), |i| {
                format!(
                    "⏳ Awaiting approval: {} — {}",
                    i.approval_label,
                    ellipsize(&i.preview, 60)
                )
            });
            let tools: Vec<&str> = items
                .iter()
                .filter(|i| i.needs_approval)
                .map(|i| i.func_name.as_str())
                .collect();
            data.approval_span = turnstone_runtime::telemetry::traced(|| {
                tracing::info_span!(
                    parent: &data.turn_span,
                    "approval",
                    otel.name = "await_approval",
                    gen_ai.tool.name = %tools.join(","),
                    turnstone.approval.approved = tracing::field::Empty,
                    turnstone.approval.always = tracing::field::Empty,
                )
            });
            self.emit(WsEvent::ApproveRequest { items });
            data.pending = Some(Pending::Approval);
            self.set_state(myself, data, WsState::Attention, &activity);
        } else {
            self.emit(WsEvent::ToolInfo { items });
            self.execute(myself, data, true, None);
        }
    }

    /// Runs the batch: calls that failed preparation or were denied get their error result;
    /// the others run as child actors, at most four at a time.
    fn execute(
        &self,
        myself: &ActorRef<WorkstreamMsg>,
        data: &mut WorkstreamData,
        approved: bool,
        feedback: Option<String>,
    ) {
        let Some(batch) = data.batch.as_mut() else {
            return;
        };
        batch.feedback = feedback.filter(|f| !f.trim().is_empty());
        for (index, call) in batch.calls.iter().enumerate() {
            if let Some(error) = &call.item.error {
                batch.outcomes[index] = Some(ToolOutcome::Failed(error.clone()));
            } else if call.item.needs_approval && !approved {
                let denial = match &batch.feedback {
                    Some(f) => format!("Denied by user: {f}"),
                    None => "Denied by user".to_owned(),
                };
                batch.outcomes[index] = Some(ToolOutcome::Failed(denial));
            } else {
                batch.queue.push_back(index);
            }
        }
        let activity = batch
            .queue
            .front()
            .map(|i| &batch.calls[*i].item)
            .map_or(String::new(), |i| {
                format!("⚙ {}: {}", i.func_name, ellipsize(&i.preview, 80))
            });
        self.set_state(myself, data, WsState::Running, &activity);
        self.fill_slots(myself, data);
        self.maybe_finish_batch(myself, data);
    }

    fn fill_slots(&self, myself: &ActorRef<WorkstreamMsg>, data: &mut WorkstreamData) {
        let round = data.round;
        let turn = data.turn;
        let timeout = Duration::from_secs(self.deps.config.tools.timeout.max(1));
        let chunks = data.chunks.clone();
        let Some(batch) = data.batch.as_mut() else {
            return;
        };
        while batch.running.len() < PARALLEL_TOOLS {
            let Some(index) = batch.queue.pop_front() else {
                break;
            };
            let call = &batch.calls[index];
            let Some(tool) = call.tool.clone() else {
                batch.outcomes[index] = Some(ToolOutcome::Failed("Error: unknown tool".into()));
                continue;
            };
            let reply_to = myself.clone();
            let span = turnstone_runtime::telemetry::traced(|| {
                tracing::info_span!(
                    parent: &data.turn_span,
                    "execute_tool",
                    otel.name = format!("execute_tool {}", call.call.name),
                    gen_ai.operation.name = "execute_tool",
                    gen_ai.tool.name = %call.call.name,
                    gen_ai.tool.call.id = %call.call.id,
                    outcome = tracing::field::Empty,
                )
            });
            let args = ToolCallArgs {
                span,
                timeout: tool.timeout().unwrap_or(timeout),
                tool,
                args: call.args.clone(),
                ctx: ToolContext {
                    workdir: self.deps.workdir.clone(),
                    session_id: self.spec.session_id.clone(),
                    call_id: call.call.id.clone(),
                    turn,
                    output: chunks.clone(),
                    approver: Some(Arc::new(WorkstreamApprover(myself.clone()))),
                },
                done: Box::new(move |outcome| {
                    let _ = reply_to.cast(WorkstreamMsg::ToolDone {
                        round,
                        index,
                        outcome,
                    });
                }),
            };
            // Linked under this workstream, which turns a crash into the call's error result.
            // Started instantly: the mailbox never waits on a child's start-up.
            match ractor::ActorRuntime::spawn_linked_instant(
                None,
                ToolCallActor,
                args,
                myself.get_cell(),
            ) {
                Ok((actor, _)) => {
                    batch.running.insert(actor.get_id(), index);
                }
                Err(e) => {
                    batch.outcomes[index] = Some(ToolOutcome::Failed(format!(
                        "Error: tool could not start: {e}"
                    )));
                }
            }
        }
    }

    fn on_tool_done(
        &self,
        myself: &ActorRef<WorkstreamMsg>,
        data: &mut WorkstreamData,
        index: usize,
        outcome: ToolOutcome,
    ) {
        let Some(batch) = data.batch.as_mut() else {
            return;
        };
        if batch.outcomes.get(index).is_none_or(Option::is_some) {
            return;
        }
        batch.running.retain(|_, i| *i != index);
        batch.outcomes[index] = Some(outcome);
        data.tool_calls += 1;
        self.fill_slots(myself, data);
        self.maybe_finish_batch(myself, data);
    }

    fn maybe_finish_batch(&self, myself: &ActorRef<WorkstreamMsg>, data: &mut WorkstreamData) {
        let limit = self.truncation_limit(data);
        let Some(batch) = data.batch.as_mut() else {
            return;
        };
        if batch.outcomes.iter().any(Option::is_none) {
            return;
        }
        let batch = match data.batch.take() {
            Some(b) => b,
            None => return,
        };
        let mut reviews = batch.plan_reviews;
        for (call, outcome) in batch.calls.iter().zip(batch.outcomes) {
            let output = match outcome {
                Some(ToolOutcome::Done(ToolOutput { text, review })) => {
                    if let Some(r) = review {
                        reviews.push_back(r);
                    }
                    text
                }
                Some(ToolOutcome::Failed(error)) => error,
                None => "Error: no result".to_owned(),
            };
            let output = truncate_output(&output, limit);
            self.emit(WsEvent::ToolResult {
                call_id: call.call.id.clone(),
                name: call.call.name.clone(),
                output: output.clone(),
            });
            self.record(data, ChatMessage::tool(&call.call, output));
        }
        if let Some(feedback) = batch.feedback {
            self.record(data, ChatMessage::user(feedback));
        }
        self.next_review_or_round(myself, data, reviews);
    }

    fn next_review_or_round(
        &self,
        myself: &ActorRef<WorkstreamMsg>,
        data: &mut WorkstreamData,
        mut reviews: VecDeque<String>,
    ) {
        // Plan review is skipped only when the workstream approves everything.
        match reviews.pop_front().filter(|_| !data.auto_approve) {
            Some(review) => {
                self.emit(WsEvent::PlanReview { content: review });
                data.pending = Some(Pending::Plan);
                data.batch = Some(Batch {
                    calls: Vec::new(),
                    outcomes: Vec::new(),
                    queue: VecDeque::new(),
                    running: HashMap::new(),
                    feedback: None,
                    plan_reviews: reviews,
                });
                self.set_state(myself, data, WsState::Attention, "⏳ Awaiting plan review");
            }
            None => self.start_round(myself, data),
        }
    }

    fn truncation_limit(&self, data: &WorkstreamData) -> usize {
        match self.deps.config.tools.truncation {
            0 => usize::try_from(self.context_window(data)).unwrap_or(usize::MAX) * 2,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }

    fn cancel(&self, myself: &ActorRef<WorkstreamMsg>, data: &mut WorkstreamData) {
        if !data.state.is_busy() {
            return;
        }
        data.round += 1; // late results of the cancelled round are ignored
        if let Some(c) = data.compaction.take()
            && let Some(reply) = c.reply
        {
            let _ = reply.send(Err(WorkstreamError::CompactionFailed("cancelled".into())));
        }
        if let Some(task) = data.model_task.take() {
            task.abort();
        }
        if let Some(batch) = data.batch.take() {
            for id in batch.running.keys() {
                if let Some(cell) = myself
                    .get_children()
                    .into_iter()
                    .find(|c| c.get_id() == *id)
                {
                    cell.kill();
                }
            }
        }
        // Strip an unanswered tool-call message so the history stays valid.
        data.transcript.pop_if(|m| !m.tool_calls.is_empty());
        self.emit(WsEvent::Info {
            message: "Cancelled".into(),
        });
        self.finish_turn(myself, data, false);
    }
}

impl WorkstreamActor {
    /// Records the session and workstream, loads the stored conversation (a restarted or
    /// resumed workstream continues where it was), and starts the ordered writer. Storage
    /// failures are reported as error events; the workstream keeps working from memory.
    async fn open_session(
        &self,
        store: &Store,
        settings: &mut SessionSettings,
    ) -> (Vec<ChatMessage>, Option<mpsc::UnboundedSender<Persist>>) {
        let spec = &self.spec;
        let node = Some(self.deps.node_id.as_str());
        let mut history = spec.history.clone();
        let opened = store
            .open_workstream(
                &spec.session_id,
                &spec.ws_id,
                node,
                &spec.name,
                WsState::Idle.as_str(),
            )
            .await;
        match opened {
            Ok(opened) => {
                settings.apply_stored(&opened.config);
                if !opened.history.is_empty() {
                    history = opened.history;
                }
            }
            Err(e) => self.emit(WsEvent::Error {
                message: format!("Error: could not open the session in the database: {e}"),
            }),
        }
        let (writer, mut queue) = mpsc::unbounded_channel::<Persist>();
        let committer = store.clone();
        let events = self.events.clone();
        let (session_id, ws_id, mut name) = (
            spec.session_id.clone(),
            spec.ws_id.clone(),
            spec.name.clone(),
        );
        let mut last_state = WsState::Idle;
        let node_id = self.deps.node_id.clone();
        store.spawn_writer(async move {
            while let Some(first) = queue.recv().await {
                let mut ops = vec![first];
                // A turn's writes go together once it settles (idle, failed, waiting for a
                // person), or after WRITE_SETTLE at most: a quick turn is one transaction,
                // written after the turn rather than while it runs.
                let deadline = tokio::time::Instant::now() + WRITE_SETTLE;
                loop {
                    while let Ok(next) = queue.try_recv() {
                        ops.push(next);
                    }
                    if ops.iter().any(Persist::settles) {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, queue.recv()).await {
                        Ok(Some(next)) => ops.push(next),
                        Ok(None) | Err(_) => break,
                    }
                }
                // The workstream's name and state as of each write. (States a later write
                // replaces are left out when they land.)
                let mut writes = Vec::with_capacity(ops.len());
                let mut barriers = Vec::new();
                for op in ops {
                    writes.push(match op {
                        Persist::Message(message) => Write::Message {
                            session_id: session_id.clone(),
                            message,
                        },
                        Persist::State(state) => {
                            last_state = state;
                            workstream_write(&ws_id, &node_id, &name, last_state)
                        }
                        Persist::Rename(new_name) => {
                            name = new_name;
                            workstream_write(&ws_id, &node_id, &name, last_state)
                        }
                        Persist::Setting(key, value) => Write::SessionConfig {
                            session_id: session_id.clone(),
                            key: key.to_owned(),
                            value,
                        },
                        Persist::Barrier(reply) => {
                            barriers.push(reply);
                            continue;
                        }
                    });
                }
                // With other workstreams' writes, in one transaction (group commit); what
                // fails is reported write by write.
                if !writes.is_empty() {
                    for e in committer.commit(writes).await {
                        let _ = events.send(WsEvent::Error {
                            message: format!("Error: could not save to the database: {e}"),
                        });
                    }
                }
                for reply in barriers {
                    let _ = reply.send(());
                }
            }
        });
        (history, Some(writer))
    }
}

/// The write that records a workstream's name and state.
fn workstream_write(ws_id: &str, node_id: &str, name: &str, state: WsState) -> Write {
    Write::Workstream {
        ws_id: ws_id.to_owned(),
        node_id: Some(node_id.to_owned()),
        name: name.to_owned(),
        state: state.as_str(),
    }
}

/// `gen_ai.provider.name` of a lane's protocol.
fn provider_name(kind: crate::config::ProviderKind) -> &'static str {
    match kind {
        crate::config::ProviderKind::Openai => "openai",
        crate::config::ProviderKind::Anthropic => "anthropic",
    }
}

fn effort_name(effort: ReasoningEffort) -> &'static str {
    match effort {
        ReasoningEffort::None => "none",
        ReasoningEffort::Minimal => "minimal",
        ReasoningEffort::Low => "low",
        ReasoningEffort::Medium => "medium",
        ReasoningEffort::High => "high",
        ReasoningEffort::Xhigh => "xhigh",
        ReasoningEffort::Max => "max",
    }
}

fn answer<T: Send + 'static>(reply: Option<RpcReplyPort<T>>, value: T) {
    if let Some(reply) = reply {
        let _ = reply.send(value);
    }
}

impl Actor for WorkstreamActor {
    type Msg = WorkstreamMsg;
    type State = WorkstreamData;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<WorkstreamMsg>,
        _: (),
    ) -> Result<WorkstreamData, ActorProcessingErr> {
        // Streamed tool output goes straight to the event stream, in order.
        let (chunks, mut chunk_rx) = mpsc::unbounded_channel::<(String, String)>();
        let events = self.events.clone();
        tokio::spawn(async move {
            while let Some((call_id, chunk)) = chunk_rx.recv().await {
                let _ = events.send(WsEvent::ToolOutputChunk { call_id, chunk });
            }
        });
        let config = &self.deps.config;
        let mut settings = SessionSettings {
            instructions: config.session.instructions.clone(),
            reasoning_effort: config.model.reasoning_effort,
            temperature: config.model.temperature,
            max_tokens: config.model.max_tokens,
            creative: self.spec.options.creative,
        };
        let (messages, writer) = match &self.deps.store {
            Some(store) => self.open_session(store, &mut settings).await,
            None => (self.spec.history.clone(), None),
        };
        let titled = !messages.is_empty();
        Ok(WorkstreamData {
            state: WsState::Idle,
            transcript: Transcript::new(messages),
            alias: self
                .spec
                .options
                .model_alias
                .clone()
                .unwrap_or_else(|| self.deps.router.default_alias().to_owned()),
            auto_approve: self.spec.options.auto_approve || self.deps.config.tools.skip_permissions,
            round: 0,
            turn: 0,
            model_task: None,
            pending: None,
            batch: None,
            usage: Usage::default(),
            tokens: 0,
            tool_calls: 0,
            chunks,
            titled,
            turn_span: tracing::Span::none(),
            approval_span: tracing::Span::none(),
            writer,
            settings,
            name: self.spec.name.clone(),
            compaction: None,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<WorkstreamMsg>,
        data: &mut WorkstreamData,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(task) = data.model_task.take() {
            task.abort();
        }
        if matches!(data.pending, Some(Pending::Approval)) {
            self.emit(WsEvent::Info {
                message: "Pending approval denied: the workstream was closed".into(),
            });
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkstreamMsg>,
        msg: WorkstreamMsg,
        data: &mut WorkstreamData,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkstreamMsg::Send(text, trace, reply) => {
                if text.trim().is_empty() {
                    let _ = reply.send(Err(WorkstreamError::Empty));
                } else if data.state.is_busy() {
                    self.emit(WsEvent::BusyError {
                        message: "A turn is already running; wait for it or cancel it".into(),
                    });
                    let _ = reply.send(Err(WorkstreamError::Busy));
                } else {
                    data.turn += 1;
                    data.turn_span = self.turn_span(data, trace.as_ref());
                    self.record(data, ChatMessage::user(text));
                    let _ = reply.send(Ok(()));
                    self.start_round(&myself, data);
                }
            }
            WorkstreamMsg::ResumeTurn(text, trace, reply) => {
                let unanswered = data.transcript.history().last().is_some_and(|m| {
                    m.role == Role::User && m.content.as_deref() == Some(text.as_str())
                });
                let resume = unanswered && !data.state.is_busy();
                if resume {
                    data.turn += 1;
                    data.turn_span = self.turn_span(data, trace.as_ref());
                    data.turn_span.record("resumed", true);
                    self.emit(WsEvent::Info {
                        message: "Resuming the turn its previous node did not finish".into(),
                    });
                    self.start_round(&myself, data);
                }
                let _ = reply.send(resume);
            }
            WorkstreamMsg::Approve {
                approved,
                feedback,
                always,
                reply,
            } => match data.pending.take() {
                Some(Pending::Approval) => {
                    if always && approved {
                        data.auto_approve = true;
                    }
                    let waited = std::mem::replace(&mut data.approval_span, tracing::Span::none());
                    waited.record("turnstone.approval.approved", approved);
                    waited.record("turnstone.approval.always", always);
                    drop(waited);
                    answer(reply, Ok(()));
                    self.execute(&myself, data, approved, feedback);
                }
                Some(Pending::SubAgent { reply: waiting, .. }) => {
                    if always && approved {
                        data.auto_approve = true;
                    }
                    let _ = waiting.send(ApprovalDecision { approved, feedback });
                    answer(reply, Ok(()));
                    self.set_state(&myself, data, WsState::Running, "");
                }
                other => {
                    data.pending = other;
                    answer(reply, Err(WorkstreamError::NothingPending("an approval")));
                }
            },
            WorkstreamMsg::SubApproval(items, reply) => {
                let auto = data.auto_approve
                    || items.iter().all(|i| {
                        !i.needs_approval
                            || self.spec.options.auto_approve_tools.contains(&i.func_name)
                    });
                if auto || data.state != WsState::Running {
                    let _ = reply.send(ApprovalDecision {
                        approved: auto,
                        feedback: (!auto).then(|| "no turn is running".to_owned()),
                    });
                } else {
                    let first = items.iter().find(|i| i.needs_approval).cloned();
                    let activity = first.map_or(String::new(), |i| {
                        format!(
                            "⏳ Awaiting approval: {} — {}",
                            i.approval_label,
                            ellipsize(&i.preview, 60)
                        )
                    });
                    let count = items.iter().filter(|i| i.needs_approval).count();
                    self.emit(WsEvent::ApproveRequest { items });
                    data.pending = Some(Pending::SubAgent {
                        reply,
                        items: count,
                    });
                    self.set_state(&myself, data, WsState::Attention, &activity);
                }
            }
            WorkstreamMsg::PlanFeedback(feedback, reply) => match data.pending.take() {
                Some(Pending::Plan) => {
                    let verdict = feedback.trim();
                    match verdict.to_ascii_lowercase().as_str() {
                        "" => {}
                        "n" | "no" | "reject" => self.record(data, ChatMessage::user(
                            "User REJECTED this plan. Do not proceed with it; ask what to change.",
                        )),
                        _ => self.record(data, ChatMessage::user(format!(
                            "User feedback on this plan: {verdict}"
                        ))),
                    }
                    answer(reply, Ok(()));
                    let rest = data
                        .batch
                        .take()
                        .map(|b| b.plan_reviews)
                        .unwrap_or_default();
                    self.next_review_or_round(&myself, data, rest);
                }
                other => {
                    data.pending = other;
                    answer(reply, Err(WorkstreamError::NothingPending("a plan review")));
                }
            },
            WorkstreamMsg::Cancel => self.cancel(&myself, data),
            WorkstreamMsg::SetModel(alias, reply) => {
                if self.deps.router.lane(&alias).is_some() {
                    data.alias = alias;
                    let _ = reply.send(Ok(()));
                } else {
                    let _ = reply.send(Err(WorkstreamError::UnknownModel(alias)));
                }
            }
            WorkstreamMsg::Compact(reply) => {
                if data.state.is_busy() {
                    let _ = reply.send(Err(WorkstreamError::Busy));
                } else if let Err((e, Some(reply))) =
                    self.start_compaction(&myself, data, Some(reply), false)
                {
                    let _ = reply.send(Err(e));
                }
            }
            WorkstreamMsg::CompactDone { round, cut, result } => {
                if round == data.round {
                    self.on_compacted(&myself, data, cut, result);
                }
            }
            WorkstreamMsg::Rename(name) => {
                if let Some(writer) = &data.writer {
                    let _ = writer.send(Persist::Rename(name.clone()));
                }
                data.name = name;
            }
            WorkstreamMsg::Configure(setting, reply) => {
                let _ = reply.send(self.configure(data, setting));
            }
            WorkstreamMsg::Settings(reply) => {
                let _ = reply.send(data.settings.clone());
            }
            WorkstreamMsg::Status(reply) => {
                let pending_approval = match (&data.pending, &data.batch) {
                    (Some(Pending::Approval), Some(b)) => {
                        b.calls.iter().filter(|c| c.item.needs_approval).count()
                    }
                    (Some(Pending::SubAgent { items, .. }), _) => *items,
                    _ => 0,
                };
                let _ = reply.send(WorkstreamStatus {
                    ws_id: self.spec.ws_id.clone(),
                    name: data.name.clone(),
                    state: data.state,
                    model_alias: data.alias.clone(),
                    messages: data.transcript.history().len(),
                    prompt_tokens: data.usage.prompt_tokens,
                    tokens: data.tokens,
                    tool_calls: data.tool_calls,
                    auto_approve: data.auto_approve,
                    pending_approval,
                });
            }
            WorkstreamMsg::History(reply) => {
                let _ = reply.send(data.transcript.history().to_vec());
            }
            WorkstreamMsg::Persisted(reply) => match &data.writer {
                // A writer that is gone drops the barrier, which answers the caller too.
                Some(writer) => {
                    let _ = writer.send(Persist::Barrier(reply));
                }
                None => {
                    let _ = reply.send(());
                }
            },
            WorkstreamMsg::ModelDone { round, result } => {
                if round == data.round && data.state == WsState::Thinking {
                    self.on_model_done(&myself, data, result);
                }
            }
            WorkstreamMsg::ToolDone {
                round,
                index,
                outcome,
            } => {
                if round == data.round {
                    self.on_tool_done(&myself, data, index, outcome);
                }
            }
            WorkstreamMsg::ToolGone {
                round,
                index,
                reason,
            } => {
                // on_tool_done ignores it when the result already arrived.
                if round == data.round {
                    self.on_tool_done(&myself, data, index, ToolOutcome::Failed(reason));
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<WorkstreamMsg>,
        event: SupervisionEvent,
        data: &mut WorkstreamData,
    ) -> Result<(), ActorProcessingErr> {
        // Children are tool calls. A crash becomes the call's error result at once. A normal
        // stop is re-queued behind the result the call sent just before stopping (supervision
        // events overtake ordinary messages).
        let (id, crashed) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell.get_id(), Some(err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell.get_id(), None),
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {
                return Ok(());
            }
        };
        let Some(index) = data
            .batch
            .as_ref()
            .and_then(|b| b.running.get(&id).copied())
        else {
            return Ok(());
        };
        let name = data
            .batch
            .as_ref()
            .map(|b| b.calls[index].call.name.clone())
            .unwrap_or_default();
        match crashed {
            Some(err) => self.on_tool_done(
                &myself,
                data,
                index,
                ToolOutcome::Failed(format!("Error: {name} crashed: {err}")),
            ),
            None => {
                let _ = myself.cast(WorkstreamMsg::ToolGone {
                    round: data.round,
                    index,
                    reason: format!("Error: {name} stopped without a result"),
                });
            }
        }
        Ok(())
    }
}
