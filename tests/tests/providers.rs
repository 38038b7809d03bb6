#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Providers against the scripted OpenAI-compatible server over real HTTP and SSE: stream
//! assembly, retries and fallback around the request, the circuit breaker on real failures and on
//! health probes, timeouts, broken streams and model detection.

use std::time::Duration;

use turnstone_actors::config::{ModelAlias, TurnstoneConfig};
use turnstone_actors::provider::{
    ChatMessage, Completion, ModelRequest, ModelRouter, PoolOptions, ProviderError, RetryPolicy,
    StreamEvent, ToolSpec, collect, start_providers,
};
use turnstone_runtime::policy::{Backoff, BreakerState, BreakerTransition};
use turnstone_runtime::supervise::{Decision, Observer, SupervisorHandle};
use turnstone_tests::llm::{Reply, ScriptedLlm, Turn};

fn config(llm: &ScriptedLlm) -> TurnstoneConfig {
    let mut c = TurnstoneConfig::default();
    c.api.base_url = llm.base_url();
    c.model.name = Some("scripted-model".into());
    c.health.circuit_breaker_threshold = 5;
    c.health.circuit_breaker_cooldown = 60.0;
    c
}

fn fast(retries: u32) -> PoolOptions {
    PoolOptions {
        open_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            retries,
            backoff: Backoff::exponential(Duration::from_millis(10), Duration::from_millis(40)),
        },
        probes: false,
        detect: None,
    }
}

fn request() -> ModelRequest {
    ModelRequest {
        model: String::new(),
        messages: vec![
            ChatMessage::system("be brief"),
            ChatMessage::user("list files"),
        ]
        .into(),
        tools: vec![ToolSpec {
            name: "bash".into(),
            description: "run a command".into(),
            parameters: serde_json::json!({"type": "object",
                "properties": {"command": {"type": "string"}}, "required": ["command"]}),
        }]
        .into(),
        temperature: Some(0.5),
        max_tokens: 1024,
        reasoning_effort: None,
    }
}

/// [`request`] with our `web_search` tool offered too.
fn request_with_web_search() -> ModelRequest {
    let mut req = request();
    req.tools = req
        .tools
        .iter()
        .cloned()
        .chain([web_search_spec()])
        .collect();
    req
}

async fn start(
    config: &TurnstoneConfig,
    options: PoolOptions,
) -> (SupervisorHandle, ModelRouter, Observer) {
    let observer = Observer::unregistered();
    let (sup, router) = start_providers(config, options, observer.clone(), None)
        .await
        .unwrap();
    (sup, router, observer)
}

async fn turn(
    router: &ModelRouter,
    alias: &str,
) -> Result<(String, Completion, Vec<String>), ProviderError> {
    let mut notices = Vec::new();
    let opened = router
        .open(alias, &request(), &mut |n| notices.push(n))
        .await?;
    let completion = collect(opened.stream, &mut |_| {})
        .await
        .map_err(|(e, _)| e)?;
    Ok((opened.alias, completion, notices))
}

