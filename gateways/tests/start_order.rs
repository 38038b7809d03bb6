#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Start in any order: a node whose Redis is not up yet serves its own users, says so on
//! `/health` and `/health/ready`, keeps trying, and joins once Redis answers — taking the work
//! that was queued for it meanwhile.

mod cluster_support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cluster_support::spawn_until;
use serde_json::Value;
use tokio::process::Command;
use turnstone_actors::mq::TurnstoneClient;
use turnstone_actors::mq::protocol::CreateMsg;
use turnstone_runtime::remote::{RedisTransport, Transport};
use turnstone_tests::llm::{ScriptedLlm, Turn};
use turnstone_tests::services::{PrivateRedis, authority};

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_redis_serves_meanwhile_and_joins_when_it_answers() {
    let mut redis = PrivateRedis::start();
    redis.kill();
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route(
        turnstone_actors::workstream::TITLE_PROMPT,
        Turn::text("A title"),
    );
    llm.route("queued while the node waited", Turn::text("Picked up."));
    let work = tempfile::tempdir().unwrap();
    let url = redis.url();
    let (host, port) = authority(&url).split_once(':').unwrap();
    let prefix = format!("so{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnstone-server"));
    cmd.args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--base-url", &llm.base_url(), "--model", "scripted-model"])
        .args(["--redis-host", host, "--redis-port", port])
        .args(["--redis-prefix", &prefix, "--node-id", "early"])
        .arg("--workdir")
        .arg(work.path())
        .env("HOME", work.path())
        .env("TURNSTONE_AUTH_ENABLED", "false")
        .env("TURNSTONE_DB_PATH", work.path().join("node.db"))
        .env("TURNSTONE_LOG_FORMAT", "text")
        .env_remove("REDIS_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let (_child, base, log) = spawn_until(cmd, "Turnstone server on ", "turnstone-server").await;
    let base = base.trim_end_matches('/').to_owned();
    turnstone_actors::provider::install_crypto_provider();
    let http = reqwest::Client::new();
    let logs = || log.lock().unwrap().join("\n");

    // Up without Redis: local users are served, health says why it is degraded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let health = loop {
        let (status, health) = get(&http, &format!("{base}/health")).await;
        assert_eq!(status, 200, "alive");
        if health["cluster"]["status"] == "unreachable" && health["cluster"]["attempts"] != 0 {
            break health;
        }
        assert!(tokio::time::Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(health["status"], "degraded", "{health}");
    let (status, ready) = get(&http, &format!("{base}/health/ready")).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["checks"]["model"], "ok");
    assert_eq!(ready["checks"]["database"], "ok");
    assert!(
        ready["checks"]["cluster"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{ready}"
    );
    let (status, listed) = get(&http, &format!("{base}/v1/api/workstreams")).await;
    assert_eq!(status, 200, "local users are served: {listed}");
    assert!(
        logs().contains("does not answer"),
        "each failure is logged:\n{}",
        logs()
    );

    // Redis comes up; work is queued for the node before it has joined.
    redis.up();
    let transport: Arc<dyn Transport> =
        Arc::new(RedisTransport::connect(&url, &prefix).await.unwrap());
    TurnstoneClient::new(transport.clone())
        .create_workstream(CreateMsg {
            name: "queued".into(),
            target_node: "early".into(),
            initial_message: "queued while the node waited".into(),
            ..CreateMsg::default()
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (_, health) = get(&http, &format!("{base}/health")).await;
        if health["cluster"]["status"] == "connected" {
            assert_eq!(health["status"], "ok", "{health}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never joined: {health}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, ready) = get(&http, &format!("{base}/health/ready")).await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (200, Some("ready")),
        "{ready}"
    );
    // It registered, and the work queued meanwhile reached the model.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !transport
        .live_nodes()
        .await
        .unwrap()
        .iter()
        .any(|(n, _)| n == "early")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never registered:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !llm
        .chat_bodies()
        .iter()
        .any(|b| b.to_string().contains("queued while the node waited"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "queued work lost:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
