//! The actor's start and stop, and how it handles each message.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::mpsc;

use super::session::Persist;
use super::{Pending, WorkstreamData};
use crate::provider::{ChatMessage, Role, Usage};
use crate::text::ellipsize;
use crate::tools::{ApprovalDecision, ToolOutcome};
use crate::workstream::transcript::Transcript;
use crate::workstream::{
    SessionSettings, WorkstreamActor, WorkstreamError, WorkstreamMsg, WorkstreamStatus, WsEvent,
    WsState,
};

pub(super) fn answer<T: Send + 'static>(reply: Option<RpcReplyPort<T>>, value: T) {
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
