//! A console served in process on a loopback port, over the test Redis (or a Redis of its
//! own), with quick collector timings; simulated nodes that register and announce their
//! workstreams as `turnstone-sim`'s do; and nodes that answer their polls badly.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turnstone_actors::config::{AuthConfig, RateLimitConfig};
use turnstone_gateways::console::collector::CollectorSettings;
use turnstone_gateways::console::link::Link;
use turnstone_gateways::console::schedules::{Clock, SchedulerSettings};
use turnstone_gateways::console::{ConsoleOptions, ConsoleState, Shared, bind, serve};
use turnstone_gateways::web::service_token::Credentials;
use turnstone_runtime::remote::Transport;

pub struct TestConsole {
    pub state: Shared,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Collector timings for tests: polls every 500 ms, discovery every second.
pub fn quick() -> CollectorSettings {
    CollectorSettings {
        poll_interval: Duration::from_millis(500),
        discovery_interval: Duration::from_secs(1),
        http_timeout: Duration::from_secs(2),
        max_polls: 50,
        lost_after: Duration::from_secs(1),
        max_answer: 1024 * 1024,
    }
}

pub fn open_auth() -> AuthConfig {
    AuthConfig {
        enabled: false,
        ..AuthConfig::default()
    }
}

impl TestConsole {
    pub async fn start(redis: &str, prefix: &str) -> Self {
        Self::start_with(
            Link::redis(redis, prefix),
            Credentials::None,
            open_auth(),
            quick(),
        )
        .await
    }

    pub async fn start_with(
        link: Link,
        credentials: Credentials,
        auth: AuthConfig,
        collector: CollectorSettings,
    ) -> Self {
        Self::start_options(ConsoleOptions {
            link,
            credentials,
            collector,
            auth,
            ratelimit: RateLimitConfig::default(),
            store: None,
            scheduler: SchedulerSettings::default(),
            clock: Clock::System,
        })
        .await
    }

    /// A console started with everything chosen by the test.
    pub async fn start_options(options: ConsoleOptions) -> Self {
        let state = ConsoleState::start(options).await.unwrap();
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(state.clone(), listener, async {
            let _ = stopped.await;
        }));
        Self {
            state,
            addr,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls `path` until `done` holds of its JSON (15 s at most); returns it.
    pub async fn until(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = self.get(path).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: last {path} answer {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.state.shutdown().await;
    }
}

/// Registers a simulated node as `turnstone-sim` does (`server_url: sim://…`).
pub async fn sim_heartbeat(transport: &Arc<dyn Transport>, node: &str, ttl: Duration) {
    let meta = json!({"server_url": format!("sim://{node}"), "started": 1.0, "sim": true,
        "workstreams": 0, "max_ws": 10});
    transport
        .heartbeat(node, meta.to_string(), ttl)
        .await
        .unwrap();
}

/// Publishes a cluster-channel event.
pub async fn cluster_event(transport: &Arc<dyn Transport>, prefix: &str, event: Value) {
    transport
        .publish(&format!("{prefix}:events:cluster"), event.to_string())
        .await
        .unwrap();
}

/// How a misbehaving node answers.
#[derive(Clone, Copy, Debug)]
pub enum Misbehaviour {
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with a JSON body far over the collector's bound.
    Huge,
    /// Accepts the connection and never answers.
    Hang,
}

/// A loopback HTTP server that answers every request the same bad way and records the
/// `Authorization` headers it was sent.
pub struct BadNode {
    pub url: String,
    pub authorizations: Arc<Mutex<Vec<String>>>,
    /// Every request head received.
    pub heads: Arc<Mutex<Vec<String>>>,
}

pub async fn bad_node(how: Misbehaviour) -> BadNode {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let authorizations = Arc::new(Mutex::new(Vec::new()));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = authorizations.clone();
    let all = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            let all = all.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                all.lock().unwrap().push(head.clone());
                for line in head.lines() {
                    if let Some(v) = line
                        .strip_prefix("authorization: ")
                        .or_else(|| line.strip_prefix("Authorization: "))
                    {
                        seen.lock().unwrap().push(v.to_owned());
                    }
                }
                match how {
                    Misbehaviour::Garbage => {
                        let body = "<html>not json at all";
                        let _ = socket
                            .write_all(
                                format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                    body.len()
                                )
                                .as_bytes(),
                            )
                            .await;
                    }
                    Misbehaviour::Huge => {
                        let _ = socket
                            .write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"workstreams\": [",
                            )
                            .await;
                        let chunk =
                            "{\"id\":\"x\",\"name\":\"padding padding padding\"},".repeat(1000);
                        for _ in 0..100 {
                            if socket.write_all(chunk.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                    Misbehaviour::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                }
            });
        }
    });
    BadNode {
        url,
        authorizations,
        heads,
    }
}

/// Registers a node heartbeat pointing at `url`.
pub async fn node_heartbeat(transport: &Arc<dyn Transport>, node: &str, url: &str) {
    let meta = json!({"server_url": url, "started": 1.0});
    transport
        .heartbeat(node, meta.to_string(), Duration::from_secs(60))
        .await
        .unwrap();
}

/// The test Redis, a key prefix of this test's own (`tag` + random) and a transport on it.
pub async fn fresh_cluster(tag: &str) -> (String, String, Arc<dyn Transport>) {
    let redis = turnstone_tests::services::redis_url().unwrap();
    let prefix = format!("{tag}{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let transport: Arc<dyn Transport> = Arc::new(
        turnstone_runtime::remote::RedisTransport::connect(&redis, &prefix)
            .await
            .unwrap(),
    );
    (redis, prefix, transport)
}
