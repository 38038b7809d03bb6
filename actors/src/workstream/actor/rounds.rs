//! Model rounds: the request, its span, the streamed answer and the turn's end.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ractor::ActorRef;
use turnstone_runtime::remote::TraceContext;

use super::tool_calls::Batch;
use super::{Pending, WorkstreamData};
use crate::config::ReasoningEffort;
use crate::provider::{ChatMessage, Completion, ModelRequest, ProviderError, StreamEvent, collect};
use crate::text::ellipsize;
use crate::tools::prepare_calls;
use crate::workstream::{WorkstreamActor, WorkstreamMsg, WsEvent, WsState, system_prompt};

impl WorkstreamActor {
    pub(super) fn request(&self, data: &mut WorkstreamData) -> ModelRequest {
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

    pub(super) fn start_round(&self, myself: &ActorRef<WorkstreamMsg>, data: &mut WorkstreamData) {
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
    pub(super) fn turn_span(
        &self,
        data: &WorkstreamData,
        trace: Option<&TraceContext>,
    ) -> tracing::Span {
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

    pub(super) fn finish_turn(
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

    pub(super) fn on_model_done(
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
}

/// `gen_ai.provider.name` of a lane's protocol.
fn provider_name(kind: crate::config::ProviderKind) -> &'static str {
    match kind {
        crate::config::ProviderKind::Openai => "openai",
        crate::config::ProviderKind::Anthropic => "anthropic",
    }
}

pub(super) fn effort_name(effort: ReasoningEffort) -> &'static str {
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
