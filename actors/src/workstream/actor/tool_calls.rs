//! A round's tool calls: approval, a batch run at most `PARALLEL_TOOLS` at a time as child
//! actors, their results, and cancel.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorId, ActorRef};

use super::{Pending, WorkstreamData};
use crate::provider::ChatMessage;
use crate::text::ellipsize;
use crate::tools::{
    ApprovalDecision, Approver, PreparedCall, ToolCallActor, ToolCallArgs, ToolContext, ToolItem,
    ToolOutcome, ToolOutput, truncate_output,
};
use crate::workstream::{WorkstreamActor, WorkstreamError, WorkstreamMsg, WsEvent, WsState};

/// Tool calls of one batch that run at the same time.
const PARALLEL_TOOLS: usize = 4;

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

pub(super) struct Batch {
    pub(super) calls: Vec<PreparedCall>,
    pub(super) outcomes: Vec<Option<ToolOutcome>>,
    pub(super) queue: VecDeque<usize>,
    pub(super) running: HashMap<ActorId, usize>,
    pub(super) feedback: Option<String>,
    pub(super) plan_reviews: VecDeque<String>,
}

impl WorkstreamActor {
    /// Runs the batch: calls that failed preparation or were denied get their error result;
    /// the others run as child actors, at most four at a time.
    pub(super) fn execute(
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

    pub(super) fn on_tool_done(
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

    pub(super) fn next_review_or_round(
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

    pub(super) fn cancel(&self, myself: &ActorRef<WorkstreamMsg>, data: &mut WorkstreamData) {
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
