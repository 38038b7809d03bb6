//! OpenAI-compatible chat completions (vLLM, llama.cpp, OpenAI, …) through async-openai.

use std::pin::Pin;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use futures::{Stream, StreamExt};
use serde_json::Value;

use super::openai_wire::ChatBody;
use super::stream::{Delta, FinishReason, ToolCallDelta, Usage};
use super::{ModelRequest, ProviderError};

/// A stream of parsed chunks.
pub type DeltaStream = Pin<Box<dyn Stream<Item = Result<Delta, ProviderError>> + Send>>;

/// One OpenAI-compatible backend.
#[derive(Clone, Debug)]
pub struct OpenAiBackend {
    client: Client<OpenAIConfig>,
    open_timeout: Duration,
}

/// Installs ring as the process's TLS crypto provider (once); reqwest needs one before the
/// first client is built.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl OpenAiBackend {
    /// A backend at `base_url` (e.g. `http://localhost:8000/v1`). `open_timeout` bounds the wait
    /// for response headers; the stream itself may run longer.
    pub fn new(
        base_url: &str,
        api_key: Option<&str>,
        open_timeout: Duration,
    ) -> Result<Self, ProviderError> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ProviderError::Connect(e.to_string()))?;
        let config = OpenAIConfig::new()
            .with_api_base(base_url.trim_end_matches('/'))
            .with_api_key(api_key.unwrap_or("dummy"));
        // The plain transport: async-openai's default stack retries 429/5xx on its own, which
        // would hide failures from our retry notices, fallback and circuit breaker.
        let transport = super::traced::TracedTransport::new(http);
        Ok(Self {
            client: Client::with_config(config).with_http_service(transport),
            open_timeout,
        })
    }

    /// The request body, borrowing `request`.
    pub fn body(request: &ModelRequest) -> ChatBody<'_> {
        ChatBody::new(request, is_search_model(&request.model))
    }

    /// Sends the request and returns once the backend has answered with a stream: connection
    /// errors and error statuses surface here, where retries can act on them.
    pub async fn open(&self, request: &ModelRequest) -> Result<DeltaStream, ProviderError> {
        let body = Self::body(request);
        let opened = tokio::time::timeout(
            self.open_timeout,
            self.client
                .chat()
                .create_stream_byot::<ChatBody<'_>, Value>(body),
        )
        .await
        .map_err(|_| ProviderError::Timeout(self.open_timeout))?;
        let stream = opened.map_err(ProviderError::from)?;
        Ok(Box::pin(stream.map(|chunk| {
            chunk
                .map_err(ProviderError::from)
                .and_then(|value| parse_chunk(&value))
        })))
    }

    /// Model ids the backend lists (`GET /models`).
    pub async fn list_models(&self, timeout: Duration) -> Result<Vec<String>, ProviderError> {
        let listed = tokio::time::timeout(timeout, self.client.models().list_byot::<Value>())
            .await
            .map_err(|_| ProviderError::Timeout(timeout))?
            .map_err(ProviderError::from)?;
        Ok(listed["data"]
            .as_array()
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// OpenAI's search models (`gpt-4o-search-preview`, `gpt-5-search-api`, …) search the web
/// natively.
pub fn is_search_model(model: &str) -> bool {
    model.contains("search")
}

/// Parses one `chat.completion.chunk`.
pub fn parse_chunk(chunk: &Value) -> Result<Delta, ProviderError> {
    if let Some(err) = chunk.get("error") {
        return Err(ProviderError::Stream(
            err["message"]
                .as_str()
                .unwrap_or("backend reported an error")
                .to_owned(),
        ));
    }
    if !chunk.is_object() {
        return Err(ProviderError::Malformed(format!(
            "chunk is not an object: {chunk}"
        )));
    }
    let mut delta = Delta::default();
    if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
        delta.usage = Some(Usage {
            prompt_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
        });
    }
    let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else {
        return Ok(delta);
    };
    let d = &choice["delta"];
    delta.content = d["content"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    delta.reasoning = d["reasoning_content"]
        .as_str()
        .or_else(|| d["reasoning"].as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if let Some(annotations) = d["annotations"].as_array() {
        delta.citations = annotations
            .iter()
            .filter(|a| a["type"] == "url_citation")
            .filter_map(|a| {
                let c = &a["url_citation"];
                Some((
                    c["url"].as_str()?.to_owned(),
                    c["title"].as_str().unwrap_or("").to_owned(),
                ))
            })
            .collect();
    }
    if let Some(calls) = d["tool_calls"].as_array() {
        for (position, call) in calls.iter().enumerate() {
            delta.tool_calls.push(ToolCallDelta {
                index: call["index"]
                    .as_u64()
                    .and_then(|i| usize::try_from(i).ok())
                    .unwrap_or(position),
                id: call["id"].as_str().map(str::to_owned),
                name: call["function"]["name"].as_str().map(str::to_owned),
                arguments: call["function"]["arguments"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
    }
    delta.finish = choice["finish_reason"]
        .as_str()
        .map(FinishReason::from_wire);
    Ok(delta)
}
