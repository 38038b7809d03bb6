//! The built-in tools and agents end to end: reading, editing, running, planning, delegating,
//! and the limits on agents.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use turnstone_actors::config::TurnstoneConfig;
use turnstone_actors::tools::builtin::builtin_tools;
use turnstone_actors::workstream::{
    WorkstreamDeps, WorkstreamManager, WorkstreamOptions, WsEvent, WsState,
};
use turnstone_runtime::supervise::Observer;
use turnstone_tests::llm::{ScriptedLlm, Turn};

use super::support::{Behaviour, Node, TestTool, is_end, new_ws, start_router, until};

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
    llm.push_turn(Turn::new().tool_call("c5", "task", r#"{"prompt": "write and run the test"}"#));
    // the task agent
    llm.push_turn(Turn::new().tool_call(
        "t1",
        "write_file",
        r#"{"path": "test_calc.py", "content": "from calc import add\nassert add(2, 3) == 5\nprint('test ok')\n"}"#,
    ));
    llm.push_turn(Turn::new().tool_call("t2", "bash", r#"{"command": "python3 test_calc.py"}"#));
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
        std::fs::read_to_string(work.path().join(format!(".plan-{}.md", ws.session_id()))).unwrap();
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
    node.llm
        .push_turn(Turn::new().tool_call("b1", "bash", r#"{"command": "echo hi > out.txt"}"#));
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
