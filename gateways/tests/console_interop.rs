#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Interop both ways with Turnstone 0.4.1 from PyPI (installed by scripts/test): 0.4.1's own
//! `turnstone-console` over our nodes — it discovers and polls them, proxies their UI and
//! creates workstreams on them — and our console over 0.4.1's `turnstone-server` behind its
//! `turnstone-bridge`. Each test has a Redis of its own: 0.4.1 uses the `turnstone` prefix.

mod cluster_support;
mod console_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cluster_support::{Cluster, Db};
use console_support::{TestConsole, quick};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use turnstone_actors::mq::TurnstoneClient;
use turnstone_gateways::console::link::Link;
use turnstone_gateways::web::service_token::Credentials;
use turnstone_runtime::remote::{RedisServer, RedisTransport, Transport};
use turnstone_tests::llm::{ScriptedLlm, Turn};

const TOKEN: &str = "interop-token";

fn ts041_bin(name: &str) -> PathBuf {
    let python = std::env::var("TURNSTONE_TEST_TS041_PYTHON")
        .expect("TURNSTONE_TEST_TS041_PYTHON (run scripts/test)");
    PathBuf::from(python).with_file_name(name)
}

use turnstone_tests::services::free_port;

fn python(name: &str, home: &std::path::Path) -> Command {
    let mut cmd = Command::new(ts041_bin(name));
    cmd.current_dir(home)
        .env("HOME", home)
        .env("TURNSTONE_AUTH_TOKEN", TOKEN)
        .env("TURNSTONE_LOG_FORMAT", "text")
        .env_remove("REDIS_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn client() -> reqwest::Client {
    turnstone_actors::provider::install_crypto_provider();
    reqwest::Client::new()
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    match http.get(url).bearer_auth(TOKEN).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn until(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = get(http, url).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: last {url} answer {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A cluster of our nodes on `redis` under 0.4.1's prefix.
async fn our_cluster(redis: &str, nodes: &[&str]) -> Cluster {
    let base = Cluster::start_on(redis, &[], Db::Sqlite, 60, &[]).await;
    let transport: Arc<dyn Transport> =
        Arc::new(RedisTransport::connect(redis, "turnstone").await.unwrap());
    let mut cluster = Cluster {
        prefix: "turnstone".into(),
        client: TurnstoneClient::new(transport.clone()),
        transport,
        ..base
    };
    for n in nodes {
        cluster.add_node(n).await;
    }
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_041_console_runs_over_our_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path()).unwrap();
    let cluster = our_cluster(&redis.url(), &["node-a", "node-b"]).await;
    let home = tempfile::tempdir().unwrap();
    let port = free_port();
    let _console: Child = python("turnstone-console", home.path())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--redis-host",
            "127.0.0.1",
            "--redis-port",
            &redis.port().to_string(),
        ])
        .args(["--poll-interval", "1", "--auth-token", TOKEN])
        .spawn()
        .unwrap();
    let http = client();
    let base = format!("http://127.0.0.1:{port}");
    let nodes = until(
        &http,
        &format!("{base}/v1/api/cluster/nodes?sort=name"),
        "0.4.1's console polls our nodes",
        |b| {
            b["total"] == 2
                && b["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|n| n["reachable"] == true && n["ws_total"] == 1 && n["version"] != "")
        },
    )
    .await;
    assert_eq!(nodes["nodes"][0]["node_id"], "node-a");
    assert_eq!(nodes["nodes"][0]["version"], env!("CARGO_PKG_VERSION"));
    let ws = get(&http, &format!("{base}/v1/api/cluster/workstreams"))
        .await
        .1;
    assert_eq!(ws["total"], 2);
    assert_eq!(ws["workstreams"][0]["name"], "default");
    // Its proxy serves our UI and API.
    let page = http
        .get(format!("{base}/node/node-a/"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("/node/node-a/static/app.js"), "{page}");
    let (status, list) = get(&http, &format!("{base}/node/node-a/v1/api/workstreams")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["workstreams"][0]["name"], "default");
    // Its creation lands on our node, whose first turn runs.
    cluster
        .llm
        .route_latest("hello from 0.4.1", Turn::text("Hello back."));
    let created: Value = http
        .post(format!("{base}/v1/api/cluster/workstreams/new"))
        .bearer_auth(TOKEN)
        .json(&json!({"node_id": "node-b", "name": "from-041", "initial_message": "hello from 0.4.1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["target_node"], "node-b", "{created}");
    until(
        &http,
        &format!("{base}/v1/api/cluster/workstreams?search=from-041"),
        "the workstream on node-b",
        |b| b["total"] == 1 && b["workstreams"][0]["node"] == "node-b",
    )
    .await;
    cluster.wait_for_model_request("hello from 0.4.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_console_runs_over_041_nodes() {
    // This process is the console, exporting its spans: the messages it queues carry a
    // top-level `traceparent`, which 0.4.1's bridge must ignore.
    let receiver = turnstone_tests::otlp::OtlpReceiver::start().await.unwrap();
    let _telemetry = receiver.export_this_process("turnstone-console", "warn");
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path()).unwrap();
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route(
        turnstone_actors::workstream::TITLE_PROMPT,
        Turn::text("A title"),
    );
    let home = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server: Child = python("turnstone-server", home.path())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--base-url", &llm.base_url(), "--model", "scripted-model"])
        .spawn()
        .unwrap();
    let http = client();
    let server = format!("http://127.0.0.1:{port}");
    until(&http, &format!("{server}/health"), "0.4.1's server", |_| {
        true
    })
    .await;
    let _bridge: Child = python("turnstone-bridge", home.path())
        .args(["--server-url", &server])
        .args([
            "--redis-host",
            "127.0.0.1",
            "--redis-port",
            &redis.port().to_string(),
        ])
        .args(["--node-id", "py-node-1", "--auth-token", TOKEN])
        .spawn()
        .unwrap();
    let console = TestConsole::start_with(
        Link::redis(redis.url(), "turnstone"),
        Credentials::Token(TOKEN.into()),
        console_support::open_auth(),
        quick(),
    )
    .await;
    let node = console
        .until(
            "/v1/api/cluster/node/py-node-1",
            "our console polls 0.4.1's node",
            |b| {
                b["reachable"] == true
                    && b["version"] != ""
                    && !b["workstreams"].as_array().unwrap().is_empty()
            },
        )
        .await;
    assert_eq!(node["server_url"], server);
    assert_eq!(node["workstreams"][0]["node"], "py-node-1");
    // Our proxy serves 0.4.1's UI.
    let page = console
        .http
        .get(console.url("/node/py-node-1/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("/node/py-node-1/static/"), "{html}");
    assert!(html.contains("turnstone-console-banner"));
    let (status, list) = console.get("/node/py-node-1/v1/api/workstreams").await;
    assert_eq!(status, 200, "{list}");
    // Our creation lands on 0.4.1's node through its bridge.
    let (status, created) = console
        .post(
            "/v1/api/cluster/workstreams/new",
            &json!({"node_id": "py-node-1", "name": "from-rust-console"}),
        )
        .await;
    assert_eq!(
        (status, created["target_node"].as_str()),
        (200, Some("py-node-1"))
    );
    console
        .until(
            "/v1/api/cluster/workstreams?search=from-rust-console",
            "the workstream on 0.4.1's node",
            |b| b["total"] == 1,
        )
        .await;
    // It was queued traced: the console's producer span for it was exported.
    receiver
        .wait_for(Duration::from_secs(20), |spans| {
            spans.iter().any(|s| {
                s.kind == 4
                    && s.attr("messaging.operation.name") == Some("create_workstream")
                    && s.attr("messaging.destination.name")
                        .is_some_and(|d| d.ends_with("inbound:py-node-1"))
            })
        })
        .await
        .unwrap_or_else(|spans| panic!("no producer span: {spans:#?}"));
    console.stop().await;
}
