//! The manager's capacity policy and many workstreams at once.

use std::time::Duration;

use turnstone_actors::workstream::{GlobalEvent, WorkstreamOptions, WsEvent, WsState};
use turnstone_tests::llm::{Reply, Turn};

use super::support::{is_end, new_ws, node_with, until};

#[tokio::test]
async fn capacity_evicts_an_idle_workstream_never_a_busy_one() {
    let mut node = node_with(2, |_| {}).await;
    node.llm.push([Reply::Stream {
        turn: Turn::text("slow answer"),
        delay: Duration::from_millis(400),
        cut_after: None,
    }]);
    let (busy, mut busy_rx) = new_ws(&node).await;
    let (idle, _) = new_ws(&node).await;
    busy.send("take your time").await.unwrap();
    until(&mut busy_rx, |e| matches!(e, WsEvent::ThinkingStart)).await;

    let (third, _) = new_ws(&node).await;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), node.global.recv())
            .await
            .unwrap()
            .unwrap()
        {
            GlobalEvent::WsClosed { ws_id, reason, .. } => break (ws_id, reason),
            _ => continue,
        }
    };
    assert_eq!(closed, (idle.ws_id().to_owned(), "evicted".to_owned()));
    assert!(node.manager.get(idle.ws_id()).is_none());

    // Both remaining are busy now: no room.
    node.llm.push([Reply::Stream {
        turn: Turn::text("x"),
        delay: Duration::from_millis(400),
        cut_after: None,
    }]);
    third.send("busy too").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = node
        .manager
        .create(None, WorkstreamOptions::default(), None)
        .await
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "All 2 workstreams are active");

    until(&mut busy_rx, is_end).await;
    node.manager.close(third.ws_id()).await.unwrap();
    let err = node.manager.close(busy.ws_id()).await.err().unwrap();
    assert_eq!(err.to_string(), "Cannot close last workstream");
    assert_eq!(
        node.manager.close("nope").await.err().unwrap().to_string(),
        "Unknown workstream"
    );
}

#[tokio::test]
async fn a_hundred_workstreams_turn_at_once() {
    let node = node_with(100, |_| {}).await;
    let mut streams = Vec::new();
    for _ in 0..100 {
        node.llm
            .push_turn(Turn::new().tool_call("c", "look", r#"{"text": "x"}"#));
    }
    for _ in 0..100 {
        node.llm.push_turn(Turn::text("done"));
    }
    for _ in 0..100 {
        streams.push(new_ws(&node).await);
    }
    for (ws, _) in &streams {
        ws.send("go").await.unwrap();
    }
    for (ws, rx) in &mut streams {
        let events = until(rx, is_end).await;
        assert!(
            !events.iter().any(|e| matches!(e, WsEvent::Error { .. })),
            "{events:?}"
        );
        assert_eq!(ws.status().await.unwrap().state, WsState::Idle);
    }
    assert_eq!(node.llm.pending(), 0);
    assert_eq!(node.llm.chat_bodies().len(), 200);
}
