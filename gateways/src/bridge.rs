//! `turnstone-bridge --server-url …`: the same bridge actor as inside a clustered node, in
//! front of a node server's HTTP/SSE API (as 0.4.1 runs it: one bridge per server).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use turnstone_actors::auth::{Audience, Scope};
use turnstone_actors::mq::{
    CreateRequest, Created, EventSink, NodePort, PortError, PortEvent, SendOutcome, WsFrame,
};

/// Time for one HTTP request (SPEC §18).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before reconnecting an event stream that failed.
const SSE_RETRY: Duration = Duration::from_secs(2);

pub use crate::web::service_token::Credentials;
use crate::web::service_token::ServiceToken;

/// A node server over HTTP.
pub struct HttpPort {
    base: String,
    node_id: String,
    http: reqwest::Client,
    token: ServiceToken,
    sink: Mutex<Option<EventSink>>,
    watched: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for HttpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPort")
            .field("base", &self.base)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unreachable(e: impl std::fmt::Display) -> PortError {
    PortError::Unreachable(e.to_string())
}

impl HttpPort {
    /// Reaches the server at `server_url`: asks `/health` for its node id, once (the caller
    /// retries; a server that is still starting answers 503, which is
    /// [`PortError::Unreachable`], and a 4xx answer is final). `node_id` overrides the
    /// server's.
    pub async fn connect(
        server_url: &str,
        credentials: Credentials,
        node_id: Option<String>,
    ) -> Result<Arc<Self>, PortError> {
        turnstone_actors::provider::install_crypto_provider();
        let http = reqwest::Client::builder().build().map_err(unreachable)?;
        let mut port = Self {
            base: server_url.trim_end_matches('/').to_owned(),
            node_id: String::new(),
            http,
            token: ServiceToken::new(credentials, "bridge", &[Scope::Approve], Audience::Server),
            sink: Mutex::new(None),
            watched: Arc::default(),
        };
        let health = port.get("/health").await?;
        port.node_id =
            node_id.unwrap_or_else(|| health["node_id"].as_str().unwrap_or("node").to_owned());
        Ok(Arc::new(port))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        // With the trace context: inside a queue message's span, the server continues it.
        self.token
            .authorize(self.http.request(method, format!("{}{path}", self.base)))
    }

    async fn answer(response: reqwest::Response) -> Result<Value, PortError> {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let message = body["error"]
            .as_str()
            .map_or_else(|| status.to_string(), str::to_owned);
        Err(match status.as_u16() {
            404 if message == "Unknown workstream" => PortError::UnknownWorkstream,
            400..=499 => PortError::refused(message),
            _ => PortError::Unreachable(message),
        })
    }

    async fn get(&self, path: &str) -> Result<Value, PortError> {
        let response = self
            .request(reqwest::Method::GET, path)
            .timeout(HTTP_TIMEOUT)
            .send()
            .await
            .map_err(unreachable)?;
        Self::answer(response).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, PortError> {
        let response = self
            .request(reqwest::Method::POST, path)
            .timeout(HTTP_TIMEOUT)
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        Self::answer(response).await
    }

    /// Follows an SSE endpoint for as long as the bridge listens, reconnecting (with
    /// `Last-Event-ID`) 2 s after an error and at once after a clean end. `until_gone` stops
    /// following when the server says the workstream is unknown.
    fn follow(self: &Arc<Self>, path: String, ws_id: Option<String>) {
        let Some(sink) = lock(&self.sink).clone() else {
            return;
        };
        let port = Arc::clone(self);
        let ws_id: Option<Arc<str>> = ws_id.map(Arc::from);
        tokio::spawn(async move {
            let mut last_id: Option<String> = None;
            loop {
                let mut request = port.request(reqwest::Method::GET, &path);
                if let Some(id) = &last_id {
                    request = request.header("Last-Event-ID", id.as_str());
                }
                let failed = match request.send().await {
                    Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => break,
                    Ok(response) if response.status().is_success() => {
                        let mut events = response.bytes_stream().eventsource();
                        let mut failed = false;
                        while let Some(event) = events.next().await {
                            let event = match event {
                                Ok(event) => event,
                                Err(e) => {
                                    tracing::warn!(error = %e, %path, "event stream broke");
                                    failed = true;
                                    break;
                                }
                            };
                            if !event.id.is_empty() {
                                last_id = Some(event.id.clone());
                            }
                            let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
                                continue;
                            };
                            let out = match &ws_id {
                                Some(ws_id) => match WsFrame::from_value(&value) {
                                    Some(event) => PortEvent::Ws {
                                        ws_id: Arc::clone(ws_id),
                                        event,
                                    },
                                    None => continue,
                                },
                                None => PortEvent::Global(value),
                            };
                            if !sink.send(out) {
                                return;
                            }
                        }
                        failed
                    }
                    Ok(response) => {
                        tracing::warn!(status = %response.status(), %path, "event stream refused");
                        true
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, %path, "event stream unreachable");
                        true
                    }
                };
                if sink.is_closed() {
                    return;
                }
                if failed {
                    tokio::time::sleep(SSE_RETRY).await;
                }
            }
            if let Some(ws_id) = ws_id {
                lock(&port.watched).remove(&*ws_id);
            }
        });
    }
}

