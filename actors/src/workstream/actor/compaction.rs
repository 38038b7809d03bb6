//! Compaction of a long conversation into a summary, and the workstream's title.

use ractor::{ActorRef, RpcReplyPort};

use super::WorkstreamData;
use crate::provider::{ProviderError, Role, collect};
use crate::workstream::{
    WorkstreamActor, WorkstreamError, WorkstreamMsg, WsEvent, WsState, context,
};

/// A compaction in progress.
pub(super) struct Compaction {
    pub(super) reply: Option<RpcReplyPort<Result<(), WorkstreamError>>>,
    /// It was started automatically at the end of a turn, which ends when it is done.
    pub(super) ends_turn: bool,
}

impl WorkstreamActor {
    /// Starts summarising the older messages in a task. Errors hand the reply back.
    #[allow(clippy::type_complexity)]
    pub(super) fn start_compaction(
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

    pub(super) fn on_compacted(
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
    pub(super) fn maybe_title(&self, data: &mut WorkstreamData) {
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
}
