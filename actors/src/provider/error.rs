//! Provider errors and how the engine reacts to each.

use std::time::Duration;

use turnstone_runtime::policy::BreakerOpen;

/// A model request failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// No connection to the backend. Transient: retried, then the fallback lanes.
    #[error("backend unreachable: {0}")]
    Connect(String),
    /// No response headers within the timeout. Transient: retried.
    #[error("backend did not answer within {0:?}")]
    Timeout(Duration),
    /// The backend answered with an error status. 429 and 5xx are transient and retried;
    /// other statuses (bad request, auth) are not.
    #[error("backend returned HTTP {status}: {message}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The backend's message.
        message: String,
    },
    /// The circuit breaker is open: fail fast; the fallback lanes are tried.
    #[error("Backend unreachable (circuit breaker open): {0}")]
    CircuitOpen(BreakerOpen),
    /// The stream broke after it started. The turn ends with what arrived.
    #[error("stream interrupted: {0}")]
    Stream(String),
    /// A chunk was not valid JSON of the expected shape.
    #[error("malformed response from backend: {0}")]
    Malformed(String),
    /// No such model alias in `[models]`.
    #[error("unknown model alias {0:?}")]
    UnknownAlias(String),
    /// The provider actor is not running (restarting): retried.
    #[error("provider {0:?} is not running")]
    Unavailable(String),
    /// The lane's model is not known yet (the backend had none to list when the node
    /// started; it is being detected in the background). The fallback lanes are tried.
    #[error("no model known yet for {0:?}: the backend listed none so far (still detecting)")]
    NoModel(String),
}

impl ProviderError {
    /// Whether retrying the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(_) | Self::Timeout(_) | Self::Unavailable(_) => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::CircuitOpen(_)
            | Self::Stream(_)
            | Self::Malformed(_)
            | Self::UnknownAlias(_)
            | Self::NoModel(_) => false,
        }
    }

    /// A short name for "[Retrying in Ns: Name]" notices, as Turnstone's exception names.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Connect(_) | Self::Unavailable(_) => "APIConnectionError",
            Self::Timeout(_) => "APITimeoutError",
            Self::Status { status: 429, .. } => "RateLimitError",
            Self::Status { status, .. } if *status >= 500 => "InternalServerError",
            Self::Status { .. } => "APIError",
            Self::CircuitOpen(_) => "CircuitOpen",
            Self::Stream(_) => "StreamError",
            Self::Malformed(_) => "MalformedResponse",
            Self::UnknownAlias(_) => "UnknownModel",
            Self::NoModel(_) => "NoModel",
        }
    }
}

impl From<async_openai::error::OpenAIError> for ProviderError {
    fn from(err: async_openai::error::OpenAIError) -> Self {
        use async_openai::error::OpenAIError;
        match err {
            OpenAIError::Reqwest(e) if e.is_timeout() => Self::Timeout(Duration::ZERO),
            OpenAIError::Reqwest(e) => match e.status() {
                Some(status) => Self::Status {
                    status: status.as_u16(),
                    message: e.to_string(),
                },
                None => Self::Connect(error_chain(&e)),
            },
            OpenAIError::ApiError(api) => Self::Status {
                status: api.status_code.as_u16(),
                message: error_message(api.api_error.message),
            },
            OpenAIError::JSONDeserialize(e, body) => {
                Self::Malformed(format!("{e}: {}", crate::text::prefix(&body, 200)))
            }
            OpenAIError::StreamError(e) => Self::Stream(e.to_string()),
            other => Self::Malformed(other.to_string()),
        }
    }
}

/// The `error.message` of an OpenAI-style error body (async-openai leaves some bodies raw).
fn error_message(raw: String) -> String {
    serde_json::from_str::<serde_json::Value>(&raw)
        .ok()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["message"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or(raw)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
