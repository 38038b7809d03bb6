#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The storage suite, run against SQLite and against a real PostgreSQL.

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use turnstone_actors::provider::{ChatMessage, Role, ToolCall};
use turnstone_actors::storage::{
    Store, StoreError, TOOL_RESULT_CHARS, Write, conversation, service, session,
};
use turnstone_tests::services::fresh_postgres_database;

async fn sqlite() -> (Store, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    (Store::open_url(&url, 2).await.unwrap(), url, dir)
}

async fn postgresql() -> (Store, String, ()) {
    let url = fresh_postgres_database()
        .await
        .expect("postgres (run scripts/test)");
    (Store::open_url(&url, 2).await.unwrap(), url, ())
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (store, url, _dir) = super::sqlite().await;
                super::cases::$name(store, url).await;
            }
            #[tokio::test]
            async fn postgresql() {
                let (store, url, _) = super::postgresql().await;
                super::cases::$name(store, url).await;
            }
        }
    )*};
}

on_both!(
    a_conversation_with_tool_calls_round_trips,
    reconstruction_skips_orphans_and_unanswered_calls,
    sessions_resolve_by_alias_id_or_unique_prefix,
    listing_shows_sessions_with_messages_newest_first,
    pruning_removes_empty_and_old_unnamed_sessions,
    memories_are_normalised_upserted_searched_and_forgotten,
    history_search_finds_words_and_survives_odd_queries,
    session_settings_and_workstreams_are_upserted,
    a_batch_of_writes_lands_together,
    opening_a_workstream_reads_back_only_an_existing_session,
    concurrent_commits_land_and_a_failing_write_is_reported_alone,
    migrations_are_idempotent,
    services_register_heartbeat_expire_and_deregister,
    users_tokens_and_exactly_one_first_user,
);

fn call(id: &str, name: &str, args: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
    }
}

async fn raw_row(
    store: &Store,
    session: &str,
    role: &str,
    content: Option<&str>,
    id: Option<&str>,
) {
    let row = conversation::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        session_id: Set(session.into()),
        timestamp: Set("2026-01-01T00:00:00".into()),
        role: Set(role.into()),
        content: Set(content.map(str::to_owned)),
        tool_name: Set(Some("bash".into())),
        tool_args: Set(Some("{}".into())),
        tool_call_id: Set(id.map(str::to_owned)),
        provider_data: Set(None),
    };
    conversation::Entity::insert(row)
        .exec(store.connection())
        .await
        .unwrap();
}

mod cases {
    use super::*;

    pub async fn a_conversation_with_tool_calls_round_trips(store: Store, _url: String) {
        store
            .create_session("s1", Some("ws1"), Some("node-a"))
            .await
            .unwrap();
        let calls = vec![
            call("c1", "bash", r#"{"command":"ls"}"#),
            call("c2", "read_file", r#"{"path":"a"}"#),
        ];
        let long = "x".repeat(TOOL_RESULT_CHARS + 500);
        let messages = vec![
            ChatMessage::system("not stored"),
            ChatMessage::user("list files"),
            ChatMessage::assistant(Some("Looking.".into()), calls.clone()),
            ChatMessage::tool(&calls[0], "a\nb"),
            ChatMessage::tool(&calls[1], long.clone()),
            ChatMessage::assistant(Some("Two files.".into()), Vec::new()),
        ];
        for m in &messages {
            store.append("s1", m).await.unwrap();
        }
        let loaded = store.load_history("s1").await.unwrap();
        let mut expected = messages[1..].to_vec();
        expected[3].content = Some("x".repeat(TOOL_RESULT_CHARS));
        assert_eq!(loaded, expected);
    }

    pub async fn reconstruction_skips_orphans_and_unanswered_calls(store: Store, _url: String) {
        store.create_session("s2", None, None).await.unwrap();
        raw_row(
            &store,
            "s2",
            "tool_result",
            Some("orphan before any call"),
            Some("zz"),
        )
        .await;
        raw_row(&store, "s2", "user", Some("go"), None).await;
        raw_row(&store, "s2", "tool_call", None, Some("a")).await;
        raw_row(&store, "s2", "tool_call", None, Some("b")).await;
        // results without ids are matched by position
        raw_row(&store, "s2", "tool_result", Some("first"), None).await;
        raw_row(&store, "s2", "tool_result", Some("second"), None).await;
        raw_row(&store, "s2", "corrupt-role", Some("???"), None).await;
        raw_row(&store, "s2", "assistant", Some("done"), None).await;
        raw_row(&store, "s2", "user", Some("again"), None).await;
        raw_row(&store, "s2", "tool_call", None, Some("c")).await; // never answered (crash)
        let loaded = store.load_history("s2").await.unwrap();
        let roles: Vec<Role> = loaded.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Tool,
                Role::Assistant,
                Role::User
            ]
        );
        assert_eq!(loaded[1].tool_calls.len(), 2);
        assert_eq!(loaded[2].tool_call_id.as_deref(), Some("a"));
        assert_eq!(loaded[3].tool_call_id.as_deref(), Some("b"));
        assert_eq!(loaded[3].content.as_deref(), Some("second"));
    }

