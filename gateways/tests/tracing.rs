#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Traces across the node: a real `turnstone-server` exporting over OTLP/HTTP (only
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set) to a receiver built on the official protobuf
//! definitions; the spans' parent/child structure is checked, not just their number.

mod cluster_support;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;
use turnstone_tests::llm::{ScriptedLlm, Turn};
use turnstone_tests::otlp::{OtlpReceiver, Span, descends_from};

fn random_hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(n);
    s
}

/// A node server on the scripted model exporting its spans to `receiver` (every 100 ms).
fn exporting(work: &std::path::Path, llm: &ScriptedLlm, receiver: &OtlpReceiver) -> Command {
    let mut cmd = cluster_support::server_command(work, 0);
    cmd.args(["--base-url", &llm.base_url(), "--model", "scripted-model"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    cmd
}

/// An HTTP client and the id of the node's first workstream.
async fn first_workstream(base: &str) -> (reqwest::Client, String) {
    turnstone_actors::provider::install_crypto_provider();
    let http = reqwest::Client::new();
    let list: Value = http
        .get(format!("{base}/v1/api/workstreams"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ws_id = list["workstreams"][0]["id"].as_str().unwrap().to_owned();
    (http, ws_id)
}

fn one<'a>(spans: &'a [Span], trace: &str, name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.trace_id == trace && s.name == name)
        .unwrap_or_else(|| panic!("no {name} span in trace {trace}: {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_send_yields_turn_model_and_tool_spans_below_the_callers_span() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route_latest(
        "trace this turn",
        Turn::new()
            .tool_call("c1", "bash", &json!({"command": "echo traced"}).to_string())
            .usage(120, 8),
    );
    llm.route_latest("traced", Turn::text("It printed traced.").usage(140, 6));
    let work = tempfile::tempdir().unwrap();
    let mut cmd = exporting(work.path(), &llm, &receiver);
    cmd.arg("--skip-permissions")
        .env("TURNSTONE_NODE_ID", "traced-node")
        .env_remove("OTEL_SERVICE_NAME");
    let (_child, base, log) =
        cluster_support::spawn_until(cmd, "Turnstone server on ", "turnstone-server").await;
    let base = base.trim_end_matches('/').to_owned();
    let (http, ws_id) = first_workstream(&base).await;

    // The caller's own span.
    let trace = random_hex(32);
    let caller = random_hex(16);
    let sent = http
        .post(format!("{base}/v1/api/send"))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&json!({"ws_id": ws_id, "message": "trace this turn"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);

    let spans = receiver
        .wait_for(Duration::from_secs(20), |spans| {
            let mine: Vec<_> = spans.iter().filter(|s| s.trace_id == trace).collect();
            mine.iter()
                .filter(|s| s.name == "chat scripted-model")
                .count()
                >= 2
                && mine.iter().any(|s| s.name == "execute_tool bash")
                && mine.iter().any(|s| s.name == "workstream turn")
        })
        .await
        .unwrap_or_else(|spans| {
            panic!(
                "spans never arrived: {spans:#?}\n{}",
                log.lock().unwrap().join("\n")
            )
        });
    let request = spans
        .iter()
        .find(|s| s.trace_id == trace && s.attr("http.route") == Some("/v1/api/send"))
        .unwrap_or_else(|| panic!("no request span: {spans:#?}"));
    assert_eq!(
        request.parent_id, caller,
        "the server span is the caller's child"
    );
    assert!(
        spans.iter().all(|s| s.name != "Actor"),
        "actors' lifetimes are not exported as spans"
    );
    assert_eq!(request.kind, 2, "a server span");
    assert_eq!(request.attr("http.request.method"), Some("POST"));
    assert_eq!(request.attr("http.response.status_code"), Some("200"));
    assert_eq!(request.service, "turnstone-server");
    assert_eq!(
        request
            .resource
            .get("service.instance.id")
            .map(String::as_str),
        Some("traced-node")
    );

    let turn = one(&spans, &trace, "workstream turn");
    assert!(
        descends_from(&spans, turn, &caller),
        "the turn is below the caller"
    );
    assert_eq!(turn.attr("turnstone.ws.id"), Some(ws_id.as_str()));
    assert_eq!(turn.attr("turnstone.node.id"), Some("traced-node"));
    assert_eq!(turn.attr("turnstone.outcome"), Some("ok"));
    let chats: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == "chat scripted-model")
        .collect();
    assert_eq!(chats.len(), 2, "two model requests: {chats:#?}");
    for chat in &chats {
        assert_eq!(
            chat.parent_id, turn.span_id,
            "model calls are the turn's children"
        );
        assert_eq!(chat.kind, 3, "a client span");
        assert_eq!(chat.attr("gen_ai.operation.name"), Some("chat"));
        assert_eq!(chat.attr("gen_ai.provider.name"), Some("openai"));
        assert_eq!(chat.attr("gen_ai.request.model"), Some("scripted-model"));
    }
    assert!(
        chats
            .iter()
            .any(|c| c.attr("gen_ai.usage.input_tokens") == Some("120")
                && c.attr("gen_ai.usage.output_tokens") == Some("8")),
        "{chats:#?}"
    );
    let tool = one(&spans, &trace, "execute_tool bash");
    assert_eq!(tool.parent_id, turn.span_id);
    assert_eq!(tool.attr("gen_ai.tool.name"), Some("bash"));
    assert_eq!(tool.attr("gen_ai.tool.call.id"), Some("c1"));
    assert_eq!(tool.attr("outcome"), Some("ok"));

    // JSON log lines inside the request carry its trace and span ids.
    let logged = log.lock().unwrap().join("\n");
    assert!(
        logged
            .lines()
            .any(|l| l.contains(&format!("\"trace_id\":\"{trace}\""))
                && l.contains(&format!("\"span_id\":\"{}\"", request.span_id))),
        "{logged}"
    );

    // The model endpoint was asked within the same trace, by each model call's span.
    let traceparents = llm.traceparents();
    assert_eq!(traceparents.len(), 2, "{traceparents:?}");
    for tp in &traceparents {
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts[1], trace, "{tp}");
        assert!(
            chats.iter().any(|c| c.span_id == parts[2]),
            "{tp} names a chat span"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_message_with_a_traceparent_continues_its_trace_on_the_node() {
    use std::sync::Arc;
    use turnstone_runtime::remote::{MailboxAddress, RedisTransport, Transport};
    let receiver = OtlpReceiver::start().await.unwrap();
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route(
        turnstone_actors::workstream::TITLE_PROMPT,
        Turn::text("A title"),
    );
    llm.route_latest("queued and traced", Turn::text("Done from the queue."));
    llm.route_latest("sent by 0.4.1", Turn::text("Answered 0.4.1."));
    let redis = turnstone_tests::services::redis_url().unwrap();
    let (host, port) = turnstone_tests::services::authority(&redis)
        .split_once(':')
        .unwrap();
    let prefix = format!("tq{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let work = tempfile::tempdir().unwrap();
    let mut cmd = exporting(work.path(), &llm, &receiver);
    cmd.args(["--redis-host", host, "--redis-port", port])
        .args(["--redis-prefix", &prefix, "--node-id", "traced-q"]);
    let (_child, _, log) =
        cluster_support::spawn_until(cmd, "Turnstone server on ", "turnstone-server").await;
    let transport: Arc<dyn Transport> =
        Arc::new(RedisTransport::connect(&redis, &prefix).await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !transport
        .live_nodes()
        .await
        .unwrap()
        .iter()
        .any(|(n, _)| n == "traced-q")
    {
        assert!(tokio::time::Instant::now() < deadline, "never joined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trace = random_hex(32);
    let caller = random_hex(16);
    // As a client inside its own span sends it: 0.4.1's fields plus a top-level traceparent.
    let message = json!({
        "type": "create_workstream", "correlation_id": "c0ffee000001", "timestamp": 1.0,
        "name": "traced", "initial_message": "queued and traced", "reads_stream": true,
        "traceparent": format!("00-{trace}-{caller}-01"),
    });
    transport
        .push(
            &MailboxAddress::directed("inbound", "traced-q"),
            message.to_string(),
        )
        .await
        .unwrap();
    let spans = receiver
        .wait_for(Duration::from_secs(20), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == trace && s.name == "workstream turn")
                && spans
                    .iter()
                    .any(|s| s.trace_id == trace && s.name == "chat scripted-model")
        })
        .await
        .unwrap_or_else(|spans| {
            panic!(
                "spans never arrived: {spans:#?}\n{}",
                log.lock().unwrap().join("\n")
            )
        });
    let queue = spans
        .iter()
        .find(|s| s.trace_id == trace && s.attr("messaging.system") == Some("redis"))
        .unwrap_or_else(|| panic!("no messaging span: {spans:#?}"));
    assert_eq!(
        queue.parent_id, caller,
        "the node continues the sender's span"
    );
    assert_eq!(queue.kind, 5, "a consumer span");
    assert_eq!(queue.attr("messaging.operation.type"), Some("process"));
    assert!(
        queue
            .attr("messaging.destination.name")
            .is_some_and(|d| d.ends_with("inbound:traced-q")),
        "{queue:#?}"
    );
    assert_eq!(
        queue.attr("messaging.message.conversation_id"),
        Some("c0ffee000001")
    );
    let turn = one(&spans, &trace, "workstream turn");
    assert!(
        descends_from(&spans, turn, &queue.span_id),
        "the turn is below the message"
    );
    let chat = one(&spans, &trace, "chat scripted-model");
    assert_eq!(chat.parent_id, turn.span_id);
    let tp = llm.traceparents();
    assert!(tp.iter().any(|t| t.contains(&trace)), "{tp:?}");

    // 0.4.1's own client, unmodified, against the traced node: the events it reads carry
    // `trace_id`, which it ignores, and its turn is a trace of its own.
    let python = std::env::var("TURNSTONE_TEST_TS041_PYTHON")
        .expect("TURNSTONE_TEST_TS041_PYTHON (run scripts/test)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mq_turn_041.py");
    let out = Command::new(python)
        .args([
            script,
            host,
            port,
            &prefix,
            "traced-q",
            "sent by 0.4.1",
            "60",
        ])
        .output()
        .await
        .unwrap();
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "0.4.1's client: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["content"], "Answered 0.4.1.", "{seen}");
    receiver
        .wait_for(Duration::from_secs(20), |spans| {
            spans.iter().any(|s| {
                s.kind == 5
                    && s.parent_id.is_empty()
                    && s.attr("messaging.message.conversation_id").is_some()
                    && s.trace_id != trace
            })
        })
        .await
        .unwrap_or_else(|spans| panic!("no trace of 0.4.1's turn: {spans:#?}"));
}

#[path = "console_support/mod.rs"]
mod console_support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_through_the_console_proxy_is_one_trace_across_console_and_node() {
    let receiver = OtlpReceiver::start().await.unwrap();
    // This test process is the console: its spans go to the receiver too.
    let _telemetry = receiver.export_this_process("turnstone-console", "info");
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route(
        turnstone_actors::workstream::TITLE_PROMPT,
        Turn::text("A title"),
    );
    llm.route_latest("made by the console", Turn::text("Made."));
    let work = tempfile::tempdir().unwrap();
    let (redis, prefix, _transport) = console_support::fresh_cluster("tp").await;
    let (host, port) = turnstone_tests::services::authority(&redis)
        .split_once(':')
        .unwrap();
    let mut cmd = exporting(work.path(), &llm, &receiver);
    cmd.args(["--redis-host", host, "--redis-port", port])
        .args(["--redis-prefix", &prefix, "--node-id", "proxied"]);
    let (_child, _base, log) =
        cluster_support::spawn_until(cmd, "Turnstone server on ", "turnstone-server").await;
    let console = console_support::TestConsole::start(&redis, &prefix).await;
    console
        .until("/v1/api/cluster/node/proxied", "node seen", |b| {
            b["node_id"] == "proxied"
        })
        .await;
    let trace = random_hex(32);
    let caller = random_hex(16);
    let r = reqwest::Client::new()
        .get(console.url("/node/proxied/v1/api/workstreams"))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let spans = receiver
        .wait_for(Duration::from_secs(20), |spans| {
            spans.iter().filter(|s| s.trace_id == trace).count() >= 2
        })
        .await
        .unwrap_or_else(|spans| panic!("spans never arrived: {spans:#?}"));
    let hop = spans
        .iter()
        .find(|s| s.trace_id == trace && s.service == "turnstone-console")
        .unwrap_or_else(|| panic!("no console span: {spans:#?}"));
    assert_eq!(hop.parent_id, caller);
    assert_eq!(
        hop.attr("http.route"),
        Some("/node/proxied/v1/api/workstreams")
    );
    let node = spans
        .iter()
        .find(|s| s.trace_id == trace && s.service == "turnstone-server")
        .unwrap_or_else(|| panic!("no node span: {spans:#?}"));
    assert_eq!(
        node.parent_id, hop.span_id,
        "the node's span is the proxy hop's child"
    );
    assert_eq!(node.attr("http.route"), Some("/v1/api/workstreams"));

    // A workstream made through the console goes by the queue: the console's producer span
    // is the request's child, and the node's consumer span the producer's.
    let trace = random_hex(32);
    let caller = random_hex(16);
    let r = reqwest::Client::new()
        .post(console.url("/v1/api/cluster/workstreams/new"))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&json!({"node_id": "proxied", "name": "queued", "initial_message": "made by the console"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let spans = receiver
        .wait_for(Duration::from_secs(20), |spans| {
            let mine = || spans.iter().filter(|s| s.trace_id == trace);
            mine().any(|s| s.name == "chat scripted-model")
                && mine().any(|s| s.kind == 4)
                && mine().any(|s| s.parent_id == caller)
        })
        .await
        .unwrap_or_else(|spans| {
            panic!(
                "spans never arrived: {spans:#?}\n{}",
                log.lock().unwrap().join("\n")
            )
        });
    let request = spans
        .iter()
        .find(|s| s.trace_id == trace && s.parent_id == caller)
        .unwrap_or_else(|| panic!("no console request span: {spans:#?}"));
    assert_eq!(request.service, "turnstone-console");
    let producer = spans
        .iter()
        .find(|s| s.trace_id == trace && s.kind == 4)
        .unwrap_or_else(|| panic!("no producer span: {spans:#?}"));
    assert_eq!(producer.service, "turnstone-console");
    assert_eq!(producer.parent_id, request.span_id);
    assert_eq!(producer.attr("messaging.system"), Some("redis"));
    assert_eq!(producer.attr("messaging.operation.type"), Some("send"));
    assert_eq!(
        producer.attr("messaging.operation.name"),
        Some("create_workstream")
    );
    assert!(
        producer
            .attr("messaging.destination.name")
            .is_some_and(|d| d.ends_with("inbound:proxied")),
        "{producer:#?}"
    );
    let consumer = spans
        .iter()
        .find(|s| s.trace_id == trace && s.kind == 5)
        .unwrap_or_else(|| panic!("no consumer span: {spans:#?}"));
    assert_eq!(consumer.service, "turnstone-server");
    assert_eq!(consumer.parent_id, producer.span_id);
    assert_eq!(
        spans
            .iter()
            .filter(|s| s.trace_id == trace && s.kind == 5)
            .count(),
        1,
        "one consumer span for one message, held or not"
    );
    assert_eq!(
        consumer.attr("messaging.message.conversation_id"),
        producer.attr("messaging.message.conversation_id")
    );
    let turn = one(&spans, &trace, "workstream turn");
    assert!(
        descends_from(&spans, turn, &consumer.span_id),
        "{turn:#?} {consumer:#?} {:#?}",
        spans
            .iter()
            .filter(|s| s.trace_id == trace)
            .collect::<Vec<_>>()
    );
    console.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_finished_by_another_node_after_a_kill_stays_in_the_senders_trace() {
    use turnstone_actors::mq::SendRequest;
    use turnstone_runtime::remote::MailboxAddress;
    let receiver = OtlpReceiver::start().await.unwrap();
    let db = turnstone_tests::services::fresh_postgres_database()
        .await
        .unwrap();
    let mut cluster =
        cluster_support::Cluster::start_with(&[], cluster_support::Db::Postgres(db), 2, &[]).await;
    cluster.env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ];
    cluster.add_node("node-a").await;
    cluster.add_node("node-b").await;
    cluster
        .llm
        .route_latest("remember 41", Turn::text("noted: 41"));
    let first = cluster
        .client
        .send_and_wait(
            SendRequest::new("remember 41")
                .target("node-a")
                .timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert!(first.ok(), "{first:?}\n{}", cluster.logs());
    let ws_id = first.ws_id.clone();
    // A long answer, streamed slowly: node a is killed while it streams.
    let mut slow = Turn::new();
    for i in 0..200 {
        slow = slow.content(&format!("w{i} "));
    }
    cluster
        .llm
        .route_latest_slowly("add one", slow, Duration::from_millis(50));
    let mut events = cluster.client.subscribe(&ws_id).await.unwrap();
    let trace = random_hex(32);
    let caller = random_hex(16);
    let message = json!({
        "type": "send", "correlation_id": "ab12cd34ef56", "timestamp": 1.0,
        "ws_id": ws_id, "message": "add one",
        "traceparent": format!("00-{trace}-{caller}-01"),
    });
    cluster
        .transport
        .push(
            &MailboxAddress::directed("inbound", "node-a"),
            message.to_string(),
        )
        .await
        .unwrap();
    loop {
        let e = events.next(Duration::from_secs(20)).await.unwrap().unwrap();
        if e.kind == "content" {
            break;
        }
    }
    cluster.node("node-a").kill().await;
    cluster.llm.unroute("add one");
    cluster.llm.route_latest("add one", Turn::text("42"));
    let done = loop {
        let e = events.next(Duration::from_secs(30)).await.unwrap().unwrap();
        if e.kind == "turn_complete" && e.correlation_id == "ab12cd34ef56" {
            break e;
        }
    };
    assert_eq!(
        done.str("trace_id"),
        trace,
        "the event names the turn's trace: {done:?}"
    );
    let on_b = |s: &Span| {
        s.trace_id == trace
            && s.resource.get("service.instance.id").map(String::as_str) == Some("node-b")
    };
    let spans = receiver
        .wait_for(Duration::from_secs(20), |spans| {
            spans.iter().any(|s| on_b(s) && s.name == "workstream turn")
                && spans
                    .iter()
                    .any(|s| on_b(s) && s.attr("messaging.system").is_some())
        })
        .await
        .unwrap_or_else(|spans| panic!("node b's spans never arrived: {spans:#?}"));
    let queue_b = spans
        .iter()
        .find(|s| on_b(s) && s.attr("messaging.system").is_some())
        .unwrap();
    assert_eq!(
        queue_b.parent_id, caller,
        "the redelivered message continues the trace"
    );
    let turn_b = spans
        .iter()
        .find(|s| on_b(s) && s.name == "workstream turn")
        .unwrap();
    assert!(descends_from(&spans, turn_b, &caller), "{turn_b:#?}");
    assert_eq!(
        turn_b.attr("resumed"),
        Some("true"),
        "node b resumed the turn"
    );
    assert!(
        spans.iter().any(|s| s.trace_id == trace
            && s.resource.get("service.instance.id").map(String::as_str) == Some("node-a")),
        "node a's part of the trace was exported before it died"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_model_call_records_the_retry_on_its_span() {
    use turnstone_tests::llm::Reply;
    let receiver = OtlpReceiver::start().await.unwrap();
    let llm = ScriptedLlm::start().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let (_child, base, _log) = cluster_support::spawn_until(
        exporting(work.path(), &llm, &receiver),
        "Turnstone server on ",
        "turnstone-server",
    )
    .await;
    let base = base.trim_end_matches('/').to_owned();
    let (http, ws_id) = first_workstream(&base).await;
    // The first attempt meets a 503; the retry a second later answers.
    llm.push([
        Reply::error(503, "overloaded"),
        Reply::turn(Turn::text("second time lucky")),
    ]);
    let trace = random_hex(32);
    http.post(format!("{base}/v1/api/send"))
        .header("traceparent", format!("00-{trace}-{}-01", random_hex(16)))
        .json(&json!({"ws_id": ws_id, "message": "try twice"}))
        .send()
        .await
        .unwrap();
    let spans = receiver
        .wait_for(Duration::from_secs(20), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == trace && s.name == "chat scripted-model")
        })
        .await
        .unwrap_or_else(|spans| panic!("{spans:#?}"));
    let chat = one(&spans, &trace, "chat scripted-model");
    assert!(
        chat.events.iter().any(|e| e == "model request retried"),
        "{chat:#?}"
    );
    assert_eq!(
        chat.attr("error.type"),
        None,
        "the call succeeded in the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_is_reported_once_and_turns_go_on() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route_latest("still works", Turn::text("yes"));
    let work = tempfile::tempdir().unwrap();
    let mut cmd = cluster_support::server_command(work.path(), 0);
    cmd.args(["--base-url", &llm.base_url(), "--model", "scripted-model"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .env("TURNSTONE_LOG_FORMAT", "text");
    let (_child, base, log) =
        cluster_support::spawn_until(cmd, "Turnstone server on ", "turnstone-server").await;
    let base = base.trim_end_matches('/').to_owned();
    turnstone_actors::provider::install_crypto_provider();
    let http = reqwest::Client::new();
    // Many batches' worth of spans over a second and a half.
    for _ in 0..15 {
        let r = http
            .get(format!("{base}/v1/api/workstreams"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logged = log.lock().unwrap().join("\n");
    assert_eq!(
        logged.matches("span export failed").count(),
        1,
        "said once:\n{logged}"
    );
}

/// The test MCP server on the official Python SDK that answers with the trace context its
/// call carried.
const TRACE_ECHO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/mcp/trace_echo.py");

/// The Python that has the MCP SDK.
fn mcp_python() -> String {
    std::env::var("TURNSTONE_TEST_MCP_PYTHON")
        .expect("TURNSTONE_TEST_MCP_PYTHON (run scripts/test)")
}

/// [`TRACE_ECHO`] with `args`.
fn trace_echo(args: &[&str]) -> Command {
    let mut cmd = Command::new(mcp_python());
    cmd.arg(TRACE_ECHO).args(args).kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_calls_over_stdio_and_http_continue_the_turns_trace_after_the_approval_wait() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _http_server = trace_echo(&["--http", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the MCP server never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let work = tempfile::tempdir().unwrap();
    let servers = work.path().join("mcp.json");
    std::fs::write(
        &servers,
        json!({"mcpServers": {
            "piped": {"command": mcp_python(), "args": [TRACE_ECHO]},
            "remote": {"url": format!("http://127.0.0.1:{port}/mcp")},
        }})
        .to_string(),
    )
    .unwrap();
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route_latest(
        "trace the mcp calls",
        Turn::new()
            .tool_call("m1", "mcp__piped__trace_context", "{}")
            .tool_call("m2", "mcp__remote__trace_context", "{}"),
    );
    llm.route_latest("traceparent", Turn::text("Both servers saw it."));
    let mut cmd = exporting(work.path(), &llm, &receiver);
    cmd.arg("--mcp-config").arg(&servers);
    let (_child, base, log) =
        cluster_support::spawn_until(cmd, "Turnstone server on ", "turnstone-server").await;
    let base = base.trim_end_matches('/').to_owned();
    let (http, ws_id) = first_workstream(&base).await;
    let trace = random_hex(32);
    let sent = http
        .post(format!("{base}/v1/api/send"))
        .header("traceparent", format!("00-{trace}-{}-01", random_hex(16)))
        .json(&json!({"ws_id": ws_id, "message": "trace the mcp calls"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    // MCP tools ask a person first: approve once the request is pending.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = http
            .post(format!("{base}/v1/api/approve"))
            .json(&json!({"ws_id": ws_id, "approved": true}))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no approval was asked for:\n{}",
            log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spans = receiver
        .wait_for(Duration::from_secs(30), |spans| {
            let mine: Vec<_> = spans.iter().filter(|s| s.trace_id == trace).collect();
            mine.iter()
                .filter(|s| s.name == "tools/call trace_context")
                .count()
                == 2
                && mine.iter().any(|s| s.name == "await_approval")
                && mine.iter().any(|s| s.name == "workstream turn")
        })
        .await
        .unwrap_or_else(|spans| {
            panic!(
                "spans never arrived: {spans:#?}\n{}",
                log.lock().unwrap().join("\n")
            )
        });
    let turn = one(&spans, &trace, "workstream turn");
    let wait = one(&spans, &trace, "await_approval");
    assert_eq!(wait.parent_id, turn.span_id, "the wait is the turn's child");
    assert_eq!(wait.attr("turnstone.approval.approved"), Some("true"));
    assert_eq!(
        wait.attr("gen_ai.tool.name"),
        Some("mcp__piped__trace_context,mcp__remote__trace_context")
    );
    let calls: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == "tools/call trace_context")
        .collect();
    for call in &calls {
        let tool = spans
            .iter()
            .find(|s| s.span_id == call.parent_id)
            .unwrap_or_else(|| panic!("no parent of {call:#?}"));
        assert!(tool.name.starts_with("execute_tool mcp__"), "{tool:#?}");
        assert_eq!(tool.parent_id, turn.span_id);
        assert!(wait.end_ns <= tool.start_ns, "tools run after the wait");
        assert_eq!(call.kind, 3, "a client span");
        assert_eq!(call.attr("mcp.method.name"), Some("tools/call"));
        assert_eq!(call.attr("gen_ai.tool.name"), Some("trace_context"));
    }
    // Each server was handed the context of its call's span, in the request's `_meta`.
    let body = llm
        .chat_bodies()
        .into_iter()
        .find(|b| {
            b["messages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["role"] == "tool")
        })
        .unwrap();
    let results: Vec<Value> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| serde_json::from_str(m["content"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(results.len(), 2, "{body:#}");
    for seen in &results {
        let tp = seen["traceparent"]
            .as_str()
            .unwrap_or_else(|| panic!("{seen}"));
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts[1], trace, "{tp}");
        assert!(
            calls.iter().any(|c| c.span_id == parts[2]),
            "{tp} names an MCP call span: {calls:#?}"
        );
    }
}
