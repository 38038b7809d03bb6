//! One tool call as an actor, linked under its workstream: a panic or a timeout becomes that
//! call's error result and the workstream continues; killing the actor cancels the call.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;

use super::{Tool, ToolContext, ToolOutput};

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolOutcome {
    /// It ran; the output (which may describe an error the tool reported).
    Done(ToolOutput),
    /// It failed: error text for the model.
    Failed(String),
}

/// What a `ToolCallActor` needs.
pub struct ToolCallArgs {
    /// The tool.
    pub tool: Arc<dyn Tool>,
    /// Parsed arguments.
    pub args: Value,
    /// Call context.
    pub ctx: ToolContext,
    /// How long it may run.
    pub timeout: Duration,
    /// Where the outcome goes, with the call's index.
    pub done: Box<dyn FnOnce(ToolOutcome) + Send>,
    /// The call's span (`execute_tool {name}`, below the turn's).
    pub span: tracing::Span,
}

/// The tool-call actor's only message: run now.
#[derive(Debug)]
pub enum ToolCallMsg {
    /// Run the call.
    Run,
}

/// Runs one call.
#[derive(Debug)]
pub struct ToolCallActor;

/// The call waiting to run (taken when it runs).
pub struct ToolCallState {
    pending: Option<ToolCallArgs>,
}

impl Actor for ToolCallActor {
    type Msg = ToolCallMsg;
    type State = ToolCallState;
    type Arguments = ToolCallArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ToolCallMsg>,
        args: ToolCallArgs,
    ) -> Result<ToolCallState, ActorProcessingErr> {
        // Run from the mailbox, where a kill signal can interrupt it.
        myself.cast(ToolCallMsg::Run)?;
        Ok(ToolCallState {
            pending: Some(args),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ToolCallMsg>,
        ToolCallMsg::Run: ToolCallMsg,
        state: &mut ToolCallState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(call) = state.pending.take() else {
            return Ok(());
        };
        let name = call.tool.spec().name;
        let span = call.span.clone();
        let run = tracing::Instrument::instrument(call.tool.run(call.args, call.ctx), span.clone());
        let outcome = match tokio::time::timeout(call.timeout, run).await {
            Ok(Ok(output)) => ToolOutcome::Done(output),
            Ok(Err(error)) if error.starts_with("Error") => ToolOutcome::Failed(error),
            Ok(Err(error)) => ToolOutcome::Failed(format!("Error: {error}")),
            Err(_) => ToolOutcome::Failed(format!(
                "Error: {name} timed out after {}s",
                call.timeout.as_secs_f64()
            )),
        };
        span.record(
            "outcome",
            match &outcome {
                ToolOutcome::Done(_) => "ok",
                _ => "error",
            },
        );
        drop(span);
        (call.done)(outcome);
        myself.stop(None);
        Ok(())
    }
}