    pub async fn sessions_resolve_by_alias_id_or_unique_prefix(store: Store, _url: String) {
        for id in ["abc111", "abc222", "def333"] {
            store.create_session(id, None, None).await.unwrap();
        }
        store.set_alias("def333", "bugfix").await.unwrap();
        assert_eq!(store.resolve_session("bugfix").await.unwrap(), "def333");
        assert_eq!(store.resolve_session("abc222").await.unwrap(), "abc222");
        assert_eq!(store.resolve_session("abc1").await.unwrap(), "abc111");
        assert!(matches!(
            store.resolve_session("abc").await,
            Err(StoreError::Ambiguous { count: 2, .. })
        ));
        assert_eq!(
            store.resolve_session("zzz").await.unwrap_err().to_string(),
            "no session matches \"zzz\""
        );
        assert!(matches!(
            store.set_alias("abc111", "bugfix").await,
            Err(StoreError::AliasTaken(_))
        ));
        store.set_alias("def333", "bugfix").await.unwrap(); // re-setting one's own alias is fine
    }

    pub async fn listing_shows_sessions_with_messages_newest_first(store: Store, _url: String) {
        for id in ["old", "empty", "new"] {
            store.create_session(id, None, None).await.unwrap();
        }
        store.append("old", &ChatMessage::user("1")).await.unwrap();
        session::Entity::update_many()
            .col_expr(
                session::Column::Updated,
                sea_orm::sea_query::Expr::value("2020-01-01T00:00:00"),
            )
            .filter(session::Column::SessionId.eq("old"))
            .exec(store.connection())
            .await
            .unwrap();
        store.append("new", &ChatMessage::user("2")).await.unwrap();
        store.append("new", &ChatMessage::user("3")).await.unwrap();
        store.set_title("new", "A title").await.unwrap();
        let listed = store.list_sessions(50).await.unwrap();
        let ids: Vec<(&str, u64)> = listed
            .iter()
            .map(|s| (s.session_id.as_str(), s.message_count))
            .collect();
        assert_eq!(ids, [("new", 2), ("old", 1)]);
        assert_eq!(listed[0].title.as_deref(), Some("A title"));
        assert_eq!(store.list_sessions(1).await.unwrap().len(), 1);
        store.delete_session("old").await.unwrap();
        assert!(store.load_history("old").await.unwrap().is_empty());
        assert!(matches!(
            store.delete_session("old").await,
            Err(StoreError::NotFound(_))
        ));
    }

