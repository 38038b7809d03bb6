//! A session's settings: what `configure` changes and what is stored with the session.

use super::WorkstreamData;
use super::rounds::effort_name;
use super::session::Persist;
use crate::config::ReasoningEffort;
use crate::provider::{Role, Usage};
use crate::workstream::{WorkstreamActor, WorkstreamError};

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
    pub(super) fn apply_stored(&mut self, stored: &std::collections::BTreeMap<String, String>) {
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
    /// Applies a setting; persisted ones are written to the session's settings.
    pub(super) fn configure(
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
}
