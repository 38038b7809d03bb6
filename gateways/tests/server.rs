#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `turnstone-server`'s HTTP/SSE API against a real node (SQLite) and the scripted LLM: every
//! route of SPEC §2 with its JSON, errors as `{"error": …}`, events to any number of readers,
//! reconnection with `Last-Event-ID`, the global stream, health and metrics.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{TestServer, types};
use turnstone_tests::llm::Turn;

#[tokio::test]
async fn workstreams_are_listed_created_and_closed() {
    let s = TestServer::start().await;
    let (status, list) = s.get("/v1/api/workstreams").await;
    assert_eq!(status, 200);
    let first = &list["workstreams"][0];
    assert_eq!(first["name"], "default");
    assert_eq!(first["state"], "idle");
    assert_eq!(first["session_id"].as_str().unwrap().len(), 32);

    let (status, created) = s
        .post("/v1/api/workstreams/new", json!({"name": "research"}))
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["name"], "research");
    assert_eq!(created["resumed"], false);
    assert_eq!(created["message_count"], 0);
    let id = created["ws_id"].as_str().unwrap().to_owned();
    let (_, list) = s.get("/v1/api/workstreams").await;
    let names: Vec<&str> = list["workstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "research"], "creation order");

    let (status, body) = s
        .post("/v1/api/workstreams/close", json!({"ws_id": id}))
        .await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let only = s.default_ws().await;
    let (status, body) = s
        .post("/v1/api/workstreams/close", json!({"ws_id": only}))
        .await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "Cannot close last workstream"}))
    );
    let (status, _) = s
        .post("/v1/api/workstreams/close", json!({"ws_id": "nope"}))
        .await;
    assert_eq!(status, 400);
    let (status, body) = s
        .post("/v1/api/workstreams/new", json!({"model": "no-such-alias"}))
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(body["error"].as_str().unwrap().contains("no-such-alias"));
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors() {
    let s = TestServer::start().await;
    let ws = s.default_ws().await;
    for (path, body, status, error) in [
        ("/v1/api/send", "{not json", 400, "Invalid JSON body"),
        (
            "/v1/api/send",
            "[1,2]",
            400,
            "Invalid JSON body: expected an object",
        ),
        (
            "/v1/api/send",
            r#"{"message": "", "ws_id": "x"}"#,
            400,
            "Empty message",
        ),
        (
            "/v1/api/send",
            r#"{"message": "hi", "ws_id": "unknown"}"#,
            404,
            "Unknown workstream",
        ),
        (
            "/v1/api/command",
            r#"{"command": "  ", "ws_id": "x"}"#,
            400,
            "Empty command",
        ),
        (
            "/v1/api/approve",
            r#"{"approved": true, "ws_id": "unknown"}"#,
            404,
            "Unknown workstream",
        ),
    ] {
        let (got, answer) = s.post_raw(path, body).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(error)),
            "{path} {body}"
        );
    }
    let (status, answer) = s
        .post("/v1/api/send", json!({"message": 42, "ws_id": ws}))
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid request: invalid type"),
        "{answer}"
    );
    let (status, answer) = s
        .post_raw("/v1/api/send", vec![b' '; 2 * 1024 * 1024])
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (413, Some("Request body too large"))
    );
    let (status, answer) = s.get("/api/workstreams").await;
    assert_eq!(
        (status, answer),
        (404, json!({"error": "Not found"})),
        "no unversioned API"
    );
    let (status, _) = s.get("/v1/api/send").await;
    assert_eq!(status, 405);
    let (status, _) = s.post("/v1/api/approve", json!({"ws_id": ws})).await;
    assert_eq!(status, 409, "nothing waits for approval");
    let (status, answer) = s.get("/v1/api/events?ws_id=nope").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (404, Some("Unknown workstream"))
    );
}

