#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Tools that call other services: `web_search` against a Tavily-compatible endpoint and
//! `notify` through channel gateways found in the service registry. The endpoints are local
//! warp servers speaking those services' wire format (Tavily is an external paid service; the
//! channel gateway is checked for its request, its token and its answers).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use turnstone_actors::auth::{Audience, verify};
use turnstone_actors::storage::Store;
use turnstone_actors::tools::builtin::{ChannelAuth, Notify, WebSearch};
use turnstone_actors::tools::{Tool, ToolContext};
use warp::Filter;

type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// Serves POST `path` answering `(status, body)` from `answer`; records the bearer and body.
async fn endpoint(
    path: &'static str,
    answer: impl Fn(&Value) -> (u16, Value) + Clone + Send + Sync + 'static,
) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let route = warp::post()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::json())
        .map(
            move |full: warp::path::FullPath, auth: Option<String>, body: Value| {
                if full.as_str() != path {
                    return warp::reply::with_status(
                        warp::reply::json(&json!({"error": "not found"})),
                        warp::http::StatusCode::NOT_FOUND,
                    );
                }
                let bearer = auth.and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned));
                log.lock().unwrap().push((bearer, body.clone()));
                let (status, reply) = answer(&body);
                warp::reply::with_status(
                    warp::reply::json(&reply),
                    warp::http::StatusCode::from_u16(status).unwrap(),
                )
            },
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (addr, seen)
}

fn ctx(turn: u64) -> ToolContext {
    let (tx, _rx) = mpsc::unbounded_channel();
    ToolContext {
        workdir: std::env::temp_dir(),
        session_id: "s1".into(),
        call_id: "c1".into(),
        turn,
        output: tx,
        approver: None,
    }
}

async fn run(tool: &dyn Tool, args: Value, turn: u64) -> Result<String, String> {
    tool.validate(&args)?;
    tool.run(args, ctx(turn)).await.map(|o| o.text)
}

mod web_search {
    use super::*;

    #[tokio::test]
    async fn results_are_formatted_with_the_answer_and_snippets() {
        let long = "y".repeat(800);
        let (addr, seen) = endpoint("/search", move |_| {
            (
                200,
                json!({"answer": "Rust 1.94 is current.", "results": [
                    {"title": "Rust blog", "url": "https://blog.rust-lang.org/", "content": "Release notes."},
                    {"title": "Long", "url": "https://example.org/long", "content": long.clone()}]}),
            )
        })
        .await;
        let tool = WebSearch::new(Some("tvly-test".into()), &format!("http://{addr}"));
        let out = run(
            &tool,
            json!({"query": "latest rust", "max_results": 2, "topic": "news"}),
            1,
        )
        .await
        .unwrap();
        let expected_long = format!("   {}", "y".repeat(500));
        assert_eq!(
            out,
            format!(
                "Answer: Rust 1.94 is current.\n\n1. [Rust blog](https://blog.rust-lang.org/)\n   Release notes.\n2. [Long](https://example.org/long)\n{expected_long}"
            )
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].0.as_deref(), Some("tvly-test"));
        assert_eq!(
            seen[0].1,
            json!({"query": "latest rust", "max_results": 2, "topic": "news", "include_answer": true})
        );
    }

    #[tokio::test]
    async fn defaults_and_empty_results() {
        let (addr, seen) = endpoint("/search", |_| (200, json!({"results": []}))).await;
        let tool = WebSearch::new(Some("k".into()), &format!("http://{addr}/"));
        assert_eq!(
            run(&tool, json!({"query": "nothing"}), 1).await.unwrap(),
            "No results found."
        );
        let body = &seen.lock().unwrap()[0].1;
        assert_eq!(body["max_results"], 5);
        assert_eq!(body["topic"], "general");
    }

    #[tokio::test]
    async fn bad_arguments_missing_keys_and_service_errors_are_clear() {
        let (addr, _) = endpoint("/search", |_| {
            (
                401,
                json!({"detail": {"error": "Unauthorized: missing or invalid API key."}}),
            )
        })
        .await;
        let tool = WebSearch::new(Some("bad".into()), &format!("http://{addr}"));
        for (args, expected) in [
            (json!({}), "missing required argument 'query'"),
            (json!({"query": "  "}), "missing required argument 'query'"),
            (
                json!({"query": "q", "max_results": 0}),
                "max_results must be a whole number from 1 to 20, not 0",
            ),
            (
                json!({"query": "q", "max_results": 21}),
                "max_results must be a whole number from 1 to 20, not 21",
            ),
            (
                json!({"query": "q", "topic": "sports"}),
                "topic must be one of general, news, finance, not \"sports\"",
            ),
        ] {
            assert_eq!(tool.validate(&args).unwrap_err(), expected, "{args}");
        }
        assert_eq!(
            run(&tool, json!({"query": "q"}), 1).await.unwrap_err(),
            "web search failed: HTTP 401: Unauthorized: missing or invalid API key."
        );
        let keyless = WebSearch::new(None, &format!("http://{addr}"));
        let err = run(&keyless, json!({"query": "q"}), 1).await.unwrap_err();
        assert!(
            err.contains("api.tavily_key") && err.contains("$TAVILY_API_KEY"),
            "{err}"
        );
        let unreachable = WebSearch::new(Some("k".into()), "http://127.0.0.1:9");
        assert!(
            run(&unreachable, json!({"query": "q"}), 1)
                .await
                .unwrap_err()
                .starts_with("web search failed:")
        );
    }
}

