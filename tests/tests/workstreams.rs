#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Workstreams end to end against the scripted LLM server: turns, tool rounds with approval,
//! denial, "always", plan review, crashing and hanging tools, cancellation mid-turn, malformed
//! model output, backend errors, and the manager's capacity policy.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use turnstone_actors::config::TurnstoneConfig;
use turnstone_actors::provider::{
    ModelRouter, PoolOptions, RetryPolicy, Role, ToolSpec, start_providers,
};
use turnstone_actors::storage::Store;
use turnstone_actors::tools::{Tool, ToolContext, ToolOutput, ToolRegistry};
use turnstone_actors::workstream::{
    GlobalEvent, ManagerError, TITLE_PROMPT, WorkstreamDeps, WorkstreamHandle, WorkstreamManager,
    WorkstreamOptions, WsEvent, WsState,
};
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::supervise::Observer;
use turnstone_tests::llm::{Reply, ScriptedLlm, Turn};

struct TestTool {
    name: &'static str,
    approval: bool,
    behaviour: fn(&Value, &ToolContext) -> Behaviour,
}

enum Behaviour {
    Output(String),
    Review(String),
    Hang,
    Panic,
}

#[async_trait]
impl Tool for TestTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.into(),
            description: format!("test tool {}", self.name),
            parameters: json!({"type": "object", "properties": {"text": {"type": "string"}}}),
        }
    }
    fn needs_approval(&self) -> bool {
        self.approval
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("text")
    }
    async fn run(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, String> {
        match (self.behaviour)(&args, &ctx) {
            Behaviour::Output(s) => Ok(ToolOutput::text(s)),
            Behaviour::Review(plan) => Ok(ToolOutput {
                text: plan.clone(),
                review: Some(plan),
            }),
            Behaviour::Hang => {
                futures::future::pending::<()>().await;
                Ok(ToolOutput::text("unreachable"))
            }
            Behaviour::Panic => panic!("tool exploded"),
        }
    }
}

fn tools() -> ToolRegistry {
    let mut r = ToolRegistry::new();
    let echo = |args: &Value, ctx: &ToolContext| {
        ctx.emit("line 1");
        Behaviour::Output(format!("echo: {}", args["text"].as_str().unwrap_or("")))
    };
    r.register(Arc::new(TestTool {
        name: "echo",
        approval: true,
        behaviour: echo,
    }));
    r.register(Arc::new(TestTool {
        name: "look",
        approval: false,
        behaviour: |args, _| Behaviour::Output(format!("looked at {}", args["text"])),
    }));
    r.register(Arc::new(TestTool {
        name: "hang",
        approval: false,
        behaviour: |_, _| Behaviour::Hang,
    }));
    r.register(Arc::new(TestTool {
        name: "boom",
        approval: false,
        behaviour: |_, _| Behaviour::Panic,
    }));
    r.register(Arc::new(TestTool {
        name: "plan",
        approval: false,
        behaviour: |_, _| Behaviour::Review("1. read\n2. fix".into()),
    }));
    r
}

struct Node {
    llm: ScriptedLlm,
    manager: WorkstreamManager,
    global: broadcast::Receiver<GlobalEvent>,
    _router: ModelRouter,
}

async fn node_with(max: usize, tweak: impl FnOnce(&mut TurnstoneConfig)) -> Node {
    node_with_store(max, tweak, None).await
}

async fn node_with_store(
    max: usize,
    tweak: impl FnOnce(&mut TurnstoneConfig),
    store: Option<Store>,
) -> Node {
    node_on(ScriptedLlm::start().await.unwrap(), max, tweak, store).await
}

