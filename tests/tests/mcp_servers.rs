#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The MCP client against more real servers, installed by scripts/test: the npm reference
//! `filesystem` and `memory` servers and PyPI's `mcp-server-time` and `mcp-server-git` (all
//! over stdio), plus a server that answers with malformed JSON-RPC.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use turnstone_actors::config::{McpConfig, McpServerConfig};
use turnstone_actors::mcp::{McpServers, start_servers};
use turnstone_actors::tools::{Tool, ToolContext};
use turnstone_runtime::supervise::Observer;

fn server(var: &str, args: &[&str]) -> McpServerConfig {
    let bin = std::env::var(var).unwrap_or_else(|_| panic!("{var}: run scripts/test"));
    McpServerConfig {
        command: Some(bin),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..McpServerConfig::default()
    }
}

/// Python servers answer `initialize` after several seconds under load.
async fn start(name: &str, config: McpServerConfig) -> McpServers {
    let mut servers = BTreeMap::new();
    servers.insert(name.to_owned(), config);
    let config = McpConfig {
        config_path: None,
        servers,
    };
    start_servers(
        &config,
        Duration::from_secs(30),
        Observer::unregistered(),
        None,
    )
    .await
    .unwrap()
}

fn tool(started: &McpServers, name: &str) -> Arc<dyn Tool> {
    started
        .tools
        .iter()
        .find(|t| t.spec().name == name)
        .unwrap_or_else(|| {
            let names: Vec<String> = started.tools.iter().map(|t| t.spec().name).collect();
            panic!("{name} not among {names:?} ({:?})", started.status)
        })
        .clone()
}

async fn call(started: &McpServers, name: &str, args: Value) -> Result<String, String> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = ToolContext {
        workdir: std::env::temp_dir(),
        session_id: "s".into(),
        call_id: "c".into(),
        turn: 1,
        output: tx,
        approver: None,
    };
    tool(started, name).run(args, ctx).await.map(|o| o.text)
}

async fn stop(started: McpServers) {
    if let Some(sup) = started.supervisor {
        sup.shutdown(Some(Duration::from_secs(10))).await.unwrap();
    }
}

#[tokio::test]
async fn filesystem_server_lists_reads_writes_and_refuses_outside_paths() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("a.txt"), "alpha\nbeta\n").unwrap();
    let root_s = root.to_str().unwrap();
    let fs = start("fs", server("TURNSTONE_TEST_MCP_FILESYSTEM", &[root_s])).await;

    let listing = call(&fs, "mcp__fs__list_directory", json!({"path": root_s}))
        .await
        .unwrap();
    assert!(listing.contains("[FILE] a.txt"), "{listing}");
    let text = call(
        &fs,
        "mcp__fs__read_text_file",
        json!({"path": root.join("a.txt")}),
    )
    .await
    .unwrap();
    assert_eq!(text, "alpha\nbeta\n");
    call(
        &fs,
        "mcp__fs__write_file",
        json!({"path": root.join("b.txt"), "content": "written over MCP"}),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("b.txt")).unwrap(),
        "written over MCP"
    );
    let outside = call(
        &fs,
        "mcp__fs__read_text_file",
        json!({"path": "/etc/hostname"}),
    )
    .await
    .unwrap();
    assert!(
        outside.starts_with("Error:") && outside.contains("outside allowed directories"),
        "the server's refusal reaches the model as an error: {outside}"
    );
    stop(fs).await;
}

#[tokio::test]
async fn memory_server_keeps_a_knowledge_graph_in_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("memory.jsonl");
    let mut config = server("TURNSTONE_TEST_MCP_MEMORY", &[]);
    config
        .env
        .insert("MEMORY_FILE_PATH".into(), file.to_str().unwrap().to_owned());
    let memory = start("memory", config).await;
    call(
        &memory,
        "mcp__memory__create_entities",
        json!({"entities": [{"name": "Turnstone", "entityType": "project",
            "observations": ["rebuilt in Rust"]}]}),
    )
    .await
    .unwrap();
    let found = call(
        &memory,
        "mcp__memory__search_nodes",
        json!({"query": "Rust"}),
    )
    .await
    .unwrap();
    assert!(found.contains("Turnstone"), "{found}");
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(stored.contains("rebuilt in Rust"), "{stored}");
    stop(memory).await;
}

