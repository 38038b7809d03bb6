//! Model providers: wire-independent messages, OpenAI-compatible streaming, stream assembly,
//! one supervised `ProviderActor` per model alias (circuit breaker, health probes), and the
//! `ModelRouter` whose retries and fallback wrap the request itself.

mod actor;
mod anthropic;
mod backend;
mod error;
mod message;
mod openai;
mod openai_wire;
mod pool;
mod router;
mod stream;
mod traced;

pub use actor::{Detection, ProviderActor, ProviderMsg, ProviderSettings, ProviderStatus};
pub use anthropic::{AnthropicBackend, thinking_budget, translate as anthropic_messages};
pub use backend::{Backend, ModelBackend};
pub use error::ProviderError;
pub use message::{ChatMessage, ModelRequest, Role, ToolCall, ToolSpec};
pub use openai::{
    DeltaStream, OpenAiBackend, install_crypto_provider, is_search_model, parse_chunk,
};
pub use openai_wire::ChatBody;

/// The tool that providers with native web search replace by their own.
pub const WEB_SEARCH: &str = "web_search";
pub use pool::{
    PoolError, PoolOptions, choose_model, collect, start_providers, start_providers_with,
};
pub use router::{Lane, LaneModel, ModelRouter, Opened, RetryPolicy};
pub use stream::{
    Accumulator, Completion, Delta, FinishReason, StreamEvent, ThinkSplitter, ToolCallDelta, Usage,
};
pub use traced::trace_headers;