async fn node_on(
    llm: ScriptedLlm,
    max: usize,
    tweak: impl FnOnce(&mut TurnstoneConfig),
    store: Option<Store>,
) -> Node {
    llm.route(TITLE_PROMPT, Turn::text("A test title"));
    let mut config = TurnstoneConfig::default();
    config.api.base_url = llm.base_url();
    config.model.name = Some("scripted-model".into());
    config.model.context_window = 1000;
    config.tools.timeout = 1;
    tweak(&mut config);
    let observer = Observer::unregistered();
    let router = start_router(&config, &observer).await;
    let (global, global_rx) = broadcast::channel(4096);
    let deps = WorkstreamDeps {
        router: router.clone(),
        tools: tools(),
        config: Arc::new(config),
        global,
        workdir: std::env::temp_dir(),
        store,
        node_id: "node-test".into(),
    };
    let manager = WorkstreamManager::start(deps, max, Duration::from_secs(7200), observer, None)
        .await
        .unwrap();
    Node {
        llm,
        manager,
        global: global_rx,
        _router: router,
    }
}

/// Providers for a test node: fast failures, no retries, no probes; a model not listed yet
/// is detected in the background.
async fn start_router(config: &TurnstoneConfig, observer: &Observer) -> ModelRouter {
    let options = PoolOptions {
        open_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            retries: 0,
            backoff: Backoff::none(),
        },
        probes: false,
        detect: Some(Backoff::exponential(
            Duration::from_millis(10),
            Duration::from_millis(40),
        )),
    };
    start_providers(config, options, observer.clone(), None)
        .await
        .unwrap()
        .1
}

async fn node() -> Node {
    node_with(10, |_| {}).await
}

/// Events until (and including) the first that matches.
async fn until(
    rx: &mut broadcast::Receiver<Arc<WsEvent>>,
    done: impl Fn(&WsEvent) -> bool,
) -> Vec<WsEvent> {
    let mut seen = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out; saw {seen:#?}"))
            .map(Arc::unwrap_or_clone)
            .unwrap();
        let stop = done(&e);
        seen.push(e);
        if stop {
            return seen;
        }
    }
}

fn is_end(e: &WsEvent) -> bool {
    matches!(e, WsEvent::StreamEnd)
}

async fn new_ws(node: &Node) -> (WorkstreamHandle, broadcast::Receiver<Arc<WsEvent>>) {
    let ws = node
        .manager
        .create(None, WorkstreamOptions::default(), None)
        .await
        .unwrap();
    let rx = ws.subscribe();
    (ws, rx)
}

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

#[tokio::test]
async fn conversations_are_persisted_and_resumed_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("ts.db").display());
    let store = Store::open_url(&url, 2).await.unwrap();
    let node = node_with_store(10, |_| {}, Some(store.clone())).await;
    node.llm
        .push_turn(Turn::new().tool_call("c1", "look", r#"{"text": "config"}"#));
    node.llm.push_turn(Turn::text("It is configured."));
    let (ws, mut rx) = new_ws(&node).await;
    ws.send("check the config").await.unwrap();
    until(&mut rx, is_end).await;
    let before = ws.history().await.unwrap();
    assert_eq!(before.len(), 4);

    // The writer is asynchronous: wait until the rows are there.
    let session = ws.session_id().to_owned();
    for _ in 0..100 {
        if store.load_history(&session).await.unwrap().len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.load_history(&session).await.unwrap(), before);
    assert_eq!(
        store.workstream(ws.ws_id()).await.unwrap().unwrap().state,
        "idle"
    );
    store.set_alias(&session, "config-check").await.unwrap();

    let resumed = node
        .manager
        .create(None, WorkstreamOptions::default(), Some(&session[..8]))
        .await
        .unwrap();
    assert_eq!(resumed.session_id(), session);
    assert_eq!(
        resumed.name(),
        "config-check",
        "named after the session's alias"
    );
    assert_eq!(resumed.history().await.unwrap(), before);
    node.llm.push_turn(Turn::text("Still configured."));
    let mut rx2 = resumed.subscribe();
    resumed.send("and now?").await.unwrap();
    until(&mut rx2, is_end).await;
    let body = node.llm.chat_bodies().last().unwrap().clone();
    assert_eq!(
        body["messages"].as_array().unwrap().len(),
        1 + 4 + 1,
        "system + history + new"
    );

    let err = node
        .manager
        .create(None, WorkstreamOptions::default(), Some("no-such-session"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "no session matches \"no-such-session\"");
}

#[tokio::test]
async fn a_database_that_goes_away_is_reported_and_the_turn_still_completes() {
    use sea_orm::ConnectionTrait;
    let url = turnstone_tests::services::fresh_postgres_database()
        .await
        .expect("postgres");
    let store = Store::open_url(&url, 2).await.unwrap();
    let node = node_with_store(10, |_| {}, Some(store.clone())).await;
    let (ws, mut rx) = new_ws(&node).await;

    // Drop the tables under the running workstream.
    store
        .connection()
        .execute_unprepared("DROP TABLE conversations; DROP TABLE workstreams;")
        .await
        .unwrap();
    node.llm.push_turn(Turn::text("answer from memory"));
    ws.send("hello").await.unwrap();
    let events = until(&mut rx, is_end).await;
    let mut errors: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            WsEvent::Error { message } => Some(message.clone()),
            _ => None,
        })
        .collect();
    // Writes are asynchronous; collect a little longer.
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        if let WsEvent::Error { message } = &*e {
            errors.push(message.clone());
        }
    }
    assert!(
        errors
            .iter()
            .any(|m| m.starts_with("Error: could not save to the database")),
        "{errors:?}"
    );
    assert_eq!(ws.status().await.unwrap().state, WsState::Idle);
    assert_eq!(
        ws.history().await.unwrap().len(),
        2,
        "the conversation continues in memory"
    );
}

