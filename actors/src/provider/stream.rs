//! Turning a provider's stream of deltas into events and one assembled completion.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ToolCall;

/// A piece of a tool call as streamed: merged by `index`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCallDelta {
    /// Position of the call in the message.
    pub index: usize,
    /// Id, when this delta carries it.
    pub id: Option<String>,
    /// Name, when this delta carries it.
    pub name: Option<String>,
    /// More argument text.
    pub arguments: String,
}

/// Token usage of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

/// Why the model stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Done.
    #[default]
    Stop,
    /// Wants tools run.
    ToolCalls,
    /// Hit the token limit.
    Length,
    /// Filtered.
    ContentFilter,
    /// Anything else the backend said.
    Other(String),
}

impl FinishReason {
    /// From the OpenAI wire value.
    pub fn from_wire(s: &str) -> Self {
        match s {
            "stop" => Self::Stop,
            "tool_calls" | "function_call" => Self::ToolCalls,
            "length" => Self::Length,
            "content_filter" => Self::ContentFilter,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One parsed chunk of a provider stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Content text (may contain think tags).
    pub content: Option<String>,
    /// Reasoning text from a dedicated field.
    pub reasoning: Option<String>,
    /// Tool-call pieces.
    pub tool_calls: Vec<ToolCallDelta>,
    /// Usage, when reported.
    pub usage: Option<Usage>,
    /// Finish reason, on the last choice chunk.
    pub finish: Option<FinishReason>,
    /// Informational text for the user (e.g. "[Searching: …]").
    pub info: Option<String>,
    /// Web sources the answer cites (provider-native search), as (url, title).
    pub citations: Vec<(String, String)>,
}

/// What the user sees while a reply streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// Answer text.
    Content(String),
    /// Reasoning text.
    Reasoning(String),
    /// Informational text.
    Info(String),
}

/// The whole reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// Answer text; None when empty.
    pub content: Option<String>,
    /// Reasoning text.
    pub reasoning: String,
    /// Tool calls, in index order.
    pub tool_calls: Vec<ToolCall>,
    /// Usage of this request.
    pub usage: Option<Usage>,
    /// Why it stopped.
    pub finish: FinishReason,
    /// Warnings for the user (e.g. tool calls dropped at the token limit).
    pub warnings: Vec<String>,
}

const TAGS: [(&str, &str); 2] = [("<think>", "</think>"), ("<reasoning>", "</reasoning>")];

/// Splits content into answer and reasoning at `<think>`/`<reasoning>` tags, also when a tag is
/// split across chunks.
#[derive(Clone, Debug, Default)]
pub struct ThinkSplitter {
    closing: Option<&'static str>,
    pending: String,
}

impl ThinkSplitter {
    /// Feeds one chunk; returns the pieces now certain, as `(is_reasoning, text)`.
    pub fn push(&mut self, chunk: String) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        // Every tag starts with '<': a chunk without one, with nothing held back, is one
        // piece as it is (most chunks of most answers).
        if self.pending.is_empty() && !chunk.contains('<') {
            push_piece(&mut out, self.closing.is_some(), chunk);
            return out;
        }
        self.pending.push_str(&chunk);
        loop {
            let found = match self.closing {
                Some(close) => self.pending.find(close).map(|at| (at, close)),
                None => TAGS
                    .iter()
                    .filter_map(|(open, _)| self.pending.find(open).map(|at| (at, *open)))
                    .min_by_key(|(at, _)| *at),
            };
            match found {
                Some((at, tag)) => {
                    let before = self.pending[..at].to_owned();
                    self.pending.replace_range(..at + tag.len(), "");
                    push_piece(&mut out, self.closing.is_some(), before);
                    self.closing = match self.closing {
                        Some(_) => None,
                        None => TAGS.iter().find(|(open, _)| *open == tag).map(|(_, c)| *c),
                    };
                }
                None => {
                    // Keep back a suffix that could be the start of a wanted tag.
                    let keep = match self.closing {
                        Some(close) => partial_suffix(&self.pending, close),
                        None => TAGS
                            .iter()
                            .map(|(open, _)| partial_suffix(&self.pending, open))
                            .max()
                            .unwrap_or(0),
                    };
                    let held = self.pending.split_off(self.pending.len() - keep);
                    let ready = std::mem::replace(&mut self.pending, held);
                    push_piece(&mut out, self.closing.is_some(), ready);
                    return out;
                }
            }
        }
    }

    /// The held-back text at the end of the stream.
    pub fn finish(&mut self) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        push_piece(
            &mut out,
            self.closing.is_some(),
            std::mem::take(&mut self.pending),
        );
        out
    }
}

