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

/// What a node may start without.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dep {
    /// The model endpoint answers 503 (llama.cpp loading its model).
    Model,
    /// The cluster's Redis is not running.
    Redis,
    /// The node's PostgreSQL is not running.
    Postgres,
}

use turnstone_tests::services::free_port;

/// Waits until `/health` answers at all, and returns the first answer.
async fn first_health(
    http: &reqwest::Client,
    base: &str,
    logs: &dyn Fn() -> String,
) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await {
            let status = r.status().as_u16();
            return (status, r.json().await.unwrap_or(Value::Null));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never answered:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Turnstone 0.4.1's Python client sends one message to `node` and waits for the answer.
fn python_turn(redis: &str, prefix: &str, node: &str, message: &str) -> tokio::process::Child {
    let python = std::env::var("TURNSTONE_TEST_TS041_PYTHON")
        .expect("TURNSTONE_TEST_TS041_PYTHON (run scripts/test)");
    let (host, port) = authority(redis).split_once(':').unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mq_turn_041.py");
    Command::new(python)
        .args([script, host, port, prefix, node, message, "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Starts a node without `--model`, with `down` not ready, then brings each up in a random
/// order: the node answers throughout (503 "starting" while its database is away, then
/// degraded with the reason), becomes ready without a restart, and the turn 0.4.1's client
/// queued as soon as Redis was up completes.
async fn comes_up_in_any_order(down: &[Dep]) {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let seed: u64 = rand::random();
    let mut order = down.to_vec();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    eprintln!("down: {down:?}; brought up in the order {order:?} (seed {seed})");

    let mut pg = turnstone_tests::services::PrivatePostgres::create();
    if !down.contains(&Dep::Postgres) {
        pg.up();
    }
    let mut redis = PrivateRedis::start();
    if down.contains(&Dep::Redis) {
        redis.kill();
    }
    let llm = ScriptedLlm::start().await.unwrap();
    llm.set_models(&["tiny-model"]);
    llm.set_models_down(down.contains(&Dep::Model));
    llm.route(
        turnstone_actors::workstream::TITLE_PROMPT,
        Turn::text("A title"),
    );
    llm.route(
        "sent while the node was starting",
        Turn::text("Done after all."),
    );
    let work = tempfile::tempdir().unwrap();
    let redis_url = redis.url();
    let (host, redis_port) = authority(&redis_url).split_once(':').unwrap();
    let prefix = format!("ao{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnstone-server"));
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--base-url", &llm.base_url()])
        .args(["--redis-host", host, "--redis-port", redis_port])
        .args(["--redis-prefix", &prefix, "--node-id", "late"])
        .args(["--heartbeat-ttl", "4"])
        .arg("--workdir")
        .arg(work.path())
        .env("HOME", work.path())
        .env("TURNSTONE_AUTH_ENABLED", "false")
        .env("TURNSTONE_DB_BACKEND", "postgresql")
        .env("TURNSTONE_DB_URL", pg.url())
        .env("TURNSTONE_LOG_FORMAT", "text")
        .env("TURNSTONE_LOG_LEVEL", "info")
        .env_remove("REDIS_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let (mut child, log) = cluster_support::spawn_logged(cmd);
    let base = format!("http://127.0.0.1:{port}");
    turnstone_actors::provider::install_crypto_provider();
    let http = reqwest::Client::new();
    let logs = || log.lock().unwrap().join("\n");

    // Alive from the start, and saying why it is not ready.
    let (status, health) = first_health(&http, &base, &logs).await;
    if down.contains(&Dep::Postgres) {
        assert_eq!(status, 503, "{health}");
        assert_eq!(health["status"], "starting", "{health}");
        let (status, body) = get(&http, &format!("{base}/v1/api/workstreams")).await;
        assert_eq!(status, 503);
        assert!(
            body["error"].as_str().unwrap().contains("starting"),
            "{body}"
        );
    } else {
        // Past the first moments of start-up (the database opening).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let (mut status, mut health) = (status, health);
        while status == 503 && health["status"] == "starting" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{health}\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            (status, health) = get(&http, &format!("{base}/health")).await;
        }
        assert_eq!(status, 200, "{health}");
        assert_eq!(health["status"], "degraded", "{health}");
        if down.contains(&Dep::Model) {
            assert_eq!(health["model"], "", "{health}");
            assert!(
                health["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("no model detected yet"),
                "{health}"
            );
        }
        let (status, _) = get(&http, &format!("{base}/health/ready")).await;
        assert_eq!(status, 503);
    }

    // 0.4.1's client sends as soon as Redis is up, whatever else is still down.
    let mut client = (!down.contains(&Dep::Redis)).then(|| {
        python_turn(
            &redis_url,
            &prefix,
            "late",
            "sent while the node was starting",
        )
    });
    for dep in &order {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "the node exited:\n{}",
            logs()
        );
        match dep {
            Dep::Model => llm.set_models_down(false),
            Dep::Postgres => {
                // One log line per failed attempt: wait for the first.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                while !logs().contains("the database does not answer yet") {
                    assert!(tokio::time::Instant::now() < deadline, "{}", logs());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let (status, health) = get(&http, &format!("{base}/health")).await;
                assert_eq!((status, health["status"].as_str()), (503, Some("starting")));
                pg.up();
            }
            Dep::Redis => {
                redis.up();
                client = Some(python_turn(
                    &redis_url,
                    &prefix,
                    "late",
                    "sent while the node was starting",
                ));
            }
        }
    }

    // Ready without a restart.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (status, ready) = get(&http, &format!("{base}/health/ready")).await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {ready}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, health) = get(&http, &format!("{base}/health")).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "{health}"
    );
    assert_eq!(health["model"], "tiny-model", "{health}");
    let out = client.unwrap().wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["timed_out"], false, "{seen}\n{}", logs());
    assert_eq!(seen["content"], "Done after all.", "{seen}\n{}", logs());
    assert_eq!(seen["ok"], true, "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_model_server_becomes_ready_when_it_loads() {
    comes_up_in_any_order(&[Dep::Model]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_redis_takes_the_turn_once_joined() {
    comes_up_in_any_order(&[Dep::Redis]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_postgresql_answers_starting_then_serves() {
    comes_up_in_any_order(&[Dep::Postgres]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_with_model_redis_and_postgresql_down_comes_up_in_any_order() {
    comes_up_in_any_order(&[Dep::Model, Dep::Redis, Dep::Postgres]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_database_never_answers_exits_with_a_clear_message() {
    let pg = turnstone_tests::services::PrivatePostgres::create();
    let llm = ScriptedLlm::start().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_turnstone-server"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--base-url", &llm.base_url(), "--model", "scripted-model"])
        .arg("--workdir")
        .arg(work.path())
        .env("HOME", work.path())
        .env("TURNSTONE_DB_BACKEND", "postgresql")
        .env("TURNSTONE_DB_URL", pg.url())
        .env("TURNSTONE__DATABASE__STARTUP_WAIT", "5")
        .env("TURNSTONE_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: the database did not answer within")
            && stderr.contains("raise database.startup_wait"),
        "{stderr}"
    );
    assert!(
        stderr.matches("the database does not answer yet").count() >= 1,
        "each failed attempt is logged: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "gave up at the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_started_before_its_server_keeps_trying_and_then_bridges() {
    let redis = PrivateRedis::start();
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route(
        turnstone_actors::workstream::TITLE_PROMPT,
        Turn::text("A title"),
    );
    llm.route("sent before the server was up", Turn::text("Bridged late."));
    let work = tempfile::tempdir().unwrap();
    let redis_url = redis.url();
    let (host, redis_port) = authority(&redis_url).split_once(':').unwrap();
    let prefix = format!("bo{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let port = free_port();
    let server_url = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnstone-bridge"));
    cmd.args(["--server-url", &server_url])
        .args(["--redis-host", host, "--redis-port", redis_port])
        .args(["--redis-prefix", &prefix, "--node-id", "bridged"])
        .args(["--heartbeat-ttl", "4"])
        .env("HOME", work.path())
        .env("TURNSTONE_LOG_FORMAT", "text")
        .env_remove("REDIS_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let (mut bridge, log) = cluster_support::spawn_logged(cmd);
    let logs = || log.lock().unwrap().join("\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !logs().contains("does not answer yet") {
        assert!(tokio::time::Instant::now() < deadline, "{}", logs());
        assert!(
            bridge.try_wait().unwrap().is_none(),
            "the bridge exited:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = python_turn(
        &redis_url,
        &prefix,
        "bridged",
        "sent before the server was up",
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        bridge.try_wait().unwrap().is_none(),
        "the bridge exited:\n{}",
        logs()
    );

    let mut cmd = cluster_support::server_command(work.path(), port);
    cmd.args(["--base-url", &llm.base_url(), "--model", "scripted-model"]);
    let (_server, _, _) = spawn_until(cmd, "Turnstone server on ", "turnstone-server").await;
    let out = client.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["content"], "Bridged late.", "{seen}\n{}", logs());
    assert!(logs().contains("Turnstone bridge for"), "{}", logs());
}
