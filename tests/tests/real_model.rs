#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The engine against a real model: llama.cpp's llama-server with SmolLM2-135M, started by
//! scripts/test. Assertions are on protocol shape, never on wording.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast;
use turnstone_actors::config::{ModelAlias, ProviderKind, ReasoningEffort, TurnstoneConfig};
use turnstone_actors::provider::{
    ChatMessage, FinishReason, ModelRequest, ModelRouter, PoolOptions, RetryPolicy, ToolCall,
    ToolSpec, collect, start_providers,
};
use turnstone_actors::tools::ToolRegistry;
use turnstone_actors::workstream::{WorkstreamDeps, WorkstreamManager, WorkstreamOptions, WsEvent};
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::supervise::Observer;

fn llama_url() -> String {
    std::env::var("TURNSTONE_TEST_LLAMA_URL").expect("TURNSTONE_TEST_LLAMA_URL: run scripts/test")
}

fn config() -> TurnstoneConfig {
    let url = llama_url();
    let mut c = TurnstoneConfig::default();
    c.api.base_url = url.clone();
    c.model.name = Some("smollm2".into());
    c.model.temperature = 0.0;
    c.model.max_tokens = 48;
    c.model.context_window = 4096;
    c.model.reasoning_effort = ReasoningEffort::None;
    c.models.insert(
        "messages".into(),
        ModelAlias {
            base_url: Some(url.trim_end_matches("/v1").to_owned()),
            model: "smollm2".into(),
            provider: ProviderKind::Anthropic,
            context_window: Some(4096),
            ..ModelAlias::default()
        },
    );
    c
}

async fn router(c: &TurnstoneConfig) -> ModelRouter {
    let options = PoolOptions {
        open_timeout: Duration::from_secs(120),
        retry: RetryPolicy {
            retries: 1,
            backoff: Backoff::exponential(Duration::from_secs(1), Duration::from_secs(1)),
        },
        probes: false,
        detect: None,
    };
    start_providers(c, options, Observer::unregistered(), None)
        .await
        .unwrap()
        .1
}

fn weather_tool() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: "Get the current weather for a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }
}

/// The few-shot history that makes a 135M model call tools (REAL-PEERS §1).
fn few_shot() -> Vec<ChatMessage> {
    let mut messages = vec![ChatMessage::system(
        "You are a weather bot. For every question, call get_weather.",
    )];
    for (i, (city, temp)) in [("Berlin", 10), ("Rome", 18), ("Oslo", 2)]
        .into_iter()
        .enumerate()
    {
        let call = ToolCall {
            id: format!("c{i}"),
            name: "get_weather".into(),
            arguments: format!("{{\"city\": \"{city}\"}}"),
        };
        messages.push(ChatMessage::user(format!("What is the weather in {city}?")));
        messages.push(ChatMessage::assistant(
            Some(String::new()),
            vec![call.clone()],
        ));
        messages.push(ChatMessage::tool(&call, format!("{{\"temp_c\": {temp}}}")));
        messages.push(ChatMessage::assistant(
            Some(format!("It is {temp} C in {city}.")),
            Vec::new(),
        ));
    }
    messages.push(ChatMessage::user("What is the weather in Paris?"));
    messages
}

fn plain_request() -> ModelRequest {
    ModelRequest {
        model: String::new(),
        messages: vec![
            ChatMessage::system("You are helpful."),
            ChatMessage::user("Say hello."),
        ]
        .into(),
        tools: Arc::default(),
        temperature: Some(0.0),
        max_tokens: 24,
        reasoning_effort: None,
    }
}

#[tokio::test]
async fn one_streamed_turn_through_the_openai_api() {
    let router = router(&config()).await;
    let opened = router
        .open("default", &plain_request(), &mut |_| {})
        .await
        .unwrap();
    let mut chunks = 0;
    let done = collect(opened.stream, &mut |_| chunks += 1).await.unwrap();
    assert!(
        done.content
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty()),
        "{done:?}"
    );
    assert!(chunks > 1, "the reply streamed in several chunks");
    assert!(
        matches!(done.finish, FinishReason::Stop | FinishReason::Length),
        "{:?}",
        done.finish
    );
    let usage = done.usage.expect("usage reported");
    assert!(
        usage.prompt_tokens > 0 && usage.completion_tokens > 0,
        "{usage:?}"
    );
}

