//! The conversation as the engine keeps it, independent of any provider's wire format.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ReasoningEffort;

/// Who said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

/// A tool call the model made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Provider-assigned id, echoed in the result.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Arguments as the model wrote them (JSON text, possibly malformed).
    pub arguments: String,
}

/// One message of the conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// The text (None for an assistant message that only calls tools).
    pub content: Option<String>,
    /// Tool calls (assistant messages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call this message answers (tool messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The tool's name (tool messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Self::text(Role::System, text)
    }

    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::text(Role::User, text)
    }

    /// An assistant message.
    pub fn assistant(content: Option<String>, tool_calls: Vec<ToolCall>) -> Self {
        Self {
            role: Role::Assistant,
            content,
            tool_calls,
            tool_call_id: None,
            name: None,
        }
    }

    /// A tool result.
    pub fn tool(call: &ToolCall, output: impl Into<String>) -> Self {
        Self {
            role: Role::Tool,
            content: Some(output.into()),
            tool_calls: Vec::new(),
            tool_call_id: Some(call.id.clone()),
            name: Some(call.name.clone()),
        }
    }

    fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(text.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// Characters of text this message carries (content, tool names and arguments).
    pub fn chars(&self) -> usize {
        self.content.as_ref().map_or(0, |c| c.chars().count())
            + self
                .tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.chars().count())
                .sum::<usize>()
    }
}

/// A tool offered to the model, in OpenAI function form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Function name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: Value,
}

/// One model request.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRequest {
    /// Model name at the backend (set by the router from the alias).
    pub model: String,
    /// The conversation, system message first; shared, so that a request (and its retries
    /// and fallbacks) costs no copy of a long conversation.
    pub messages: Arc<Vec<ChatMessage>>,
    /// Tools offered (empty: none); shared with the registry that offers them.
    pub tools: Arc<[ToolSpec]>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Completion token limit.
    pub max_tokens: u32,
    /// Reasoning effort, passed to templates that support it.
    pub reasoning_effort: Option<ReasoningEffort>,
}
