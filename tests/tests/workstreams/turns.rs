//! Plain turns, cancellation, malformed model output, a model not known yet and backend errors.

use std::time::Duration;

use turnstone_actors::provider::Role;
use turnstone_actors::workstream::{GlobalEvent, WsEvent, WsState};
use turnstone_tests::llm::{Reply, ScriptedLlm, Turn};

use super::support::{is_end, new_ws, node, node_on, node_with, until};

#[tokio::test]
async fn a_plain_turn_streams_and_ends_idle() {
    let mut node = node().await;
    node.llm.push_turn(
        Turn::new()
            .reasoning("hmm")
            .content("Hello ")
            .content("there")
            .usage(100, 5),
    );
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("hi").await.unwrap();
    let events = until(&mut rx, is_end).await;
    assert_eq!(events[0], WsEvent::ThinkingStart);
    assert!(events.contains(&WsEvent::Reasoning { text: "hmm".into() }));
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            WsEvent::Content { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Hello there");
    assert!(events.contains(&WsEvent::Status {
        prompt_tokens: 100,
        completion_tokens: 5,
        total_tokens: 105,
        context_window: 1000,
        pct: 10.0,
        effort: "medium".into()
    }));
    let status = ws.status().await.unwrap();
    assert_eq!(
        (status.state, status.messages, status.tokens),
        (WsState::Idle, 2, 105)
    );
    let states: Vec<WsState> = std::iter::from_fn(|| node.global.try_recv().ok())
        .filter_map(|g| match g {
            GlobalEvent::WsState { state, .. } => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(states, [WsState::Thinking, WsState::Idle]);
    let body = &node.llm.chat_bodies()[0];
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "hi");
    assert_eq!(body["tools"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_panicking_or_hanging_tool_becomes_an_error_result_and_the_turn_goes_on() {
    let node = node().await;
    node.llm.push_turn(
        Turn::new()
            .tool_call("c1", "boom", "{}")
            .tool_call("c2", "hang", "{}")
            .tool_call("c3", "look", r#"{"text": "fine"}"#),
    );
    node.llm.push_turn(Turn::text("Recovered."));
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("go").await.unwrap();
    let events = until(&mut rx, is_end).await;
    let results: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            WsEvent::ToolResult {
                call_id, output, ..
            } => Some((call_id.clone(), output.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 3);
    assert!(
        results[0].1.starts_with("Error: boom crashed"),
        "{results:?}"
    );
    assert!(results[0].1.contains("tool exploded"), "{results:?}");
    assert_eq!(results[1].1, "Error: hang timed out after 1s");
    assert_eq!(results[2].1, "looked at \"fine\"");
    assert!(events.iter().any(|e| *e
        == WsEvent::Content {
            text: "Recov".into()
        }
        || matches!(e, WsEvent::Content { .. })));
    assert_eq!(ws.status().await.unwrap().state, WsState::Idle);
}

#[tokio::test]
async fn cancel_stops_a_slow_stream_and_the_workstream_stays_usable() {
    let node = node().await;
    node.llm.push([Reply::Stream {
        turn: Turn::new()
            .content("a")
            .content("b")
            .content("c")
            .content("d"),
        delay: Duration::from_millis(300),
        cut_after: None,
    }]);
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("slow").await.unwrap();
    until(&mut rx, |e| matches!(e, WsEvent::ThinkingStart)).await;
    assert_eq!(
        ws.status().await.unwrap().state,
        WsState::Thinking,
        "answered mid-stream"
    );
    ws.cancel().unwrap();
    let events = until(&mut rx, is_end).await;
    assert!(events.contains(&WsEvent::Info {
        message: "Cancelled".into()
    }));
    assert_eq!(ws.status().await.unwrap().state, WsState::Idle);

    node.llm.push_turn(Turn::text("fresh"));
    ws.send("again").await.unwrap();
    until(&mut rx, is_end).await;
    let history = ws.history().await.unwrap();
    assert_eq!(history.last().unwrap().content.as_deref(), Some("fresh"));
}

#[tokio::test]
async fn cancel_during_a_tool_leaves_no_unanswered_call() {
    let node = node_with(10, |c| c.tools.timeout = 60).await;
    node.llm
        .push_turn(Turn::new().tool_call("c1", "hang", "{}"));
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("go").await.unwrap();
    until(&mut rx, |e| matches!(e, WsEvent::ToolInfo { .. })).await;
    assert_eq!(ws.status().await.unwrap().state, WsState::Running);
    ws.cancel().unwrap();
    until(&mut rx, is_end).await;
    let history = ws.history().await.unwrap();
    assert_eq!(history.len(), 1, "only the user message: {history:?}");
}

#[tokio::test]
async fn malformed_model_output_yields_error_results_and_the_model_continues() {
    let node = node().await;
    node.llm.push_turn(
        Turn::new()
            .tool_call("c1", "look", r#"{"text": "recovered value"#)
            .tool_call("c2", "nope", "{}")
            .tool_call("c3", "look", "{\"other\": 1"),
    );
    node.llm.push_turn(Turn::new()); // empty reply
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("go").await.unwrap();
    until(&mut rx, is_end).await;
    let history = ws.history().await.unwrap();
    let outputs: Vec<&str> = history
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| m.content.as_deref().unwrap())
        .collect();
    assert_eq!(outputs[0], "looked at \"recovered value\"");
    assert_eq!(outputs[1], "Error: unknown tool 'nope'");
    assert!(
        outputs[2].starts_with("Error: invalid JSON arguments"),
        "{outputs:?}"
    );
    let last = history.last().unwrap();
    assert_eq!(
        (last.role, last.content.as_deref()),
        (Role::Assistant, None)
    );
    assert_eq!(ws.status().await.unwrap().state, WsState::Idle);
}

#[tokio::test]
async fn a_send_before_the_model_is_known_errors_at_once_and_works_once_detected() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.set_models_down(true);
    let node = node_on(llm, 10, |c| c.model.name = None, None).await;
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("hi").await.unwrap();
    let events = until(&mut rx, is_end).await;
    let errors: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            WsEvent::Error { message } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        errors.iter().any(|m| m.contains("no model known yet")),
        "{events:#?}"
    );
    assert_eq!(ws.status().await.unwrap().state, WsState::Error);

    // The model server finished loading: the same workstream works, no restart.
    node.llm.set_models_down(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !node._router.lane("default").unwrap().model.is_known() {
        assert!(tokio::time::Instant::now() < deadline, "never detected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.llm.push_turn(Turn::text("now I can"));
    ws.send("again").await.unwrap();
    until(&mut rx, is_end).await;
    assert_eq!(ws.status().await.unwrap().state, WsState::Idle);
}

#[tokio::test]
async fn a_backend_error_is_shown_and_the_next_message_works() {
    let node = node().await;
    node.llm.push([Reply::error(500, "model crashed")]);
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("hi").await.unwrap();
    let events = until(&mut rx, is_end).await;
    assert!(events.contains(&WsEvent::Error {
        message: "Error: backend returned HTTP 500: model crashed".into()
    }));
    assert_eq!(ws.status().await.unwrap().state, WsState::Error);
    node.llm.push_turn(Turn::text("better"));
    ws.send("again").await.unwrap();
    until(&mut rx, is_end).await;
    assert_eq!(ws.status().await.unwrap().state, WsState::Idle);
}