#[tokio::test]
async fn compact_summarises_the_older_part_and_keeps_the_newest() {
    let node = node_with(10, |c| {
        c.model.context_window = 100; // keeps about 20 tokens (80 chars) verbatim
        c.session.compact_max_tokens = 512;
    })
    .await;
    node.llm.route(
        "Summarize the conversation below",
        Turn::text("SUMMARY: user asked about a and b."),
    );
    let (ws, mut rx) = new_ws(&node).await;
    for (q, a) in [
        ("question about a ".repeat(4), "answer a ".repeat(4)),
        ("about b?".to_owned(), "b is fine".to_owned()),
    ] {
        node.llm.push_turn(Turn::text(&a));
        ws.send(&q).await.unwrap();
        until(&mut rx, is_end).await;
    }
    assert_eq!(ws.history().await.unwrap().len(), 4);
    ws.compact().await.unwrap();
    let history = ws.history().await.unwrap();
    let texts: Vec<&str> = history
        .iter()
        .map(|m| m.content.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(
        texts,
        [
            "[Conversation summary]",
            "SUMMARY: user asked about a and b.",
            "about b?",
            "b is fine"
        ],
        "the newest exchange is kept verbatim"
    );
    let summary_body = node
        .llm
        .chat_bodies()
        .into_iter()
        .find(|b| b.to_string().contains("Summarize the conversation below"))
        .unwrap();
    assert_eq!(summary_body["temperature"], 0.3);
    assert_eq!(summary_body["max_tokens"], 512);
    assert!(
        summary_body.get("tools").is_none(),
        "no tools in a summary request"
    );
    let rendered = summary_body["messages"][1]["content"].as_str().unwrap();
    assert!(rendered.starts_with("USER: question about a"), "{rendered}");
    assert!(
        !rendered.contains("about b?"),
        "kept messages are not summarised"
    );
    assert_eq!(ws.status().await.unwrap().state, WsState::Idle);

    // Too little left to summarise: a clear refusal.
    let fresh = node
        .manager
        .create(None, WorkstreamOptions::default(), None)
        .await
        .unwrap();
    assert_eq!(
        fresh.compact().await.err().unwrap().to_string(),
        "nothing to compact yet"
    );
}

#[tokio::test]
async fn a_nearly_full_context_is_compacted_automatically_after_the_reply() {
    let node = node_with(10, |c| {
        c.model.context_window = 1000;
        c.session.auto_compact_pct = 0.8;
    })
    .await;
    node.llm.route(
        "Summarize the conversation below",
        Turn::text("earlier: small talk"),
    );
    let (ws, mut rx) = new_ws(&node).await;
    node.llm.push_turn(Turn::text("hello").usage(300, 5));
    ws.send("hi").await.unwrap();
    until(&mut rx, is_end).await;
    node.llm.push_turn(Turn::text("the answer").usage(900, 5));
    ws.send("a question").await.unwrap();
    let events = until(&mut rx, is_end).await;
    let infos: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            WsEvent::Info { message } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        infos,
        [
            "Context 90% full: compacting the conversation…",
            "Conversation compacted: 2 messages summarised, 2 kept."
        ]
    );
    let history = ws.history().await.unwrap();
    assert_eq!(history[1].content.as_deref(), Some("earlier: small talk"));
    assert_eq!(
        history[3].content.as_deref(),
        Some("the answer"),
        "the newest reply stays"
    );
}