#[tokio::test]
async fn a_turn_streams_to_every_reader_with_approval() {
    let s = TestServer::start().await;
    let ws = s.default_ws().await;
    s.llm.push_turn(
        Turn::new()
            .content("Checking.")
            .tool_call("c1", "bash", r#"{"command": "echo from-bash"}"#)
            .usage(30, 5),
    );
    s.llm
        .push_turn(Turn::text("It printed from-bash.").usage(50, 6));
    let path = format!("/v1/api/events?ws_id={ws}");
    let mut browser = s.events(&path, None).await;
    let mut bridge = s.events(&path, None).await;
    assert_eq!(browser.next().await["type"], "connected");
    let connected = bridge.next().await;
    assert_eq!(connected["model"], "scripted-model");
    assert_eq!(connected["model_alias"], "default");
    assert_eq!(connected["skip_permissions"], false);

    let (status, body) = s
        .post("/v1/api/send", json!({"message": "run it", "ws_id": ws}))
        .await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let events = browser.until("approve_request").await;
    assert!(types(&events).contains(&"content"));
    let request = events.last().unwrap();
    assert_eq!(request["items"][0]["func_name"], "bash");
    assert_eq!(request["items"][0]["preview"], "echo from-bash");

    // A second message while the turn runs is refused as busy.
    let (_, busy) = s
        .post("/v1/api/send", json!({"message": "again", "ws_id": ws}))
        .await;
    assert_eq!(busy, json!({"status": "busy"}));

    let (status, _) = s
        .post("/v1/api/approve", json!({"approved": true, "ws_id": ws}))
        .await;
    assert_eq!(status, 200);
    let rest = browser.until("stream_end").await;
    let chunk = rest
        .iter()
        .find(|e| e["type"] == "tool_output_chunk")
        .unwrap();
    assert_eq!(chunk["chunk"], "from-bash");
    let result = rest.iter().find(|e| e["type"] == "tool_result").unwrap();
    assert_eq!(result["output"], "from-bash");
    let text: String = rest
        .iter()
        .filter(|e| e["type"] == "content")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "It printed from-bash.");

    // The second reader saw the very same sequence (0.4.1 allowed only one reader).
    let mut all = bridge.until("approve_request").await;
    all.extend(bridge.until("stream_end").await);
    let mut seen = events.clone();
    seen.extend(rest);
    assert_eq!(all, seen);

    let (_, dashboard) = s.get("/v1/api/dashboard").await;
    let row = &dashboard["workstreams"][0];
    assert_eq!(row["state"], "idle");
    assert_eq!(row["tokens"], 91);
    assert_eq!(row["tool_calls"], 1);
    assert_eq!(row["model"], "scripted-model");
    assert_eq!(row["node"], "local");
    assert_eq!(dashboard["aggregate"]["total_tool_calls"], 1);
    assert_eq!(dashboard["aggregate"]["total_count"], 1);

    // Rows are written behind the turn; all five (user, text, call, result, answer) land.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, sessions) = s.get("/v1/api/sessions").await;
        if sessions["sessions"][0]["message_count"] == 5 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{sessions}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_reader_that_reconnects_with_last_event_id_gets_what_it_missed() {
    let s = TestServer::start().await;
    let ws = s.default_ws().await;
    s.llm.push_turn(Turn::text("first answer"));
    s.llm.push_turn(Turn::text("second answer"));
    let path = format!("/v1/api/events?ws_id={ws}");
    let mut reader = s.events(&path, None).await;
    reader.next().await;
    s.post("/v1/api/send", json!({"message": "one", "ws_id": ws}))
        .await;
    reader.until("stream_end").await;
    let last = reader.last_id.clone().unwrap();
    drop(reader);

    // Missed while disconnected:
    s.post("/v1/api/send", json!({"message": "two", "ws_id": ws}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut back = s.events(&path, Some(&last)).await;
    assert_eq!(back.next().await["type"], "connected");
    let missed = back.until("stream_end").await;
    assert_eq!(
        missed.first().unwrap()["type"],
        "thinking_start",
        "no history, a replay"
    );
    let text: String = missed
        .iter()
        .filter(|e| e["type"] == "content")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "second answer");

    // A fresh reader gets the conversation as history instead.
    let mut fresh = s.events(&path, None).await;
    fresh.next().await;
    let history = fresh.next().await;
    assert_eq!(history["type"], "history");
    let contents: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["one", "first answer", "two", "second answer"]);
}

#[tokio::test]
async fn a_fresh_reader_sees_the_approval_still_waiting() {
    let s = TestServer::start().await;
    let ws = s.default_ws().await;
    s.llm
        .push_turn(Turn::new().tool_call("c1", "bash", r#"{"command": "true"}"#));
    s.llm.push_turn(Turn::text("done"));
    let path = format!("/v1/api/events?ws_id={ws}");
    let mut first = s.events(&path, None).await;
    s.post("/v1/api/send", json!({"message": "go", "ws_id": ws}))
        .await;
    first.until("approve_request").await;
    let mut late = s.events(&path, None).await;
    let opening = vec![late.next().await, late.next().await, late.next().await];
    assert_eq!(types(&opening), ["connected", "history", "approve_request"]);
    s.post(
        "/v1/api/approve",
        json!({"approved": false, "feedback": "not now", "ws_id": ws}),
    )
    .await;
    let rest = late.until("stream_end").await;
    let result = rest.iter().find(|e| e["type"] == "tool_result").unwrap();
    assert!(
        result["output"].as_str().unwrap().contains("not now"),
        "{result}"
    );
}

#[tokio::test]
async fn the_global_stream_reports_states_renames_and_closes() {
    let s = TestServer::start().await;
    let ws = s.default_ws().await;
    s.llm.push_turn(Turn::text("hello"));
    let mut global = s.events("/v1/api/events/global", None).await;
    s.post("/v1/api/send", json!({"message": "hi", "ws_id": ws}))
        .await;
    let mut states = Vec::new();
    loop {
        let e = global.next().await;
        assert_eq!(e["type"], "ws_state");
        assert_eq!(e["ws_id"], ws.as_str());
        states.push(e["state"].as_str().unwrap().to_owned());
        if e["state"] == "idle" {
            break;
        }
    }
    assert_eq!(states.first().map(String::as_str), Some("thinking"));
    s.post(
        "/v1/api/command",
        json!({"command": "/ws rename renamed", "ws_id": ws}),
    )
    .await;
    let renamed = global.next().await;
    assert_eq!(
        renamed,
        json!({"type": "ws_rename", "ws_id": ws, "name": "renamed"})
    );
    let (_, created) = s.post("/v1/api/workstreams/new", json!({})).await;
    let other = created["ws_id"].as_str().unwrap();
    s.post("/v1/api/workstreams/close", json!({"ws_id": other}))
        .await;
    let closed = global.until("ws_closed").await;
    let closed = closed.last().unwrap();
    assert_eq!(closed["ws_id"], other);
    assert_eq!(closed["reason"], "closed");
}

#[tokio::test]
async fn commands_answer_on_the_workstream_stream() {
    let s = TestServer::start().await;
    let ws = s.default_ws().await;
    let mut events = s.events(&format!("/v1/api/events?ws_id={ws}"), None).await;
    events.next().await;
    s.post("/v1/api/command", json!({"command": "/model", "ws_id": ws}))
        .await;
    let info = events.next().await;
    assert_eq!(info["type"], "info");
    assert!(
        info["message"]
            .as_str()
            .unwrap()
            .contains("* default — scripted-model")
    );
    s.post(
        "/v1/api/command",
        json!({"command": "/reason high", "ws_id": ws}),
    )
    .await;
    assert_eq!(
        events.next().await["message"],
        "Reasoning effort set to high"
    );
    s.post(
        "/v1/api/command",
        json!({"command": "/model nope", "ws_id": ws}),
    )
    .await;
    let error = events.next().await;
    assert_eq!(error["type"], "error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("Command error:")
    );
    s.post("/v1/api/command", json!({"command": "/clear", "ws_id": ws}))
        .await;
    assert_eq!(events.next().await["type"], "clear_ui");
}

#[tokio::test]
async fn health_and_metrics_follow_spec_names() {
    let s = TestServer::start().await;
    let ws = s.default_ws().await;
    let (status, health) = s.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["node_id"], "node-test");
    assert_eq!(health["model"], "scripted-model");
    assert_eq!(health["workstreams"]["total"], 1);
    assert_eq!(health["workstreams"]["idle"], 1);
    assert_eq!(
        health["backend"],
        json!({"status": "up", "circuit_state": "closed"})
    );
    s.llm.push_turn(
        Turn::new()
            .tool_call("c1", "read_file", r#"{"path": "missing.txt"}"#)
            .usage(100, 10),
    );
    s.llm.push_turn(Turn::text("ok").usage(120, 2));
    let mut events = s.events(&format!("/v1/api/events?ws_id={ws}"), None).await;
    s.post("/v1/api/send", json!({"message": "read", "ws_id": ws}))
        .await;
    events.until("stream_end").await;

    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    for (name, kind) in [
        ("turnstone_build_info", "gauge"),
        ("turnstone_uptime_seconds", "gauge"),
        ("turnstone_workstreams_active_total", "gauge"),
        ("turnstone_workstreams_by_state", "gauge"),
        ("turnstone_http_requests_total", "counter"),
        ("turnstone_http_request_duration_seconds", "histogram"),
        ("turnstone_messages_sent_total", "counter"),
        ("turnstone_errors_total", "counter"),
        ("turnstone_ratelimit_rejected_total", "counter"),
        ("turnstone_workstreams_evicted_total", "counter"),
        ("turnstone_tokens_total", "counter"),
        ("turnstone_tool_calls_total", "counter"),
        ("turnstone_context_window_used_ratio", "gauge"),
        ("turnstone_sse_connections_active", "gauge"),
        ("turnstone_backend_up", "gauge"),
        ("turnstone_circuit_state", "gauge"),
        ("turnstone_workstream_info", "gauge"),
        ("turnstone_workstream_prompt_tokens_total", "counter"),
        ("turnstone_workstream_completion_tokens_total", "counter"),
        ("turnstone_workstream_messages_total", "counter"),
        ("turnstone_workstream_tool_calls_total", "counter"),
        ("turnstone_workstream_context_ratio", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}")),
            "{name} as {kind}:\n{text}"
        );
    }
    for line in [
        "turnstone_tokens_total{type=\"prompt\"} 220".to_owned(),
        "turnstone_tokens_total{type=\"completion\"} 12".to_owned(),
        "turnstone_tool_calls_total{tool=\"read_file\"} 1".to_owned(),
        "turnstone_messages_sent_total 1".to_owned(),
        "turnstone_sse_connections_active 1".to_owned(),
        "turnstone_circuit_state 0".to_owned(),
        format!("turnstone_workstream_tool_calls_total{{ws_id=\"{ws}\",name=\"default\",tool=\"read_file\"}} 1"),
        "turnstone_http_requests_total{method=\"POST\",endpoint=\"/v1/api/send\",status_code=\"200\"} 1".to_owned(),
    ] {
        assert!(text.contains(&line), "{line}\n{text}");
    }
    assert!(text.contains(
        "turnstone_http_request_duration_seconds_bucket{method=\"POST\",endpoint=\"/v1/api/send\",le=\"0.005\"}"
    ));
}

#[tokio::test]
async fn health_degrades_when_the_backend_circuit_opens() {
    let s = TestServer::start_with(|c| {
        c.health.circuit_breaker_threshold = 1;
        c.health.circuit_breaker_cooldown = 600.0;
    })
    .await;
    let ws = s.default_ws().await;
    s.llm
        .push(vec![turnstone_tests::llm::Reply::error(503, "overloaded")]);
    let mut events = s.events(&format!("/v1/api/events?ws_id={ws}"), None).await;
    s.post("/v1/api/send", json!({"message": "hi", "ws_id": ws}))
        .await;
    events.until("stream_end").await;
    let (status, health) = s.get("/health").await;
    assert_eq!(status, 200, "health always answers 200");
    assert_eq!(health["status"], "degraded");
    assert_eq!(
        health["backend"],
        json!({"status": "down", "circuit_state": "open"})
    );
    let (_, metrics) = (0, s.text("/metrics").await);
    assert!(metrics.contains("turnstone_circuit_state 1"));
    assert!(metrics.contains("turnstone_backend_up 0"));
}

#[tokio::test]
async fn readers_that_leave_free_their_connections() {
    let s = TestServer::start().await;
    let ws = s.default_ws().await;
    let path = format!("/v1/api/events?ws_id={ws}");
    let mut readers = Vec::new();
    for _ in 0..200 {
        let mut r = s.events(&path, None).await;
        r.next().await;
        readers.push(r);
    }
    let gauge = || async {
        let text = s.text("/metrics").await;
        text.lines()
            .find(|l| l.starts_with("turnstone_sse_connections_active "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap()
    };
    assert_eq!(gauge().await, 200);
    drop(readers);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let open = gauge().await;
        if open == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} connections linger"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_ui_docs_and_openapi_are_served_from_the_binary() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.text().await.unwrap().contains("/static/app.js"));
    for (path, kind) in [
        ("/static/app.js", "text/javascript"),
        ("/static/app.css", "text/css"),
        ("/static/vendor/marked.min.js", "text/javascript"),
        ("/static/swagger/swagger-ui-bundle.js", "text/javascript"),
    ] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    // Nothing outside the embedded table, however the path is spelled.
    for path in [
        "/static/../Cargo.toml",
        "/static/%2e%2e/%2e%2e/Cargo.toml",
        "/static/..%2f..%2fCargo.toml",
        "/static//etc/passwd",
        "/static/vendor/../../src/lib.rs",
        "/static/",
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let docs = s.text("/docs").await;
    assert!(docs.contains("/static/swagger/swagger-ui-bundle.js"));
    assert!(
        !docs.contains("unpkg") && !docs.contains("https://"),
        "nothing fetched from elsewhere"
    );

    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 17, "{}", paths.len());
    // Every documented route is served (none answers 404 or 405).
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let url = s.url(&path.replace("{ws_id}", "x"));
            let r = match method.as_str() {
                "get" if path.contains("events") => {
                    // SSE: only the status matters
                    let url = if path.ends_with("/events") {
                        format!("{url}?ws_id={}", s.default_ws().await)
                    } else {
                        url
                    };
                    s.http.get(url).send().await.unwrap()
                }
                "get" => s.http.get(url).send().await.unwrap(),
                _ => s.http.post(url).body("{}").send().await.unwrap(),
            };
            let status = r.status().as_u16();
            let routed = if status == 404 {
                // A handler's 404 (an unknown workstream) is fine; the router's is not.
                let body: serde_json::Value =
                    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or_default();
                body["error"] != "Not found"
            } else {
                status != 405
            };
            assert!(routed, "{method} {path} → {status}");
        }
    }
    assert!(doc["components"]["schemas"]["SendRequest"].is_object());
}

#[tokio::test]
async fn quiet_streams_get_keep_alive_pings() {
    use futures::StreamExt;
    let s = TestServer::start().await;
    let ws = s.default_ws().await;
    let r = s
        .http
        .get(s.url(&format!("/v1/api/events?ws_id={ws}")))
        .send()
        .await
        .unwrap();
    let mut body = r.bytes_stream();
    let started = std::time::Instant::now();
    let mut seen = String::new();
    while !seen.contains("\n:") && !seen.starts_with(':') {
        let chunk = tokio::time::timeout(Duration::from_secs(8), body.next())
            .await
            .expect("a ping within 8 s")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(7),
        "ping after {waited:?}"
    );
}

#[tokio::test]
async fn a_reader_that_stops_reading_never_slows_the_workstream() {
    let s = TestServer::start().await;
    let ws = s.default_ws().await;
    let filler = "x".repeat(1600);
    let mut turn = Turn::new();
    for i in 0..6_000 {
        turn = turn.content(&format!("{i} {filler}\n"));
    }
    s.llm.push_turn(turn);
    let path = format!("/v1/api/events?ws_id={ws}");
    // The stalled reader connects with a tiny receive buffer and then reads nothing while
    // 10 MB of events go by.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(s.addr).await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        stalled
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut reader = s.events(&path, None).await;
    reader.next().await;
    s.post("/v1/api/send", json!({"message": "flood", "ws_id": ws}))
        .await;
    let started = std::time::Instant::now();
    // The reading reader reaches the end; under load it may itself fall behind the ring, in
    // which case it is told how many events it skipped.
    let events = reader.until("stream_end").await;
    let content = events.iter().filter(|e| e["type"] == "content").count();
    let skipped: usize = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter_map(|m| m.strip_prefix("This connection fell behind: "))
        .filter_map(|m| m.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    assert!(
        content + skipped >= 6_000,
        "{content} received + {skipped} skipped"
    );
    let turn_time = started.elapsed();
    assert!(turn_time < Duration::from_secs(30), "{turn_time:?}");
    let (_, list) = s.get("/v1/api/workstreams").await;
    assert_eq!(
        list["workstreams"][0]["state"], "idle",
        "the workstream finished"
    );

    // Now the stalled reader reads: it is told it fell behind, then goes on live.
    let mut window = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        assert!(std::time::Instant::now() < deadline, "no lag report");
        let n = {
            use tokio::io::AsyncReadExt;
            tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf))
                .await
                .expect("the stream goes on")
                .unwrap()
        };
        assert!(n > 0, "stream ended without a lag report");
        window.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(at) = window.find("fell behind") {
            break window[at..].to_owned();
        }
        // keep a tail so a phrase split across reads is still found
        let keep = window.len().saturating_sub(64);
        let cut = (keep..window.len())
            .find(|i| window.is_char_boundary(*i))
            .unwrap_or(0);
        window.drain(..cut);
    };
    let _ = &events;
    assert!(
        text.contains("events were skipped"),
        "the skip is counted: {}",
        &text[..text.len().min(200)]
    );
}
