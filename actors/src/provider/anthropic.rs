//! Anthropic's Messages API: request translation and SSE streaming.
//!
//! SSE is parsed with `eventsource-stream` on the same reqwest client stack as everything else
//! (reqwest-eventsource would add a second reqwest and TLS stack; docs/architecture.md).

use std::collections::HashMap;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};

use super::openai::DeltaStream;
use super::stream::{Delta, FinishReason, ToolCallDelta, Usage};
use super::{ChatMessage, ModelRequest, ProviderError, Role};
use crate::config::ReasoningEffort;

/// The API version header Anthropic requires.
const API_VERSION: &str = "2023-06-01";

/// One Anthropic-compatible backend.
#[derive(Clone, Debug)]
pub struct AnthropicBackend {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    open_timeout: Duration,
}

impl AnthropicBackend {
    /// A backend at `base_url` (`https://api.anthropic.com`, or a compatible server's base).
    pub fn new(
        base_url: &str,
        api_key: Option<&str>,
        open_timeout: Duration,
    ) -> Result<Self, ProviderError> {
        super::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ProviderError::Connect(e.to_string()))?;
        Ok(Self {
            http,
            base_url: base_url
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_owned(),
            api_key: api_key.unwrap_or("dummy").to_owned(),
            open_timeout,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/{path}", self.base_url)
    }

    /// The request body.
    pub fn body(request: &ModelRequest) -> Value {
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .filter_map(|m| m.content.as_deref())
            .collect();
        let mut body = json!({
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": translate(&request.messages),
            "stream": true,
        });
        if !system.is_empty() {
            body["system"] = json!(system.join("\n\n"));
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    if t.name == super::WEB_SEARCH {
                        // Anthropic's server-side search replaces our tool.
                        json!({"type": "web_search_20250305", "name": "web_search"})
                    } else {
                        json!({"name": t.name, "description": t.description, "input_schema": t.parameters})
                    }
                })
                .collect();
        }
        match thinking_budget(request.reasoning_effort, request.max_tokens) {
            Some(budget) => {
                body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
                // Extended thinking requires temperature 1.
                body["temperature"] = json!(1);
            }
            None => {
                if let Some(t) = request.temperature {
                    body["temperature"] = json!(t);
                }
            }
        }
        body
    }

    /// Sends the request; returns once the backend answered with a stream.
    pub async fn open(&self, request: &ModelRequest) -> Result<DeltaStream, ProviderError> {
        let sent = self
            .http
            .post(self.url("messages"))
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", API_VERSION)
            .header("content-type", "application/json")
            .headers(super::traced::trace_headers(
                turnstone_runtime::remote::TraceContext::current().as_ref(),
            ))
            .body(Self::body(request).to_string())
            .send();
        let response = tokio::time::timeout(self.open_timeout, sent)
            .await
            .map_err(|_| ProviderError::Timeout(self.open_timeout))?
            .map_err(|e| ProviderError::Connect(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(ProviderError::Status {
                status: status.as_u16(),
                message: error_message(&text),
            });
        }
        let mut state = StreamState::default();
        let events = response.bytes_stream().eventsource();
        Ok(Box::pin(events.filter_map(move |event| {
            let item = match event {
                Ok(event) => state.delta(&event.event, &event.data),
                Err(e) => Some(Err(ProviderError::Stream(e.to_string()))),
            };
            futures::future::ready(item)
        })))
    }

    /// Model ids the backend lists.
    pub async fn list_models(&self, timeout: Duration) -> Result<Vec<String>, ProviderError> {
        let sent = self
            .http
            .get(self.url("models"))
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", API_VERSION)
            .send();
        let response = tokio::time::timeout(timeout, sent)
            .await
            .map_err(|_| ProviderError::Timeout(timeout))?
            .map_err(|e| ProviderError::Connect(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| ProviderError::Stream(e.to_string()))?;
        if !status.is_success() {
            return Err(ProviderError::Status {
                status: status.as_u16(),
                message: error_message(&text),
            });
        }
        let value: Value =
            serde_json::from_str(&text).map_err(|e| ProviderError::Malformed(e.to_string()))?;
        Ok(value["data"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}

fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

/// Thinking budget for an effort: low 1024, medium 4096, high and above 16384, kept below
/// `max_tokens`; none → no thinking. The API needs 1024 ≤ budget < max_tokens, so with
/// `max_tokens` of 1024 or less thinking is off.
pub fn thinking_budget(effort: Option<ReasoningEffort>, max_tokens: u32) -> Option<u32> {
    if max_tokens <= 1024 {
        return None;
    }
    let budget = match effort? {
        ReasoningEffort::None => return None,
        ReasoningEffort::Minimal | ReasoningEffort::Low => 1024,
        ReasoningEffort::Medium => 4096,
        ReasoningEffort::High | ReasoningEffort::Xhigh | ReasoningEffort::Max => 16_384,
    };
    Some(if budget >= max_tokens {
        1024.max(max_tokens.saturating_sub(1024))
    } else {
        budget
    })
}

/// Messages in Anthropic's shape: tool results become `tool_result` blocks of a user message,
/// calls become `tool_use` blocks, and neighbours with the same role are merged.
pub fn translate(messages: &[ChatMessage]) -> Vec<Value> {
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, blocks) = match m.role {
            Role::System => continue,
            Role::User => (
                "user",
                vec![json!({"type": "text", "text": m.content.clone().unwrap_or_default()})],
            ),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if let Some(text) = m.content.as_ref().filter(|t| !t.is_empty()) {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in &m.tool_calls {
                    let input = serde_json::from_str::<Value>(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
                }
                if blocks.is_empty() {
                    continue;
                }
                ("assistant", blocks)
            }
            Role::Tool => (
                "user",
                vec![
                    json!({"type": "tool_result", "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                            "content": m.content.clone().unwrap_or_default()}),
                ],
            ),
        };
        match out.last_mut() {
            Some((last_role, last_blocks)) if last_role == role => last_blocks.extend(blocks),
            _ => out.push((role.to_owned(), blocks)),
        }
    }
    out.into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

/// Tracks content blocks across stream events.
#[derive(Debug, Default)]
struct StreamState {
    /// Content block index → tool call index.
    tools: HashMap<u64, usize>,
    input_tokens: u64,
}

impl StreamState {
    fn delta(&mut self, event: &str, data: &str) -> Option<Result<Delta, ProviderError>> {
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) if event == "ping" || data.is_empty() => return None,
            Err(e) => return Some(Err(ProviderError::Malformed(format!("{e}: {data}")))),
        };
        let kind = v["type"].as_str().unwrap_or(event);
        let mut delta = Delta::default();
        match kind {
            "message_start" => {
                self.input_tokens = v["message"]["usage"]["input_tokens"].as_u64().unwrap_or(0);
                delta.usage = Some(Usage {
                    prompt_tokens: self.input_tokens,
                    completion_tokens: 0,
                });
            }
            "content_block_start" => {
                let block = &v["content_block"];
                if block["type"] == "tool_use" {
                    let index = self.tools.len();
                    self.tools.insert(v["index"].as_u64().unwrap_or(0), index);
                    delta.tool_calls.push(ToolCallDelta {
                        index,
                        id: block["id"].as_str().map(str::to_owned),
                        name: block["name"].as_str().map(str::to_owned),
                        arguments: String::new(),
                    });
                } else if block["type"] == "server_tool_use" {
                    delta.info = Some(format!(
                        "[Searching: {}]",
                        block["input"]["query"].as_str().unwrap_or("")
                    ));
                } else if block["type"] == "web_search_tool_result" {
                    let results = block["content"].as_array();
                    delta.info = Some(format!("[Found {} results]", results.map_or(0, Vec::len)));
                } else {
                    return None;
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str().unwrap_or("") {
                    "text_delta" => delta.content = d["text"].as_str().map(str::to_owned),
                    "thinking_delta" => delta.reasoning = d["thinking"].as_str().map(str::to_owned),
                    "citations_delta" => {
                        let c = &d["citation"];
                        if let Some(url) = c["url"].as_str() {
                            delta.citations.push((
                                url.to_owned(),
                                c["title"].as_str().unwrap_or("").to_owned(),
                            ));
                        }
                    }
                    "input_json_delta" => {
                        let block = v["index"].as_u64().unwrap_or(0);
                        let index = *self.tools.get(&block)?;
                        delta.tool_calls.push(ToolCallDelta {
                            index,
                            id: None,
                            name: None,
                            arguments: d["partial_json"].as_str().unwrap_or("").to_owned(),
                        });
                    }
                    _ => return None,
                }
            }
            "message_delta" => {
                delta.finish = v["delta"]["stop_reason"].as_str().map(|r| match r {
                    "end_turn" | "pause_turn" | "stop_sequence" => FinishReason::Stop,
                    "tool_use" => FinishReason::ToolCalls,
                    "max_tokens" => FinishReason::Length,
                    "refusal" => FinishReason::ContentFilter,
                    other => FinishReason::Other(other.to_owned()),
                });
                delta.usage = Some(Usage {
                    prompt_tokens: self.input_tokens,
                    completion_tokens: v["usage"]["output_tokens"].as_u64().unwrap_or(0),
                });
            }
            "error" => {
                return Some(Err(ProviderError::Stream(
                    v["error"]["message"]
                        .as_str()
                        .unwrap_or("backend reported an error")
                        .to_owned(),
                )));
            }
            _ => return None,
        }
        Some(Ok(delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ToolCall;

    #[test]
    fn tool_turns_translate_to_blocks_and_neighbours_merge() {
        let call = ToolCall {
            id: "t1".into(),
            name: "bash".into(),
            arguments: "{\"command\":\"ls\"}".into(),
        };
        let call2 = ToolCall {
            id: "t2".into(),
            name: "bash".into(),
            arguments: "not json".into(),
        };
        let msgs = vec![
            ChatMessage::system("sys"),
            ChatMessage::user("go"),
            ChatMessage::assistant(Some("ok".into()), vec![call.clone(), call2.clone()]),
            ChatMessage::tool(&call, "a.txt"),
            ChatMessage::tool(&call2, "err"),
            ChatMessage::user("thanks"),
        ];
        let t = translate(&msgs);
        assert_eq!(t.len(), 3);
        assert_eq!(t[1]["content"][1]["input"], json!({"command": "ls"}));
        assert_eq!(
            t[1]["content"][2]["input"],
            json!({}),
            "bad JSON becomes an empty input"
        );
        assert_eq!(t[2]["role"], "user");
        let blocks = t[2]["content"].as_array().unwrap();
        assert_eq!(
            blocks.len(),
            3,
            "two results and the next user text in one message"
        );
        assert_eq!(blocks[0]["tool_use_id"], "t1");
        assert_eq!(blocks[2]["text"], "thanks");
    }

    #[test]
    fn thinking_budgets_follow_effort_and_stay_below_max_tokens() {
        assert_eq!(
            thinking_budget(Some(ReasoningEffort::Low), 32_768),
            Some(1024)
        );
        assert_eq!(
            thinking_budget(Some(ReasoningEffort::Medium), 32_768),
            Some(4096)
        );
        assert_eq!(
            thinking_budget(Some(ReasoningEffort::High), 8000),
            Some(6976)
        );
        assert_eq!(
            thinking_budget(Some(ReasoningEffort::High), 1500),
            Some(1024)
        );
        assert_eq!(
            thinking_budget(Some(ReasoningEffort::High), 1024),
            None,
            "no valid budget"
        );
        assert_eq!(thinking_budget(Some(ReasoningEffort::None), 32_768), None);
        assert_eq!(thinking_budget(None, 32_768), None);
    }
}