fn push_piece(out: &mut Vec<(bool, String)>, reasoning: bool, text: String) {
    if !text.is_empty() {
        out.push((reasoning, text));
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `tag`.
fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|n| {
            text.len() >= *n && text.is_char_boundary(text.len() - n) && text.ends_with(&tag[..*n])
        })
        .unwrap_or(0)
}

/// Accumulates deltas into events and the final completion.
#[derive(Debug, Default)]
pub struct Accumulator {
    splitter: ThinkSplitter,
    content: String,
    reasoning: String,
    calls: BTreeMap<usize, ToolCall>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    citations: Vec<(String, String)>,
}

impl Accumulator {
    /// A fresh accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one delta; returns the events to show now.
    pub fn push(&mut self, delta: Delta) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        if let Some(r) = delta.reasoning.filter(|r| !r.is_empty()) {
            self.reasoning.push_str(&r);
            events.push(StreamEvent::Reasoning(r));
        }
        if let Some(c) = delta.content {
            let pieces = self.splitter.push(c);
            self.take_pieces(pieces, &mut events);
        }
        for d in delta.tool_calls {
            let call = self.calls.entry(d.index).or_insert_with(|| ToolCall {
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
            });
            if let Some(id) = d.id.filter(|s| !s.is_empty()) {
                call.id = id;
            }
            if let Some(name) = d.name.filter(|s| !s.is_empty()) {
                call.name = name;
            }
            call.arguments.push_str(&d.arguments);
        }
        if let Some(u) = delta.usage {
            self.usage = Some(u);
        }
        if let Some(f) = delta.finish {
            self.finish = Some(f);
        }
        if let Some(info) = delta.info {
            events.push(StreamEvent::Info(info));
        }
        for citation in delta.citations {
            if !self.citations.iter().any(|(url, _)| *url == citation.0) {
                self.citations.push(citation);
            }
        }
        events
    }

    fn take_pieces(&mut self, pieces: Vec<(bool, String)>, events: &mut Vec<StreamEvent>) {
        for (is_reasoning, text) in pieces {
            if is_reasoning {
                self.reasoning.push_str(&text);
                events.push(StreamEvent::Reasoning(text));
            } else {
                self.content.push_str(&text);
                events.push(StreamEvent::Content(text));
            }
        }
    }

    /// Ends the stream: flushes held-back text and assembles the completion.
    pub fn finish(mut self) -> (Vec<StreamEvent>, Completion) {
        let mut events = Vec::new();
        let pieces = self.splitter.finish();
        self.take_pieces(pieces, &mut events);
        if !self.citations.is_empty() {
            let mut sources = String::from("\n\nSources:");
            for (i, (url, title)) in self.citations.iter().enumerate() {
                let title = if title.is_empty() { url } else { title };
                sources.push_str(&format!("\n{}. [{title}]({url})", i + 1));
            }
            self.content.push_str(&sources);
            events.push(StreamEvent::Content(sources));
        }
        let finish = self.finish.unwrap_or_default();
        let mut warnings = Vec::new();
        let mut tool_calls: Vec<ToolCall> = self.calls.into_values().collect();
        for (i, call) in tool_calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                call.id = format!("call_{i}");
            }
        }
        match finish {
            FinishReason::Length if !tool_calls.is_empty() => {
                warnings.push(format!(
                    "Response hit the token limit; dropped {} incomplete tool call(s)",
                    tool_calls.len()
                ));
                tool_calls.clear();
            }
            FinishReason::Length => {
                warnings.push("Response hit the token limit and may be incomplete".into());
            }
            FinishReason::ContentFilter => {
                warnings.push("Response was stopped by the provider's content filter".into());
            }
            FinishReason::Stop | FinishReason::ToolCalls | FinishReason::Other(_) => {}
        }
        let content = (!self.content.trim().is_empty()).then_some(self.content);
        (
            events,
            Completion {
                content,
                reasoning: self.reasoning,
                tool_calls,
                usage: self.usage,
                finish,
                warnings,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&str]) -> Vec<(bool, String)> {
        let mut s = ThinkSplitter::default();
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in chunks {
            out.extend(s.push((*c).to_owned()));
        }
        out.extend(s.finish());
        // merge neighbours of the same kind for easy comparison
        let mut merged: Vec<(bool, String)> = Vec::new();
        for (k, t) in out {
            match merged.last_mut() {
                Some((lk, lt)) if *lk == k => lt.push_str(&t),
                _ => merged.push((k, t)),
            }
        }
        merged
    }

    #[test]
    fn think_tags_split_across_chunks_are_recognised() {
        assert_eq!(
            split_all(&["Hi <thi", "nk>pondering</th", "ink> answer"]),
            vec![
                (false, "Hi ".into()),
                (true, "pondering".into()),
                (false, " answer".into())
            ]
        );
        assert_eq!(
            split_all(&["<reasoning>a", "b</reasoning>", "c"]),
            vec![(true, "ab".into()), (false, "c".into())]
        );
        // Chunks without a tag inside an open block stay reasoning.
        assert_eq!(
            split_all(&["<think>", "deep", " thought</think>", "ok"]),
            vec![(true, "deep thought".into()), (false, "ok".into())]
        );
    }

    #[test]
    fn text_that_only_looks_like_a_tag_start_is_released() {
        assert_eq!(split_all(&["a <", "b"]), vec![(false, "a <b".into())]);
        assert_eq!(split_all(&["x <thi"]), vec![(false, "x <thi".into())]);
        assert_eq!(
            split_all(&["é<", "think>ü</think>"]),
            vec![(false, "é".into()), (true, "ü".into())]
        );
    }

    #[test]
    fn tool_call_deltas_are_merged_by_index_and_sorted() {
        let mut acc = Accumulator::new();
        acc.push(Delta {
            tool_calls: vec![
                ToolCallDelta {
                    index: 1,
                    id: Some("b".into()),
                    name: Some("search".into()),
                    arguments: "{\"q".into(),
                },
                ToolCallDelta {
                    index: 0,
                    id: Some("a".into()),
                    name: Some("bash".into()),
                    arguments: "{\"command\"".into(),
                },
            ],
            ..Delta::default()
        });
        acc.push(Delta {
            tool_calls: vec![
                ToolCallDelta {
                    index: 0,
                    arguments: ":\"ls\"}".into(),
                    ..ToolCallDelta::default()
                },
                ToolCallDelta {
                    index: 1,
                    arguments: "uery\":\"x\"}".into(),
                    ..ToolCallDelta::default()
                },
            ],
            finish: Some(FinishReason::ToolCalls),
            usage: Some(Usage {
                prompt_tokens: 9,
                completion_tokens: 3,
            }),
            ..Delta::default()
        });
        let (_, done) = acc.finish();
        assert_eq!(
            done.tool_calls,
            vec![
                ToolCall {
                    id: "a".into(),
                    name: "bash".into(),
                    arguments: "{\"command\":\"ls\"}".into()
                },
                ToolCall {
                    id: "b".into(),
                    name: "search".into(),
                    arguments: "{\"query\":\"x\"}".into()
                },
            ]
        );
        assert_eq!(
            done.usage,
            Some(Usage {
                prompt_tokens: 9,
                completion_tokens: 3
            })
        );
        assert_eq!(done.content, None, "empty content is None");
    }

    #[test]
    fn finish_length_drops_partial_tool_calls_with_a_warning() {
        let mut acc = Accumulator::new();
        acc.push(Delta {
            content: Some("partial".into()),
            tool_calls: vec![ToolCallDelta {
                index: 0,
                id: Some("a".into()),
                name: Some("bash".into()),
                arguments: "{\"comm".into(),
            }],
            finish: Some(FinishReason::Length),
            ..Delta::default()
        });
        let (_, done) = acc.finish();
        assert!(done.tool_calls.is_empty());
        assert_eq!(done.content.as_deref(), Some("partial"));
        assert!(done.warnings[0].contains("dropped 1 incomplete tool call"));
    }

    #[test]
    fn reasoning_fields_and_tags_both_become_reasoning_events() {
        let mut acc = Accumulator::new();
        let mut events = acc.push(Delta {
            reasoning: Some("field ".into()),
            ..Delta::default()
        });
        events.extend(acc.push(Delta {
            content: Some("<think>tag</think>answer".into()),
            ..Delta::default()
        }));
        let (rest, done) = acc.finish();
        events.extend(rest);
        assert_eq!(done.reasoning, "field tag");
        assert_eq!(done.content.as_deref(), Some("answer"));
        assert_eq!(events[0], StreamEvent::Reasoning("field ".into()));
    }
}