/// The port as the bridge holds it: an `Arc` so event followers can share it.
#[derive(Clone, Debug)]
pub struct SharedHttpPort(pub Arc<HttpPort>);

#[async_trait]
impl NodePort for SharedHttpPort {
    fn node_id(&self) -> &str {
        &self.0.node_id
    }

    fn server_url(&self) -> &str {
        &self.0.base
    }

    fn attach(&self, sink: EventSink) {
        *lock(&self.0.sink) = Some(sink);
        lock(&self.0.watched).clear();
        self.0.follow("/v1/api/events/global".into(), None);
    }

    async fn watch(&self, ws_id: &str) {
        if lock(&self.0.watched).insert(ws_id.to_owned()) {
            self.0.follow(
                format!("/v1/api/events?ws_id={ws_id}"),
                Some(ws_id.to_owned()),
            );
        }
    }

    async fn has(&self, ws_id: &str) -> bool {
        self.list()
            .await
            .is_ok_and(|list| list.iter().any(|w| w["id"] == ws_id))
    }

    async fn create(&self, request: CreateRequest) -> Result<Created, PortError> {
        let mut body = json!({"name": request.name, "auto_approve": request.auto_approve});
        if !request.model.is_empty() {
            body["model"] = Value::from(request.model);
        }
        if !request.resume_session.is_empty() {
            body["resume_session"] = Value::from(request.resume_session);
        }
        let created = self.0.post("/v1/api/workstreams/new", body).await?;
        Ok(Created::from_json(&created))
    }

    async fn adopt(&self, _ws_id: &str) -> Result<bool, PortError> {
        // The HTTP API opens workstreams under new ids only: takeovers need an in-node bridge.
        Ok(false)
    }

    async fn send(&self, ws_id: &str, message: &str) -> Result<SendOutcome, PortError> {
        let answer = self
            .0
            .post("/v1/api/send", json!({"ws_id": ws_id, "message": message}))
            .await?;
        Ok(if answer["status"] == "busy" {
            SendOutcome::Busy
        } else {
            SendOutcome::Started
        })
    }

    async fn resume_turn(&self, _ws_id: &str, _message: &str) -> Result<bool, PortError> {
        Ok(false)
    }

    async fn approve(
        &self,
        ws_id: &str,
        approved: bool,
        feedback: Option<String>,
        always: bool,
    ) -> Result<(), PortError> {
        self.0
            .post(
                "/v1/api/approve",
                json!({"ws_id": ws_id, "approved": approved, "feedback": feedback,
                    "always": always}),
            )
            .await
            .map(drop)
    }

    async fn plan_feedback(&self, ws_id: &str, feedback: &str) -> Result<(), PortError> {
        self.0
            .post(
                "/v1/api/plan",
                json!({"ws_id": ws_id, "feedback": feedback}),
            )
            .await
            .map(drop)
    }

    async fn command(&self, ws_id: &str, command: &str) -> Result<(), PortError> {
        self.0
            .post(
                "/v1/api/command",
                json!({"ws_id": ws_id, "command": command}),
            )
            .await
            .map(drop)
    }

    async fn close(&self, ws_id: &str) -> Result<(), PortError> {
        self.0
            .post("/v1/api/workstreams/close", json!({"ws_id": ws_id}))
            .await
            .map(drop)
    }

    async fn list(&self) -> Result<Vec<Value>, PortError> {
        let listed = self.0.get("/v1/api/workstreams").await?;
        Ok(listed["workstreams"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    async fn health(&self) -> Result<Value, PortError> {
        self.0.get("/health").await
    }
}
