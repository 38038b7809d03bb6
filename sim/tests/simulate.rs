#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The simulator end to end: real node actors under each scenario, in memory on virtual time
//! (deterministic) and on the real Redis (multi-threaded, real time).

use std::sync::Arc;
use std::time::Duration;

use turnstone_actors::mq::{SendRequest, TurnstoneClient};
use turnstone_runtime::remote::{MemoryTransport, RedisTransport, Transport};
use turnstone_sim::cluster::node_id;
use turnstone_sim::{
    Behaviour, ClusterSpec, Quiet, Report, Scenario, SimCluster, SimConfig, run, run_in_memory,
};

fn config(nodes: usize, scenario: Scenario, seed: u64) -> SimConfig {
    SimConfig {
        cluster: ClusterSpec {
            nodes,
            max_workstreams: 10,
            behaviour: Behaviour::default(),
            seed,
            heartbeat_ttl: Duration::from_secs(4),
        },
        scenario,
        duration: Duration::from_secs(40),
        mps: 4.0,
        burst_size: 60,
        kill_interval: Duration::from_secs(8),
        kill_count: 1,
        drain_timeout: Duration::from_secs(300),
        bucket: Duration::from_secs(1),
        redis_url: None,
        outage: Duration::from_secs(1),
        redis_server: None,
    }
}

/// `nodes` nodes whose model and tools answer fast and never fail.
fn quick(nodes: usize, seed: u64) -> ClusterSpec {
    ClusterSpec {
        nodes,
        max_workstreams: 10,
        behaviour: Behaviour {
            llm_latency: 0.05,
            token_rate: 5000.0,
            tool_latency: 0.01,
            tool_failure_rate: 0.0,
            ..Behaviour::default()
        },
        seed,
        heartbeat_ttl: Duration::from_secs(60),
    }
}

fn in_memory(config: &SimConfig) -> Report {
    run_in_memory(config, &Quiet).unwrap()
}

/// Nothing lost, nothing left over.
fn accounted(r: &Report) {
    assert_eq!(r.lost_messages, 0, "{}", r.table());
    assert_eq!(
        (r.backlog, r.in_flight, r.dead_letters),
        (0, 0, 0),
        "{}",
        r.table()
    );
}

/// Every send answered exactly once (no node presumed dead finished it too).
fn once(r: &Report) {
    accounted(r);
    assert_eq!(r.duplicate_turns, 0, "{}", r.table());
}

#[test]
fn steady_load_is_spread_over_every_node_and_nothing_is_lost() {
    let r = in_memory(&config(5, Scenario::Steady, 1));
    once(&r);
    assert_eq!(r.messages_injected, 160);
    assert_eq!(r.total_turns + r.rejections, 160, "{}", r.table());
    assert_eq!(r.rejections, 0, "a full node leaves work to the others");
    assert_eq!(r.utilization.nodes_with_turns, 5, "{:?}", r.turns_per_node);
    assert_eq!(r.turns_per_node.values().sum::<u64>(), r.total_turns);
    // A turn takes at least one model answer: 0.05 s latency plus ≥10 words at 50 words/s.
    assert!(
        r.latency.p50 > 0.25 && r.latency.max >= r.latency.p99,
        "{:?}",
        r.latency
    );
    // Throughput is over the window from the first message to the last answer.
    let per_window = r.total_turns as f64 / r.duration_seconds;
    assert!((r.throughput.turns_per_sec - per_window).abs() < 0.01);
    assert!(r.duration_seconds >= 40.0 && r.duration_seconds < 40.0 + r.latency.max + 1.0);
    let seen: u64 = r.timeline.iter().map(|b| b.turns).sum();
    assert_eq!(seen, r.total_turns);
}

#[test]
fn one_seed_gives_the_same_report_byte_for_byte() {
    let a = in_memory(&config(4, Scenario::NodeFailure, 7));
    let b = in_memory(&config(4, Scenario::NodeFailure, 7));
    assert_eq!(a.reproducible_json(), b.reproducible_json());
    let c = in_memory(&config(4, Scenario::NodeFailure, 8));
    assert_ne!(
        a.reproducible_json(),
        c.reproducible_json(),
        "another seed draws other answers"
    );
    assert!(a.host.wall_seconds > 0.0, "the host measurements are kept");
}

