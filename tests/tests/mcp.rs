#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The MCP client against the real reference server (`@modelcontextprotocol/server-everything`
//! from npm, installed by scripts/test) over stdio.

use std::collections::BTreeMap;
use std::time::Duration;

use ractor::rpc::CallResult;
use serde_json::json;
use turnstone_actors::config::{McpConfig, McpServerConfig};
use turnstone_actors::mcp::{
    McpMsg, McpServerActor, McpTool, configured_servers, discover, start_servers,
};
use turnstone_actors::tools::{Tool, ToolContext};
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::supervise::{ChildRef, Observer};

fn everything() -> McpServerConfig {
    let bin = std::env::var("TURNSTONE_TEST_MCP_EVERYTHING")
        .expect("TURNSTONE_TEST_MCP_EVERYTHING: run scripts/test");
    McpServerConfig {
        command: Some(bin),
        args: vec!["stdio".into()],
        ..McpServerConfig::default()
    }
}

fn ctx() -> ToolContext {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    ToolContext {
        workdir: std::env::temp_dir(),
        session_id: "s".into(),
        call_id: "c".into(),
        turn: 1,
        output: tx,
        approver: None,
    }
}

#[tokio::test]
async fn tools_are_discovered_and_called_by_their_prefixed_names() {
    let mut servers = BTreeMap::new();
    servers.insert("everything".to_owned(), everything());
    let config = McpConfig {
        config_path: None,
        servers,
    };
    let started = start_servers(
        &config,
        Duration::from_secs(20),
        Observer::unregistered(),
        None,
    )
    .await
    .unwrap();
    let (tools, status) = (&started.tools, &started.status);
    let names: Vec<String> = tools.iter().map(|t| t.spec().name).collect();
    assert!(
        names.contains(&"mcp__everything__echo".to_owned()),
        "{names:?}"
    );
    assert_eq!(status[0].tools.as_ref().unwrap().len(), tools.len());
    let echo = tools
        .iter()
        .find(|t| t.spec().name == "mcp__everything__echo")
        .unwrap();
    assert!(echo.needs_approval());
    assert!(echo.spec().description.starts_with("[MCP: everything]"));
    assert_eq!(echo.spec().parameters["type"], "object");
    assert_eq!(
        echo.run(json!({"message": "hi"}), ctx())
            .await
            .unwrap()
            .text,
        "Echo: hi"
    );
    let sum = tools
        .iter()
        .find(|t| t.spec().name == "mcp__everything__get-sum")
        .unwrap();
    assert!(
        sum.run(json!({"a": 2, "b": 3}), ctx())
            .await
            .unwrap()
            .text
            .contains('5')
    );
    started
        .supervisor
        .unwrap()
        .shutdown(Some(Duration::from_secs(10)))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_that_dies_mid_call_gives_an_error_and_is_reconnected() {
    let infos = discover("everything", &everything()).await.unwrap();
    let long = infos
        .iter()
        .find(|t| t.name == "trigger-long-running-operation")
        .unwrap()
        .clone();
    let echo_info = infos.iter().find(|t| t.name == "echo").unwrap().clone();
    let actor = McpServerActor {
        name: "everything".into(),
        config: everything(),
        backoff: Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1))
            .with_free_attempts(1),
    };
    let (actor_ref, _) = ractor::Actor::spawn(None, actor, ()).await.unwrap();
    let handle = ChildRef::fixed(actor_ref.clone());
    let slow = McpTool::new("everything", long, handle.clone(), Duration::from_secs(30));
    let echo = McpTool::new("everything", echo_info, handle, Duration::from_secs(30));
    assert_eq!(
        echo.run(json!({"message": "before"}), ctx())
            .await
            .unwrap()
            .text,
        "Echo: before"
    );

    let call =
        tokio::spawn(async move { slow.run(json!({"duration": 20, "steps": 10}), ctx()).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = match actor_ref.call(McpMsg::Pid, None).await.unwrap() {
        CallResult::Success(Some(pid)) => pid,
        other => panic!("no pid: {other:?}"),
    };
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(err.starts_with("MCP tool error"), "{err}");

    // The next call starts the server again.
    assert_eq!(
        echo.run(json!({"message": "after"}), ctx())
            .await
            .unwrap()
            .text,
        "Echo: after"
    );
    actor_ref
        .stop_and_wait(None, Some(Duration::from_secs(10)))
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_configurations_are_clear_errors() {
    let mut servers = BTreeMap::new();
    servers.insert("bad__name".to_owned(), everything());
    let err = configured_servers(&McpConfig {
        config_path: None,
        servers,
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MCP server name \"bad__name\" must not contain \"__\""
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcp.json");
    std::fs::write(
        &file,
        r#"{"mcpServers": {"fs": {"command": "npx", "args": ["x"]}}}"#,
    )
    .unwrap();
    let found = configured_servers(&McpConfig {
        config_path: Some(file.display().to_string()),
        servers: BTreeMap::new(),
    })
    .unwrap();
    assert_eq!(found["fs"].args, ["x"]);
    std::fs::write(&file, "{not json").unwrap();
    let err = configured_servers(&McpConfig {
        config_path: Some(file.display().to_string()),
        servers: BTreeMap::new(),
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("MCP config {}", file.display())),
        "{err}"
    );

    let missing = McpServerConfig {
        command: Some("/nonexistent/mcp-server".into()),
        ..McpServerConfig::default()
    };
    let err = discover("ghost", &missing).await.unwrap_err().to_string();
    assert!(
        err.starts_with("MCP server ghost: cannot start /nonexistent/mcp-server"),
        "{err}"
    );

    // An unreachable server is reported, not fatal.
    let mut servers = BTreeMap::new();
    servers.insert("ghost".to_owned(), missing);
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
    assert!(started.tools.is_empty());
    assert!(
        started.status[0]
            .tools
            .as_ref()
            .unwrap_err()
            .contains("cannot start")
    );
}

#[tokio::test]
async fn a_streamable_http_server_is_discovered_and_called() {
    let bin = std::env::var("TURNSTONE_TEST_MCP_EVERYTHING").expect("run scripts/test");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut server = tokio::process::Command::new(&bin)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "server-everything did not listen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let config = McpServerConfig {
        url: Some(format!("http://127.0.0.1:{port}/mcp")),
        ..McpServerConfig::default()
    };
    let mut servers = BTreeMap::new();
    servers.insert("web".to_owned(), config);
    let started = start_servers(
        &McpConfig {
            config_path: None,
            servers,
        },
        Duration::from_secs(20),
        Observer::unregistered(),
        None,
    )
    .await
    .unwrap();
    let echo = started
        .tools
        .iter()
        .find(|t| t.spec().name == "mcp__web__echo")
        .expect("echo over HTTP");
    assert_eq!(
        echo.run(json!({"message": "over http"}), ctx())
            .await
            .unwrap()
            .text,
        "Echo: over http"
    );
    started
        .supervisor
        .unwrap()
        .shutdown(Some(Duration::from_secs(10)))
        .await
        .unwrap();
    let _ = server.kill().await;
}
