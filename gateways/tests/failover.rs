#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Faults with real processes: a node SIGKILLed in the middle of a turn and while an approval
//! is pending (its work finishes on another node, which restores the workstream from the
//! shared PostgreSQL database), a send acknowledged only once its turn is stored, and Redis
//! restarting under running nodes.

mod cluster_support;

use std::time::Duration;

use cluster_support::{Cluster, Db};
use serde_json::json;
use turnstone_actors::mq::protocol::SendMsg;
use turnstone_actors::mq::{Event, EventStream, SendRequest};
use turnstone_tests::llm::Turn;
use turnstone_tests::services::{PrivateRedis, fresh_postgres_database};

const WAIT: Duration = Duration::from_secs(30);

/// Reads `events` until `stop` says so; returns what was read.
async fn read_until(events: &mut EventStream, mut stop: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let event = events
            .next(WAIT)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no event; saw {seen:#?}"));
        let done = stop(&event);
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// The answer text among `events`.
fn content_of(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.kind == "content")
        .map(|e| e.str("text"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_its_turn_and_pending_approval_finish_elsewhere() {
    let db = fresh_postgres_database().await.unwrap();
    let mut cluster = Cluster::start_with(&["node-a", "node-b"], Db::Postgres(db), 2, &[]).await;
    cluster
        .llm
        .route_latest("remember 41", Turn::text("noted: 41"));
    let first = cluster
        .client
        .send_and_wait(
            SendRequest::new("remember 41")
                .target("node-a")
                .timeout(WAIT),
        )
        .await
        .unwrap();
    assert!(first.ok(), "{first:?}\n{}", cluster.logs());
    let ws_id = first.ws_id.clone();
    assert_eq!(cluster.owner(&ws_id).await.as_deref(), Some("node-a"));

    // 1. Killed mid-turn: the model is still streaming on node a.
    let slow: String = (0..200).map(|i| format!("w{i} ")).collect();
    let mut turn = Turn::new();
    for word in slow.split_inclusive(' ') {
        turn = turn.content(word);
    }
    cluster
        .llm
        .route_latest_slowly("add one", turn, Duration::from_millis(50));
    let mut events = cluster.client.subscribe(&ws_id).await.unwrap();
    let cid = cluster
        .client
        .send(SendMsg {
            ws_id: ws_id.clone(),
            message: "add one".into(),
            ..SendMsg::default()
        })
        .await
        .unwrap();
    read_until(&mut events, |e| e.kind == "content").await;
    cluster.node("node-a").kill().await;
    cluster.llm.unroute("add one");
    cluster.llm.route_latest("add one", Turn::text("42"));
    let rest = read_until(&mut events, |e| {
        e.kind == "turn_complete" && e.correlation_id == cid
    })
    .await;
    let content = content_of(&rest);
    assert!(
        content.ends_with("42"),
        "finished elsewhere: {content:?}\n{}",
        cluster.logs()
    );
    assert_eq!(cluster.owner(&ws_id).await.as_deref(), Some("node-b"));
    // Node b continued the stored conversation: the model saw the first exchange.
    let resumed = cluster
        .llm
        .chat_bodies()
        .into_iter()
        .rfind(|b| b["messages"].to_string().contains("add one"))
        .unwrap();
    assert!(
        resumed["messages"].to_string().contains("noted: 41"),
        "{resumed}"
    );
    let in_flight = cluster.transport.in_flight_len("node-a").await.unwrap();
    assert_eq!(in_flight, 0, "node a's in-flight work was reclaimed");

    // 2. Killed while an approval is pending; the person answers while no node serves the
    //    workstream. Node c takes over and asks again under the same request id, so the
    //    answer already given is applied.
    cluster.add_node("node-c").await;
    cluster.llm.route_latest(
        "clean up",
        Turn::new().tool_call(
            "c1",
            "bash",
            &json!({"command": "echo cleaned"}).to_string(),
        ),
    );
    cluster.llm.route_latest("cleaned", Turn::text("all clean"));
    // Directed to node b (the owner now).
    let cid = cluster
        .client
        .send(SendMsg {
            ws_id: ws_id.clone(),
            message: "clean up".into(),
            ..SendMsg::default()
        })
        .await
        .unwrap();
    let asked = read_until(&mut events, |e| e.kind == "approval_request").await;
    let request_id = asked.last().unwrap().correlation_id.clone();
    cluster.node("node-b").kill().await;
    cluster
        .client
        .approve(&ws_id, &request_id, true, None, false)
        .await
        .unwrap();
    let rest = read_until(&mut events, |e| {
        e.kind == "turn_complete" && e.correlation_id == cid
    })
    .await;
    let again: Vec<_> = rest
        .iter()
        .filter(|e| e.kind == "approval_request")
        .collect();
    assert_eq!(again.len(), 1, "asked again after the takeover: {rest:#?}");
    assert_eq!(
        again[0].correlation_id, request_id,
        "under the same request id"
    );
    let result = rest
        .iter()
        .find(|e| e.kind == "tool_result")
        .expect("the approved call ran");
    assert!(result.str("output").contains("cleaned"), "{result:?}");
    let content = content_of(&rest);
    assert_eq!(content, "all clean");
    assert_eq!(cluster.owner(&ws_id).await.as_deref(), Some("node-c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_ride_out_a_redis_restart_without_losing_or_repeating_work() {
    let mut redis = PrivateRedis::start();
    let cluster = Cluster::start_on(&redis.url(), &["node-a"], Db::Sqlite, 60, &[]).await;
    cluster.llm.route_latest("before", Turn::text("ok"));
    let before = cluster
        .client
        .send_and_wait(SendRequest::new("before").timeout(WAIT))
        .await
        .unwrap();
    assert!(before.ok(), "{before:?}");
    let ws_id = before.ws_id.clone();

    // A turn streams while Redis goes down and comes back.
    let words: Vec<String> = (0..30).map(|i| format!("w{i} ")).collect();
    let mut turn = Turn::new();
    for word in &words {
        turn = turn.content(word);
    }
    cluster
        .llm
        .route_latest_slowly("during", turn, Duration::from_millis(50));
    let mut events = cluster.client.subscribe(&ws_id).await.unwrap();
    let cid = cluster
        .client
        .send(SendMsg {
            ws_id: ws_id.clone(),
            message: "during".into(),
            ..SendMsg::default()
        })
        .await
        .unwrap();
    read_until(&mut events, |e| e.kind == "content").await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.up();
    // The reader reconnects too; every delta of the turn arrives, once, in order (the deltas
    // that waited for Redis go out merged, as fewer `content` events).
    let mut seen = vec!["w0 ".to_owned()];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{seen:?}\n{}",
            cluster.logs()
        );
        let event = match events.next(Duration::from_secs(1)).await {
            Ok(Some(event)) => event,
            Ok(None) | Err(_) => continue,
        };
        match event.kind.as_str() {
            "content" => seen.push(event.str("text").to_owned()),
            "turn_complete" if event.correlation_id == cid => break,
            _ => {}
        }
    }
    assert_eq!(
        seen.concat(),
        words.concat(),
        "{seen:?}\n{}",
        cluster.logs()
    );
    // Acknowledged exactly once: nothing in flight, nothing queued, nothing dead. (The test's
    // own connection may need a command to notice the restart.)
    let mut state = None;
    for _ in 0..50 {
        let in_flight = cluster.transport.in_flight_len("node-a").await;
        let dead = cluster.transport.dead_letters(10).await;
        if let (Ok(in_flight), Ok(dead)) = (in_flight, dead) {
            state = Some((in_flight, dead.len()));
            if in_flight == 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, Some((0, 0)));
    cluster.llm.route_latest("after", Turn::text("still ok"));
    let after = cluster
        .client
        .send_and_wait(SendRequest::new("after").ws(&ws_id).timeout(WAIT))
        .await
        .unwrap();
    assert_eq!(after.content(), "still ok", "{}", cluster.logs());
}

/// End-to-end liveness: node a is up and its process keeps running, but its model backend
/// is down (circuit open) and a turn hangs there. It stops heartbeating and taking messages,
/// is no longer listed or routed to, and node b takes over its in-flight turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_work_is_not_routed_to_and_its_work_is_reclaimed() {
    let db = fresh_postgres_database().await.unwrap();
    let mut cluster = Cluster::start_with(&["node-b"], Db::Postgres(db), 2, &[]).await;
    let backend_a = turnstone_tests::llm::ScriptedLlm::start().await.unwrap();
    cluster
        .add_node_with(
            "node-a",
            &backend_a.base_url(),
            &[
                "--health-probe-interval",
                "0.2",
                "--circuit-breaker-threshold",
                "2",
            ],
        )
        .await;
    backend_a.route_latest("warm up", Turn::text("warm"));
    let warm = cluster
        .client
        .send_and_wait(SendRequest::new("warm up").target("node-a").timeout(WAIT))
        .await
        .unwrap();
    assert!(warm.ok(), "{warm:?}");
    let ws_id = warm.ws_id.clone();
    // The turn hangs on node a's backend, which then goes down.
    backend_a.route_latest_slowly("stuck job", Turn::text("never"), Duration::from_secs(3600));
    cluster.llm.route_latest("stuck job", Turn::text("rescued"));
    let mut events = cluster.client.subscribe(&ws_id).await.unwrap();
    let cid = cluster
        .client
        .send(SendMsg {
            ws_id: ws_id.clone(),
            message: "stuck job".into(),
            ..SendMsg::default()
        })
        .await
        .unwrap();
    read_until(&mut events, |e| {
        e.kind == "state_change" && e.str("state") == "thinking"
    })
    .await;
    backend_a.set_models_down(true);
    let rest = tokio::time::timeout(
        Duration::from_secs(20),
        read_until(&mut events, |e| {
            e.kind == "turn_complete" && e.correlation_id == cid
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{}", cluster.logs()));
    let content = content_of(&rest);
    assert_eq!(content, "rescued", "{}", cluster.logs());
    assert_eq!(cluster.owner(&ws_id).await.as_deref(), Some("node-b"));
    // Node a still runs, but is out of the cluster and takes no work.
    assert!(
        cluster.node("node-a").child.try_wait().unwrap().is_none(),
        "node a runs"
    );
    let live: Vec<String> = cluster
        .client
        .list_nodes()
        .await
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(live, ["node-b"]);
    cluster.llm.route_latest("new work", Turn::text("taken"));
    for _ in 0..3 {
        let result = cluster
            .client
            .send_and_wait(SendRequest::new("new work").timeout(WAIT))
            .await
            .unwrap();
        assert_eq!(result.content(), "taken");
        assert_eq!(
            cluster.owner(&result.ws_id).await.as_deref(),
            Some("node-b")
        );
    }
    assert!(cluster.node("node-a").log().contains("node cannot work"));
}

/// In-flight sends of `node`, once they settle at `want` (or after 10 s, whatever they are).
async fn in_flight_settles(cluster: &Cluster, node: &str, want: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = cluster.transport.in_flight_len(node).await.unwrap();
        if now == want || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A send is acknowledged only once its turn is stored. While the database holds the turn's
/// writes back (another session locks the conversations table), the client has its answer
/// but the message stays in flight — so a node killed then has the turn run again elsewhere
/// rather than leave it out of the history another node adopts — and it is acknowledged as
/// soon as the writes land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_acknowledged_only_once_its_turn_is_stored() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let db = fresh_postgres_database().await.unwrap();
    let cluster = Cluster::start_with(&["node-a"], Db::Postgres(db.clone()), 60, &[]).await;
    cluster.llm.route_latest("first", Turn::text("one"));
    cluster.llm.route_latest("second", Turn::text("two"));
    let first = cluster
        .client
        .send_and_wait(SendRequest::new("first").timeout(WAIT))
        .await
        .unwrap();
    assert!(first.ok(), "{first:?}");
    assert_eq!(in_flight_settles(&cluster, "node-a", 0).await, 0);

    let store = turnstone_actors::storage::Store::open_url(&db, 1)
        .await
        .unwrap();
    let lock = store.connection().begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let second = cluster
        .client
        .send_and_wait(SendRequest::new("second").ws(&first.ws_id).timeout(WAIT))
        .await
        .unwrap();
    assert!(second.ok() && second.content() == "two", "{second:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cluster.transport.in_flight_len("node-a").await.unwrap(),
        1,
        "answered but not stored: the send must stay in flight"
    );

    lock.rollback().await.unwrap();
    assert_eq!(in_flight_settles(&cluster, "node-a", 0).await, 0);
    let session = store
        .session_of_workstream(&first.ws_id)
        .await
        .unwrap()
        .unwrap();
    let texts: Vec<String> = store
        .load_history(&session)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| m.content)
        .collect();
    assert_eq!(texts, ["first", "one", "second", "two"]);
}