#[test]
fn killed_nodes_lose_nothing_their_work_finishes_elsewhere() {
    let r = in_memory(&config(6, Scenario::NodeFailure, 3));
    once(&r);
    assert_eq!(r.node_kills, 3, "at most half of the nodes are killed");
    assert_eq!(r.total_turns, r.messages_injected, "{}", r.table());
    // Work in flight on a killed node waits for its heartbeat to lapse (4 s), then reruns.
    assert!(r.latency.max > 4.0, "{:?}", r.latency);
}

#[test]
fn a_burst_is_absorbed_and_directed_work_lands_on_its_node() {
    let burst = in_memory(&config(3, Scenario::Burst, 2));
    once(&burst);
    assert_eq!((burst.messages_injected, burst.total_turns), (60, 60));
    // 60 at once on 30 workstreams: half of them wait for a free one.
    assert!(
        burst.latency.p50 < burst.latency.max / 2.0,
        "{:?}",
        burst.latency
    );

    let directed = in_memory(&config(4, Scenario::Directed, 2));
    once(&directed);
    let expected: Vec<(String, u64)> = (0..4).map(|i| (node_id(i), 1)).collect();
    assert_eq!(
        directed.turns_per_node.into_iter().collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn lifecycle_creates_follows_up_through_owners_and_closes() {
    let r = in_memory(&config(5, Scenario::Lifecycle, 4));
    once(&r);
    // 10 creates, 10 sends, 5 closes.
    assert_eq!(
        (r.messages_injected, r.total_turns),
        (25, 10),
        "{}",
        r.table()
    );
    assert_eq!(r.total_errors, 0);
}

fn redis_url() -> String {
    turnstone_tests::services::redis_url().unwrap()
}

fn prefix() -> String {
    format!("sim{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_simulated_nodes_work_and_survive_kills() {
    let url = redis_url();
    let prefix = format!("{}k", prefix());
    let transport = RedisTransport::connect_sized(&url, &prefix, 64)
        .await
        .unwrap();
    let mut c = config(4, Scenario::NodeFailure, 5);
    c.cluster.behaviour = Behaviour {
        llm_latency: 0.05,
        token_rate: 2000.0,
        tool_latency: 0.02,
        ..Behaviour::default()
    };
    c.cluster.heartbeat_ttl = Duration::from_secs(2);
    c.duration = Duration::from_secs(6);
    c.mps = 20.0;
    c.kill_interval = Duration::from_secs(2);
    c.redis_url = Some(url);
    let r = run(&c, Arc::new(transport), &Quiet).await.unwrap();
    accounted(&r);
    assert_eq!(r.node_kills, 2);
    assert_eq!(r.total_turns, 120, "{}", r.table());
    let commands = r.host.redis_commands_per_turn.unwrap();
    assert!(commands > 5.0, "Redis counted: {commands}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_client_sees_simulated_nodes_as_nodes() {
    let url = redis_url();
    let prefix = format!("{}c", prefix());
    let transport: Arc<dyn Transport> = Arc::new(
        RedisTransport::connect_sized(&url, &prefix, 32)
            .await
            .unwrap(),
    );
    let mut cluster = SimCluster::start(&quick(3, 9), transport.clone(), &|| {})
        .await
        .unwrap();
    let client = TurnstoneClient::connect(&url, &prefix).await.unwrap();
    let mut nodes: Vec<String> = client
        .list_nodes()
        .await
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap_or("").to_owned())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["sim-0000", "sim-0001", "sim-0002"]);
    let listed = client.list_nodes().await.unwrap();
    assert!(
        listed
            .iter()
            .all(|n| n["server_url"].as_str().unwrap_or("").starts_with("sim://")),
        "{listed:?}"
    );

    // Directed work through the queue client, answered by the simulated model.
    let result = client
        .send_and_wait(
            SendRequest::new("hello")
                .target("sim-0001")
                .timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert!(result.ok(), "{result:?}");
    assert!(!result.content().trim().is_empty());
    let follow_up = client
        .send_and_wait(
            SendRequest::new("and again")
                .ws(result.ws_id.clone())
                .timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert!(follow_up.ok(), "{follow_up:?}");
    cluster.shutdown().await;
}

#[test]
fn a_node_cut_off_from_the_transport_loses_nothing_and_rejoins() {
    let r = in_memory(&config(5, Scenario::Partition, 6));
    accounted(&r);
    // Delivery is at least once: the cut-off node finishes what others reran.
    assert!(r.duplicate_turns > 0, "{}", r.table());
    assert_eq!(r.partitions, 4, "one node at 8, 16, 24 and 32 s");
    assert_eq!(r.node_kills, 0);
    assert_eq!(r.total_turns, r.messages_injected, "{}", r.table());
    // Reconnected nodes take work again: every node completed turns.
    assert_eq!(r.utilization.nodes_with_turns, 5, "{:?}", r.turns_per_node);
}

#[test]
fn redis_going_down_in_memory_holds_the_work_and_loses_nothing() {
    let mut c = config(5, Scenario::RedisRestart, 11);
    c.outage = Duration::from_secs(2);
    let r = in_memory(&c);
    once(&r);
    assert_eq!(r.redis_restarts, 4, "down at 8, 16, 24 and 32 s");
    // What fell due while it was down went out when it was back: every message, every turn.
    assert_eq!(r.messages_injected, 160);
    assert_eq!(r.total_turns, 160, "{}", r.table());
    // No message was injected while it was down (8–10 s, …).
    let quiet: u64 = r
        .timeline
        .iter()
        .filter(|b| {
            [8.0, 16.0, 24.0, 32.0]
                .iter()
                .any(|t| b.t >= *t + 0.5 && b.t < *t + 1.5)
        })
        .map(|b| b.injected)
        .sum();
    assert_eq!(quiet, 0, "{:?}", r.timeline);
    // Turns running across an outage wait for it: some take longer than an outage.
    assert!(r.latency.max > 2.0, "{:?}", r.latency);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_redis_restart_loses_nothing_and_acknowledges_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(std::sync::Mutex::new(
        turnstone_runtime::remote::RedisServer::start(dir.path()).unwrap(),
    ));
    let url = server.lock().unwrap().url();
    let transport = RedisTransport::connect_sized(&url, "simrestart", 32)
        .await
        .unwrap();
    let mut c = config(3, Scenario::RedisRestart, 12);
    c.cluster.behaviour = Behaviour {
        llm_latency: 0.05,
        token_rate: 400.0,
        tool_latency: 0.02,
        tool_failure_rate: 0.0,
        ..Behaviour::default()
    };
    c.cluster.heartbeat_ttl = Duration::from_secs(10);
    c.duration = Duration::from_secs(9);
    c.mps = 10.0;
    c.kill_interval = Duration::from_secs(4);
    c.outage = Duration::from_millis(800);
    c.drain_timeout = Duration::from_secs(60);
    c.redis_url = Some(url);
    c.redis_server = Some(server);
    let r = run(&c, Arc::new(transport), &Quiet).await.unwrap();
    once(&r);
    assert_eq!(r.redis_restarts, 2, "at 4 and 8 s");
    assert_eq!(
        (r.messages_injected, r.total_turns),
        (90, 90),
        "{}",
        r.table()
    );
    assert!(r.host.redis_commands.unwrap() > 0);
}

/// A crashed bridge is restarted by its node's supervisor and goes on serving the
/// workstreams the node already had: a follow-up's events reach its client.
#[tokio::test(start_paused = true)]
async fn a_crashed_bridge_is_restarted_and_serves_the_nodes_workstreams() {
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    let mut cluster = SimCluster::start(&quick(1, 5), transport.clone(), &|| {})
        .await
        .unwrap();
    let client = TurnstoneClient::new(transport);
    let first = client
        .send_and_wait(SendRequest::new("hello").timeout(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(first.ok(), "{first:?}");

    assert!(cluster.crash_bridge(0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let follow_up = client
        .send_and_wait(
            SendRequest::new("and again")
                .ws(first.ws_id.clone())
                .timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert!(follow_up.ok(), "{follow_up:?}");
    assert!(!follow_up.content().trim().is_empty(), "{follow_up:?}");
    assert_eq!(cluster.nodes()[0].workstreams(), 1, "the same workstream");
    cluster.shutdown().await;
}
