//! Tool approval: waiting while status is answered, denial with feedback, "always",
//! auto-approved tools, and plan review.

use turnstone_actors::provider::Role;
use turnstone_actors::workstream::{ManagerError, WorkstreamOptions, WsEvent, WsState};
use turnstone_tests::llm::Turn;

use super::support::{is_end, new_ws, node, node_with, until};

#[tokio::test]
async fn a_tool_call_waits_for_approval_while_status_is_answered() {
    let node = node().await;
    node.llm
        .push_turn(Turn::new().content("Let me echo.").tool_call(
            "c1",
            "echo",
            r#"{"text": "hi"}"#,
        ));
    node.llm.push_turn(Turn::text("Echoed."));
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("echo hi").await.unwrap();
    let events = until(&mut rx, |e| matches!(e, WsEvent::ApproveRequest { .. })).await;
    let WsEvent::ApproveRequest { items } = events.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(items[0].func_name, "echo");
    assert_eq!(items[0].preview, "hi");
    assert!(items[0].needs_approval);

    // The mailbox is free while a person decides.
    let status = ws.status().await.unwrap();
    assert_eq!(
        (status.state, status.pending_approval),
        (WsState::Attention, 1)
    );
    assert!(matches!(
        ws.send("another").await,
        Err(ManagerError::Workstream(_))
    ));

    ws.approve(true, None, false).await.unwrap();
    let events = until(&mut rx, is_end).await;
    assert!(events.contains(&WsEvent::ToolOutputChunk {
        call_id: "c1".into(),
        chunk: "line 1".into()
    }));
    assert!(events.contains(&WsEvent::ToolResult {
        call_id: "c1".into(),
        name: "echo".into(),
        output: "echo: hi".into()
    }));
    let second = &node.llm.chat_bodies()[1];
    let tool_msg = second["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(tool_msg["role"], "tool");
    assert_eq!(tool_msg["tool_call_id"], "c1");
    assert_eq!(tool_msg["content"], "echo: hi");
    assert_eq!(ws.status().await.unwrap().tool_calls, 1);
}

#[tokio::test]
async fn a_denial_with_feedback_reaches_the_model() {
    let node = node().await;
    node.llm.push_turn(
        Turn::new()
            .tool_call("c1", "echo", r#"{"text": "x"}"#)
            .tool_call("c2", "look", r#"{"text": "y"}"#),
    );
    node.llm.push_turn(Turn::text("OK, I will not."));
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("go").await.unwrap();
    until(&mut rx, |e| matches!(e, WsEvent::ApproveRequest { .. })).await;
    ws.approve(false, Some("not now".into()), false)
        .await
        .unwrap();
    until(&mut rx, is_end).await;
    let history = ws.history().await.unwrap();
    let outputs: Vec<(&str, &str)> = history
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| (m.name.as_deref().unwrap(), m.content.as_deref().unwrap()))
        .collect();
    assert_eq!(
        outputs,
        [
            ("echo", "Denied by user: not now"),
            ("look", "looked at \"y\"")
        ],
        "only the call needing approval is denied"
    );
    let feedback = history.iter().rev().find(|m| m.role == Role::User).unwrap();
    assert_eq!(feedback.content.as_deref(), Some("not now"));
}

#[tokio::test]
async fn always_approves_later_batches_without_asking() {
    let node = node().await;
    node.llm
        .push_turn(Turn::new().tool_call("c1", "echo", r#"{"text": "1"}"#));
    node.llm
        .push_turn(Turn::new().tool_call("c2", "echo", r#"{"text": "2"}"#));
    node.llm.push_turn(Turn::text("done"));
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("go").await.unwrap();
    until(&mut rx, |e| matches!(e, WsEvent::ApproveRequest { .. })).await;
    ws.approve(true, None, true).await.unwrap();
    let events = until(&mut rx, is_end).await;
    assert!(
        events.iter().any(|e| matches!(e, WsEvent::ToolInfo { .. })),
        "second batch auto-approved"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, WsEvent::ApproveRequest { .. }))
    );
    assert!(ws.status().await.unwrap().auto_approve);
}

#[tokio::test]
async fn auto_approved_tools_and_skip_permissions_run_without_asking() {
    let node = node_with(10, |c| c.tools.skip_permissions = true).await;
    node.llm
        .push_turn(Turn::new().tool_call("c1", "echo", r#"{"text": "a"}"#));
    node.llm.push_turn(Turn::text("done"));
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("go").await.unwrap();
    let events = until(&mut rx, is_end).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, WsEvent::ApproveRequest { .. }))
    );

    let node = node_with(10, |_| {}).await;
    node.llm
        .push_turn(Turn::new().tool_call("c1", "echo", r#"{"text": "a"}"#));
    node.llm.push_turn(Turn::text("done"));
    let options = WorkstreamOptions {
        auto_approve_tools: ["echo".to_owned()].into(),
        ..WorkstreamOptions::default()
    };
    let ws = node.manager.create(None, options, None).await.unwrap();
    let mut rx = ws.subscribe();
    ws.send("go").await.unwrap();
    let events = until(&mut rx, is_end).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, WsEvent::ToolResult { .. }))
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, WsEvent::ApproveRequest { .. }))
    );
}

#[tokio::test]
async fn a_plan_waits_for_review_and_feedback_is_passed_on() {
    let node = node().await;
    node.llm
        .push_turn(Turn::new().tool_call("p1", "plan", r#"{"text": "fix it"}"#));
    node.llm.push_turn(Turn::text("Following the plan."));
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("fix the bug").await.unwrap();
    let events = until(&mut rx, |e| matches!(e, WsEvent::PlanReview { .. })).await;
    assert_eq!(
        events.last().unwrap(),
        &WsEvent::PlanReview {
            content: "1. read\n2. fix".into()
        }
    );
    assert_eq!(ws.status().await.unwrap().state, WsState::Attention);
    ws.plan_feedback("also add a test").await.unwrap();
    until(&mut rx, is_end).await;
    let body = &node.llm.chat_bodies()[1];
    let last = body["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["content"],
        "User feedback on this plan: also add a test"
    );
    assert!(
        ws.plan_feedback("late").await.is_err(),
        "nothing pending any more"
    );
}
