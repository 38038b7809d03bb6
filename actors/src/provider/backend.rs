//! A lane's protocol: OpenAI-compatible or Anthropic.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

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
    /// A backend supplied by the embedding program (the simulator's model, for one).
    Custom(Arc<dyn ModelBackend>),
}

/// A model backend outside the two wire protocols, plugged into a lane.
#[async_trait]
pub trait ModelBackend: Send + Sync + std::fmt::Debug + 'static {
    /// Starts a streaming answer to `request`.
    async fn open(&self, request: &ModelRequest) -> Result<DeltaStream, ProviderError>;

    /// Model ids it serves.
    async fn list_models(&self, timeout: Duration) -> Result<Vec<String>, ProviderError>;
}

impl Backend {
    /// Sends a streaming request; returns once the backend answered.
    pub async fn open(&self, request: &ModelRequest) -> Result<DeltaStream, ProviderError> {
        match self {
            Self::OpenAi(b) => b.open(request).await,
            Self::Anthropic(b) => b.open(request).await,
            Self::Custom(b) => b.open(request).await,
        }
    }

    /// Model ids the backend lists.
    pub async fn list_models(&self, timeout: Duration) -> Result<Vec<String>, ProviderError> {
        match self {
            Self::OpenAi(b) => b.list_models(timeout).await,
            Self::Anthropic(b) => b.list_models(timeout).await,
            Self::Custom(b) => b.list_models(timeout).await,
        }
    }
}