    pub async fn pruning_removes_empty_and_old_unnamed_sessions(store: Store, _url: String) {
        for id in ["empty", "old-unnamed", "old-named", "recent"] {
            store.create_session(id, None, None).await.unwrap();
        }
        for id in ["old-unnamed", "old-named", "recent"] {
            store.append(id, &ChatMessage::user("hello")).await.unwrap();
        }
        store.set_alias("old-named", "keep-me").await.unwrap();
        session::Entity::update_many()
            .col_expr(
                session::Column::Updated,
                sea_orm::sea_query::Expr::value("2020-01-01T00:00:00"),
            )
            .filter(session::Column::SessionId.is_in(["old-unnamed", "old-named"]))
            .exec(store.connection())
            .await
            .unwrap();
        assert_eq!(store.prune(90).await.unwrap(), 2);
        let left: Vec<String> = store
            .list_sessions(50)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.session_id)
            .collect();
        assert_eq!(left, ["recent", "old-named"]);
        assert_eq!(
            store.search_history("hello", 10).await.unwrap().len(),
            3,
            "conversation rows stay searchable"
        );
    }

    pub async fn memories_are_normalised_upserted_searched_and_forgotten(
        store: Store,
        _url: String,
    ) {
        assert_eq!(
            store.remember("Deploy Target", "staging").await.unwrap(),
            "deploy_target"
        );
        store.remember("deploy-target", "production").await.unwrap();
        store.remember("editor", "vim with spaces").await.unwrap();
        assert_eq!(
            store.memories("", 20).await.unwrap(),
            [
                ("deploy_target".to_owned(), "production".to_owned()),
                ("editor".to_owned(), "vim with spaces".to_owned())
            ]
        );
        assert_eq!(store.memories("vim spaces", 20).await.unwrap().len(), 1);
        assert_eq!(
            store.memories("deploy production", 20).await.unwrap().len(),
            1
        );
        assert!(
            store.memories("deploy vim", 20).await.unwrap().is_empty(),
            "every term must match"
        );
        assert!(store.forget("DEPLOY TARGET").await.unwrap());
        assert!(!store.forget("deploy_target").await.unwrap());
    }

    pub async fn history_search_finds_words_and_survives_odd_queries(store: Store, _url: String) {
        store.create_session("h", None, None).await.unwrap();
        store
            .append("h", &ChatMessage::user("please deploy the billing service"))
            .await
            .unwrap();
        store
            .append(
                "h",
                &ChatMessage::assistant(Some("The billing service is deployed.".into()), vec![]),
            )
            .await
            .unwrap();
        store
            .append("h", &ChatMessage::user("now restart nginx"))
            .await
            .unwrap();
        let hits = store.search_history("billing service", 10).await.unwrap();
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert!(hits.iter().all(|h| h.content.contains("billing")));
        assert_eq!(
            store.search_history("nginx", 10).await.unwrap()[0].role,
            "user"
        );
        for odd in ["\"unbalanced", "NEAR( OR", "a:b", "  "] {
            assert!(store.search_history(odd, 10).await.is_ok(), "{odd}");
        }
        assert!(
            store
                .search_history("kubernetes", 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn session_settings_and_workstreams_are_upserted(store: Store, _url: String) {
        store
            .set_session_config("s", "temperature", "0.2")
            .await
            .unwrap();
        store
            .set_session_config("s", "temperature", "0.7")
            .await
            .unwrap();
        store
            .set_session_config("s", "instructions", "be terse")
            .await
            .unwrap();
        let config = store.session_config("s").await.unwrap();
        assert_eq!(config.get("temperature").map(String::as_str), Some("0.7"));
        assert_eq!(config.len(), 2);

        store
            .save_workstream("w1", Some("node-a"), "main", "idle")
            .await
            .unwrap();
        store
            .save_workstream("w1", Some("node-a"), "main", "thinking")
            .await
            .unwrap();
        assert_eq!(
            store.workstream("w1").await.unwrap().unwrap().state,
            "thinking"
        );
        assert!(store.workstream("nope").await.unwrap().is_none());
    }

    /// What a workstream's writer queued meanwhile goes in one transaction.
    pub async fn a_batch_of_writes_lands_together(store: Store, _url: String) {
        store
            .create_session("s", Some("w"), Some("n"))
            .await
            .unwrap();
        let question = ChatMessage::user("what is up");
        let answer = ChatMessage::assistant(Some("all good".into()), vec![]);
        let ws = |name: &str, state| Write::Workstream {
            ws_id: "w".into(),
            node_id: Some("n".into()),
            name: name.into(),
            state,
        };
        store
            .write_all(&[
                Write::Message {
                    session_id: "s".into(),
                    message: question,
                },
                ws("main", "thinking"),
                Write::Message {
                    session_id: "s".into(),
                    message: answer,
                },
                ws("renamed", "idle"),
                Write::SessionConfig {
                    session_id: "s".into(),
                    key: "temperature".into(),
                    value: "0.3".into(),
                },
            ])
            .await
            .unwrap();
        let history = store.load_history("s").await.unwrap();
        let texts: Vec<Option<&str>> = history.iter().map(|m| m.content.as_deref()).collect();
        assert_eq!(texts, [Some("what is up"), Some("all good")]);
        let ws = store.workstream("w").await.unwrap().unwrap();
        assert_eq!((ws.name.as_str(), ws.state.as_str()), ("renamed", "idle"));
        let config = store.session_config("s").await.unwrap();
        assert_eq!(config.get("temperature").map(String::as_str), Some("0.3"));
    }

    /// A new workstream's session is recorded with it; a workstream opened on a session that
    /// exists (resumed, or restarted after a crash) gets its settings and conversation back.
    pub async fn opening_a_workstream_reads_back_only_an_existing_session(
        store: Store,
        _url: String,
    ) {
        let fresh = store
            .open_workstream("s", "w1", Some("n"), "main", "idle")
            .await
            .unwrap();
        assert!(fresh.history.is_empty() && fresh.config.is_empty());
        assert!(store.session("s").await.unwrap().is_some());
        assert_eq!(store.workstream("w1").await.unwrap().unwrap().state, "idle");
        store
            .append("s", &ChatMessage::user("remember me"))
            .await
            .unwrap();
        store
            .set_session_config("s", "temperature", "0.2")
            .await
            .unwrap();
        let resumed = store
            .open_workstream("s", "w2", Some("other"), "again", "idle")
            .await
            .unwrap();
        let texts: Vec<Option<&str>> = resumed
            .history
            .iter()
            .map(|m| m.content.as_deref())
            .collect();
        assert_eq!(texts, [Some("remember me")]);
        assert_eq!(
            resumed.config.get("temperature").map(String::as_str),
            Some("0.2")
        );
        let w2 = store.workstream("w2").await.unwrap().unwrap();
        assert_eq!(w2.node_id.as_deref(), Some("other"));
    }

    /// Workstreams committing at once land together; when one batch holds a write the
    /// database refuses, every other write still lands and only that one is reported.
    pub async fn concurrent_commits_land_and_a_failing_write_is_reported_alone(
        store: Store,
        _url: String,
    ) {
        use sea_orm::ConnectionTrait;
        let message = |session: &str, text: &str| Write::Message {
            session_id: session.into(),
            message: ChatMessage::user(text),
        };
        for session in ["a", "b", "c"] {
            store.create_session(session, None, None).await.unwrap();
        }
        let (a, b) = tokio::join!(
            store.commit(vec![message("a", "one"), message("a", "two")]),
            store.commit(vec![message("b", "three")]),
        );
        assert!(a.is_empty() && b.is_empty(), "{a:?} {b:?}");
        // The settings table is gone: a setting cannot be written any more.
        store
            .connection()
            .execute_unprepared("DROP TABLE session_config")
            .await
            .unwrap();
        let setting = Write::SessionConfig {
            session_id: "c".into(),
            key: "temperature".into(),
            value: "0.1".into(),
        };
        let (c, b) = tokio::join!(
            store.commit(vec![message("c", "four"), setting]),
            store.commit(vec![message("b", "five")]),
        );
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(b.is_empty(), "{b:?}");
        let texts = |session: &'static str| {
            let store = store.clone();
            async move {
                store
                    .load_history(session)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter_map(|m| m.content)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(texts("a").await, ["one", "two"]);
        assert_eq!(texts("b").await, ["three", "five"]);
        assert_eq!(texts("c").await, ["four"]);
    }

    pub async fn migrations_are_idempotent(store: Store, url: String) {
        use sea_orm::ConnectionTrait;
        store.remember("k", "v").await.unwrap();
        let count = |store: Store| async move {
            let row = store
                .connection()
                .query_one_raw(sea_orm::Statement::from_string(
                    store.connection().get_database_backend(),
                    "SELECT COUNT(*) AS n FROM seaql_migrations",
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        };
        let applied = count(store.clone()).await;
        assert_eq!(
            applied, 4,
            "m001 tables, m002 services, m003 users, m004 admin"
        );
        let reopened = Store::open_url(&url, 1).await.unwrap();
        assert_eq!(
            count(reopened.clone()).await,
            applied,
            "nothing applied twice"
        );
        assert_eq!(
            reopened.memories("", 10).await.unwrap().len(),
            1,
            "data kept"
        );
    }
    pub async fn services_register_heartbeat_expire_and_deregister(store: Store, _url: String) {
        use std::time::Duration;
        let meta = serde_json::json!({"adapters": ["discord"]});
        store
            .register_service("channel", "channel-a", "http://a:8091", &meta)
            .await
            .unwrap();
        store
            .register_service("channel", "channel-b", "http://b:8091", &meta)
            .await
            .unwrap();
        store
            .register_service("console", "console-1", "http://c:8090", &meta)
            .await
            .unwrap();
        // re-registering updates the URL and keeps one row
        store
            .register_service("channel", "channel-a", "http://a2:8091", &meta)
            .await
            .unwrap();
        let live = store
            .live_services("channel", Duration::from_secs(120))
            .await
            .unwrap();
        let urls: Vec<&str> = live.iter().map(|s| s.url.as_str()).collect();
        assert_eq!(urls.len(), 2);
        assert!(urls.contains(&"http://a2:8091") && urls.contains(&"http://b:8091"));
        assert_eq!(live[0].metadata, meta.to_string());

        // a heartbeat older than the window is not live
        service::Entity::update_many()
            .col_expr(
                service::Column::LastHeartbeat,
                sea_orm::sea_query::Expr::value("2000-01-01T00:00:00"),
            )
            .filter(service::Column::ServiceId.eq("channel-b"))
            .exec(store.connection())
            .await
            .unwrap();
        let live = store
            .live_services("channel", Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].service_id, "channel-a");
        assert!(
            store
                .heartbeat_service("channel", "channel-b")
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .live_services("channel", Duration::from_secs(120))
                .await
                .unwrap()
                .len(),
            2,
            "a heartbeat revives it"
        );
        assert!(!store.heartbeat_service("channel", "ghost").await.unwrap());
        assert!(
            store
                .deregister_service("channel", "channel-a")
                .await
                .unwrap()
        );
        assert!(
            !store
                .deregister_service("channel", "channel-a")
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .live_services("channel", Duration::MAX)
                .await
                .unwrap()
                .len(),
            1
        );
    }
    pub async fn users_tokens_and_exactly_one_first_user(store: Store, _url: String) {
        use turnstone_actors::storage::{NewUser, api_token};
        let new = |name: &'static str| NewUser {
            username: name,
            display_name: name,
            password_hash: "$2b$04$hash",
        };
        // Eight concurrent first-run setups: exactly one wins.
        let mut attempts = Vec::new();
        for name in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            let store = store.clone();
            attempts.push(tokio::spawn(async move {
                store.create_first_user(new(name)).await
            }));
        }
        let mut won = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(_) => won += 1,
                Err(StoreError::Conflict(m)) => assert_eq!(m, "Setup already completed"),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won, 1);
        assert_eq!(store.count_users().await.unwrap(), 1);
        let second = store.create_user(new("zed")).await.unwrap();
        assert!(matches!(
            store.create_user(new("zed")).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.list_users().await.unwrap().len(), 2);
        assert_eq!(
            store.user_by_name("zed").await.unwrap().unwrap().user_id,
            second.user_id
        );
        let token = api_token::Model {
            token_id: "t1".into(),
            token_hash: "h1".into(),
            token_prefix: "ts_abcde".into(),
            user_id: second.user_id.clone(),
            name: "ci".into(),
            scopes: "read,write".into(),
            created: "2026-01-01T00:00:00".into(),
            expires: None,
        };
        store.insert_token(token.clone()).await.unwrap();
        assert_eq!(
            store.token_by_hash("h1").await.unwrap(),
            Some(token.clone())
        );
        assert!(
            store.insert_token(token).await.is_err(),
            "hashes are unique"
        );
        assert_eq!(store.list_tokens(&second.user_id).await.unwrap().len(), 1);
        assert!(store.revoke_token("t1").await.unwrap());
        assert!(!store.revoke_token("t1").await.unwrap());
        assert_eq!(store.token_by_hash("h1").await.unwrap(), None);
    }
}
