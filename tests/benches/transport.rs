//! The Redis transport's cost per message against a real local Redis: one consumer node
//! receiving and acknowledging messages from the shared queue while a producer pushes them.
//! Reports messages per second, push-to-receive latency and Redis commands per message (from
//! `INFO commandstats`).
//!
//! Run: `TURNSTONE_TEST_REDIS_URL=redis://127.0.0.1:16399 cargo bench -p turnstone-tests --bench transport`
//! (scripts/services.sh starts that Redis; `MESSAGES` sets the count).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use turnstone_runtime::remote::{MailboxAddress, RedisTransport, Transport};

async fn total_commands(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::main]
async fn main() {
    let url = std::env::var("TURNSTONE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:16399".into());
    let messages: usize = std::env::var("MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let consumer = Arc::new(RedisTransport::connect(&url, &prefix).await.unwrap());
    let producer = Arc::new(RedisTransport::connect(&url, &prefix).await.unwrap());
    let from = [
        MailboxAddress::directed("inbound", "n1"),
        MailboxAddress::shared("inbound"),
    ];
    // warm up: pumps, registration, connections
    producer.push(&from[1], "0".into()).await.unwrap();
    let d = consumer
        .receive("n1", &from, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    consumer.ack(&d).await.unwrap();

    // Round trips one at a time: push → received, the latency a queued message sees.
    let mut latencies = Vec::with_capacity(1000);
    for i in 0..1000 {
        let sent = Instant::now();
        producer.push(&from[1], format!("{i}")).await.unwrap();
        let d = consumer
            .receive("n1", &from, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        latencies.push(sent.elapsed());
        consumer.ack(&d).await.unwrap();
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];

    // Throughput: a producer pushing as fast as it can, the consumer receiving and acking.
    let before = total_commands(&url).await;
    let started = Instant::now();
    let push = {
        let producer = producer.clone();
        let to = from[1].clone();
        tokio::spawn(async move {
            for i in 0..messages {
                producer
                    .push(&to, format!("{{\"type\":\"send\",\"n\":{i}}}"))
                    .await
                    .unwrap();
            }
        })
    };
    for _ in 0..messages {
        let d = consumer
            .receive("n1", &from, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        consumer.ack(&d).await.unwrap();
    }
    push.await.unwrap();
    let elapsed = started.elapsed();
    let commands = total_commands(&url).await - before - 1;

    println!("messages: {messages}");
    println!(
        "push → receive latency (sequential): p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.9).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    println!(
        "throughput (one producer, one consumer node): {:.0} messages/s",
        messages as f64 / elapsed.as_secs_f64()
    );
    println!(
        "Redis commands per message (push + move + ack): {:.2}",
        commands as f64 / messages as f64
    );
    assert_eq!(consumer.in_flight_len("n1").await.unwrap(), 0);
}
