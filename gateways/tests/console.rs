#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The cluster console over real `turnstone-server` processes on a real Redis, simulated nodes
//! registered as `turnstone-sim`'s are, and nodes that answer badly: discovery, polling, the
//! cluster API and its event stream, node-targeted creation, the reverse proxy, bad input, and
//! recovery from Redis restarts and failing nodes.

mod cluster_support;
mod console_support;

use std::time::Duration;

use cluster_support::{Cluster, Db};
use console_support::{
    Misbehaviour, TestConsole, bad_node, cluster_event, node_heartbeat, quick, sim_heartbeat,
};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use turnstone_actors::config::{AuthConfig, StaticToken, TokenRole};
use turnstone_gateways::console::link::Link;
use turnstone_gateways::web::service_token::Credentials;
use turnstone_runtime::remote::{RedisServer, RedisTransport, Transport};
use turnstone_tests::llm::Turn;
use turnstone_tests::services::redis_url;

fn ids(list: &Value, key: &str, field: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n[field].as_str().unwrap().to_owned())
        .collect()
}

/// Reads SSE `data` payloads from `url` until `want` holds of one (15 s at most).
async fn sse_until(
    http: &reqwest::Client,
    url: &str,
    want: impl Fn(&Value) -> bool,
    trigger: impl std::future::Future<Output = ()>,
) -> Value {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut events = response.bytes_stream().eventsource();
    trigger.await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the awaited event did not come")
            .expect("stream ended")
            .unwrap();
        let Ok(value) = serde_json::from_str::<Value>(&next.data) else {
            continue;
        };
        if want(&value) {
            return value;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_sees_real_and_simulated_nodes_and_creates_workstreams_where_asked() {
    let mut cluster = Cluster::start(&["node-a"], Db::Sqlite).await;
    let llm = cluster.llm.base_url();
    cluster
        .add_node_with("node-b", &llm, &["--max-workstreams", "3"])
        .await;
    let console = TestConsole::start(&cluster.redis, &cluster.prefix).await;
    for i in 0..3 {
        sim_heartbeat(
            &cluster.transport,
            &format!("sim-{i:04}"),
            Duration::from_secs(60),
        )
        .await;
    }
    // Discovery finds all five; the real nodes are polled (version, health, workstreams).
    let nodes = console
        .until(
            "/v1/api/cluster/nodes?sort=name",
            "five nodes, real ones polled",
            |b| {
                b["total"] == 5
                    && b["nodes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|n| n["node_id"].as_str().unwrap().starts_with("node-"))
                        .all(|n| n["version"] != "" && n["last_seen"].as_f64().unwrap() > 0.0)
            },
        )
        .await;
    assert_eq!(
        ids(&nodes, "nodes", "node_id"),
        ["node-a", "node-b", "sim-0000", "sim-0001", "sim-0002"]
    );
    let a = &nodes["nodes"][0];
    assert_eq!(a["reachable"], true);
    assert_eq!(a["health"]["node_id"], "node-a");
    assert_eq!(
        a["ws_total"], 1,
        "each server starts with its default workstream"
    );
    assert_eq!(a["max_ws"], 10);
    assert_eq!(
        nodes["nodes"][1]["max_ws"], 3,
        "max_ws from the node's heartbeat"
    );
    assert_eq!(nodes["nodes"][2]["server_url"], "sim://sim-0000");
    assert_eq!(
        nodes["nodes"][2]["last_seen"], 0.0,
        "simulated nodes are not polled"
    );

    // A simulated node's workstreams come from its events.
    cluster_event(
        &cluster.transport,
        &cluster.prefix,
        json!({"type": "ws_created", "ws_id": "simws01", "name": "sim-ws-0001", "node_id": "sim-0001"}),
    )
    .await;
    cluster_event(
        &cluster.transport,
        &cluster.prefix,
        json!({"type": "cluster_state", "ws_id": "simws01", "node_id": "sim-0001",
            "state": "running", "tokens": 1234, "context_ratio": 0.2,
            "activity": "⚙ bash: ls", "activity_state": "tool"}),
    )
    .await;
    let running = console
        .until(
            "/v1/api/cluster/workstreams?state=running",
            "the simulated workstream runs",
            |b| b["total"] == 1,
        )
        .await;
    assert_eq!(running["workstreams"][0]["node"], "sim-0001");
    assert_eq!(running["workstreams"][0]["tokens"], 1234);
    assert_eq!(running["workstreams"][0]["activity"], "⚙ bash: ls");
    let overview = console.get("/v1/api/cluster/overview").await.1;
    assert_eq!(overview["nodes"], 5);
    assert_eq!(overview["workstreams"], 3);
    assert_eq!(overview["states"]["running"], 1);
    assert_eq!(overview["states"]["idle"], 2);
    assert_eq!(overview["version_drift"], false);
    assert_eq!(overview["versions"], json!([env!("CARGO_PKG_VERSION")]));
    let health = console.get("/health").await.1;
    assert_eq!(health["service"], "turnstone-console");
    assert_eq!(health["nodes"], 5);

    // Directed creation: the workstream appears on that node and its first turn runs.
    cluster
        .llm
        .route_latest("count the files", Turn::text("There are three files."));
    let (status, created) = console
        .post(
            "/v1/api/cluster/workstreams/new",
            &json!({"node_id": "node-b", "name": "from the console", "initial_message": "count the files"}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["target_node"], "node-b");
    assert_eq!(created["correlation_id"].as_str().unwrap().len(), 12);
    let on_b = console
        .until(
            "/v1/api/cluster/workstreams?node=node-b&search=FROM THE",
            "the new workstream on node-b",
            |b| b["total"] == 1,
        )
        .await;
    assert_eq!(on_b["workstreams"][0]["name"], "from the console");
    cluster.wait_for_model_request("count the files").await;

    // Auto: the reachable node with the most room (node-a has 1 of 10, node-b 2 of 3;
    // simulated nodes, never polled, count as reachable with 10 free).
    let (status, auto) = console
        .post(
            "/v1/api/cluster/workstreams/new",
            &json!({"node_id": "auto"}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        auto["target_node"].as_str().unwrap().starts_with("sim-000"),
        "{auto}"
    );
    let (status, pool) = console
        .post(
            "/v1/api/cluster/workstreams/new",
            &json!({"node_id": "pool"}),
        )
        .await;
    assert_eq!((status, pool["target_node"].as_str()), (200, Some("pool")));

    // A node that dies: marked unreachable, the others still polled; it is lost once its
    // heartbeat expires (here: deleted, as a TTL ends).
    cluster.node("node-a").kill().await;
    console
        .until("/v1/api/cluster/node/node-a", "node-a unreachable", |b| {
            b["reachable"] == false
        })
        .await;
    let b_seen = console.get("/v1/api/cluster/node/node-b").await.1["last_seen"]
        .as_f64()
        .unwrap();
    console
        .until("/v1/api/cluster/node/node-b", "node-b still polled", |b| {
            b["last_seen"].as_f64().unwrap() > b_seen && b["reachable"] == true
        })
        .await;
    let (_, auto) = console
        .post("/v1/api/cluster/workstreams/new", &json!({}))
        .await;
    assert_ne!(auto["target_node"], "node-a", "never an unreachable node");
    cluster
        .transport
        .delete(&format!("{}:node:node-a", cluster.prefix))
        .await
        .unwrap();
    console
        .until("/v1/api/cluster/nodes", "node-a lost", |b| b["total"] == 4)
        .await;
    let (status, _) = console.get("/v1/api/cluster/node/node-a").await;
    assert_eq!(status, 404);
    console.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let (redis, prefix, transport) = console_support::fresh_cluster("cb").await;
    let console = TestConsole::start(&redis, &prefix).await;
    let new = "/v1/api/cluster/workstreams/new";
    // No node yet: auto has nowhere to go.
    let (status, body) = console.post(new, &json!({"node_id": "auto"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("No reachable nodes available"))
    );
    sim_heartbeat(&transport, "sim-0001", Duration::from_secs(60)).await;
    console
        .until("/v1/api/cluster/nodes", "the node", |b| b["total"] == 1)
        .await;
    let (status, body) = console.post(new, &json!({"node_id": "nope"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("Node not found"))
    );
    let (status, body) = console.post(new, &json!({"node_id": "a/b"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = console.post(new, &json!({"name": 7})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            400,
            Some("node_id, name, model, and initial_message must be strings")
        )
    );
    let r = console
        .http
        .post(console.url(new))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "Invalid JSON body"
    );
    // A body over the limit is refused from its announced length, before it is sent (a
    // client still writing it might see the connection close instead of the answer).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(console.addr).await.unwrap();
        let head = format!(
            "POST {new} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            2 * 1024 * 1024
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 512];
        let n = socket.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"error\""), "{answer}");
    }
    // Long fields are cut, not refused.
    let (status, body) = console
        .post(
            new,
            &json!({"node_id": "sim-0001", "name": "n".repeat(1000)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for (path, want) in [
        ("/v1/api/cluster/node/a%2Fb", 400),
        (&format!("/v1/api/cluster/node/{}", "x".repeat(300)), 400),
        ("/v1/api/cluster/node/unknown", 404),
        ("/node/unknown/", 404),
        ("/node/a..b%2F/", 400),
        ("/node/%C3%A9t%C3%A9/", 400),
        // A simulated node has no UI to proxy.
        ("/node/sim-0001/", 502),
        ("/v1/api/nothing", 404),
    ] {
        let (status, body) = console.get(path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    // Paging parameters out of range are clamped, as 0.4.1 does.
    let page = console
        .get("/v1/api/cluster/workstreams?page=-4&per_page=100000&sort=bogus")
        .await
        .1;
    assert_eq!(
        (page["page"].as_u64(), page["per_page"].as_u64()),
        (Some(1), Some(200))
    );
    console.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_answer_badly_are_unreachable_and_the_rest_is_still_polled() {
    let (redis, prefix, transport) = console_support::fresh_cluster("cp").await;
    let garbage = bad_node(Misbehaviour::Garbage).await;
    let huge = bad_node(Misbehaviour::Huge).await;
    let hang = bad_node(Misbehaviour::Hang).await;
    let cluster = Cluster::start_on(&redis, &[], Db::Sqlite, 60, &[]).await;
    let mut cluster = Cluster {
        prefix: prefix.clone(),
        transport: transport.clone(),
        client: turnstone_actors::mq::TurnstoneClient::new(transport.clone()),
        ..cluster
    };
    cluster.add_node("good").await;
    node_heartbeat(&transport, "garbage", &garbage.url).await;
    node_heartbeat(&transport, "huge", &huge.url).await;
    node_heartbeat(&transport, "hang", &hang.url).await;
    let console = TestConsole::start_with(
        Link::redis(&redis, &prefix),
        Credentials::Token("console-secret".into()),
        console_support::open_auth(),
        quick(),
    )
    .await;
    let nodes = console
        .until(
            "/v1/api/cluster/nodes?sort=name",
            "three bad, one good",
            |b| {
                let n = b["nodes"].as_array().unwrap();
                n.len() == 4
                    && n.iter().all(|n| {
                        (n["node_id"] == "good") == (n["reachable"] == true)
                            && (n["node_id"] != "good" || n["last_seen"].as_f64().unwrap() > 0.0)
                    })
            },
        )
        .await;
    let good_seen = nodes["nodes"][1]["last_seen"].as_f64().unwrap();
    console
        .until("/v1/api/cluster/node/good", "good still polled", |b| {
            b["last_seen"].as_f64().unwrap() > good_seen
        })
        .await;
    // The console's own token went to the nodes.
    assert!(
        garbage
            .authorizations
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer console-secret")
    );
    // Failing pollers are restarted by their supervisor, with backoff.
    let counter = |metrics: &str, name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let restarted = "turnstone_supervision_decisions_total{decision=\"restarted\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let metrics = loop {
        let metrics = console
            .http
            .get(console.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if counter(&metrics, restarted) >= 3.0 {
            break metrics;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(metrics.contains("turnstone_console_nodes 4"), "{metrics}");
    assert!(
        metrics.contains("turnstone_console_nodes_reachable 1"),
        "{metrics}"
    );
    assert!(
        counter(&metrics, "turnstone_console_poll_failures_total ") >= 3.0,
        "{metrics}"
    );
    console.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_carries_cluster_events_and_node_changes() {
    let (redis, prefix, transport) = console_support::fresh_cluster("ce").await;
    let console = TestConsole::start(&redis, &prefix).await;
    let url = console.url("/v1/api/cluster/events");
    let t = transport.clone();
    let joined = sse_until(
        &console.http,
        &url,
        |e| e["type"] == "node_joined",
        async move { sim_heartbeat(&t, "sim-0007", Duration::from_secs(60)).await },
    )
    .await;
    assert_eq!(joined["node_id"], "sim-0007");
    let (t, p) = (transport.clone(), prefix.clone());
    let state = sse_until(
        &console.http,
        &url,
        |e| e["type"] == "cluster_state",
        async move {
            cluster_event(
                &t,
                &p,
                json!({"type": "cluster_state", "ws_id": "w1", "node_id": "sim-0007", "state": "thinking"}),
            )
            .await;
        },
    )
    .await;
    assert_eq!(state["state"], "thinking");
    let t = transport.clone();
    let p = prefix.clone();
    let lost = sse_until(
        &console.http,
        &url,
        |e| e["type"] == "node_lost",
        async move {
            t.delete(&format!("{p}:node:sim-0007")).await.unwrap();
        },
    )
    .await;
    assert_eq!(lost["node_id"], "sim-0007");
    console.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_the_console_loses_no_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path()).unwrap();
    let url = redis.url();
    let prefix = "turnstone";
    let transport: std::sync::Arc<dyn Transport> =
        std::sync::Arc::new(RedisTransport::connect(&url, prefix).await.unwrap());
    let console = TestConsole::start(&url, prefix).await;
    for i in 0..5 {
        sim_heartbeat(&transport, &format!("sim-{i:04}"), Duration::from_secs(60)).await;
    }
    console
        .until("/v1/api/cluster/nodes", "five nodes", |b| b["total"] == 5)
        .await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = console.get("/v1/api/cluster/overview").await;
    assert_eq!(
        (status, body["nodes"].as_u64()),
        (200, Some(5)),
        "serves what it knows"
    );
    redis.up().unwrap();
    // After the restart the nodes renew their heartbeats (as soon as their connection is
    // back) and their events flow again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for i in 0..5 {
        let meta = json!({"server_url": format!("sim://sim-{i:04}"), "max_ws": 10});
        while transport
            .heartbeat(
                &format!("sim-{i:04}"),
                meta.to_string(),
                Duration::from_secs(60),
            )
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "Redis did not come back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    loop {
        let _ = transport
            .publish(
                &format!("{prefix}:events:cluster"),
                json!({"type": "ws_created", "ws_id": "after", "name": "after", "node_id": "sim-0003"})
                    .to_string(),
            )
            .await;
        let (_, page) = console.get("/v1/api/cluster/workstreams").await;
        if page["total"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, nodes) = console.get("/v1/api/cluster/nodes").await;
    assert_eq!(nodes["total"], 5, "no node lost");
    console.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_reaches_a_node_with_the_consoles_token_never_the_users() {
    // Console users hold tokens of their own; the console reaches nodes with its own.
    let cluster = Cluster::start(&["secure"], Db::Sqlite).await;
    let recorder = bad_node(Misbehaviour::Garbage).await;
    node_heartbeat(&cluster.transport, "recorder", &recorder.url).await;
    let console = TestConsole::start_with(
        Link::redis(&cluster.redis, &cluster.prefix),
        Credentials::Token("console-secret".into()),
        AuthConfig {
            enabled: true,
            tokens: vec![
                StaticToken {
                    value: "reader".into(),
                    role: TokenRole::Read,
                },
                StaticToken {
                    value: "writer".into(),
                    role: TokenRole::Full,
                },
            ],
            ..AuthConfig::default()
        },
        quick(),
    )
    .await;
    let get = |path: &str, token: Option<&str>| {
        let mut r = console.http.get(console.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(
        get("/v1/api/cluster/overview", None)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(get("/node/secure/", None).await.unwrap().status(), 401);
    assert_eq!(get("/health", None).await.unwrap().status(), 200);
    assert_eq!(
        get("/", None).await.unwrap().status(),
        200,
        "the login page"
    );
    let overview = get("/v1/api/cluster/overview", Some("reader"))
        .await
        .unwrap();
    assert_eq!(overview.status(), 200);
    let r = console
        .http
        .post(console.url("/v1/api/cluster/workstreams/new"))
        .bearer_auth("reader")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = get("/v1/api/cluster/node/secure", Some("reader"))
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The page, rewritten.
    let page = get("/node/secure/", Some("reader")).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("src=\"/node/secure/static/app.js\""),
        "{html}"
    );
    assert!(html.contains("data-prefix=\"/node/secure\""));
    assert!(html.contains("turnstone-console-banner"));
    let js = get("/node/secure/static/app.js", Some("reader"))
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    // The API: the node's own sign-in is the console's.
    let status = get("/node/secure/v1/api/auth/status", Some("reader"))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(status["setup_required"], false);
    let list = get("/node/secure/v1/api/workstreams", Some("reader"))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let ws = list["workstreams"][0]["id"].as_str().unwrap().to_owned();
    // Writing through the proxy needs the console's write scope.
    let send = |token: &'static str| {
        console
            .http
            .post(console.url("/node/secure/v1/api/send"))
            .bearer_auth(token)
            .json(&json!({"ws_id": ws, "message": "hello through the console"}))
            .send()
    };
    assert_eq!(send("reader").await.unwrap().status(), 403);
    cluster
        .llm
        .route_latest("hello through the console", Turn::text("Hi from the node."));
    // The workstream's events, streamed through the proxy.
    let events_url = console.url(&format!("/node/secure/v1/api/events?ws_id={ws}"));
    let response = console
        .http
        .get(&events_url)
        .bearer_auth("reader")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = response.bytes_stream().eventsource();
    let r = send("writer").await.unwrap();
    assert_eq!(r.status(), 200);
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let e = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the answer streamed through the proxy")
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
        if v["type"] == "content" {
            text.push_str(v["text"].as_str().unwrap());
        }
        if v["type"] == "stream_end" {
            break;
        }
    }
    assert_eq!(text, "Hi from the node.");
    // What the node receives: the console's token, never the user's token or cookie.
    recorder.heads.lock().unwrap().clear();
    let r = console
        .http
        .get(console.url("/node/recorder/v1/api/workstreams?x=1"))
        .bearer_auth("writer")
        .header("cookie", "turnstone_auth=writer")
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(
        status,
        200,
        "the node's answer is passed on as it is: {:?}",
        r.text().await
    );
    let heads = recorder.heads.lock().unwrap().clone();
    let head = heads
        .iter()
        .find(|h| h.starts_with("GET /v1/api/workstreams?x=1 "))
        .unwrap_or_else(|| panic!("{heads:?}"))
        .to_ascii_lowercase();
    assert!(
        head.contains("authorization: bearer console-secret"),
        "{head}"
    );
    assert!(!head.contains("writer"), "{head}");
    assert!(!head.contains("cookie"), "{head}");
    console.stop().await;
}

#[test]
fn write_routes_and_proxy_paths_answer_anything_with_a_json_error_never_a_failure() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let redis = redis_url().unwrap();
    let prefix = format!("cf{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let console = runtime.block_on(async {
        let transport: std::sync::Arc<dyn Transport> =
            std::sync::Arc::new(RedisTransport::connect(&redis, &prefix).await.unwrap());
        sim_heartbeat(&transport, "sim-0001", Duration::from_secs(120)).await;
        let console = TestConsole::start(&redis, &prefix).await;
        console
            .until("/v1/api/cluster/nodes", "the node", |b| b["total"] == 1)
            .await;
        console
    });
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let field = prop_oneof![
        Just(json!(null)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<bool>().prop_map(|b| json!(b)),
        "[a-z0-9./_%-]{0,12}".prop_map(|s| json!(s)),
        Just(json!("pool")),
        Just(json!("auto")),
        Just(json!("sim-0001")),
        Just(json!(["x"])),
        Just(json!({"a": 1})),
    ];
    let body = prop_oneof![
        (field.clone(), field.clone(), field.clone(), field).prop_map(|(n, name, m, i)| {
            json!({"node_id": n, "name": name, "model": m, "initial_message": i})
                .to_string()
                .into_bytes()
        }),
        prop::collection::vec(any::<u8>(), 0..48),
        "[{}\\[\\]\":,a-z0-9 ]{0,40}".prop_map(String::into_bytes),
    ];
    runner
        .run(&body, |body| {
            let (status, answer) = runtime.block_on(async {
                let r = console
                    .http
                    .post(console.url("/v1/api/cluster/workstreams/new"))
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap_or(Value::Null),
                )
            });
            prop_assert!(
                status == 200 || (400..500).contains(&status),
                "{:?} → {status} {answer}",
                String::from_utf8_lossy(&body)
            );
            if status >= 400 {
                prop_assert!(answer["error"].is_string(), "{answer}");
            }
            Ok(())
        })
        .unwrap();
    let segment = prop_oneof![
        Just("sim-0001".to_owned()),
        Just("unknown".to_owned()),
        Just("..".to_owned()),
        Just("%2e%2E".to_owned()),
        Just("%2F".to_owned()),
        Just("%ZZ".to_owned()),
        Just("%C3%A9".to_owned()),
        Just("v1".to_owned()),
        Just("api".to_owned()),
        Just("static".to_owned()),
        "[A-Za-z0-9._~-]{1,10}",
    ];
    let path = prop::collection::vec(segment, 0..6).prop_map(|s| s.join("/"));
    runner
        .run(&(path, any::<bool>()), |(path, post)| {
            let url = console.url(&format!("/node/{path}"));
            let (status, answer) = runtime.block_on(async {
                let r = if post {
                    console.http.post(&url).body("{}").send().await
                } else {
                    console.http.get(&url).send().await
                }
                .unwrap();
                (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap_or(Value::Null),
                )
            });
            prop_assert!(
                [301, 400, 403, 404, 405, 502].contains(&status),
                "{path} → {status} {answer}"
            );
            if status >= 400 {
                prop_assert!(answer["error"].is_string(), "{path}: {answer}");
            }
            Ok(())
        })
        .unwrap();
    let (status, _) = runtime.block_on(console.get("/health"));
    assert_eq!(status, 200);
    runtime.block_on(console.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_binary_starts_without_redis_and_joins_when_it_comes() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_turnstone-console"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--host",
        "--port",
        "--redis-host",
        "--redis-port",
        "--redis-password",
        "--redis-db",
        "--poll-interval",
        "--auth-token",
    ] {
        assert!(text.contains(flag), "{flag} in {text}");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_turnstone-console"))
        .args(["--port", "not-a-port"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    // Redis is down when the console starts.
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path()).unwrap();
    redis.kill();
    let home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstone-console"));
    cmd.args(["--host", "127.0.0.1", "--port", "0"])
        .args([
            "--redis-host",
            "127.0.0.1",
            "--redis-port",
            &redis.port().to_string(),
        ])
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("TURNSTONE_AUTH_ENABLED", "false")
        .env("TURNSTONE_LOG_FORMAT", "text")
        .env_remove("REDIS_HOST")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let (_child, rest, log) =
        cluster_support::spawn_until(cmd, "Turnstone console on ", "turnstone-console").await;
    let base = rest.trim().trim_end_matches('/').to_owned();
    turnstone_actors::provider::install_crypto_provider();
    let http = reqwest::Client::new();
    let health: Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["service"], "turnstone-console");
    assert_eq!(health["redis"], "unreachable");
    let r = http
        .post(format!("{base}/v1/api/cluster/workstreams/new"))
        .json(&json!({"node_id": "pool"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // Redis comes: the console connects, subscribes and discovers, without a restart.
    redis.up().unwrap();
    let transport: std::sync::Arc<dyn Transport> = std::sync::Arc::new(
        RedisTransport::connect(&redis.url(), "turnstone")
            .await
            .unwrap(),
    );
    sim_heartbeat(&transport, "sim-0001", Duration::from_secs(60)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let o: Value = http
            .get(format!("{base}/v1/api/cluster/overview"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if o["nodes"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never joined: {o}\n{}",
            log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = http
        .post(format!("{base}/v1/api/cluster/workstreams/new"))
        .json(&json!({"node_id": "pool"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
