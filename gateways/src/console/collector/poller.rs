//! Polls one node (SPEC §3.1 (3)): `GET /v1/api/dashboard` and `/health` with the collector's
//! token, every poll interval, at most `max_polls` of all pollers at once, each request within
//! the HTTP timeout and answers within a size bound. A dashboard replaces what the model holds
//! of the node's workstreams. A poll that fails — refused, timed out, not JSON, too big —
//! marks the node unreachable and fails the poller, which its supervisor restarts with
//! backoff; every other node goes on being polled.

use std::sync::Arc;

use serde_json::Value;
use turnstone_runtime::ractor::{Actor, ActorProcessingErr, ActorRef};

use super::Collector;

/// The poller actor.
#[derive(Debug)]
pub struct Poller;

/// What it polls.
#[derive(Clone, Debug)]
pub struct PollerArgs {
    /// The collector.
    pub collector: Arc<Collector>,
    /// The node.
    pub node_id: String,
    /// Its URL.
    pub server_url: String,
}

/// Its messages.
#[derive(Debug)]
pub enum PollerMsg {
    /// Poll now.
    Poll,
    /// A poll's outcome: the dashboard and health, or why not.
    Done(Result<(Value, Value), String>),
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("answered {0}")]
    Status(reqwest::StatusCode),
    #[error("answer over {0} bytes")]
    TooBig(usize),
    #[error("answer is not a JSON object")]
    NotJson,
}

async fn read_json(response: reqwest::Response, limit: usize) -> Result<Value, PollError> {
    let status = response.status();
    if !status.is_success() {
        return Err(PollError::Status(status));
    }
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(PollError::TooBig(limit));
    }
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(PollError::TooBig(limit));
        }
        body.extend_from_slice(&chunk);
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(PollError::NotJson),
    }
}

impl Collector {
    async fn fetch(&self, base: &str, path: &str) -> Result<Value, PollError> {
        let request = self.token.authorize(self.http.get(format!("{base}{path}")));
        let response = request.send().await?;
        read_json(response, self.settings.max_answer).await
    }

    /// One poll of a node: its dashboard (required) and health (`{}` if it fails).
    async fn poll(&self, server_url: &str) -> Result<(Value, Value), String> {
        let base = server_url.trim_end_matches('/');
        let span = turnstone_runtime::telemetry::traced(|| {
            tracing::info_span!(
                "poll",
                otel.name = "poll node",
                otel.kind = "client",
                server.address = %base,
                error.type = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            )
        });
        turnstone_runtime::telemetry::annotate(&span);
        let result = tracing::Instrument::instrument(self.poll_once(base), span.clone()).await;
        if result.is_err() {
            span.record("error.type", "poll_failed");
        }
        result
    }

    /// [`Collector::poll`] inside its span.
    async fn poll_once(&self, base: &str) -> Result<(Value, Value), String> {
        let _permit = self.polls.acquire().await.map_err(|e| e.to_string())?;
        let started = tokio::time::Instant::now();
        let dashboard = self.fetch(base, "/v1/api/dashboard").await;
        let result = match dashboard {
            Ok(dashboard) if dashboard.get("workstreams").is_some_and(Value::is_array) => {
                let health = self
                    .fetch(base, "/health")
                    .await
                    .unwrap_or_else(|_| Value::Object(serde_json::Map::new()));
                Ok((dashboard, health))
            }
            Ok(_) => Err("the dashboard has no workstreams list".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        self.metrics
            .poll_duration
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

/// The poller's state.
#[derive(Debug)]
pub struct PollerState {
    args: PollerArgs,
}

impl Actor for Poller {
    type Msg = PollerMsg;
    type State = PollerState;
    type Arguments = PollerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PollerMsg>,
        args: PollerArgs,
    ) -> Result<PollerState, ActorProcessingErr> {
        myself.cast(PollerMsg::Poll)?;
        Ok(PollerState { args })
    }

    async fn handle(
        &self,
        myself: ActorRef<PollerMsg>,
        msg: PollerMsg,
        state: &mut PollerState,
    ) -> Result<(), ActorProcessingErr> {
        let args = &state.args;
        match msg {
            PollerMsg::Poll => {
                // The requests run beside the mailbox, so stopping the poller never waits
                // for a hanging node.
                let (collector, url, me) =
                    (args.collector.clone(), args.server_url.clone(), myself);
                tokio::spawn(async move {
                    let outcome = collector.poll(&url).await;
                    let _ = me.cast(PollerMsg::Done(outcome));
                });
            }
            PollerMsg::Done(Ok((dashboard, health))) => {
                let c = &args.collector;
                let answering = c
                    .model_mut()
                    .polled(&args.node_id, &dashboard, health, c.now());
                if !answering {
                    tracing::info!(node = %args.node_id, "node answers its polls");
                }
                myself.send_after(c.settings.poll_interval, || PollerMsg::Poll);
            }
            PollerMsg::Done(Err(why)) => {
                let c = &args.collector;
                c.metrics.poll_failures.inc();
                if c.model_mut().unreachable(&args.node_id) {
                    tracing::warn!(node = %args.node_id, url = %args.server_url, error = %why, "node unreachable");
                }
                return Err(format!("polling {} failed: {why}", args.node_id).into());
            }
        }
        Ok(())
    }
}