#[tokio::test]
async fn one_streamed_turn_through_the_anthropic_messages_api() {
    let router = router(&config()).await;
    let opened = router
        .open("messages", &plain_request(), &mut |_| {})
        .await
        .unwrap();
    let done = collect(opened.stream, &mut |_| {}).await.unwrap();
    assert!(
        done.content
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty()),
        "{done:?}"
    );
    assert!(
        matches!(done.finish, FinishReason::Stop | FinishReason::Length),
        "{:?}",
        done.finish
    );
    assert!(
        done.usage.is_some_and(|u| u.prompt_tokens > 0),
        "{:?}",
        done.usage
    );
}

#[tokio::test]
async fn one_tool_round_with_the_few_shot_history() {
    let router = router(&config()).await;
    let mut request = ModelRequest {
        model: String::new(),
        messages: few_shot().into(),
        tools: vec![weather_tool()].into(),
        temperature: Some(0.0),
        max_tokens: 48,
        reasoning_effort: None,
    };
    let opened = router.open("default", &request, &mut |_| {}).await.unwrap();
    let first = collect(opened.stream, &mut |_| {}).await.unwrap();
    assert_eq!(first.finish, FinishReason::ToolCalls, "{first:?}");
    let call = &first.tool_calls[0];
    assert_eq!(call.name, "get_weather");
    let args: serde_json::Value =
        serde_json::from_str(&call.arguments).expect("arguments are JSON");
    assert!(args["city"].is_string(), "{args}");

    // Answer the call and let the model finish the round.
    let history = Arc::make_mut(&mut request.messages);
    history.push(ChatMessage::assistant(
        first.content.clone(),
        first.tool_calls.clone(),
    ));
    history.push(ChatMessage::tool(call, "{\"temp_c\": 15}"));
    let opened = router.open("default", &request, &mut |_| {}).await.unwrap();
    let second = collect(opened.stream, &mut |_| {}).await.unwrap();
    assert!(
        second.content.is_some() || !second.tool_calls.is_empty(),
        "{second:?}"
    );

    // The same history through the Anthropic Messages API gives a tool_use block.
    let history = Arc::make_mut(&mut request.messages);
    history.truncate(history.len() - 2);
    let opened = router
        .open("messages", &request, &mut |_| {})
        .await
        .unwrap();
    let via_messages = collect(opened.stream, &mut |_| {}).await.unwrap();
    assert_eq!(
        via_messages.finish,
        FinishReason::ToolCalls,
        "{via_messages:?}"
    );
    assert_eq!(via_messages.tool_calls[0].name, "get_weather");
}

#[tokio::test]
async fn a_workstream_turn_against_the_real_model() {
    let c = config();
    let router = router(&c).await;
    let deps = WorkstreamDeps {
        router,
        tools: ToolRegistry::new(),
        config: Arc::new(c),
        global: broadcast::channel(64).0,
        workdir: std::env::temp_dir(),
        store: None,
        node_id: "real".into(),
    };
    let manager = WorkstreamManager::start(
        deps,
        2,
        Duration::from_secs(3600),
        Observer::unregistered(),
        None,
    )
    .await
    .unwrap();
    let ws = manager
        .create(None, WorkstreamOptions::default(), None)
        .await
        .unwrap();
    let mut rx = ws.subscribe();
    ws.send("Say hello.").await.unwrap();
    let mut saw_content = false;
    loop {
        match &*tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            WsEvent::Content { .. } => saw_content = true,
            WsEvent::Error { message } => panic!("error event: {message}"),
            WsEvent::StreamEnd => break,
            _ => {}
        }
    }
    assert!(saw_content);
    assert_eq!(ws.history().await.unwrap().len(), 2);
}