mod notify {
    use super::*;

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        (Store::open_url(&url, 1).await.unwrap(), dir)
    }

    fn sent(body: &Value) -> (u16, Value) {
        let target = &body["target"];
        (
            200,
            json!({"results": [{"channel_type": target["channel_type"].as_str().unwrap_or("discord"),
                "channel_id": target["channel_id"].as_str().unwrap_or("dm-1"), "status": "sent", "message_id": "m1"}]}),
        )
    }

    fn quick(tool: Notify) -> Notify {
        tool.with_retries(vec![Duration::from_millis(10), Duration::from_millis(30)])
    }

    #[tokio::test]
    async fn a_message_reaches_the_gateway_with_a_channel_jwt() {
        let (store, _dir) = store().await;
        let (addr, seen) = endpoint("/v1/api/notify", sent).await;
        store
            .register_service(
                "channel",
                "channel-h-1",
                &format!("http://{addr}"),
                &json!({}),
            )
            .await
            .unwrap();
        let tool = Notify::new(
            Some(store),
            ChannelAuth {
                token: None,
                jwt_secret: Some("secret".into()),
            },
        );
        let out = run(
            &tool,
            json!({"message": "Build finished", "username": "ada", "title": "CI"}),
            1,
        )
        .await
        .unwrap();
        assert_eq!(out, "Notification sent via discord (channel-h-1)");
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[0].1,
            json!({"target": {"username": "ada"}, "message": "Build finished", "title": "CI"})
        );
        let claims = verify("secret", seen[0].0.as_deref().unwrap(), Audience::Channel).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.scopes.as_str()),
            ("system", "write")
        );
    }

    #[tokio::test]
    async fn gateways_are_tried_in_order_and_stale_ones_skipped() {
        let (store, _dir) = store().await;
        let (failing, failed_seen) = endpoint("/v1/api/notify", |_| {
            (200, json!({"results": [{"channel_type": "discord", "channel_id": "9", "status": "no_adapter"}]}))
        })
        .await;
        let (working, seen) = endpoint("/v1/api/notify", sent).await;
        for (id, addr) in [("channel-a", failing), ("channel-b", working)] {
            store
                .register_service("channel", id, &format!("http://{addr}"), &json!({}))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1100)).await; // distinct registration times
        }
        let tool = Notify::new(
            Some(store.clone()),
            ChannelAuth {
                token: Some("static-token".into()),
                jwt_secret: None,
            },
        );
        let out = run(
            &tool,
            json!({"message": "hi", "channel_type": "discord", "channel_id": "42"}),
            1,
        )
        .await
        .unwrap();
        assert_eq!(out, "Notification sent via discord (channel-b)");
        assert_eq!(
            failed_seen.lock().unwrap().len(),
            1,
            "the first gateway was tried first"
        );
        assert_eq!(seen.lock().unwrap()[0].0.as_deref(), Some("static-token"));

        // The working gateway stops heartbeating: it is no longer used.
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        use turnstone_actors::storage::service;
        service::Entity::update_many()
            .col_expr(
                service::Column::LastHeartbeat,
                sea_orm::sea_query::Expr::value("2000-01-01T00:00:00"),
            )
            .filter(service::Column::ServiceId.eq("channel-b"))
            .exec(store.connection())
            .await
            .unwrap();
        let tool = quick(tool);
        let err = run(&tool, json!({"message": "again", "username": "ada"}), 2)
            .await
            .unwrap_err();
        assert_eq!(
            err, "notify failed: channel-a: HTTP 200: delivery no_adapter",
            "three cycles, only the live gateway"
        );
        assert_eq!(
            failed_seen.lock().unwrap().len(),
            4,
            "first call + 3 cycles"
        );
    }

    #[tokio::test]
    async fn at_most_five_succeed_per_turn() {
        let (store, _dir) = store().await;
        let (addr, seen) = endpoint("/v1/api/notify", sent).await;
        store
            .register_service("channel", "c", &format!("http://{addr}"), &json!({}))
            .await
            .unwrap();
        let tool = Notify::new(
            Some(store),
            ChannelAuth {
                token: Some("t".into()),
                jwt_secret: None,
            },
        );
        let args = json!({"message": "ping", "username": "ada"});
        for _ in 0..5 {
            run(&tool, args.clone(), 7).await.unwrap();
        }
        assert_eq!(
            run(&tool, args.clone(), 7).await.unwrap_err(),
            "notification limit reached: at most 5 per turn"
        );
        assert_eq!(seen.lock().unwrap().len(), 5);
        run(&tool, args, 8).await.unwrap();
    }

    #[tokio::test]
    async fn bad_arguments_no_gateway_no_credentials_and_refusals_are_clear() {
        let (store, _dir) = store().await;
        let auth = ChannelAuth {
            token: Some("t".into()),
            jwt_secret: None,
        };
        let tool = quick(Notify::new(Some(store.clone()), auth.clone()));
        for (args, expected) in [
            (
                json!({"username": "ada"}),
                "missing required argument 'message'",
            ),
            (
                json!({"message": "hi"}),
                "say who to notify: a username, or a channel_type and channel_id",
            ),
            (
                json!({"message": "hi", "channel_type": "discord"}),
                "channel_type needs a channel_id",
            ),
            (
                json!({"message": "x".repeat(2001), "username": "a"}),
                "message is 2001 characters; the limit is 2000",
            ),
        ] {
            assert_eq!(tool.validate(&args).unwrap_err(), expected);
        }
        let args = json!({"message": "hi", "username": "ada"});
        assert!(
            run(&tool, args.clone(), 1)
                .await
                .unwrap_err()
                .contains("no channel gateway is running")
        );
        let (addr, _) = endpoint("/v1/api/notify", |_| {
            (
                401,
                json!({"error": "Unauthorized: missing or invalid token"}),
            )
        })
        .await;
        store
            .register_service("channel", "c", &format!("http://{addr}"), &json!({}))
            .await
            .unwrap();
        assert_eq!(
            run(&tool, args.clone(), 1).await.unwrap_err(),
            "notify failed: c: HTTP 401: Unauthorized: missing or invalid token"
        );
        let anonymous = quick(Notify::new(Some(store), ChannelAuth::default()));
        assert!(
            run(&anonymous, args.clone(), 1)
                .await
                .unwrap_err()
                .contains("TURNSTONE_CHANNEL_AUTH_TOKEN")
        );
        let storeless = quick(Notify::new(None, auth));
        assert!(
            run(&storeless, args, 1)
                .await
                .unwrap_err()
                .contains("needs the database")
        );
    }
}