#[tokio::test]
async fn time_server_answers_and_rejects_unknown_zones() {
    let time = start(
        "time",
        server("TURNSTONE_TEST_MCP_TIME", &["--local-timezone", "UTC"]),
    )
    .await;
    let now = call(
        &time,
        "mcp__time__get_current_time",
        json!({"timezone": "Europe/Berlin"}),
    )
    .await
    .unwrap();
    let parsed: Value = serde_json::from_str(&now).unwrap();
    assert_eq!(parsed["timezone"], "Europe/Berlin");
    let converted = call(
        &time,
        "mcp__time__convert_time",
        json!({"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}),
    )
    .await
    .unwrap();
    assert!(converted.contains("21:00"), "{converted}");
    let bad = call(
        &time,
        "mcp__time__get_current_time",
        json!({"timezone": "Mars/Olympus"}),
    )
    .await
    .unwrap();
    assert!(bad.starts_with("Error:"), "{bad}");
    stop(time).await;
}

#[tokio::test]
async fn git_server_reads_a_real_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(repo)
            .env("GIT_AUTHOR_NAME", "Ada")
            .env("GIT_AUTHOR_EMAIL", "ada@example.org")
            .env("GIT_COMMITTER_NAME", "Ada")
            .env("GIT_COMMITTER_EMAIL", "ada@example.org")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "hello\n").unwrap();
    git(&["add", "README.md"]);
    git(&["commit", "-q", "-m", "First commit from the test"]);
    std::fs::write(repo.join("README.md"), "hello, world\n").unwrap();
    let repo_s = repo.to_str().unwrap();
    let server = start(
        "git",
        server("TURNSTONE_TEST_MCP_GIT", &["--repository", repo_s]),
    )
    .await;
    let log = call(&server, "mcp__git__git_log", json!({"repo_path": repo_s}))
        .await
        .unwrap();
    assert!(log.contains("First commit from the test"), "{log}");
    let diff = call(
        &server,
        "mcp__git__git_diff_unstaged",
        json!({"repo_path": repo_s}),
    )
    .await
    .unwrap();
    assert!(diff.contains("+hello, world"), "{diff}");
    stop(server).await;
}

/// A stdio server that initialises and lists one tool properly, then answers calls with a
/// non-JSON line and a response whose result has the wrong shape.
const MALFORMED: &str = r#"
import json, sys
def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n"); sys.stdout.flush()
for line in sys.stdin:
    msg = json.loads(line)
    method, mid = msg.get("method"), msg.get("id")
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {"protocolVersion": msg["params"]["protocolVersion"],
              "capabilities": {"tools": {}}, "serverInfo": {"name": "broken", "version": "0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [{"name": "bad",
              "description": "answers badly", "inputSchema": {"type": "object"}}]}})
    elif method == "tools/call":
        sys.stdout.write("this is not json\n"); sys.stdout.flush()
        send({"jsonrpc": "2.0", "id": mid, "result": {"content": "not a list"}})
    elif mid is not None:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no"}})
"#;

#[tokio::test]
async fn malformed_responses_become_clear_tool_errors() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("broken.py");
    std::fs::write(&script, MALFORMED).unwrap();
    let config = McpServerConfig {
        command: Some("python3".into()),
        args: vec!["-u".into(), script.to_str().unwrap().to_owned()],
        ..McpServerConfig::default()
    };
    let mut servers = BTreeMap::new();
    servers.insert("broken".to_owned(), config);
    let started = start_servers(
        &McpConfig {
            config_path: None,
            servers,
        },
        Duration::from_secs(5),
        Observer::unregistered(),
        None,
    )
    .await
    .unwrap();
    let began = std::time::Instant::now();
    let err = call(&started, "mcp__broken__bad", json!({}))
        .await
        .unwrap_err();
    assert!(err.starts_with("MCP tool error:"), "{err}");
    assert!(
        began.elapsed() < Duration::from_secs(8),
        "bounded by the tool timeout"
    );
    // The actor survives and answers the next call the same way (no panic, no hang).
    let again = call(&started, "mcp__broken__bad", json!({}))
        .await
        .unwrap_err();
    assert!(again.starts_with("MCP tool error:"), "{again}");
    stop(started).await;
}
