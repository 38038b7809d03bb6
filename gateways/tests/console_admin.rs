#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The console's admin API and scheduler against real Redis, SQLite and PostgreSQL: users,
//! tokens (revoked on the next request to the console and to a node sharing the database),
//! chat links, schedules and their runs, every refusal the issue lists; and the scheduler —
//! exactly one dispatch per firing with two consoles on one database and one Redis, also when
//! one of them dies mid-tick; retry windows; Redis down and back.

mod console_support;
mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use console_support::{TestConsole, quick, sim_heartbeat};
use serde_json::{Value, json};
use turnstone_actors::config::{
    AuthConfig, DatabaseBackend, DatabaseConfig, RateLimitConfig, StaticToken, TokenRole,
};
use turnstone_actors::mq::Keys;
use turnstone_actors::storage::Store;
use turnstone_gateways::console::ConsoleOptions;
use turnstone_gateways::console::link::Link;
use turnstone_gateways::console::schedules::{Clock, SchedulerSettings};
use turnstone_gateways::web::service_token::Credentials;
use turnstone_runtime::remote::{RedisTransport, Transport};
use turnstone_tests::services::{PrivateRedis, fresh_postgres_database, redis_url};

const ADMIN: &str = "admin-token";

fn prefix() -> String {
    format!("adm{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

fn admin_auth() -> AuthConfig {
    AuthConfig {
        enabled: true,
        tokens: vec![StaticToken {
            value: ADMIN.into(),
            role: TokenRole::Full,
        }],
        ..AuthConfig::default()
    }
}

/// Schedules tick only when a test says so.
fn manual() -> SchedulerSettings {
    SchedulerSettings {
        interval: Duration::from_secs(3600),
        lease: Duration::from_secs(1),
        ..SchedulerSettings::default()
    }
}

async fn console_on(redis: &str, prefix: &str, store: Option<Store>) -> TestConsole {
    console_with(redis, prefix, store, manual()).await
}

async fn console_with(
    redis: &str,
    prefix: &str,
    store: Option<Store>,
    scheduler: SchedulerSettings,
) -> TestConsole {
    TestConsole::start_options(ConsoleOptions {
        link: Link::redis(redis, prefix),
        credentials: Credentials::None,
        collector: quick(),
        auth: admin_auth(),
        ratelimit: RateLimitConfig::default(),
        store,
        scheduler,
        clock: Clock::System,
    })
    .await
}

async fn call(c: &TestConsole, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    let url = c.url(path);
    let req = match method {
        "GET" => c.http.get(url),
        "POST" => c.http.post(url).json(&body),
        "PUT" => c.http.put(url).json(&body),
        "DELETE" => c.http.delete(url),
        other => panic!("{other}"),
    };
    let r = req.bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn admin(c: &TestConsole, method: &str, path: &str, body: Value) -> (u16, Value) {
    call(c, method, path, ADMIN, body).await
}

async fn get(c: &TestConsole, path: &str) -> (u16, Value) {
    admin(c, "GET", path, json!({})).await
}

async fn delete(c: &TestConsole, path: &str) -> (u16, Value) {
    admin(c, "DELETE", path, json!({})).await
}

fn error(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body}"))
}

fn soon(seconds: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(seconds))
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string()
}

fn schedule(name: &str, target: &str, at_time: &str) -> Value {
    json!({"name": name, "schedule_type": "at", "at_time": at_time,
        "target_mode": target, "initial_message": format!("run {name}")})
}

async fn sqlite_db(dir: &std::path::Path) -> DatabaseConfig {
    DatabaseConfig {
        backend: DatabaseBackend::Sqlite,
        path: dir.join("shared.db").display().to_string(),
        ..DatabaseConfig::default()
    }
}

async fn postgres_db() -> DatabaseConfig {
    DatabaseConfig {
        backend: DatabaseBackend::Postgresql,
        url: Some(fresh_postgres_database().await.unwrap()),
        pool_size: 4,
        ..DatabaseConfig::default()
    }
}

/// Users, tokens, chat links and schedules through the API, with the node that shares the
/// console's database honouring a token until it is revoked.
async fn admin_api_on(db: DatabaseConfig) {
    let redis = redis_url().unwrap();
    let node_db = db.clone();
    let node = support::TestServer::start_with(move |c| {
        c.auth.enabled = true;
        c.database = node_db;
    })
    .await;
    let store = Store::open(&db).await.unwrap();
    let c = console_on(&redis, &prefix(), Some(store)).await;

    // Scope approve: no token → 401.
    let (status, _) = call(&c, "GET", "/v1/api/admin/users", "", json!({})).await;
    assert_eq!(status, 401);

    // Users: the username pattern, the password length, a display name, uniqueness.
    for (body, status, expected) in [
        (
            json!({"username": "a b", "display_name": "A", "password": "long enough"}),
            400,
            "Invalid username",
        ),
        (
            json!({"username": "x".repeat(65), "display_name": "A", "password": "long enough"}),
            400,
            "Invalid username",
        ),
        (
            json!({"username": "ada", "display_name": "Ada", "password": "short"}),
            400,
            "at least 8",
        ),
        (
            json!({"username": "ada", "display_name": "", "password": "long enough"}),
            400,
            "display_name is required",
        ),
        (
            json!({"username": 7, "display_name": "Ada", "password": "long enough"}),
            400,
            "username must be a string",
        ),
    ] {
        let (got, answer) = admin(&c, "POST", "/v1/api/admin/users", body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(error(&answer).contains(expected), "{body}: {answer}");
    }
    let (status, ada) = admin(
        &c,
        "POST",
        "/v1/api/admin/users",
        json!({"username": "ada", "display_name": "Ada L", "password": "analytical"}),
    )
    .await;
    assert_eq!(status, 200, "{ada}");
    assert_eq!(ada["username"], "ada");
    assert!(ada.get("password_hash").is_none());
    let uid = ada["user_id"].as_str().unwrap().to_owned();
    let (status, again) = admin(
        &c,
        "POST",
        "/v1/api/admin/users",
        json!({"username": "ada", "display_name": "Other", "password": "analytical"}),
    )
    .await;
    assert_eq!((status, error(&again)), (409, "Username already taken"));
    let (_, users) = get(&c, "/v1/api/admin/users").await;
    assert_eq!(users["users"].as_array().unwrap().len(), 1);

    // Tokens: the secret once, hashed at rest, working on the console and on the node.
    let (status, bad) = admin(
        &c,
        "POST",
        &format!("/v1/api/admin/users/{uid}/tokens"),
        json!({"scopes": "read,root"}),
    )
    .await;
    assert_eq!(
        (status, error(&bad)),
        (400, "Invalid scopes (allowed: read, write, approve)")
    );
    let (status, made) = admin(
        &c,
        "POST",
        &format!("/v1/api/admin/users/{uid}/tokens"),
        json!({"name": "ci", "scopes": "write", "expires_days": 30}),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let token = made["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ts_") && token.len() == 67);
    assert_eq!(made["scopes"], "read,write");
    let (_, listed) = get(&c, &format!("/v1/api/admin/users/{uid}/tokens")).await;
    let listed_text = listed.to_string();
    assert!(listed_text.contains(&token[..8]) && !listed_text.contains(&token[8..]));
    assert!(listed["tokens"][0]["expires"].is_string());
    let (status, _) = call(&c, "GET", "/v1/api/cluster/overview", &token, json!({})).await;
    assert_eq!(status, 200, "the user's token works on the console");
    let (status, refused) = call(&c, "GET", "/v1/api/admin/users", &token, json!({})).await;
    assert_eq!(
        (status, error(&refused)),
        (403, "Forbidden: token lacks 'approve' scope")
    );
    let on_node = |token: String| {
        let http = node.http.clone();
        let url = node.url("/v1/api/workstreams");
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        on_node(token.clone()).await,
        200,
        "and on a node sharing the database"
    );
    let tid = made["token_id"].as_str().unwrap();
    let (status, _) = delete(&c, &format!("/v1/api/admin/tokens/{tid}")).await;
    assert_eq!(status, 200);
    let (status, _) = call(&c, "GET", "/v1/api/cluster/overview", &token, json!({})).await;
    assert_eq!(
        status, 401,
        "revoked: refused on the next request to the console"
    );
    assert_eq!(on_node(token.clone()).await, 401, "and to the node");
    let (status, gone) = delete(&c, &format!("/v1/api/admin/tokens/{tid}")).await;
    assert_eq!((status, error(&gone)), (404, "Token not found"));

    // Chat links: lower-cased type, one owner per account.
    let (status, link) = admin(
        &c,
        "POST",
        &format!("/v1/api/admin/users/{uid}/channels"),
        json!({"channel_type": "Discord", "channel_user_id": "123456"}),
    )
    .await;
    assert_eq!(status, 200, "{link}");
    assert_eq!(
        (link["channel_type"].as_str(), link["user_id"].as_str()),
        (Some("discord"), Some(uid.as_str()))
    );
    let (_, grace) = admin(
        &c,
        "POST",
        "/v1/api/admin/users",
        json!({"username": "grace", "display_name": "Grace", "password": "compilers"}),
    )
    .await;
    let gid = grace["user_id"].as_str().unwrap().to_owned();
    let (status, taken) = admin(
        &c,
        "POST",
        &format!("/v1/api/admin/users/{gid}/channels"),
        json!({"channel_type": "discord", "channel_user_id": "123456"}),
    )
    .await;
    assert_eq!(status, 409);
    assert!(error(&taken).contains(&uid), "{taken}");
    let (status, long) = admin(
        &c,
        "POST",
        &format!("/v1/api/admin/users/{gid}/channels"),
        json!({"channel_type": "matrix", "channel_user_id": "x".repeat(257)}),
    )
    .await;
    assert_eq!((status, error(&long)), (400, "Value too long"));
    let (status, _) = admin(
        &c,
        "POST",
        "/v1/api/admin/users/nobody/channels",
        json!({"channel_type": "slack", "channel_user_id": "U1"}),
    )
    .await;
    assert_eq!(status, 404);
    admin(
        &c,
        "POST",
        &format!("/v1/api/admin/users/{uid}/channels"),
        json!({"channel_type": "matrix", "channel_user_id": "@ada:example.org"}),
    )
    .await;
    let (_, links) = get(&c, &format!("/v1/api/admin/users/{uid}/channels")).await;
    assert_eq!(links["channels"].as_array().unwrap().len(), 2, "{links}");
    let (status, _) = delete(&c, "/v1/api/admin/channels/matrix/%40ada%3Aexample.org").await;
    assert_eq!(status, 200, "a percent-encoded account id is unlinked");

    // Deleting a user takes their tokens and links with them.
    admin(
        &c,
        "POST",
        &format!("/v1/api/admin/users/{uid}/tokens"),
        json!({}),
    )
    .await;
    let (status, _) = delete(&c, &format!("/v1/api/admin/users/{uid}")).await;
    assert_eq!(status, 200);
    let (_, tokens) = get(&c, &format!("/v1/api/admin/users/{uid}/tokens")).await;
    assert_eq!(tokens["tokens"], json!([]));
    let (_, links) = get(&c, &format!("/v1/api/admin/users/{uid}/channels")).await;
    assert_eq!(links["channels"], json!([]));
    let (status, missing) = delete(&c, &format!("/v1/api/admin/users/{uid}")).await;
    assert_eq!((status, error(&missing)), (404, "User not found"));

    // Schedules: every refusal, named.
    let base = json!({"name": "nightly", "schedule_type": "cron", "cron_expr": "0 2 * * *",
        "initial_message": "write the nightly report"});
    let with = |patch: Value| {
        let mut b = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, expected) in [
        (
            with(json!({"cron_expr": "0 25 * * *"})),
            "Invalid cron expression: \"0 25 * * *\"",
        ),
        (with(json!({"cron_expr": "0 2 * *"})), "expected 5 fields"),
        (
            with(json!({"schedule_type": "at", "at_time": "2020-01-01T00:00:00Z"})),
            "at_time must be in the future",
        ),
        (
            with(json!({"schedule_type": "at", "at_time": "2030-01-01T00:00:00"})),
            "timezone offset",
        ),
        (
            with(json!({"timezone": "Atlantis/Capital"})),
            "Unknown time zone: \"Atlantis/Capital\"",
        ),
        (
            with(json!({"name": "n".repeat(257)})),
            "name must be at most 256 characters",
        ),
        (
            with(json!({"initial_message": "m".repeat(4097)})),
            "initial_message must be at most 4096 characters",
        ),
        (with(json!({"name": ""})), "name is required"),
        (with(json!({"target_mode": "a/b"})), "target_mode must be"),
    ] {
        let (status, answer) = admin(&c, "POST", "/v1/api/admin/schedules", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(error(&answer).contains(expected), "{body}: {answer}");
    }
    let (status, nightly) = admin(
        &c,
        "POST",
        "/v1/api/admin/schedules",
        with(json!({"timezone": "Europe/Paris", "auto_approve_tools": ["read_file"], "retry_window": 600})),
    )
    .await;
    assert_eq!(status, 200, "{nightly}");
    assert_eq!(nightly["created_by"], "", "a static token names no user");
    assert_eq!(nightly["auto_approve_tools"], json!(["read_file"]));
    assert_eq!(nightly["enabled"], true);
    let next = nightly["next_run"].as_str().unwrap();
    // 02:00 in Paris is 01:00 UTC in winter.
    assert!(next.ends_with("T01:00:00"), "{next}");
    let id = nightly["task_id"].as_str().unwrap().to_owned();
    let (status, disabled) = admin(
        &c,
        "PUT",
        &format!("/v1/api/admin/schedules/{id}"),
        json!({"enabled": false, "description": "paused for the migration"}),
    )
    .await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(
        (disabled["next_run"].as_str(), disabled["name"].as_str()),
        (Some(""), Some("nightly"))
    );
    let (_, enabled) = admin(
        &c,
        "PUT",
        &format!("/v1/api/admin/schedules/{id}"),
        json!({"enabled": true, "cron_expr": "30 6 * * 1", "timezone": ""}),
    )
    .await;
    assert!(
        enabled["next_run"].as_str().unwrap().ends_with("T06:30:00"),
        "{enabled}"
    );
    let (status, bad) = admin(
        &c,
        "PUT",
        &format!("/v1/api/admin/schedules/{id}"),
        json!({"cron_expr": "every day"}),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    let (_, kept) = get(&c, &format!("/v1/api/admin/schedules/{id}")).await;
    assert_eq!(
        kept["cron_expr"], "30 6 * * 1",
        "a refused update changes nothing"
    );
    let (status, preview) = get(
        &c,
        "/v1/api/admin/schedules/preview?cron_expr=0%209%20*%20*%201-5&timezone=Asia/Tokyo&count=3",
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    let times = preview["next_runs"].as_array().unwrap();
    assert_eq!(times.len(), 3);
    assert!(
        times
            .iter()
            .all(|t| t.as_str().unwrap().ends_with("T00:00:00Z")),
        "{preview}"
    );
    assert!(
        preview["local"][0]
            .as_str()
            .unwrap()
            .ends_with("T09:00:00+09:00")
    );
    let (status, bad) = get(&c, "/v1/api/admin/schedules/preview?cron_expr=nonsense").await;
    assert_eq!(status, 400);
    assert!(error(&bad).contains("Invalid cron expression"));
    let (status, runs) = get(&c, &format!("/v1/api/admin/schedules/{id}/runs?limit=500")).await;
    assert_eq!((status, runs["runs"].clone()), (200, json!([])));
    let (status, _) = get(&c, "/v1/api/admin/schedules/nope/runs").await;
    assert_eq!(status, 404);

    // At most 200 schedules.
    let store = c.state.store.clone().unwrap();
    while store.count_schedules().await.unwrap() < 200 {
        let (status, answer) = admin(&c, "POST", "/v1/api/admin/schedules", with(json!({}))).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, full) = admin(&c, "POST", "/v1/api/admin/schedules", with(json!({}))).await;
    assert_eq!(
        (status, error(&full)),
        (409, "Maximum of 200 schedules reached")
    );
    let (status, _) = delete(&c, &format!("/v1/api/admin/schedules/{id}")).await;
    assert_eq!(status, 200);
    let (status, _) = get(&c, &format!("/v1/api/admin/schedules/{id}")).await;
    assert_eq!(status, 404);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    admin_api_on(sqlite_db(dir.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_postgres() {
    admin_api_on(postgres_db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_database_the_admin_api_answers_503() {
    let c = console_on(&redis_url().unwrap(), &prefix(), None).await;
    for path in ["/v1/api/admin/users", "/v1/api/admin/schedules"] {
        let (status, body) = get(&c, path).await;
        assert_eq!(status, 503, "{path}");
        assert!(error(&body).contains("Storage not available"));
    }
    assert!(c.state.scheduler.is_none(), "no database, no scheduler");
    // The document lists the admin routes.
    let (status, doc) = c.get("/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/v1/api/admin/users/{user_id}/tokens",
        "/v1/api/admin/channels/{channel_type}/{channel_user_id}",
        "/v1/api/admin/schedules/preview",
        "/v1/api/admin/schedules/{task_id}/runs",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    c.stop().await;
}

/// What is queued for nodes: the shared queue and `n1`'s.
async fn queued(transport: &dyn Transport, keys: &Keys) -> usize {
    transport.queue_len(&keys.shared()).await.unwrap()
        + transport.queue_len(&keys.directed("n1")).await.unwrap()
}

async fn total_runs(store: &Store) -> (u64, usize) {
    let mut runs = 0;
    let mut pending = 0;
    for task in store.list_schedules().await.unwrap() {
        runs += store.count_runs(&task.task_id).await.unwrap();
        if !task.next_run.as_deref().unwrap_or("").is_empty() {
            pending += 1;
        }
    }
    (runs, pending)
}

/// Creates 100 one-off schedules due at the same time, half for the shared queue and half
/// for node `n1`.
async fn hundred_due(c: &TestConsole, at_time: &str) {
    for i in 0..100 {
        let target = if i % 2 == 0 { "pool" } else { "n1" };
        let (status, body) = admin(
            c,
            "POST",
            "/v1/api/admin/schedules",
            schedule(&format!("job-{i}"), target, at_time),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consoles_fire_each_of_a_hundred_schedules_exactly_once_even_when_one_dies_mid_tick() {
    let redis = redis_url().unwrap();
    let prefix = prefix();
    let db = postgres_db().await;
    let a = console_on(&redis, &prefix, Some(Store::open(&db).await.unwrap())).await;
    let b = console_on(&redis, &prefix, Some(Store::open(&db).await.unwrap())).await;
    let store = Store::open(&db).await.unwrap();
    let transport = RedisTransport::connect(&redis, &prefix).await.unwrap();
    let keys = Keys::new(&prefix);
    let (sa, sb) = (
        a.state.scheduler.clone().unwrap(),
        b.state.scheduler.clone().unwrap(),
    );
    let at_time = soon(3600);
    let due: DateTime<Utc> = Utc::now() + chrono::Duration::seconds(3700);
    hundred_due(&a, &at_time).await;

    // Both tick at once: whoever holds the lease fires; together they fire each once.
    let (ra, rb) = tokio::join!(sa.tick_at(due), sb.tick_at(due));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.dispatched + rb.dispatched, 100, "{ra:?} {rb:?}");
    assert_eq!(queued(&transport, &keys).await, 100, "100 dispatches");
    assert_eq!(
        total_runs(&store).await,
        (100, 0),
        "100 runs, none left due"
    );
    // Ticking again, on either, fires nothing more.
    for s in [&sa, &sb] {
        let again = s.tick_at(due).await.unwrap();
        assert_eq!((again.due, again.dispatched), (0, 0), "{again:?}");
    }
    assert_eq!(queued(&transport, &keys).await, 100);
    // Every message is the schedule's create_workstream.
    let first = transport
        .receive("n1", &[keys.directed("n1")], Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let message: Value = serde_json::from_str(&first.payload).unwrap();
    assert_eq!(
        (message["type"].as_str(), message["target_node"].as_str()),
        (Some("create_workstream"), Some("n1"))
    );
    assert!(
        message["initial_message"]
            .as_str()
            .unwrap()
            .starts_with("run job-")
    );
    transport.ack(&first).await.unwrap();

    // Again with 100 new schedules, and console A dies in the middle of its tick.
    for task in store.list_schedules().await.unwrap() {
        store.delete_schedule(&task.task_id).await.unwrap();
    }
    transport
        .delete(&transport.queue_key(&keys.shared()))
        .await
        .unwrap();
    transport
        .delete(&transport.queue_key(&keys.directed("n1")))
        .await
        .unwrap();
    hundred_due(&b, &at_time).await;
    let dying = tokio::spawn({
        let sa = sa.clone();
        async move { sa.tick_at(due).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while queued(&transport, &keys).await < 30 {
        assert!(tokio::time::Instant::now() < deadline, "A never dispatched");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    dying.abort();
    let _ = dying.await;
    a.stop().await;
    let pushed_by_a = queued(&transport, &keys).await;
    let (_, left_due) = total_runs(&store).await;
    let advanced_by_a = 100 - left_due;
    assert!(
        pushed_by_a < 100,
        "A died before finishing ({pushed_by_a} pushed)"
    );
    // B takes over once A's lease has expired.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let report = loop {
        let report = sb.tick_at(due).await.unwrap();
        if !report.skipped {
            break report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A's lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        queued(&transport, &keys).await,
        100,
        "still exactly 100 dispatches"
    );
    assert_eq!(total_runs(&store).await, (100, 0), "and 100 runs");
    assert_eq!(
        report.dispatched,
        100 - pushed_by_a,
        "B pushed only what A had not: {report:?}"
    );
    assert_eq!(report.due, left_due, "{report:?}");
    assert_eq!(
        report.already,
        pushed_by_a - advanced_by_a,
        "what A pushed but did not finish, B finished without pushing again: {report:?}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_without_nodes_is_retried_within_its_window_then_recorded_failed() {
    let redis = redis_url().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&sqlite_db(dir.path()).await).await.unwrap();
    let c = console_on(&redis, &prefix(), Some(store.clone())).await;
    let scheduler = c.state.scheduler.clone().unwrap();
    let (_, quick_fail) = admin(
        &c,
        "POST",
        "/v1/api/admin/schedules",
        schedule("no-window", "auto", &soon(60)),
    )
    .await;
    let mut patient = schedule("windowed", "auto", &soon(60));
    patient["retry_window"] = json!(300);
    let (_, patient) = admin(&c, "POST", "/v1/api/admin/schedules", patient).await;
    let due = Utc::now() + chrono::Duration::seconds(61);

    let first = scheduler
        .tick_at(due + chrono::Duration::seconds(10))
        .await
        .unwrap();
    assert_eq!(
        (first.due, first.failed, first.retrying),
        (2, 1, 1),
        "{first:?}"
    );
    let id = quick_fail["task_id"].as_str().unwrap();
    let (_, runs) = get(&c, &format!("/v1/api/admin/schedules/{id}/runs")).await;
    assert_eq!(runs["runs"][0]["status"], "failed");
    assert_eq!(runs["runs"][0]["error"], "No reachable nodes");
    let (_, task) = get(&c, &format!("/v1/api/admin/schedules/{id}")).await;
    assert_eq!(
        (task["enabled"].as_bool(), task["next_run"].as_str()),
        (Some(false), Some(""))
    );

    let later = scheduler
        .tick_at(due + chrono::Duration::seconds(200))
        .await
        .unwrap();
    assert_eq!(
        (later.due, later.retrying),
        (1, 1),
        "still inside its window"
    );
    let pid = patient["task_id"].as_str().unwrap();
    let (_, runs) = get(&c, &format!("/v1/api/admin/schedules/{pid}/runs")).await;
    assert_eq!(runs["runs"], json!([]), "nothing recorded while retrying");
    let past = scheduler
        .tick_at(due + chrono::Duration::seconds(400))
        .await
        .unwrap();
    assert_eq!((past.due, past.failed), (1, 1));
    let (_, runs) = get(&c, &format!("/v1/api/admin/schedules/{pid}/runs")).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_ticks_fail_and_the_firing_waits_for_it() {
    let mut redis = PrivateRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&sqlite_db(dir.path()).await).await.unwrap();
    let prefix = prefix();
    let c = console_on(&redis.url(), &prefix, Some(store.clone())).await;
    let scheduler = c.state.scheduler.clone().unwrap();
    let (status, _) = admin(
        &c,
        "POST",
        "/v1/api/admin/schedules",
        schedule("report", "pool", &soon(60)),
    )
    .await;
    assert_eq!(status, 200);
    let due = Utc::now() + chrono::Duration::seconds(120);
    redis.kill();
    assert!(
        scheduler.tick_at(due).await.is_err(),
        "Redis down: the tick fails"
    );
    assert_eq!(
        total_runs(&store).await,
        (0, 1),
        "nothing recorded, still due"
    );
    redis.up();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let report = loop {
        match scheduler.tick_at(due).await {
            Ok(report) => break report,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("Redis came back but ticks still fail: {e}"),
        }
    };
    assert_eq!(report.dispatched, 1);
    let transport = RedisTransport::connect(&redis.url(), &prefix)
        .await
        .unwrap();
    assert_eq!(
        transport
            .queue_len(&Keys::new(&prefix).shared())
            .await
            .unwrap(),
        1
    );
    assert_eq!(total_runs(&store).await, (1, 0));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_older_than_ninety_days_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&sqlite_db(dir.path()).await).await.unwrap();
    let settings = SchedulerSettings {
        prune_every: 2,
        ..manual()
    };
    let c = console_with(
        &redis_url().unwrap(),
        &prefix(),
        Some(store.clone()),
        settings,
    )
    .await;
    let scheduler = c.state.scheduler.clone().unwrap();
    let (_, task) = admin(
        &c,
        "POST",
        "/v1/api/admin/schedules",
        schedule("old", "pool", &soon(60)),
    )
    .await;
    let id = task["task_id"].as_str().unwrap().to_owned();
    let now = Utc::now() + chrono::Duration::seconds(120);
    for (run_id, days) in [("ancient", 91), ("recent", 89)] {
        let started = (now - chrono::Duration::days(days))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        store
            .record_run(turnstone_actors::storage::scheduled_task_run::Model {
                run_id: run_id.into(),
                task_id: id.clone(),
                node_id: "pool".into(),
                ws_id: String::new(),
                correlation_id: String::new(),
                started: started.clone(),
                status: "dispatched".into(),
                error: String::new(),
                scheduled_for: started,
            })
            .await
            .unwrap();
    }
    let first = scheduler.tick_at(now).await.unwrap();
    assert_eq!(first.dispatched, 1);
    assert_eq!(
        store.count_runs(&id).await.unwrap(),
        3,
        "not pruned on the first tick"
    );
    scheduler.tick_at(now).await.unwrap();
    let (_, runs) = get(&c, &format!("/v1/api/admin/schedules/{id}/runs")).await;
    let ids: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{runs}");
    assert!(
        !ids.contains(&"ancient") && ids.contains(&"recent"),
        "{ids:?}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_fans_out_to_twenty_reachable_nodes_and_auto_picks_one() {
    let redis = redis_url().unwrap();
    let prefix = prefix();
    let transport: std::sync::Arc<dyn Transport> =
        std::sync::Arc::new(RedisTransport::connect(&redis, &prefix).await.unwrap());
    for i in 0..25 {
        sim_heartbeat(&transport, &format!("sim-{i:02}"), Duration::from_secs(120)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&sqlite_db(dir.path()).await).await.unwrap();
    let c = console_on(&redis, &prefix, Some(store.clone())).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while get(&c, "/v1/api/cluster/overview").await.1["nodes"] != 25 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the 25 nodes never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scheduler = c.state.scheduler.clone().unwrap();
    let (_, all) = admin(
        &c,
        "POST",
        "/v1/api/admin/schedules",
        schedule("everywhere", "all", &soon(60)),
    )
    .await;
    let (_, auto) = admin(
        &c,
        "POST",
        "/v1/api/admin/schedules",
        schedule("somewhere", "auto", &soon(60)),
    )
    .await;
    let report = scheduler
        .tick_at(Utc::now() + chrono::Duration::seconds(120))
        .await
        .unwrap();
    assert_eq!((report.due, report.dispatched), (2, 21), "{report:?}");
    let keys = Keys::new(&prefix);
    let (_, runs) = get(
        &c,
        &format!(
            "/v1/api/admin/schedules/{}/runs?limit=200",
            all["task_id"].as_str().unwrap()
        ),
    )
    .await;
    let mut nodes: Vec<String> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node_id"].as_str().unwrap().to_owned())
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 20, "one run per node, at most 20: {nodes:?}");
    let mut queued_total = 0;
    for i in 0..25 {
        queued_total += transport
            .queue_len(&keys.directed(&format!("sim-{i:02}")))
            .await
            .unwrap();
    }
    assert_eq!(queued_total, 21, "twenty for `all`, one for `auto`");
    let (_, runs) = get(
        &c,
        &format!(
            "/v1/api/admin/schedules/{}/runs",
            auto["task_id"].as_str().unwrap()
        ),
    )
    .await;
    let node = runs["runs"][0]["node_id"].as_str().unwrap();
    assert!(node.starts_with("sim-"), "{runs}");
    c.stop().await;
}
