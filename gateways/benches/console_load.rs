//! The console under a 1000-node cluster, for any number of consoles side by side (ours and
//! 0.4.1's Python one in `scripts/bench-console`): registers NODES simulated nodes as
//! `turnstone-sim` does and announces WS workstreams on each over the cluster channel, waits
//! until every console shows them all, then per console:
//!
//! - requests/s, p50 and p99 of the overview, `nodes?limit=1000`, a workstreams page and a
//!   search, CONNECTIONS clients in a closed loop for DURATION seconds each;
//! - its resident memory (VmRSS of the pid given);
//! - latency from a cluster event published on Redis to an SSE reader of
//!   `/v1/api/cluster/events`, at EVENTS_PER_SEC for five seconds.
//!
//! Run: `cargo bench -p turnstone-gateways --bench console_load -- REDIS_URL NAME=URL@PID…`
//! (env `NODES` 1000, `WS` 10, `DURATION` 10, `CONNECTIONS` 16, `EVENTS_PER_SEC` 1000,
//! `TOKEN` for the consoles' bearer).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use turnstone_runtime::remote::{RedisTransport, Transport};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Console {
    name: String,
    url: String,
    pid: Option<u32>,
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn get_json(http: &reqwest::Client, token: &str, url: &str) -> Option<Value> {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

async fn wait_for(
    http: &reqwest::Client,
    token: &str,
    console: &Console,
    what: &str,
    key: &str,
    want: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let o = get_json(
            http,
            token,
            &format!("{}/v1/api/cluster/overview", console.url),
        )
        .await;
        let have = o.as_ref().and_then(|o| o[key].as_u64()).unwrap_or(0) as usize;
        if have >= want {
            eprintln!("{}: {have} {what}", console.name);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {have} of {want} {what}",
            console.name
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Closed-loop load: (requests/s, p50 ms, p99 ms, errors).
async fn load(url: &str, token: &str, connections: usize, seconds: u64) -> (f64, f64, f64, usize) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (http, url, token) = (http.clone(), url.to_owned(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < end {
                let t = Instant::now();
                match http.get(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    (
        all.len() as f64 / elapsed,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        errors,
    )
}

/// Event → SSE reader latency: (p50 ms, p99 ms, max ms, received of sent).
async fn event_latency(
    transport: &Arc<dyn Transport>,
    channel: &str,
    console: &Console,
    token: &str,
    rate: usize,
) -> (f64, f64, f64, usize, usize) {
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{}/v1/api/cluster/events", console.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let mut events = response.bytes_stream().eventsource();
    let run = format!("{:x}", now_us());
    let reader_run = run.clone();
    let reader = tokio::spawn(async move {
        let mut lat = Vec::new();
        while let Ok(Some(Ok(e))) =
            tokio::time::timeout(Duration::from_secs(3), events.next()).await
        {
            let Ok(v) = serde_json::from_str::<Value>(&e.data) else {
                continue;
            };
            if v["bench_run"] == reader_run.as_str() {
                let sent = v["sent_us"].as_u64().unwrap_or(0);
                lat.push(now_us().saturating_sub(sent) as f64 / 1000.0);
            }
        }
        lat
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total = rate * 5;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    for k in 0..total {
        tick.tick().await;
        let (i, w) = (k % 1000, k % 10);
        let event = json!({"type": "cluster_state", "ws_id": format!("w{i:04}{w}"),
            "node_id": format!("sim-{i:04}"), "state": "running", "tokens": k,
            "sent_us": now_us(), "bench_run": run});
        transport.publish(channel, event.to_string()).await.unwrap();
    }
    let mut lat = reader.await.unwrap();
    lat.sort_by(f64::total_cmp);
    (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        lat.len(),
        total,
    )
}

#[tokio::main]
async fn main() {
    turnstone_actors::provider::install_crypto_provider();
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let redis = args.next().expect("REDIS_URL NAME=URL@PID…");
    let consoles: Vec<Console> = args
        .map(|a| {
            let (name, rest) = a.split_once('=').expect("NAME=URL@PID");
            let (url, pid) = match rest.rsplit_once('@') {
                Some((u, p)) => (u.to_owned(), p.parse().ok()),
                None => (rest.to_owned(), None),
            };
            Console {
                name: name.to_owned(),
                url,
                pid,
            }
        })
        .collect();
    let nodes = env_usize("NODES", 1000);
    let per_node = env_usize("WS", 10);
    let seconds = env_usize("DURATION", 10) as u64;
    let connections = env_usize("CONNECTIONS", 16);
    let rate = env_usize("EVENTS_PER_SEC", 1000);
    let token = std::env::var("TOKEN").unwrap_or_default();
    let transport: Arc<dyn Transport> =
        Arc::new(RedisTransport::connect(&redis, "turnstone").await.unwrap());
    let channel = "turnstone:events:cluster";
    let http = reqwest::Client::new();

    // The nodes, kept alive for the run.
    let names: Vec<String> = (0..nodes).map(|i| format!("sim-{i:04}")).collect();
    let beat = {
        let (transport, names) = (transport.clone(), names.clone());
        tokio::spawn(async move {
            loop {
                for n in &names {
                    let meta = json!({"server_url": format!("sim://{n}"), "started": 1.0,
                        "sim": true, "workstreams": 10, "max_ws": 10});
                    let _ = transport
                        .heartbeat(n, meta.to_string(), Duration::from_secs(60))
                        .await;
                }
                tokio::time::sleep(Duration::from_secs(20)).await;
            }
        })
    };
    for c in &consoles {
        wait_for(&http, &token, c, "nodes", "nodes", nodes).await;
    }
    for (i, n) in names.iter().enumerate() {
        for w in 0..per_node {
            let ws = format!("w{i:04}{w}");
            let state = ["running", "thinking", "attention", "idle", "idle"][(i + w) % 5];
            let created = json!({"type": "ws_created", "ws_id": ws, "name": format!("task {i}-{w}"),
                "node_id": n, "correlation_id": ""});
            transport
                .publish(channel, created.to_string())
                .await
                .unwrap();
            let changed = json!({"type": "cluster_state", "ws_id": ws, "node_id": n,
                "state": state, "tokens": (i * per_node + w) as u64, "context_ratio": 0.1,
                "activity": "", "activity_state": ""});
            transport
                .publish(channel, changed.to_string())
                .await
                .unwrap();
        }
    }
    for c in &consoles {
        wait_for(
            &http,
            &token,
            c,
            "workstreams",
            "workstreams",
            nodes * per_node,
        )
        .await;
    }
    // Requests, memory and event latency, one console at a time.
    let endpoints = [
        ("overview", "/v1/api/cluster/overview"),
        ("nodes?limit=1000", "/v1/api/cluster/nodes?limit=1000"),
        (
            "workstreams page 3",
            "/v1/api/cluster/workstreams?page=3&per_page=50",
        ),
        (
            "search",
            "/v1/api/cluster/workstreams?search=task%2042-&sort=tokens",
        ),
    ];
    println!(
        "\n{nodes} nodes × {per_node} workstreams, {connections} connections × {seconds} s per endpoint, {} cores\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| console | endpoint | req/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|");
    let mut after = Vec::new();
    for c in &consoles {
        for (label, path) in endpoints {
            let (rps, p50, p99, errors) =
                load(&format!("{}{path}", c.url), &token, connections, seconds).await;
            println!(
                "| {} | {label} | {rps:.0} | {p50:.2} | {p99:.2} | {errors} |",
                c.name
            );
        }
        let rss = c.pid.map_or(f64::NAN, rss_mib);
        let (p50, p99, max, got, sent) = event_latency(&transport, channel, c, &token, rate).await;
        after.push(format!(
            "| {} | {rss:.1} | {p50:.2} | {p99:.2} | {max:.2} | {got} of {sent} |",
            c.name
        ));
    }
    println!("\n| console | RSS MiB | event→reader p50 ms | p99 ms | max ms | events read |");
    println!("|---|---|---|---|---|---|");
    for line in after {
        println!("{line}");
    }
    beat.abort();
}
