#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Limits and hostile input on a real server: per-IP rate limiting (429 with Retry-After,
//! exemptions, X-Forwarded-For behind a trusted proxy), eviction reported as `ws_closed`,
//! header injection, and random bodies thrown at every write route.

mod support;

use proptest::prelude::*;
use serde_json::{Value, json};
use support::TestServer;

#[tokio::test]
async fn rate_limiting_answers_429_with_retry_after_and_spares_health() {
    let s = TestServer::start_with(|c| {
        c.ratelimit.enabled = true;
        c.ratelimit.requests_per_second = 1.0;
        c.ratelimit.burst = 3;
        c.ratelimit.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let get = |xff: Option<&'static str>| {
        let mut req = s.http.get(s.url("/v1/api/workstreams"));
        if let Some(v) = xff {
            req = req.header("x-forwarded-for", v);
        }
        req.send()
    };
    for _ in 0..3 {
        assert_eq!(
            get(Some("203.0.113.1")).await.unwrap().status().as_u16(),
            200
        );
    }
    let refused = get(Some("203.0.113.1")).await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "Rate limit exceeded");
    assert!(body["retry_after"].as_f64().unwrap() > 0.0);
    // Another client behind the same trusted proxy has its own bucket.
    assert_eq!(
        get(Some("203.0.113.2")).await.unwrap().status().as_u16(),
        200
    );
    for _ in 0..10 {
        let (status, _) = s.get("/health").await;
        assert_eq!(status, 200, "health is exempt");
    }
    let metrics = s.text("/metrics").await;
    assert!(
        metrics.contains("turnstone_ratelimit_rejected_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn eviction_is_reported_as_ws_closed_with_its_reason() {
    let s = TestServer::start_with(|c| c.server.max_workstreams = 2).await;
    let mut global = s.events("/v1/api/events/global", None).await;
    let first = s.default_ws().await;
    let (status, _) = s
        .post("/v1/api/workstreams/new", json!({"name": "second"}))
        .await;
    assert_eq!(status, 200);
    let (status, third) = s
        .post("/v1/api/workstreams/new", json!({"name": "third"}))
        .await;
    assert_eq!(status, 200, "{third}");
    let closed = global.until("ws_closed").await;
    let closed = closed.last().unwrap();
    assert_eq!(
        closed["ws_id"],
        first.as_str(),
        "the least recently active idle one"
    );
    assert_eq!(closed["reason"], "evicted");
    assert_eq!(closed["name"], "default");
    let (_, list) = s.get("/v1/api/workstreams").await;
    assert_eq!(list["workstreams"].as_array().unwrap().len(), 2);
    let (status, body) = s.get(&format!("/v1/api/events?ws_id={first}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("Unknown workstream"))
    );
}

#[tokio::test]
async fn header_injection_through_inputs_goes_nowhere() {
    let s = TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.jwt_secret = Some("injection-test-secret-0123456789".into());
    })
    .await;
    let r = s
        .http
        .post(s.url("/v1/api/auth/login"))
        .body(
            json!({"username": "x\r\nSet-Cookie: evil=1", "password": "p\r\nX-Evil: 1"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.headers().get("x-evil").is_none());
    let r = s
        .http
        .get(s.url("/v1/api/events?ws_id=a%0d%0aX-Evil:%201"))
        .header("cookie", "turnstone_auth=\"forged\"; turnstone_auth=x.y.z")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("x-evil").is_none());
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("ws_id".to_owned()),
                    Just("message".to_owned()),
                    Just("approved".to_owned()),
                    Just("feedback".to_owned()),
                    Just("always".to_owned()),
                    Just("command".to_owned()),
                    Just("name".to_owned()),
                    Just("model".to_owned()),
                    Just("resume_session".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Raw bytes: JSON, near-JSON and garbage.
fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any_json().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
        "[{}\\[\\]\":,a-z0-9 ]{0,40}".prop_map(String::into_bytes),
    ]
}

#[test]
fn write_routes_answer_any_body_with_json_and_never_fail() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s = runtime.block_on(TestServer::start_with(|c| {
        // Replies for any message that gets through.
        c.model.max_tokens = 64;
    }));
    let ws = runtime.block_on(s.default_ws());
    runtime.block_on(async {
        s.llm.route("", turnstone_tests::llm::Turn::text("ok"));
    });
    let routes = [
        "/v1/api/send",
        "/v1/api/approve",
        "/v1/api/plan",
        "/v1/api/command",
        "/v1/api/workstreams/new",
        "/v1/api/workstreams/close",
        "/v1/api/auth/login",
        "/v1/api/auth/setup",
    ];
    let config = ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(route in 0..routes.len(), body in any_body(), use_ws in any::<bool>())| {
        let mut body = body;
        if use_ws && let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&body) {
            // Aim some bodies at the real workstream so they get past the lookup.
            map.insert("ws_id".into(), json!(ws));
            if routes[route] == "/v1/api/workstreams/close" {
                map.insert("ws_id".into(), json!("not-the-last"));
            }
            body = Value::Object(map).to_string().into_bytes();
        }
        let (status, answer) = runtime.block_on(s.post_raw(routes[route], body.clone()));
        prop_assert!(status < 500 || routes[route] == "/v1/api/workstreams/new",
            "{} {:?} → {status} {answer}", routes[route], String::from_utf8_lossy(&body));
        prop_assert!(answer.is_object(), "JSON answer: {answer}");
        if status >= 400 {
            prop_assert!(answer["error"].is_string(), "{answer}");
        }
    });
    // The server is still fine.
    let (status, health) = runtime.block_on(s.get("/health"));
    assert_eq!(status, 200, "{health}");
    drop(s);
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
}
