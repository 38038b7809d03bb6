//! Discord's REST API through twilight-http: its client keeps the bot token, the API base
//! (`--discord-api-url`, for a proxy or a test peer) and Discord's per-route rate-limit
//! buckets; bodies are the documented JSON. A 429 comes back as
//! [`AdapterError::RateLimited`] with Discord's `retry_after`.

use std::time::Duration;

use serde_json::Value;
use twilight_http::api_error::ApiError;
use twilight_http::error::ErrorType;
use twilight_http::request::Request;
use twilight_http::response::marker::EmptyBody;
use twilight_http::routing::Route;

use crate::channel::adapter::AdapterError;

/// The REST client.
#[derive(Debug)]
pub struct Rest {
    client: twilight_http::Client,
}

impl Rest {
    /// A client for `token`, talking to `api_url` (`http(s)://host[:port]`) or discord.com.
    pub fn new(token: &str, api_url: Option<&str>) -> Self {
        turnstone_actors::provider::install_crypto_provider();
        let mut builder = twilight_http::Client::builder()
            .token(token.to_owned())
            .timeout(Duration::from_secs(15));
        if let Some(url) = api_url.filter(|u| !u.is_empty()) {
            let (use_http, host) = match url.strip_prefix("http://") {
                Some(host) => (true, host),
                None => (false, url.strip_prefix("https://").unwrap_or(url)),
            };
            builder = builder.proxy(host.trim_end_matches('/').to_owned(), use_http);
        }
        Self {
            client: builder.build(),
        }
    }

    /// Sends `body` to `route`; the answer's JSON.
    pub async fn call(&self, route: &Route<'_>, body: &Value) -> Result<Value, AdapterError> {
        let request = Request::builder(route)
            .json(body)
            .build()
            .map_err(|e| AdapterError::Platform(e.to_string()))?;
        let response = self
            .client
            .request::<Value>(request)
            .await
            .map_err(translate)?;
        response
            .model()
            .await
            .map_err(|e| AdapterError::Platform(format!("unreadable answer: {e}")))
    }

    /// Sends `body` to `route`, expecting no answer (204).
    pub async fn call_empty(&self, route: &Route<'_>, body: &Value) -> Result<(), AdapterError> {
        let request = Request::builder(route)
            .json(body)
            .build()
            .map_err(|e| AdapterError::Platform(e.to_string()))?;
        self.client
            .request::<EmptyBody>(request)
            .await
            .map(drop)
            .map_err(translate)
    }
}

fn translate(error: twilight_http::Error) -> AdapterError {
    match error.kind() {
        ErrorType::Response {
            error: ApiError::Ratelimited(limited),
            ..
        } => AdapterError::RateLimited(Duration::from_secs_f64(limited.retry_after.max(0.0))),
        ErrorType::Response { status, .. } if status.get() == 429 => {
            AdapterError::RateLimited(Duration::from_secs(1))
        }
        ErrorType::Response { status, body, .. } => AdapterError::Platform(format!(
            "Discord answered {}: {}",
            status.get(),
            String::from_utf8_lossy(body)
        )),
        ErrorType::RequestError | ErrorType::RequestTimedOut => {
            AdapterError::Unreachable(error.to_string())
        }
        _ => AdapterError::Platform(error.to_string()),
    }
}