#[tokio::test]
async fn a_streamed_turn_is_assembled_from_real_sse() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push_turn(
        Turn::new()
            .reasoning("Let me look. ")
            .content("I will ")
            .content("list them.")
            .tool_call("call_a", "bash", r#"{"command": "ls -la"}"#)
            .tool_call("call_b", "bash", r#"{"command": "pwd"}"#)
            .usage(120, 30),
    );
    let (_sup, router, _) = start(&config(&llm), fast(0)).await;
    let opened = router
        .open("default", &request(), &mut |_| {})
        .await
        .unwrap();
    let mut events = Vec::new();
    let done = collect(opened.stream, &mut |e| events.push(e))
        .await
        .unwrap();

    assert_eq!(done.content.as_deref(), Some("I will list them."));
    assert_eq!(done.reasoning, "Let me look. ");
    let calls: Vec<(&str, &str)> = done
        .tool_calls
        .iter()
        .map(|c| (c.id.as_str(), c.arguments.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("call_a", r#"{"command": "ls -la"}"#),
            ("call_b", r#"{"command": "pwd"}"#)
        ]
    );
    assert_eq!(
        done.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        Some((120, 30))
    );
    assert_eq!(events[0], StreamEvent::Reasoning("Let me look. ".into()));
    assert!(events.contains(&StreamEvent::Content("list them.".into())));

    let body = &llm.chat_bodies()[0];
    assert_eq!(body["model"], "scripted-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["tools"][0]["function"]["name"], "bash");
    assert_eq!(llm.requests()[0].auth.as_deref(), Some("Bearer dummy"));
}

#[tokio::test]
async fn transient_errors_are_retried_around_the_request() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([
        Reply::error(503, "overloaded"),
        Reply::error(429, "slow down"),
        Reply::turn(Turn::text("done")),
    ]);
    let (_sup, router, _) = start(&config(&llm), fast(3)).await;
    let (alias, done, notices) = turn(&router, "default").await.unwrap();
    assert_eq!(
        (alias.as_str(), done.content.as_deref()),
        ("default", Some("done"))
    );
    assert_eq!(
        notices,
        [
            "[Retrying in 0.01s: InternalServerError]",
            "[Retrying in 0.02s: RateLimitError]"
        ]
    );
    assert_eq!(llm.chat_bodies().len(), 3);
}

#[tokio::test]
async fn a_failing_primary_falls_back_to_the_next_alias() {
    let primary = ScriptedLlm::start().await.unwrap();
    let backup = ScriptedLlm::start().await.unwrap();
    primary.push((0..3).map(|_| Reply::error(500, "boom")));
    backup.push_turn(Turn::text("from the backup"));
    let mut c = config(&primary);
    c.models.insert(
        "small".into(),
        ModelAlias {
            base_url: Some(backup.base_url()),
            model: "small-model".into(),
            ..ModelAlias::default()
        },
    );
    c.model.fallback = vec!["small".into(), "unknown-alias".into()];
    let (_sup, router, _) = start(&c, fast(2)).await;
    assert_eq!(router.fallback(), ["small"], "unknown aliases are dropped");

    let (alias, done, notices) = turn(&router, "default").await.unwrap();
    assert_eq!(alias, "small");
    assert_eq!(done.content.as_deref(), Some("from the backup"));
    assert_eq!(
        primary.chat_bodies().len(),
        3,
        "1 try + 2 retries on the primary"
    );
    assert_eq!(backup.chat_bodies()[0]["model"], "small-model");
    assert_eq!(
        notices.last().unwrap(),
        "[Primary model failed, falling back to small]"
    );
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([Reply::error(400, "bad request: unknown parameter")]);
    let (_sup, router, _) = start(&config(&llm), fast(3)).await;
    let err = turn(&router, "default").await.err().unwrap();
    assert_eq!(
        err,
        ProviderError::Status {
            status: 400,
            message: "bad request: unknown parameter".into()
        }
    );
    assert!(!err.is_retryable());
    assert_eq!(llm.chat_bodies().len(), 1);
}

#[tokio::test]
async fn an_open_breaker_fails_fast_then_a_successful_probe_closes_it() {
    let llm = ScriptedLlm::start().await.unwrap();
    let mut c = config(&llm);
    c.health.circuit_breaker_threshold = 2;
    c.health.circuit_breaker_cooldown = 0.3;
    let (_sup, router, observer) = start(&c, fast(0)).await;
    let mut records = observer.subscribe();
    llm.push([Reply::error(500, "down"), Reply::error(500, "still down")]);

    for _ in 0..2 {
        assert!(matches!(
            turn(&router, "default").await,
            Err(ProviderError::Status { status: 500, .. })
        ));
    }
    let err = turn(&router, "default").await.err().unwrap();
    assert!(matches!(err, ProviderError::CircuitOpen(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("Backend unreachable (circuit breaker open)")
    );
    assert_eq!(
        llm.chat_bodies().len(),
        2,
        "the open breaker did not let the request through"
    );

    tokio::time::sleep(Duration::from_millis(350)).await;
    llm.push_turn(Turn::text("back"));
    let (_, done, _) = turn(&router, "default").await.unwrap();
    assert_eq!(done.content.as_deref(), Some("back"));

    let mut transitions = Vec::new();
    while transitions.len() < 3 {
        let r = tokio::time::timeout(Duration::from_secs(5), records.recv())
            .await
            .unwrap()
            .unwrap();
        if let Decision::BreakerTripped(t) = r.decision {
            assert_eq!(r.child.as_deref(), Some("default"));
            transitions.push(t);
        }
    }
    let t = |from, to| BreakerTransition { from, to };
    assert_eq!(
        transitions,
        [
            t(BreakerState::Closed, BreakerState::Open),
            t(BreakerState::Open, BreakerState::HalfOpen),
            t(BreakerState::HalfOpen, BreakerState::Closed),
        ]
    );
    assert_eq!(router.status().await[0].circuit, BreakerState::Closed);
}

#[tokio::test]
async fn health_probes_open_and_close_the_breaker() {
    let llm = ScriptedLlm::start().await.unwrap();
    let mut c = config(&llm);
    c.health.circuit_breaker_threshold = 2;
    c.health.backend_probe_interval = 0.05;
    c.health.backend_probe_timeout = 1.0;
    let options = PoolOptions {
        probes: true,
        ..fast(0)
    };
    let (_sup, router, _) = start(&c, options).await;

    let wait_for = |state: BreakerState| {
        let router = router.clone();
        async move {
            for _ in 0..100 {
                let status = router.status().await;
                if status[0].circuit == state {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("circuit never became {state:?}");
        }
    };
    llm.set_models_down(true);
    let status = wait_for(BreakerState::Open).await;
    assert!(
        status[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("health probe")
    );
    assert!(matches!(
        turn(&router, "default").await,
        Err(ProviderError::CircuitOpen(_))
    ));
    llm.set_models_down(false);
    wait_for(BreakerState::Closed).await;
}

#[tokio::test]
async fn a_backend_that_never_answers_times_out_and_is_retried() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([Reply::Hang, Reply::turn(Turn::text("finally"))]);
    let options = PoolOptions {
        open_timeout: Duration::from_millis(200),
        ..fast(1)
    };
    let (_sup, router, _) = start(&config(&llm), options).await;
    let (_, done, notices) = turn(&router, "default").await.unwrap();
    assert_eq!(done.content.as_deref(), Some("finally"));
    assert_eq!(notices, ["[Retrying in 0.01s: APITimeoutError]"]);
}

#[tokio::test]
async fn a_stream_cut_midway_reports_the_error_and_keeps_what_arrived() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([Reply::Stream {
        turn: Turn::new().content("Hello ").content("wor").content("ld"),
        delay: Duration::ZERO,
        cut_after: Some(3),
    }]);
    let (_sup, router, _) = start(&config(&llm), fast(0)).await;
    let opened = router
        .open("default", &request(), &mut |_| {})
        .await
        .unwrap();
    let (err, partial) = collect(opened.stream, &mut |_| {}).await.err().unwrap();
    assert!(matches!(err, ProviderError::Stream(_)), "{err}");
    assert_eq!(partial.content.as_deref(), Some("Hello wor"));
}

#[tokio::test]
async fn nothing_listening_is_a_retryable_connection_error() {
    let llm = ScriptedLlm::start().await.unwrap();
    let mut c = config(&llm);
    c.api.base_url = "http://127.0.0.1:9/v1".into();
    let (_sup, router, _) = start(&c, fast(1)).await;
    let err = turn(&router, "default").await.err().unwrap();
    assert!(matches!(err, ProviderError::Connect(_)), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn the_model_is_detected_from_the_backend_when_not_given() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.set_models(&["llama-3-8b", "gpt-4.1", "gpt-5"]);
    let mut c = config(&llm);
    c.model.name = None;
    let (_sup, router, _) = start(&c, fast(0)).await;
    assert_eq!(router.lane("default").unwrap().model.get(), "gpt-5");

    llm.set_models(&[]);
    let err = start_providers(&c, fast(0), Observer::unregistered(), None)
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("it lists no models; pass --model"),
        "{err}"
    );
}

#[tokio::test]
async fn a_node_started_before_its_model_server_detects_the_model_later() {
    // llama.cpp answers 503 while it loads its model: the lane starts without a model, a
    // request meanwhile fails at once with a clear error, and the provider actor keeps
    // asking until the backend lists one, which later requests use.
    let llm = ScriptedLlm::start().await.unwrap();
    llm.set_models_down(true);
    let mut c = config(&llm);
    c.model.name = None;
    let options = PoolOptions {
        detect: Some(Backoff::exponential(
            Duration::from_millis(20),
            Duration::from_millis(80),
        )),
        ..fast(0)
    };
    let (_sup, router, _) = start(&c, options).await;
    let lane = router.lane("default").unwrap();
    assert!(!lane.model.is_known());
    let err = turn(&router, "default").await.err().unwrap();
    assert_eq!(err, ProviderError::NoModel("default".into()));
    assert!(err.to_string().contains("no model known yet"), "{err}");
    let status = router.status().await;
    assert!(
        status[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no model detected yet at http://127.0.0.1")),
        "{status:?}"
    );

    llm.set_models(&["qwen-tiny"]);
    llm.set_models_down(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !lane.model.is_known() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(lane.model.get(), "qwen-tiny");
    llm.push_turn(Turn::text("ready now"));
    let (_, done, _) = turn(&router, "default").await.unwrap();
    assert_eq!(done.content.as_deref(), Some("ready now"));
    assert_eq!(llm.chat_bodies()[0]["model"], "qwen-tiny");
    assert_eq!(router.status().await[0].last_error, None);
}

fn anthropic_config(llm: &ScriptedLlm) -> TurnstoneConfig {
    let mut c = config(llm);
    c.models.insert(
        "claude".into(),
        ModelAlias {
            base_url: Some(llm.base_url()),
            api_key: Some("sk-ant-test".into()),
            model: "claude-test".into(),
            provider: turnstone_actors::config::ProviderKind::Anthropic,
            ..ModelAlias::default()
        },
    );
    c
}

#[tokio::test]
async fn an_anthropic_lane_streams_thinking_text_and_tool_use() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push_turn(
        Turn::new()
            .reasoning("considering")
            .content("Listing ")
            .content("now.")
            .tool_call("toolu_1", "bash", r#"{"command": "ls"}"#)
            .usage(200, 40),
    );
    let (_sup, router, _) = start(&anthropic_config(&llm), fast(0)).await;
    let mut req = request();
    req.reasoning_effort = Some(turnstone_actors::config::ReasoningEffort::Medium);
    req.max_tokens = 8000;
    let opened = router.open("claude", &req, &mut |_| {}).await.unwrap();
    let mut events = Vec::new();
    let done = collect(opened.stream, &mut |e| events.push(e))
        .await
        .unwrap();
    assert_eq!(done.content.as_deref(), Some("Listing now."));
    assert_eq!(done.reasoning, "considering");
    assert_eq!(done.tool_calls.len(), 1);
    assert_eq!(done.tool_calls[0].id, "toolu_1");
    assert_eq!(done.tool_calls[0].arguments, r#"{"command": "ls"}"#);
    assert_eq!(
        done.finish,
        turnstone_actors::provider::FinishReason::ToolCalls
    );
    assert_eq!(
        done.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        Some((200, 40))
    );
    assert_eq!(events[0], StreamEvent::Reasoning("considering".into()));

    let recorded = &llm.requests()[0];
    assert_eq!(recorded.endpoint, "messages");
    assert_eq!(recorded.auth.as_deref(), Some("sk-ant-test"));
    let body = &recorded.body;
    assert_eq!(body["model"], "claude-test");
    assert_eq!(body["system"], "be brief");
    assert_eq!(
        body["messages"][0],
        serde_json::json!({"role": "user", "content": [{"type": "text", "text": "list files"}]})
    );
    assert_eq!(body["tools"][0]["input_schema"]["required"][0], "command");
    assert_eq!(
        body["thinking"],
        serde_json::json!({"type": "enabled", "budget_tokens": 4096})
    );
    assert_eq!(
        body["temperature"], 1,
        "extended thinking needs temperature 1"
    );
    assert_eq!(body["max_tokens"], 8000);
}

#[tokio::test]
async fn anthropic_errors_are_typed_and_retried_like_openai_ones() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([
        Reply::error(529, "Overloaded"),
        Reply::turn(Turn::text("ok")),
    ]);
    let (_sup, router, _) = start(&anthropic_config(&llm), fast(1)).await;
    let (_, done, notices) = turn(&router, "claude").await.unwrap();
    assert_eq!(done.content.as_deref(), Some("ok"));
    assert_eq!(notices, ["[Retrying in 0.01s: InternalServerError]"]);
    llm.push([Reply::error(401, "invalid x-api-key")]);
    let err = turn(&router, "claude").await.err().unwrap();
    assert_eq!(
        err.to_string(),
        "backend returned HTTP 401: invalid x-api-key"
    );
}

#[tokio::test]
async fn the_provider_flag_makes_the_default_lane_anthropic_and_detects_its_model() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.set_models(&[
        "claude-haiku-4",
        "claude-sonnet-4-5",
        "claude-opus-4-1",
        "claude-opus-4-6",
    ]);
    let mut c = config(&llm);
    c.model.name = None;
    c.api.provider = turnstone_actors::config::ProviderKind::Anthropic;
    let (_sup, router, _) = start(&c, fast(0)).await;
    assert_eq!(
        router.lane("default").unwrap().model.get(),
        "claude-opus-4-6"
    );
    llm.push_turn(Turn::text("hello from messages"));
    let (_, done, _) = turn(&router, "default").await.unwrap();
    assert_eq!(done.content.as_deref(), Some("hello from messages"));
    assert_eq!(llm.requests().last().unwrap().endpoint, "messages");
}

fn web_search_spec() -> ToolSpec {
    ToolSpec {
        name: "web_search".into(),
        description: "search".into(),
        parameters: serde_json::json!({"type": "object",
            "properties": {"query": {"type": "string"}}, "required": ["query"]}),
    }
}

#[tokio::test]
async fn anthropic_searches_natively_and_cites_its_sources() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push_turn(
        Turn::new()
            .web_search(
                "rust release",
                &[
                    ("https://blog.rust-lang.org/", "Rust Blog"),
                    ("https://r.example/", ""),
                ],
            )
            .content("Rust 1.94 is out."),
    );
    let (_sup, router, _) = start(&anthropic_config(&llm), fast(0)).await;
    let req = request_with_web_search();
    let opened = router.open("claude", &req, &mut |_| {}).await.unwrap();
    let mut events = Vec::new();
    let done = collect(opened.stream, &mut |e| events.push(e))
        .await
        .unwrap();
    assert_eq!(
        done.content.as_deref(),
        Some(
            "Rust 1.94 is out.\n\nSources:\n1. [Rust Blog](https://blog.rust-lang.org/)\n2. [https://r.example/](https://r.example/)"
        )
    );
    assert!(events.contains(&StreamEvent::Info("[Searching: rust release]".into())));
    assert!(events.contains(&StreamEvent::Info("[Found 2 results]".into())));
    let tools = &llm.requests()[0].body["tools"];
    assert_eq!(tools[0]["name"], "bash", "function tools stay");
    assert_eq!(
        tools[1],
        serde_json::json!({"type": "web_search_20250305", "name": "web_search"}),
        "our web_search is replaced by the server tool"
    );
}

#[tokio::test]
async fn openai_search_models_search_natively_and_others_keep_the_tool() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push_turn(
        Turn::new()
            .content("It rained.")
            .web_search("", &[("https://weather.example/", "Weather")]),
    );
    llm.push_turn(Turn::text("ok"));
    let mut config = config(&llm);
    config.model.name = Some("gpt-4o-search-preview".into());
    let (_sup, router, _) = start(&config, fast(0)).await;
    let req = request_with_web_search();
    let opened = router.open("default", &req, &mut |_| {}).await.unwrap();
    let done = collect(opened.stream, &mut |_| {}).await.unwrap();
    assert_eq!(
        done.content.as_deref(),
        Some("It rained.\n\nSources:\n1. [Weather](https://weather.example/)")
    );
    let body = &llm.chat_bodies()[0];
    assert_eq!(body["web_search_options"], serde_json::json!({}));
    let names: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["bash"],
        "the search model does not get our web_search tool"
    );

    // An ordinary model keeps our tool and gets no search options.
    let mut config = self::config(&llm);
    config.model.name = Some("scripted-model".into());
    let (_sup2, router, _) = start(&config, fast(0)).await;
    let opened = router.open("default", &req, &mut |_| {}).await.unwrap();
    collect(opened.stream, &mut |_| {}).await.unwrap();
    let body = &llm.chat_bodies()[1];
    assert!(body.get("web_search_options").is_none());
    assert_eq!(body["tools"][1]["function"]["name"], "web_search");
}
