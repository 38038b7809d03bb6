//! The chat-completions request body, serialised straight from the [`ModelRequest`] it
//! borrows: no JSON tree is built per request (the tools' schemas were deep-copied into one on
//! every model round).

use serde::Serialize;
use serde_json::Value;

use super::{ChatMessage, ModelRequest, Role, ToolCall, ToolSpec, WEB_SEARCH};
use crate::config::ReasoningEffort;

/// The body of `POST /chat/completions`, streaming.
#[derive(Debug, Serialize)]
pub struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    max_tokens: u32,
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    /// Search models search by themselves (an empty object asks them to).
    #[serde(skip_serializing_if = "Option::is_none")]
    web_search_options: Option<Empty>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_template_kwargs: Option<TemplateArgs>,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Debug, Serialize)]
struct Empty {}

#[derive(Debug, Serialize)]
struct TemplateArgs {
    reasoning_effort: ReasoningEffort,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    role: Role,
    content: &'a Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<Call<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Call<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: CallFunction<'a>,
}

#[derive(Debug, Serialize)]
struct CallFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Debug, Serialize)]
struct Tool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: ToolFunction<'a>,
}

#[derive(Debug, Serialize)]
struct ToolFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

impl<'a> ChatBody<'a> {
    /// The body for `request`; for a search model (`is_search_model`) our own `web_search`
    /// tool is left out, since the model searches by itself and the tool would only compete.
    pub fn new(request: &'a ModelRequest, search_model: bool) -> Self {
        Self {
            model: &request.model,
            messages: request.messages.iter().map(Message::from).collect(),
            max_tokens: request.max_tokens,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            temperature: request.temperature,
            web_search_options: search_model.then_some(Empty {}),
            tools: request
                .tools
                .iter()
                .filter(|t| !(search_model && t.name == WEB_SEARCH))
                .map(Tool::from)
                .collect(),
            chat_template_kwargs: request
                .reasoning_effort
                .filter(|e| *e != ReasoningEffort::None)
                .map(|reasoning_effort| TemplateArgs { reasoning_effort }),
        }
    }
}

impl<'a> From<&'a ChatMessage> for Message<'a> {
    fn from(m: &'a ChatMessage) -> Self {
        Self {
            role: m.role,
            content: &m.content,
            tool_calls: m.tool_calls.iter().map(Call::from).collect(),
            tool_call_id: m.tool_call_id.as_deref(),
        }
    }
}

impl<'a> From<&'a ToolCall> for Call<'a> {
    fn from(c: &'a ToolCall) -> Self {
        Self {
            id: &c.id,
            kind: "function",
            function: CallFunction {
                name: &c.name,
                arguments: &c.arguments,
            },
        }
    }
}

impl<'a> From<&'a ToolSpec> for Tool<'a> {
    fn from(t: &'a ToolSpec) -> Self {
        Self {
            kind: "function",
            function: ToolFunction {
                name: &t.name,
                description: &t.description,
                parameters: &t.parameters,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The wire form 0.4.1's backends read: every field where OpenAI puts it.
    #[test]
    fn the_body_is_openai_chat_completions() {
        let call = ToolCall {
            id: "c1".into(),
            name: "bash".into(),
            arguments: r#"{"command":"ls"}"#.into(),
        };
        let request = ModelRequest {
            model: "m".into(),
            messages: vec![
                ChatMessage::system("be brief"),
                ChatMessage::assistant(None, vec![call.clone()]),
                ChatMessage::tool(&call, "a b"),
            ]
            .into(),
            tools: vec![
                ToolSpec {
                    name: "bash".into(),
                    description: "run".into(),
                    parameters: json!({"type": "object"}),
                },
                ToolSpec {
                    name: WEB_SEARCH.into(),
                    description: "search".into(),
                    parameters: json!({}),
                },
            ]
            .into(),
            temperature: Some(0.5),
            max_tokens: 64,
            reasoning_effort: Some(ReasoningEffort::High),
        };
        let body = serde_json::to_value(ChatBody::new(&request, false)).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "c1", "type": "function",
                         "function": {"name": "bash", "arguments": "{\"command\":\"ls\"}"}}]},
                    {"role": "tool", "content": "a b", "tool_call_id": "c1"},
                ],
                "max_tokens": 64,
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": 0.5,
                "tools": [
                    {"type": "function", "function":
                        {"name": "bash", "description": "run", "parameters": {"type": "object"}}},
                    {"type": "function", "function":
                        {"name": WEB_SEARCH, "description": "search", "parameters": {}}},
                ],
                "chat_template_kwargs": {"reasoning_effort": "high"},
            })
        );
        let search = serde_json::to_value(ChatBody::new(&request, true)).unwrap();
        assert_eq!(search["web_search_options"], json!({}));
        assert_eq!(search["tools"].as_array().map(Vec::len), Some(1));
        assert_eq!(search["tools"][0]["function"]["name"], "bash");
    }
}
