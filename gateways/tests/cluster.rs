#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Several real `turnstone-server --redis-host …` processes on one real Redis, driven by the
//! Rust `TurnstoneClient`: generic work spreads, directed work lands on its node, follow-ups
//! follow ownership, approvals go through reply lists, bad input is refused with an error
//! event and a dead letter while the bridge keeps running.

mod cluster_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_support::{Cluster, Db};
use serde_json::json;
use turnstone_actors::mq::protocol::{CreateMsg, SendMsg};
use turnstone_actors::mq::{Event, Inbound, SendRequest};
use turnstone_runtime::remote::{MailboxAddress, Subscription};
use turnstone_tests::llm::Turn;

const WAIT: Duration = Duration::from_secs(20);

/// Sends `message` and returns the result with the node that announced the workstream.
async fn send(
    cluster: &Cluster,
    request: SendRequest,
) -> (turnstone_actors::mq::TurnResult, String) {
    let node = Arc::new(Mutex::new(String::new()));
    let seen = node.clone();
    let result = cluster
        .client
        .send_and_wait(request.timeout(WAIT).on_event(move |e: &Event| {
            if e.kind == "ws_created" {
                *seen.lock().unwrap() = e.str("node_id").to_owned();
            }
        }))
        .await
        .unwrap();
    let node = node.lock().unwrap().clone();
    (result, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_work_spreads_directed_work_lands_and_follow_ups_follow_ownership() {
    let cluster = Cluster::start(&["node-a", "node-b"], Db::Sqlite).await;
    for i in 0..8 {
        cluster
            .llm
            .route_latest(&format!("job {i}"), Turn::text(&format!("done {i}")));
    }
    // Generic work: new workstreams, wherever there is room.
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..8 {
        let (result, node) = send(&cluster, SendRequest::new(format!("job {i}"))).await;
        assert!(result.ok(), "{result:?}\n{}", cluster.logs());
        assert_eq!(result.content(), format!("done {i}"));
        assert_eq!(
            cluster.owner(&result.ws_id).await.as_deref(),
            Some(node.as_str())
        );
        by_node.entry(node).or_default().push(result.ws_id);
    }
    assert_eq!(
        by_node.keys().collect::<Vec<_>>(),
        ["node-a", "node-b"],
        "both nodes took generic work: {by_node:?}"
    );
    // Directed work lands on its node.
    cluster.llm.route_latest("directed", Turn::text("here"));
    for target in ["node-a", "node-b"] {
        let (result, node) = send(&cluster, SendRequest::new("directed").target(target)).await;
        assert!(result.ok(), "{result:?}");
        assert_eq!(node, target);
    }
    // A follow-up pushed to the shared queue (as a client that does not route would) is
    // forwarded to the owner, which continues the conversation.
    let ws_on_a = by_node["node-a"][0].clone();
    cluster
        .llm
        .route_latest("follow-up", Turn::text("followed"));
    for _ in 0..4 {
        let mut global = cluster.client.subscribe(&ws_on_a).await.unwrap();
        let mut message = Inbound::Send(SendMsg {
            ws_id: ws_on_a.clone(),
            message: "follow-up".into(),
            ..SendMsg::default()
        });
        let raw = message.encode();
        cluster
            .transport
            .push(&MailboxAddress::shared("inbound"), raw)
            .await
            .unwrap();
        let mut content = String::new();
        loop {
            let event = global.next(WAIT).await.unwrap().expect("turn events");
            match event.kind.as_str() {
                "content" => content.push_str(event.str("text")),
                "turn_complete" if event.correlation_id == message.correlation_id() => break,
                "error" => panic!("{event:?}"),
                _ => {}
            }
        }
        assert_eq!(content, "followed");
    }
    assert_eq!(cluster.owner(&ws_on_a).await.as_deref(), Some("node-a"));
    // The conversation has every turn: the model saw the history on node a.
    let last = cluster
        .llm
        .chat_bodies()
        .into_iter()
        .rfind(|b| b["messages"].to_string().contains("follow-up"))
        .unwrap();
    let sent = last["messages"].to_string();
    assert!(
        sent.contains("job") && sent.matches("follow-up").count() >= 4,
        "{sent}"
    );
}

/// The next event published on a subscribed channel.
async fn next_json(subscription: &mut Subscription) -> serde_json::Value {
    let raw = tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("an event in time")
        .expect("the channel");
    serde_json::from_str(&raw).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turns_states_reach_the_workstream_global_and_cluster_channels() {
    // The bridge reads its node's own state changes typed; what it publishes must be what
    // 0.4.1's bridge made of the node's `ws_state` JSON: `state_change` on the workstream's
    // and the global channel, `cluster_state` with the node and the workstream's figures on
    // the cluster channel.
    let cluster = Cluster::start(&["node-a"], Db::Sqlite).await;
    let mut clustered = cluster
        .transport
        .subscribe(&format!("{}:events:cluster", cluster.prefix))
        .await
        .unwrap();
    // State changes are published, not kept: 0.4.1's clients hear them on the channels.
    let mut global = cluster
        .transport
        .subscribe(&format!("{}:events:global", cluster.prefix))
        .await
        .unwrap();
    cluster
        .llm
        .route_latest("states", Turn::text("fine").usage(120, 30));
    let (result, node) = send(&cluster, SendRequest::new("states")).await;
    assert!(result.ok(), "{result:?}\n{}", cluster.logs());
    assert_eq!(node, "node-a");
    let ws_id = result.ws_id.clone();
    let mut on_global = Vec::new();
    while on_global.last().map(String::as_str) != Some("idle") {
        let event = next_json(&mut global).await;
        if event["type"] == "state_change" && event["ws_id"] == ws_id.as_str() {
            on_global.push(event["state"].as_str().unwrap().to_owned());
        }
    }
    assert!(on_global.contains(&"thinking".to_owned()), "{on_global:?}");
    let mut on_cluster = Vec::new();
    let idle = loop {
        let event = next_json(&mut clustered).await;
        if event["type"] == "cluster_state" && event["ws_id"] == ws_id.as_str() {
            on_cluster.push(event["state"].as_str().unwrap().to_owned());
            if event["state"] == "idle" {
                break event;
            }
        }
    };
    assert!(
        on_cluster.contains(&"thinking".to_owned()),
        "{on_cluster:?}"
    );
    let mut keys: Vec<&str> = idle
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "activity",
            "activity_state",
            "context_ratio",
            "correlation_id",
            "node_id",
            "state",
            "timestamp",
            "tokens",
            "type",
            "ws_id"
        ],
        "{idle}"
    );
    assert_eq!(idle["node_id"], "node-a");
    // The turn's 150 tokens (a title request may add its own).
    assert!(idle["tokens"].as_u64().unwrap() >= 150, "{idle}");
    let ratio = idle["context_ratio"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ratio), "{idle}");
    assert!(idle["activity"].is_string() && idle["activity_state"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_health_nodes_command_and_close() {
    let cluster = Cluster::start(&["node-a"], Db::Sqlite).await;
    let created = cluster
        .client
        .ask(
            Inbound::CreateWorkstream(CreateMsg {
                name: "research".into(),
                ..CreateMsg::default()
            }),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(created.kind, "ws_created");
    assert_eq!(created.str("name"), "research");
    assert_eq!(created.str("node_id"), "node-a");
    let ws_id = created.ws_id.clone();
    assert_eq!(cluster.owner(&ws_id).await.as_deref(), Some("node-a"));

    let list = cluster
        .client
        .ask(Inbound::ListWorkstreams(Default::default()), WAIT)
        .await
        .unwrap();
    assert_eq!(list.kind, "ws_list");
    let names: Vec<_> = list.fields["workstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"research".to_owned()), "{names:?}");

    let health = cluster
        .client
        .ask(Inbound::Health(Default::default()), WAIT)
        .await
        .unwrap();
    assert_eq!(health.kind, "health_response");
    assert_eq!(health.fields["data"]["status"], "ok");
    assert_eq!(health.fields["data"]["node_id"], "node-a");

    let nodes = cluster
        .client
        .ask(Inbound::ListNodes(Default::default()), WAIT)
        .await
        .unwrap();
    assert_eq!(nodes.kind, "node_list");
    let node = &nodes.fields["nodes"][0];
    assert_eq!(node["node_id"], "node-a");
    assert_eq!(node["server_url"], cluster.nodes[0].url.as_str());
    assert!(node["started"].as_f64().unwrap() > 0.0);

    // A command answers with an ack and its output on the workstream's stream.
    let mut events = cluster.client.subscribe(&ws_id).await.unwrap();
    let cid = cluster.client.command(&ws_id, "/help").await.unwrap();
    let mut acked = false;
    let mut info = false;
    while !(acked && info) {
        let event = events.next(WAIT).await.unwrap().expect("command events");
        acked |= event.kind == "ack" && event.correlation_id == cid && event.str("status") == "ok";
        info |= event.kind == "info";
    }

    // Closing announces ws_closed and clears ownership (0.4.1 left the owner key).
    let mut global = cluster.client.subscribe_global().await.unwrap();
    let cid = cluster.client.close_workstream(&ws_id).await.unwrap();
    let mut closed = false;
    while !closed {
        let event = global.next(WAIT).await.unwrap().expect("ws_closed");
        closed = event.kind == "ws_closed" && event.ws_id == ws_id;
    }
    let ack = loop {
        let event = events.next(WAIT).await.unwrap().expect("close ack");
        if event.kind == "ack" && event.correlation_id == cid {
            break event;
        }
    };
    assert_eq!(ack.str("status"), "ok");
    assert_eq!(cluster.owner(&ws_id).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_go_through_reply_lists_and_time_out_as_denials() {
    let cluster =
        Cluster::start_with(&["node-a"], Db::Sqlite, 60, &["--approval-timeout", "2"]).await;
    let bash = |id: &str, cmd: &str| {
        Turn::new().tool_call(id, "bash", &json!({"command": cmd}).to_string())
    };
    cluster
        .llm
        .route_latest("please run", bash("c1", "echo approved-run"));
    // Answered: the approval request carries the request id; the answer runs the call.
    let answered = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let requests = answered.clone();
    let client = cluster.client.clone();
    let handle = tokio::spawn({
        async move {
            client
                .send_and_wait(
                    SendRequest::new("please run")
                        .auto_approve(false)
                        .timeout(WAIT)
                        .on_event(move |e: &Event| {
                            if e.kind == "approval_request" {
                                requests
                                    .lock()
                                    .unwrap()
                                    .push((e.ws_id.clone(), e.correlation_id.clone()));
                            }
                        }),
                )
                .await
                .unwrap()
        }
    });
    let (ws_id, request_id) = loop {
        if let Some(r) = answered.lock().unwrap().first().cloned() {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(request_id.len(), 12);
    // After the call the model answers from the result.
    cluster
        .llm
        .route_latest("approved-run", Turn::text("it ran"));
    cluster
        .client
        .approve(&ws_id, &request_id, true, None, false)
        .await
        .unwrap();
    let result = handle.await.unwrap();
    assert!(result.ok(), "{result:?}\n{}", cluster.logs());
    assert_eq!(result.tool_results.len(), 1);
    assert!(
        result.tool_results[0].1.contains("approved-run"),
        "{result:?}"
    );
    assert_eq!(result.content(), "it ran");

    // Unanswered: denied after --approval-timeout, and the model is told so.
    cluster
        .llm
        .route_latest("never answered", bash("c2", "echo should-not-run"));
    cluster
        .llm
        .route_latest("Approval timed out", Turn::text("understood"));
    let result = cluster
        .client
        .send_and_wait(
            SendRequest::new("never answered")
                .ws(&ws_id)
                .auto_approve(false)
                .timeout(WAIT),
        )
        .await
        .unwrap();
    assert!(!result.timed_out, "{}", cluster.logs());
    assert_eq!(result.tool_results.len(), 1);
    assert!(
        result.tool_results[0].1.contains("Approval timed out"),
        "{result:?}"
    );
    assert!(!result.tool_results[0].1.contains("should-not-run"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_an_error_event_and_a_dead_letter_and_the_bridge_keeps_going() {
    let cluster = Cluster::start(&["node-a"], Db::Sqlite).await;
    let shared = MailboxAddress::shared("inbound");
    let unknown_ws = "0123456789abcdef0123456789abcdef";
    let cases = [
        ("{not json".to_owned(), "", "malformed message"),
        (json!({"type": "explode", "correlation_id": "c-unknown"}).to_string(), "", "unknown message type"),
        (json!({"type": "send", "ws_id": unknown_ws, "correlation_id": "c-missing"}).to_string(), unknown_ws, "needs a message"),
        (json!({"type": "send", "message": 42, "correlation_id": "c-type"}).to_string(), "", "invalid send message"),
        (json!({"type": "send", "message": "x".repeat(2 * 1024 * 1024)}).to_string(), "", "exceeds the limit"),
        (json!({"type": "send", "ws_id": unknown_ws, "message": "hi", "correlation_id": "c-ws"}).to_string(), unknown_ws, "Unknown workstream"),
        (json!({"type": "send", "message": "hi", "target_node": "node-zz", "correlation_id": "c-node"}).to_string(), "", "Unknown node"),
    ];
    let mut global = cluster.client.subscribe_global().await.unwrap();
    let mut on_ws = cluster.client.subscribe(unknown_ws).await.unwrap();
    for (raw, _, _) in &cases {
        cluster.transport.push(&shared, raw.clone()).await.unwrap();
    }
    for (_, ws, expected) in &cases {
        let stream = if ws.is_empty() {
            &mut global
        } else {
            &mut on_ws
        };
        let event = stream.next(WAIT).await.unwrap().expect("an error event");
        assert_eq!(event.kind, "error", "{event:?}");
        assert!(
            event.str("message").contains(expected),
            "{expected}: {event:?}"
        );
    }
    // Every one is kept with its reason, none is lost, none is still in flight.
    let deadline = tokio::time::Instant::now() + WAIT;
    let dead = loop {
        let dead = cluster.transport.dead_letters(100).await.unwrap();
        if dead.len() == cases.len() || tokio::time::Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead.len(), cases.len());
    for ((raw, _, expected), letter) in cases.iter().zip(&dead) {
        assert_eq!(&letter.payload, raw);
        assert!(letter.reason.contains(expected), "{}", letter.reason);
        assert_eq!(letter.node, "node-a");
    }
    assert_eq!(cluster.transport.in_flight_len("node-a").await.unwrap(), 0);
    // The bridge still works.
    cluster.llm.route_latest("still there", Turn::text("yes"));
    let (result, node) = send(&cluster, SendRequest::new("still there")).await;
    assert_eq!(
        (result.content().as_str(), node.as_str()),
        ("yes", "node-a")
    );
}

/// Turnstone 0.4.1's Python client (pip `turnstone[mq]==0.4.1`), unmodified: it subscribes to
/// a new workstream's channel only after `ws_created`, so the node holds the first events
/// until it listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnstone_041_python_client_works_unmodified() {
    let python = std::env::var("TURNSTONE_TEST_TS041_PYTHON")
        .expect("TURNSTONE_TEST_TS041_PYTHON (run scripts/test)");
    let cluster = Cluster::start(&["node-a", "node-b"], Db::Sqlite).await;
    let rounds = 6;
    for i in 0..rounds {
        cluster
            .llm
            .route_latest(&format!("py new {i}"), Turn::text(&format!("hello {i}")));
    }
    cluster
        .llm
        .route_latest("py follow-up", Turn::text("followed"));
    cluster.llm.route_latest("py directed", Turn::text("on b"));
    cluster.llm.route_latest(
        "py needs approval",
        Turn::new().tool_call("c1", "bash", &json!({"command": "echo py-ran"}).to_string()),
    );
    cluster.llm.route_latest("py-ran", Turn::text("ran it"));
    let redis = turnstone_tests::services::redis_url().unwrap();
    let (host, port) = turnstone_tests::services::authority(&redis)
        .split_once(':')
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mq_client_041.py");
    let output = tokio::process::Command::new(python)
        .args([
            script,
            host,
            port,
            &cluster.prefix,
            "node-b",
            &rounds.to_string(),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for (i, result) in seen["new"].as_array().unwrap().iter().enumerate() {
        assert_eq!(result["timed_out"], false, "round {i}: {seen:#}");
        assert_eq!(
            result["content"],
            format!("hello {i}"),
            "round {i}: {seen:#}"
        );
        assert_eq!(result["ok"], true);
    }
    assert_eq!(seen["follow_up"]["content"], "followed", "{seen:#}");
    assert_eq!(seen["directed"]["content"], "on b");
    assert_eq!(seen["directed_node"], "node-b");
    let approved = &seen["approved"];
    assert_eq!(approved["content"], "ran it", "{seen:#}");
    assert_eq!(approved["tools"][0][0], "bash");
    assert!(approved["tools"][0][1].as_str().unwrap().contains("py-ran"));
    assert_eq!(seen["nodes"], json!(["node-a", "node-b"]));
}

/// `turnstone-bridge --server-url …`: the same bridge actor in front of a plain node server's
/// HTTP/SSE API, as 0.4.1 deploys it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_bridge_fronts_a_node_server_over_http() {
    let cluster = Cluster::start(&[], Db::Sqlite).await;
    let work = tempfile::tempdir().unwrap();
    let (_server, server_url) =
        cluster_support::plain_server(&cluster.llm.base_url(), work.path()).await;
    let redis = turnstone_tests::services::redis_url().unwrap();
    let (host, port) = turnstone_tests::services::authority(&redis)
        .split_once(':')
        .unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstone-bridge"));
    cmd.args(["--server-url", &server_url])
        .args(["--redis-host", host, "--redis-port", port])
        .args([
            "--redis-prefix",
            &cluster.prefix,
            "--approval-timeout",
            "30",
        ])
        .env("HOME", work.path())
        .env_remove("REDIS_HOST")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let (_bridge, announced, log) =
        cluster_support::spawn_until(cmd, "Turnstone bridge for ", "turnstone-bridge").await;
    // The node id is the server's own (from /health).
    let node_id = announced.rsplit(" as node ").next().unwrap().to_owned();
    assert!(!node_id.is_empty() && node_id != "node", "{announced}");
    cluster.wait_for_nodes(&[&node_id]).await;
    let nodes = cluster.client.list_nodes().await.unwrap();
    assert_eq!(nodes[0]["server_url"], server_url.as_str());

    // A turn with a tool call that needs approval, answered through the reply list.
    cluster.llm.route_latest(
        "over http",
        Turn::new().tool_call(
            "c1",
            "bash",
            &json!({"command": "echo via-http"}).to_string(),
        ),
    );
    cluster.llm.route_latest("via-http", Turn::text("bridged"));
    let requests = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let seen = requests.clone();
    let client = cluster.client.clone();
    let turn = tokio::spawn(async move {
        client
            .send_and_wait(
                SendRequest::new("over http")
                    .auto_approve(false)
                    .timeout(WAIT)
                    .on_event(move |e: &Event| {
                        if e.kind == "approval_request" {
                            seen.lock()
                                .unwrap()
                                .push((e.ws_id.clone(), e.correlation_id.clone()));
                        }
                    }),
            )
            .await
            .unwrap()
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    let (ws_id, request_id) = loop {
        if let Some(r) = requests.lock().unwrap().first().cloned() {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no approval request:\n{}",
            log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cluster
        .client
        .approve(&ws_id, &request_id, true, None, false)
        .await
        .unwrap();
    let result = turn.await.unwrap();
    assert!(
        result.ok(),
        "{result:?}\n{}",
        log.lock().unwrap().join("\n")
    );
    assert_eq!(result.content(), "bridged");
    assert!(result.tool_results[0].1.contains("via-http"));
    assert_eq!(cluster.owner(&ws_id).await, Some(node_id.clone()));
    // Follow-ups reach the same workstream; closing clears the owner key.
    cluster.llm.route_latest("again", Turn::text("again ok"));
    let again = cluster
        .client
        .send_and_wait(SendRequest::new("again").ws(&ws_id).timeout(WAIT))
        .await
        .unwrap();
    assert_eq!(again.content(), "again ok");
    let mut global = cluster.client.subscribe_global().await.unwrap();
    cluster.client.close_workstream(&ws_id).await.unwrap();
    loop {
        let event = global.next(WAIT).await.unwrap().expect("ws_closed");
        if event.kind == "ws_closed" && event.ws_id == ws_id {
            break;
        }
    }
    assert_eq!(cluster.owner(&ws_id).await, None);
}

/// SIGTERM — what systemd, Kubernetes and `docker stop` send — stops a node cleanly: it
/// leaves the cluster at once (its heartbeat key deleted, not left to expire) and the process
/// exits with status 0, not killed by the signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_cleanly() {
    let mut cluster = Cluster::start(&["node-t"], Db::Sqlite).await;
    cluster
        .llm
        .route_latest("stop after this", Turn::text("stored"));
    let (result, node) = send(&cluster, SendRequest::new("stop after this")).await;
    assert!(result.ok(), "{result:?}\n{}", cluster.logs());
    assert_eq!(node, "node-t");
    let live = |nodes: Vec<(String, String)>| nodes.iter().any(|(n, _)| n == "node-t");
    assert!(live(cluster.transport.live_nodes().await.unwrap()));

    let proc = &mut cluster.nodes[0];
    let pid = proc.child.id().unwrap().to_string();
    let sent = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(WAIT, proc.child.wait())
        .await
        .expect("the node did not stop within 20 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}\n{}", proc.log());
    assert!(
        !live(cluster.transport.live_nodes().await.unwrap()),
        "the stopped node still heartbeats"
    );
}
