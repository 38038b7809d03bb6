//! SSE fan-out and connection cost of a release `turnstone-server` process:
//! - 1,000 concurrent readers of one workstream each receive every event of a 1,000-chunk turn;
//! - the server's resident memory per idle SSE connection.
//!
//! Run: `cargo build --release -p turnstone-gateways --bin turnstone-server &&
//!       cargo bench -p turnstone-gateways --bench sse_fanout` (env `READERS`, `CHUNKS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;
use turnstone_tests::llm::{ScriptedLlm, Turn};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    turnstone_actors::provider::install_crypto_provider();
    let readers = env_usize("READERS", 1000);
    let chunks = env_usize("CHUNKS", 1000);
    let binary = std::env::var("TURNSTONE_SERVER_BIN").unwrap_or_else(|_| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target =
            std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), Into::into);
        target
            .join("release/turnstone-server")
            .display()
            .to_string()
    });
    assert!(
        std::path::Path::new(&binary).exists(),
        "build it first: {binary}"
    );
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route(
        turnstone_actors::workstream::TITLE_PROMPT,
        Turn::text("bench"),
    );
    let mut turn = Turn::new();
    for i in 0..chunks {
        turn = turn.content(&format!("chunk {i} "));
    }
    llm.push_turn(turn);
    let home = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = std::process::Command::new(&binary)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--model",
            "scripted-model",
        ])
        .arg("--base-url")
        .arg(llm.base_url())
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("TURNSTONE_AUTH_ENABLED", "false")
        .env("TURNSTONE_LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = server.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list: Value = serde_json::from_slice(
        &http
            .get(format!("{base}/v1/api/workstreams"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let ws = list["workstreams"][0]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid);

    let connected = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let (url, connected, finished) = (
            format!("{base}/v1/api/events?ws_id={ws}"),
            connected.clone(),
            finished.clone(),
        );
        let client = reqwest::Client::new();
        tasks.push(tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            let mut events = response.bytes_stream().eventsource();
            let mut content = 0usize;
            while let Some(Ok(event)) = events.next().await {
                let v: Value = serde_json::from_str(&event.data).unwrap();
                match v["type"].as_str() {
                    Some("connected") => {
                        connected.fetch_add(1, Ordering::SeqCst);
                    }
                    Some("content") => content += 1,
                    Some("stream_end") => break,
                    _ => {}
                }
            }
            finished.fetch_add(1, Ordering::SeqCst);
            content
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while connected.load(Ordering::SeqCst) < readers {
        assert!(
            Instant::now() < deadline,
            "only {} connected",
            connected.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_kib(pid);

    let started = Instant::now();
    let sent = http
        .post(format!("{base}/v1/api/send"))
        .body(format!("{{\"message\":\"go\",\"ws_id\":\"{ws}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status().as_u16(), 200);
    let mut per_reader = Vec::new();
    for task in tasks {
        per_reader.push(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let rss_peak = rss_kib(pid);
    let _ = server.kill();
    let _ = server.wait();

    let complete = per_reader.iter().filter(|n| **n == chunks).count();
    let delivered: usize = per_reader.iter().sum();
    let per_conn = (rss_idle.saturating_sub(rss_before)) as f64 / readers as f64;
    println!("readers: {readers}, chunks per turn: {chunks}");
    println!(
        "readers that received every content event: {complete}/{readers} (min {}, max {})",
        per_reader.iter().min().unwrap(),
        per_reader.iter().max().unwrap()
    );
    println!(
        "fan-out: {delivered} events delivered in {:.2} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64()
    );
    println!(
        "server RSS: {rss_before} KiB before, {rss_idle} KiB with {readers} idle readers, {rss_peak} KiB after the turn"
    );
    println!("memory per idle SSE connection: {per_conn:.1} KiB");
    assert_eq!(complete, readers, "every reader got every event");
}
