//! A real `turnstone-server` (in process, on a loopback port) over a real node with SQLite,
//! talking to the scripted LLM; an HTTP client and an SSE reader for the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;
use turnstone_actors::config::TurnstoneConfig;
use turnstone_actors::node::{Node, NodeOptions};
use turnstone_actors::provider::{PoolOptions, RetryPolicy};
use turnstone_actors::workstream::WorkstreamOptions;
use turnstone_gateways::server::{ServerOptions, ServerState, Shared, serve};
use turnstone_runtime::policy::Backoff;
use turnstone_tests::llm::{ScriptedLlm, Turn};

pub struct TestServer {
    pub llm: ScriptedLlm,
    pub addr: SocketAddr,
    pub state: Shared,
    pub http: reqwest::Client,
    pub work: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut TurnstoneConfig)) -> Self {
        let work = tempfile::tempdir().unwrap();
        let llm = ScriptedLlm::start().await.unwrap();
        let mut config = TurnstoneConfig::default();
        config.api.base_url = llm.base_url();
        config.model.name = Some("scripted-model".into());
        config.tools.timeout = 10;
        config.database.path = work.path().join("turnstone.db").display().to_string();
        // The API suites run open; the auth suite turns it back on.
        config.auth.enabled = false;
        tweak(&mut config);
        let options = NodeOptions {
            pool: PoolOptions {
                open_timeout: Duration::from_secs(5),
                retry: RetryPolicy {
                    retries: 0,
                    backoff: Backoff::none(),
                },
                probes: false,
                detect: None,
            },
            workdir: work.path().to_path_buf(),
            node_id: "node-test".into(),
            storage: true,
            model_backend: None,
        };
        let node = Node::start_with_builtin_tools(config, options)
            .await
            .unwrap();
        node.manager
            .create(Some("default"), WorkstreamOptions::default(), None)
            .await
            .unwrap();
        let state = ServerState::new(node, ServerOptions::default());
        // Background title requests get their own answer, never a scripted turn.
        llm.route(
            turnstone_actors::workstream::TITLE_PROMPT,
            Turn::text("Title"),
        );
        let listener = turnstone_gateways::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(state.clone(), listener, async {
            let _ = stopped.await;
        }));
        Self {
            llm,
            addr,
            state,
            http: reqwest::Client::new(),
            work,
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET → (status, JSON or Null).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// GET → the body as text (metrics, pages).
    pub async fn text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// POST raw body → (status, JSON or Null).
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, body.to_string()).await
    }

    /// The first workstream's id (from the node itself: works with auth on).
    pub async fn default_ws(&self) -> String {
        self.state.node.manager.list()[0].ws_id().to_owned()
    }

    /// Opens an SSE stream.
    pub async fn events(&self, path: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = self.http.get(self.url(path));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "SSE {path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Sse {
            stream: Box::pin(r.bytes_stream().eventsource()),
            last_id: None,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type EventStream = std::pin::Pin<
    Box<
        dyn futures::Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

pub struct Sse {
    stream: EventStream,
    pub last_id: Option<String>,
}

impl Sse {
    /// The next event's JSON (10 s at most).
    pub async fn next(&mut self) -> Value {
        let event = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
            .await
            .expect("no SSE event within 10 s")
            .expect("stream ended")
            .expect("SSE error");
        if !event.id.is_empty() {
            self.last_id = Some(event.id.clone());
        }
        serde_json::from_str(&event.data).unwrap()
    }

    /// Events up to and including the first of `kind`.
    pub async fn until(&mut self, kind: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let done = event["type"] == kind;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

pub fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect()
}
