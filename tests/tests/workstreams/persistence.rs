//! What is stored: conversations resumed by prefix, a database that goes away, compaction,
//! titles, and a node that stops right after a turn.

use std::time::Duration;

use turnstone_actors::config::TurnstoneConfig;
use turnstone_actors::storage::Store;
use turnstone_actors::workstream::{TITLE_PROMPT, WorkstreamOptions, WsEvent, WsState};
use turnstone_tests::llm::{ScriptedLlm, Turn};

use super::support::{is_end, new_ws, node_with, node_with_store, until};

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