#[tokio::test]
async fn the_first_exchange_names_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::open_url(&url, 2).await.unwrap();
    let node = node_with_store(10, |_| {}, Some(store.clone())).await;
    let (ws, mut rx) = new_ws(&node).await;
    node.llm.push_turn(Turn::text("Use cargo build."));
    ws.send("how do I build this?").await.unwrap();
    until(&mut rx, is_end).await;
    for _ in 0..100 {
        let title = store
            .list_sessions(10)
            .await
            .unwrap()
            .first()
            .and_then(|s| s.title.clone());
        if let Some(title) = title {
            assert_eq!(title, "A test title");
            let body = node
                .llm
                .chat_bodies()
                .into_iter()
                .find(|b| b.to_string().contains(TITLE_PROMPT))
                .unwrap();
            assert!(
                body["messages"][1]["content"]
                    .as_str()
                    .unwrap()
                    .starts_with("User: how do I build this?")
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no title was saved");
}

mod agents {
    use super::*;
    use turnstone_actors::tools::builtin::builtin_tools;

    async fn agent_node(tweak: impl FnOnce(&mut TurnstoneConfig)) -> (Node, tempfile::TempDir) {
        let work = tempfile::tempdir().unwrap();
        let llm = ScriptedLlm::start().await.unwrap();
        let mut config = TurnstoneConfig::default();
        config.api.base_url = llm.base_url();
        config.model.name = Some("scripted-model".into());
        config.tools.timeout = 5;
        tweak(&mut config);
        let observer = Observer::unregistered();
        let router = start_router(&config, &observer).await;
        let config = Arc::new(config);
        let (global, global_rx) = broadcast::channel(4096);
        let deps = WorkstreamDeps {
            router: router.clone(),
            tools: builtin_tools(
                None,
                Arc::clone(&config),
                Some(router.clone()),
                vec![Arc::new(TestTool {
                    name: "mcp__x__ping",
                    approval: true,
                    behaviour: |_, _| Behaviour::Output("pong".into()),
                })],
            ),
            config,
            global,
            workdir: work.path().to_path_buf(),
            store: None,
            node_id: "node-agents".into(),
        };
        let manager = WorkstreamManager::start(deps, 10, Duration::from_secs(7200), observer, None)
            .await
            .unwrap();
        (
            Node {
                llm,
                manager,
                global: global_rx,
                _router: router,
            },
            work,
        )
    }

    /// The whole loop a user relies on, in one session: read, edit, run, plan, delegate.
    #[tokio::test]
    async fn a_session_reads_edits_runs_plans_and_delegates_end_to_end() {
        let (node, work) = agent_node(|_| {}).await;
        let root = work.path();
        std::fs::write(
            root.join("calc.py"),
            "def add(a, b):\n    return a - b\n\nprint(add(2, 3))\n",
        )
        .unwrap();
        let llm = &node.llm;
        llm.push_turn(Turn::new().tool_call("c1", "read_file", r#"{"path": "calc.py"}"#));
        llm.push_turn(Turn::new().tool_call(
            "c2",
            "edit_file",
            r#"{"path": "calc.py", "old_string": "return a - b", "new_string": "return a + b"}"#,
        ));
        llm.push_turn(Turn::new().tool_call("c3", "bash", r#"{"command": "python3 calc.py"}"#));
        llm.push_turn(Turn::new().tool_call("c4", "plan", r#"{"prompt": "plan a test for add"}"#));
        // the planner
        llm.push_turn(Turn::new().tool_call("p1", "read_file", r#"{"path": "calc.py"}"#));
        llm.push_turn(Turn::text("## Goal\nTest add(2, 3) == 5."));
        llm.push_turn(Turn::new().tool_call(
            "c5",
            "task",
            r#"{"prompt": "write and run the test"}"#,
        ));
        // the task agent
        llm.push_turn(Turn::new().tool_call(
            "t1",
            "write_file",
            r#"{"path": "test_calc.py", "content": "from calc import add\nassert add(2, 3) == 5\nprint('test ok')\n"}"#,
        ));
        llm.push_turn(Turn::new().tool_call(
            "t2",
            "bash",
            r#"{"command": "python3 test_calc.py"}"#,
        ));
        llm.push_turn(Turn::text("Wrote test_calc.py; it prints test ok."));
        // the main model's answer
        llm.push_turn(Turn::text("Fixed add() and verified it with a test."));

        let (ws, mut rx) = new_ws(&node).await;
        ws.send("fix calc.py and test it").await.unwrap();
        let mut results: Vec<(String, String)> = Vec::new();
        let mut approvals: Vec<Vec<String>> = Vec::new();
        let mut reviewed = None;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("the session stalled")
                .unwrap();
            match Arc::unwrap_or_clone(event) {
                WsEvent::ApproveRequest { items } => {
                    approvals.push(items.iter().map(|i| i.func_name.clone()).collect());
                    ws.approve(true, None, false).await.unwrap();
                }
                WsEvent::PlanReview { content } => {
                    reviewed = Some(content);
                    ws.plan_feedback("").await.unwrap();
                }
                WsEvent::ToolResult { name, output, .. } => results.push((name, output)),
                WsEvent::StreamEnd => break,
                _ => {}
            }
        }
        assert_eq!(
            approvals,
            [
                vec!["edit_file"],
                vec!["bash"],
                vec!["plan"],
                vec!["task"],
                vec!["write_file"],
                vec!["bash"]
            ],
            "read_file needs no approval; the task agent's writes and commands do"
        );
        assert_eq!(reviewed.as_deref(), Some("## Goal\nTest add(2, 3) == 5."));
        let names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["read_file", "edit_file", "bash", "plan", "task"]);
        assert!(results[0].1.contains("return a - b"), "{:?}", results[0]);
        assert_eq!(results[2].1, "5", "bash ran the edited file");
        assert!(
            results[4].1.contains("Wrote test_calc.py"),
            "the task agent's report comes back: {:?}",
            results[4]
        );
        assert!(
            std::fs::read_to_string(root.join("calc.py"))
                .unwrap()
                .contains("return a + b")
        );
        assert!(root.join("test_calc.py").exists());
        let out = std::process::Command::new("python3")
            .arg("test_calc.py")
            .current_dir(root)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "5\ntest ok\n");
        assert!(
            root.join(format!(".plan-{}.md", ws.session_id())).exists(),
            "the plan file was written"
        );
        // The task agent's own bash result was what it reported on.
        let bodies = llm.chat_bodies();
        let task_last = &bodies[bodies.len() - 2];
        assert!(task_last.to_string().contains("test ok"), "{task_last}");
        let history = ws.history().await.unwrap();
        assert_eq!(
            history.last().unwrap().content.as_deref(),
            Some("Fixed add() and verified it with a test.")
        );
        assert_eq!(llm.pending(), 0, "every scripted turn was used");
    }

    #[tokio::test]
    async fn plan_investigates_writes_the_plan_and_waits_for_review() {
        let (node, work) = agent_node(|_| {}).await;
        std::fs::write(work.path().join("bug.txt"), "off by one in loop").unwrap();
        node.llm.push_turn(Turn::new().tool_call(
            "p1",
            "plan",
            r#"{"prompt": "fix the bug in bug.txt"}"#,
        ));
        node.llm
            .push_turn(Turn::new().tool_call("r1", "read_file", r#"{"path": "bug.txt"}"#));
        node.llm
            .push_turn(Turn::text("## Goal\nFix the off-by-one."));
        node.llm.push_turn(Turn::text("Plan accepted; starting."));
        let (ws, mut rx) = new_ws(&node).await;
        ws.send("please plan the fix").await.unwrap();
        until(&mut rx, |e| matches!(e, WsEvent::ApproveRequest { .. })).await;
        ws.approve(true, None, false).await.unwrap();
        let events = until(&mut rx, |e| matches!(e, WsEvent::PlanReview { .. })).await;
        assert_eq!(
            events.last().unwrap(),
            &WsEvent::PlanReview {
                content: "## Goal\nFix the off-by-one.".into()
            }
        );
        let saved =
            std::fs::read_to_string(work.path().join(format!(".plan-{}.md", ws.session_id())))
                .unwrap();
        assert_eq!(saved, "## Goal\nFix the off-by-one.");
        // The planner's read ran without asking, and saw the file.
        let agent_second = node.llm.chat_bodies()[2].clone();
        assert!(
            agent_second.to_string().contains("off by one in loop"),
            "{agent_second}"
        );
        assert_eq!(agent_second["messages"][0]["role"], "system");
        assert!(
            agent_second["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("You are a planner")
        );
        let agent_tools: Vec<&str> = agent_second["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            agent_tools,
            [
                "man",
                "math",
                "notify",
                "read_file",
                "search",
                "web_fetch",
                "web_search",
                "mcp__x__ping"
            ],
            "read-only agent list"
        );
        ws.plan_feedback("").await.unwrap();
        until(&mut rx, is_end).await;
        assert_eq!(
            ws.history()
                .await
                .unwrap()
                .last()
                .unwrap()
                .content
                .as_deref(),
            Some("Plan accepted; starting.")
        );
    }

    #[tokio::test]
    async fn a_task_agents_command_waits_for_the_person() {
        let (node, work) = agent_node(|_| {}).await;
        node.llm
            .push_turn(Turn::new().tool_call("t1", "task", r#"{"prompt": "create out.txt"}"#));
        node.llm.push_turn(Turn::new().tool_call(
            "b1",
            "bash",
            r#"{"command": "echo hi > out.txt"}"#,
        ));
        node.llm.push_turn(Turn::text("Created out.txt."));
        node.llm.push_turn(Turn::text("The sub-agent created it."));
        let (ws, mut rx) = new_ws(&node).await;
        ws.send("delegate it").await.unwrap();
        until(&mut rx, |e| matches!(e, WsEvent::ApproveRequest { .. })).await;
        ws.approve(true, None, false).await.unwrap(); // the task itself
        let events = until(&mut rx, |e| matches!(e, WsEvent::ApproveRequest { .. })).await;
        let WsEvent::ApproveRequest { items } = events.last().unwrap() else {
            unreachable!()
        };
        assert_eq!(
            (items[0].func_name.as_str(), items[0].preview.as_str()),
            ("bash", "echo hi > out.txt")
        );
        let status = ws.status().await.unwrap();
        assert_eq!(
            (status.state, status.pending_approval),
            (WsState::Attention, 1),
            "the sub-agent's call waits"
        );
        assert!(!work.path().join("out.txt").exists());
        ws.approve(true, None, false).await.unwrap();
        let events = until(&mut rx, is_end).await;
        assert!(events.contains(&WsEvent::ToolResult {
            call_id: "t1".into(),
            name: "task".into(),
            output: "Created out.txt.".into()
        }));
        assert_eq!(
            std::fs::read_to_string(work.path().join("out.txt")).unwrap(),
            "hi\n"
        );
    }

    #[tokio::test]
    async fn agents_cannot_spawn_agents_and_stop_at_the_turn_limit() {
        let (node, _work) = agent_node(|c| c.tools.agent_max_turns = 1).await;
        node.llm
            .push_turn(Turn::new().tool_call("t1", "task", r#"{"prompt": "go deep"}"#));
        node.llm
            .push_turn(Turn::new().tool_call("t2", "task", r#"{"prompt": "deeper"}"#));
        node.llm.push_turn(Turn::text("final after the limit"));
        node.llm.push_turn(Turn::text("ok"));
        let options = WorkstreamOptions {
            auto_approve: true,
            ..WorkstreamOptions::default()
        };
        let ws = node.manager.create(None, options, None).await.unwrap();
        let mut rx = ws.subscribe();
        ws.send("go").await.unwrap();
        let events = until(&mut rx, is_end).await;
        assert!(events.contains(&WsEvent::ToolResult {
            call_id: "t1".into(),
            name: "task".into(),
            output: "final after the limit".into()
        }));
        let limited = node.llm.chat_bodies()[2].clone();
        let messages = limited["messages"].as_array().unwrap();
        let tool_msg = messages.iter().find(|m| m["role"] == "tool").unwrap();
        assert_eq!(
            tool_msg["content"],
            "Error: agents cannot spawn further agents"
        );
        assert!(
            messages.last().unwrap()["content"]
                .as_str()
                .unwrap()
                .starts_with("You have reached the tool call limit")
        );
        assert!(
            limited.get("tools").is_none(),
            "the last call offers no tools"
        );
    }
}

/// A node that stops right after a turn (`/quit` in the REPL, SIGTERM to the server) has the
/// turn in its database when `shutdown` returns: what the workstreams' writers and the store's
/// group committer still hold lands first, so the session resumes with its last answer. Each
/// node runs in a runtime of its own that is dropped right after `shutdown`, as the process
/// ends: whatever was still pending in a task is gone.
#[test]
fn a_node_that_stops_right_after_a_turn_has_stored_it() {
    use turnstone_actors::node::{Node as RealNode, NodeOptions};
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let model_runtime = runtime();
    let llm = model_runtime.block_on(async {
        let llm = ScriptedLlm::start().await.unwrap();
        llm.route(TITLE_PROMPT, Turn::text("A title"));
        llm.route("", Turn::text("the last answer"));
        llm
    });
    let mut config = TurnstoneConfig::default();
    config.api.base_url = llm.base_url();
    config.model.name = Some("scripted-model".into());
    config.database.path = dir.path().join("ts.db").display().to_string();
    let mut sessions = Vec::new();
    for _ in 0..5 {
        let node_runtime = runtime();
        let session = node_runtime.block_on(async {
            let options = NodeOptions {
                pool: Default::default(),
                workdir: dir.path().into(),
                node_id: "node-test".into(),
                storage: true,
                model_backend: None,
            };
            let node = RealNode::start_with_builtin_tools(config.clone(), options)
                .await
                .unwrap();
            let ws = node
                .manager
                .create(None, WorkstreamOptions::default(), None)
                .await
                .unwrap();
            let mut rx = ws.subscribe();
            ws.send("one more thing").await.unwrap();
            until(&mut rx, is_end).await;
            node.shutdown().await;
            ws.session_id().to_owned()
        });
        drop(node_runtime); // the process ends
        sessions.push(session);
    }
    let url = format!("sqlite://{}?mode=rwc", config.database.path);
    runtime().block_on(async {
        let store = Store::open_url(&url, 1).await.unwrap();
        for session in &sessions {
            let texts: Vec<Option<String>> = store
                .load_history(session)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.content)
                .collect();
            assert_eq!(
                texts,
                [
                    Some("one more thing".to_owned()),
                    Some("the last answer".to_owned())
                ],
                "session {session}"
            );
        }
    });
    drop(llm);
}
