//! The chat gateway's costs, against the loopback Discord of the tests (`turnstone_tests::
//! discord`) with THREADS routed threads at once:
//!
//! - messages/s from the platform through the gateway (link and route lookups, the owner check)
//!   to the queue: MESSAGES messages spread over the threads;
//! - events/s from the queue to the threads: EVENTS content events per thread appended to the
//!   workstreams' event streams, until every thread's message shows its whole answer, and how
//!   many edits that took (the relay coalesces them);
//! - the cost of splitting a 100 kB answer with code blocks into 2,000-character messages;
//! - resident memory per active thread (its relay and its stream reader).
//!
//! Run: `cargo bench -p turnstone-gateways --bench channel [-- REDIS_URL]` (in memory without a
//! URL; env `THREADS` 100, `MESSAGES` 10000, `EVENTS` 100).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use turnstone_actors::config::AuthConfig;
use turnstone_actors::mq::{Keys, TurnstoneClient};
use turnstone_actors::storage::Store;
use turnstone_gateways::channel::chunk::chunks;
use turnstone_gateways::channel::discord::DiscordSettings;
use turnstone_gateways::channel::notify::NotifyAuth;
use turnstone_gateways::channel::router::RouteSettings;
use turnstone_gateways::channel::{GatewayOptions, RunOptions, run};
use turnstone_runtime::remote::{Attempt, Emit, MemoryTransport, RedisTransport, Transport};
use turnstone_runtime::supervise::Observer;
use turnstone_tests::discord::FakeDiscord;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn chunking() {
    let mut answer = String::new();
    while answer.len() < 100_000 {
        answer
            .push_str("Some prose before the code, long enough to wrap a line or two.\n```rust\n");
        for i in 0..40 {
            answer.push_str(&format!(
                "    let value_{i} = compute({i}) * 2; // a comment\n"
            ));
        }
        answer.push_str("```\n");
    }
    let runs = 200;
    let started = Instant::now();
    let mut parts = 0;
    for _ in 0..runs {
        parts = std::hint::black_box(chunks(std::hint::black_box(&answer), 2000)).len();
    }
    let per = started.elapsed() / runs;
    println!(
        "chunking: {} kB into {parts} messages of ≤ 2,000 characters in {:.0} µs",
        answer.len() / 1000,
        per.as_secs_f64() * 1e6
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let threads = env_usize("THREADS", 100);
    let messages = env_usize("MESSAGES", 10_000);
    let events = env_usize("EVENTS", 100);
    chunking();

    let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let transport: Arc<dyn Transport> =
        match std::env::args().nth(1).filter(|a| a.starts_with("redis")) {
            Some(url) => Arc::new(RedisTransport::connect(&url, &prefix).await.unwrap()),
            None => Arc::new(MemoryTransport::with_prefix(&prefix)),
        };
    let keys = Keys::new(&prefix);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_url(
        &format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display()),
        4,
    )
    .await
    .unwrap();
    let discord = FakeDiscord::start("bench-token").await;
    let running = run(
        RunOptions {
            gateway: GatewayOptions {
                client: TurnstoneClient::new(transport.clone()),
                store: store.clone(),
                route: RouteSettings::default(),
                auth: AuthConfig::default(),
                jwt_secret: None,
            },
            matrix: None,
            discord: Some(DiscordSettings {
                token: "bench-token".into(),
                api_url: Some(discord.api_url()),
                gateway_url: Some(discord.gateway_url()),
                ..DiscordSettings::default()
            }),
            slack: None,
            notify: NotifyAuth::default(),
            listener: turnstone_gateways::web::listen("127.0.0.1", 0).unwrap(),
            http_host: "127.0.0.1".into(),
            advertise_url: None,
        },
        Observer::unregistered(),
    )
    .await
    .unwrap();
    discord
        .wait("the session", |d| d.commands().len() == 5)
        .await;

    // THREADS people, each linked, each with a routed thread whose workstream a node owns.
    let user = turnstone_actors::accounts::create_user(&store, "bench", "Bench", "password-123")
        .await
        .unwrap();
    let mut routed = Vec::new();
    for i in 0..threads {
        let (account, thread, ws) = (
            format!("{}", 600_000_000_000_000_000u64 + i as u64),
            format!("{}", 500_000_000_000_000_000u64 + i as u64),
            format!("ws{i:04}"),
        );
        store
            .link_channel("discord", &account, &user.user_id)
            .await
            .unwrap();
        store
            .set_channel_route("discord", &thread, &ws, "bench-node")
            .await
            .unwrap();
        transport
            .set(&keys.owner(&ws), "bench-node".into(), None)
            .await
            .unwrap();
        routed.push((account, thread, ws));
    }
    let rss_before = rss_kib();

    // Messages through the gateway to the queue.
    let started = Instant::now();
    for n in 0..messages {
        let (account, thread, _) = &routed[n % threads];
        discord.say(account, thread, &format!("message {n}"), false);
    }
    let shared = keys.shared();
    loop {
        if transport.queue_len(&shared).await.unwrap() >= messages {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the messages did not all arrive"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    println!(
        "router: {messages} messages over {threads} threads to the queue in {:.2} s = {:.0} messages/s",
        took.as_secs_f64(),
        messages as f64 / took.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_active = rss_kib();
    println!(
        "memory: {} KiB resident with {threads} active threads, {:.1} KiB per thread (relay + stream reader)",
        rss_active,
        rss_active.saturating_sub(rss_before) as f64 / threads as f64
    );

    // Events from the queue to the threads: each workstream writes its answer in EVENTS pieces.
    let requests_before = discord.requests().len();
    let started = Instant::now();
    for round in 0..events {
        let batch: Vec<Emit> = routed
            .iter()
            .map(|(_, _, ws)| Emit {
                stream: Some(keys.ws_stream(ws)),
                channel: keys.ws_channel(ws),
                payload: json!({"type": "content", "ws_id": ws, "text": format!("w{round} ")})
                    .to_string(),
            })
            .collect();
        transport
            .emit(&batch, 10_000, Attempt::First)
            .await
            .unwrap();
    }
    let done: Vec<Emit> = routed
        .iter()
        .map(|(_, _, ws)| Emit {
            stream: Some(keys.ws_stream(ws)),
            channel: keys.ws_channel(ws),
            payload: json!({"type": "turn_complete", "ws_id": ws}).to_string(),
        })
        .collect();
    transport.emit(&done, 10_000, Attempt::First).await.unwrap();
    let whole: String = (0..events).map(|r| format!("w{r} ")).collect();
    loop {
        let finished = routed
            .iter()
            .filter(|(_, thread, _)| {
                discord
                    .bot_messages(thread)
                    .last()
                    .is_some_and(|m| m.content == whole)
            })
            .count();
        if finished == threads {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{finished}/{threads} threads finished"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    let calls = discord.requests().len() - requests_before;
    let total = events * threads + threads;
    println!(
        "relay: {total} events to {threads} threads in {:.2} s = {:.0} events/s, shown with {calls} \
         platform calls ({:.1} events per call)",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        total as f64 / calls.max(1) as f64
    );
    running.shutdown().await;
}
