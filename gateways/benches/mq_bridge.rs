//! The queue path end to end: `TurnstoneClient::send_and_wait` → Redis → a release
//! `turnstone-server --redis-host` node (its bridge actor, a workstream, SQLite) → an instant
//! scripted model on loopback → `turn_complete` back through Redis.
//!
//! - round trip: sequential `send_and_wait`, p50/p90/p99 — as a queue-driven agent works: a new
//!   workstream (the first message) then nine follow-ups, so conversations stay short and the
//!   numbers measure the queue path, not ever-longer requests to the model;
//! - Redis commands per turn (INFO commandstats, every client included) by command;
//! - throughput: CONCURRENCY clients, each with its own workstreams (ten turns each), for
//!   SECONDS; the node's CPU time per turn.
//!
//! Run: `cargo build --release -p turnstone-gateways --bin turnstone-server &&
//!       cargo bench -p turnstone-gateways --bench mq_bridge` (env `REDIS_URL` or
//!       `TURNSTONE_TEST_REDIS_URL`, `TURNS`, `SECONDS`, `CONCURRENCY`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use turnstone_actors::mq::{SendRequest, TurnstoneClient};
use turnstone_tests::llm::{ScriptedLlm, Turn};
use turnstone_tests::services::authority;

/// Turns per workstream: a new one, then follow-ups.
const ROTATE: usize = 10;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `cmdstat_*` calls and `total_commands_processed`.
fn command_stats(host: &str, port: &str) -> BTreeMap<String, u64> {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", host, "-p", port, "info", "commandstats"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// The Redis server's pid, when it runs on this machine (`INFO server`).
fn redis_pid(host: &str, port: &str) -> Option<u32> {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", host, "-p", port, "info", "server"])
        .output()
        .ok()?;
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))?
        .trim()
        .parse()
        .ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    turnstone_actors::provider::install_crypto_provider();
    let turns = env_usize("TURNS", 1000);
    let seconds = env_usize("SECONDS", 10);
    let concurrency = env_usize("CONCURRENCY", 32);
    let redis = std::env::var("REDIS_URL")
        .or_else(|_| std::env::var("TURNSTONE_TEST_REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let (host, port) = authority(&redis).split_once(':').unwrap();
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
    llm.route("", Turn::text("ok").usage(10, 1));
    let home = tempfile::tempdir().unwrap();
    let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut server = std::process::Command::new(&binary)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--model",
            "scripted-model",
        ])
        .arg("--base-url")
        .arg(llm.base_url())
        .args([
            "--redis-host",
            host,
            "--redis-port",
            port,
            "--redis-prefix",
            &prefix,
        ])
        .args(["--node-id", "bench-node", "--max-workstreams", "1000"])
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("TURNSTONE_AUTH_ENABLED", "false")
        .env("TURNSTONE_LOG_LEVEL", "warn")
        .env_remove("REDIS_HOST")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = server.id();
    let client = TurnstoneClient::connect(&redis, &prefix).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.list_nodes().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the node did not join");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Round trip, one workstream, one turn at a time.
    for _ in 0..5 {
        let first = client
            .send_and_wait(SendRequest::new("warm up"))
            .await
            .unwrap();
        assert!(first.ok(), "{first:?}");
        for _ in 1..ROTATE {
            client
                .send_and_wait(SendRequest::new("warm").ws(&first.ws_id))
                .await
                .unwrap();
        }
    }
    let before = command_stats(host, port);
    let mut latencies = Vec::with_capacity(turns);
    // Follow-up turns: when each kind of event reached the client, from the send.
    let timeline: Arc<std::sync::Mutex<BTreeMap<String, Vec<Duration>>>> = Arc::default();
    let mut ws = String::new();
    for i in 0..turns {
        if i % ROTATE == 0 {
            ws.clear();
        }
        let started = Instant::now();
        let seen = timeline.clone();
        let follow_up = !ws.is_empty();
        let result = client
            .send_and_wait(
                SendRequest::new(format!("turn {i}"))
                    .ws(&ws)
                    .on_event(move |e| {
                        if follow_up {
                            let mut seen = seen.lock().unwrap();
                            seen.entry(e.kind.clone())
                                .or_default()
                                .push(started.elapsed());
                        }
                    }),
            )
            .await
            .unwrap();
        latencies.push(started.elapsed());
        assert!(result.ok() && result.content() == "ok", "{result:?}");
        ws = result.ws_id;
    }
    let after = command_stats(host, port);
    latencies.sort();
    println!(
        "send_and_wait → turn_complete, {turns} sequential turns (a new workstream every {ROTATE}):"
    );
    println!(
        "  p50 {:.3} ms   p90 {:.3} ms   p99 {:.3} ms   max {:.3} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.9).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
    println!("  follow-ups, median arrival of each event from the send:");
    let mut arrivals: Vec<(Duration, String, usize)> = timeline
        .lock()
        .unwrap()
        .iter_mut()
        .map(|(kind, at)| {
            at.sort();
            (percentile(at, 0.5), kind.clone(), at.len())
        })
        .collect();
    arrivals.sort();
    for (at, kind, n) in arrivals {
        println!("    {:>7.3} ms  {kind} ({n})", at.as_secs_f64() * 1e3);
    }
    let mut per_command: Vec<(String, f64)> = after
        .iter()
        .map(|(name, calls)| {
            let delta = calls - before.get(name).copied().unwrap_or(0);
            (name.clone(), delta as f64 / turns as f64)
        })
        .filter(|(_, per)| *per > 0.0)
        .collect();
    per_command.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = per_command.iter().map(|(_, n)| n).sum();
    println!("Redis commands per turn (client + node): {total:.2}");
    for (name, per) in &per_command {
        println!("  {name:<12} {per:.2}");
    }

    // Throughput: many clients, each on its own workstreams.
    let done = Arc::new(AtomicUsize::new(0));
    // Everything on this machine that serves the turns: the node, this process (the clients
    // and the scripted model) and Redis.
    let redis_pid = redis_pid(host, port);
    let own_pid = std::process::id();
    let cpu_before = cpu_seconds(pid);
    let own_before = cpu_seconds(own_pid);
    let redis_before = redis_pid.map(cpu_seconds);
    let started = Instant::now();
    let stop = started + Duration::from_secs(seconds as u64);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, done) = (client.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut ws = String::new();
            let mut n = 0;
            while Instant::now() < stop {
                if n % ROTATE == 0 {
                    ws.clear();
                }
                let r = client
                    .send_and_wait(SendRequest::new("go").ws(&ws))
                    .await
                    .unwrap();
                assert!(r.ok(), "{r:?}");
                ws = r.ws_id;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let own = cpu_seconds(own_pid) - own_before;
    let n = done.load(Ordering::Relaxed);
    println!(
        "throughput, {concurrency} clients, {ROTATE} turns per workstream, {elapsed:.1} s: {n} turns, {:.0} turns/s; node CPU {:.3} ms per turn",
        n as f64 / elapsed,
        cpu * 1e3 / n as f64
    );
    let per_turn = |seconds: f64| seconds * 1e3 / n as f64;
    let redis = redis_pid
        .zip(redis_before)
        .map(|(pid, before)| cpu_seconds(pid) - before);
    let total = cpu + own + redis.unwrap_or(0.0);
    println!(
        "  CPU per turn: node {:.3} ms, clients and scripted model {:.3} ms, Redis {} — {:.3} ms in all, a ceiling of {:.0} turns/s on {} cores",
        per_turn(cpu),
        per_turn(own),
        redis.map_or_else(
            || "not measured".to_owned(),
            |r| format!("{:.3} ms", per_turn(r))
        ),
        per_turn(total),
        cores() as f64 * 1e3 / per_turn(total),
        cores(),
    );
    let _ = server.kill();
    let _ = server.wait();
}
