//! The HTTP transport of the OpenAI-compatible backend: plain reqwest (no retries of its own,
//! so ours see every failure) that writes the current span's W3C trace context
//! (`traceparent`, `tracestate`) on each request, so the model server's spans join the turn's
//! trace.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use turnstone_runtime::remote::TraceContext;

/// The W3C headers (`traceparent`, `tracestate`) of `trace`, empty without one: what every
/// outgoing HTTP request of ours carries (model calls here, the console's proxy and the
/// bridge's calls in the gateways).
pub fn trace_headers(trace: Option<&TraceContext>) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let Some(trace) = trace else {
        return headers;
    };
    if let Ok(v) = reqwest::header::HeaderValue::from_str(&trace.traceparent) {
        headers.insert("traceparent", v);
    }
    if let Some(state) = &trace.tracestate
        && let Ok(v) = reqwest::header::HeaderValue::from_str(state)
    {
        headers.insert("tracestate", v);
    }
    headers
}

/// A tower service for async-openai: reqwest, with the trace context on each request.
#[derive(Clone, Debug)]
pub struct TracedTransport {
    client: reqwest::Client,
}

impl TracedTransport {
    /// Over `client`.
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }
}

impl tower::Service<HttpRequestFactory> for TracedTransport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        // Taken now, inside the model call's span (the future may be polled elsewhere).
        let trace = TraceContext::current();
        let client = self.client.clone();
        Box::pin(async move {
            let mut request = request.build().await?;
            request.headers_mut().extend(trace_headers(trace.as_ref()));
            client.execute(request).await.map_err(OpenAIError::Reqwest)
        })
    }
}
