//! A lane's protocol: OpenAI-compatible or Anthropic.

use std::time::Duration;

use super::anthropic::AnthropicBackend;
use super::openai::{DeltaStream, OpenAiBackend};
use super::{ModelRequest, ProviderError};

/// The client of one lane.
#[derive(Clone, Debug)]
pub enum Backend {
    /// Chat completions (vLLM, llama.cpp, OpenAI, …).
    OpenAi(OpenAiBackend),
    /// Anthropic's Messages API.
    Anthropic(AnthropicBackend),
}

impl Backend {
    /// Sends a streaming request; returns once the backend answered.
    pub async fn open(&self, request: &ModelRequest) -> Result<DeltaStream, ProviderError> {
        match self {
            Self::OpenAi(b) => b.open(request).await,
            Self::Anthropic(b) => b.open(request).await,
        }
    }

    /// Model ids the backend lists.
    pub async fn list_models(&self, timeout: Duration) -> Result<Vec<String>, ProviderError> {
        match self {
            Self::OpenAi(b) => b.list_models(timeout).await,
            Self::Anthropic(b) => b.list_models(timeout).await,
        }
    }
}
