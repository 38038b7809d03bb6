#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Engine overhead per model round and per tool call, and memory per idle workstream.
//!
//! ```text
//! cargo bench -p turnstone-tests --bench engine
//! ```
//!
//! Overhead is measured by difference: a turn through the whole actor stack (workstream actor,
//! provider actor and router, a tool-call actor, events) against the same two HTTP requests and
//! the same tool call made directly, back to back, against the same scripted server on loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use turnstone_actors::config::TurnstoneConfig;
use turnstone_actors::provider::{
    ChatMessage, ModelRequest, OpenAiBackend, PoolOptions, RetryPolicy, ToolSpec, collect,
    start_providers,
};
use turnstone_actors::tools::{Tool, ToolContext, ToolOutput, ToolRegistry};
use turnstone_actors::workstream::{WorkstreamDeps, WorkstreamManager, WorkstreamOptions, WsEvent};
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::supervise::Observer;
use turnstone_tests::llm::{ScriptedLlm, Turn};

const TURNS: usize = 400;
const IDLE_WORKSTREAMS: usize = 1000;

struct Look;

#[async_trait]
impl Tool for Look {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "look".into(),
            description: "look at something".into(),
            parameters: json!({"type": "object", "properties": {"text": {"type": "string"}}}),
        }
    }
    fn needs_approval(&self) -> bool {
        false
    }
    async fn run(&self, args: Value, _: ToolContext) -> Result<ToolOutput, String> {
        Ok(ToolOutput::text(format!("looked at {}", args["text"])))
    }
}

fn rss_kb() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn script(llm: &ScriptedLlm) {
    llm.push_turn(
        Turn::new()
            .tool_call("c1", "look", r#"{"text": "x"}"#)
            .usage(100, 10),
    );
    llm.push_turn(Turn::text("done").usage(120, 5));
}

async fn deps(llm: &ScriptedLlm, max: usize) -> (WorkstreamManager, TurnstoneConfig) {
    let mut config = TurnstoneConfig::default();
    config.api.base_url = llm.base_url();
    config.model.name = Some("scripted-model".into());
    config.server.max_workstreams = max;
    let options = PoolOptions {
        open_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            retries: 0,
            backoff: Backoff::none(),
        },
        probes: false,
        detect: None,
    };
    let observer = Observer::unregistered();
    let (_, router) = start_providers(&config, options, observer.clone(), None)
        .await
        .unwrap();
    let mut tools = ToolRegistry::new();
    tools.register(Arc::new(Look));
    let deps = WorkstreamDeps {
        router,
        tools,
        config: Arc::new(config.clone()),
        global: broadcast::channel(4096).0,
        workdir: std::env::temp_dir(),
        store: None,
        node_id: "bench".into(),
    };
    let manager = WorkstreamManager::start(deps, max, Duration::from_secs(7200), observer, None)
        .await
        .unwrap();
    (manager, config)
}

async fn direct_turn(backend: &OpenAiBackend, tool: &Look) {
    let spec = tool.spec();
    let mut request = ModelRequest {
        model: "scripted-model".into(),
        messages: vec![ChatMessage::system("s"), ChatMessage::user("go")].into(),
        tools: vec![spec].into(),
        temperature: Some(0.5),
        max_tokens: 1024,
        reasoning_effort: None,
    };
    let first = collect(backend.open(&request).await.unwrap(), &mut |_| {})
        .await
        .unwrap();
    let call = &first.tool_calls[0];
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = ToolContext {
        workdir: std::env::temp_dir(),
        session_id: "s".into(),
        call_id: call.id.clone(),
        turn: 1,
        output: tx,
        approver: None,
    };
    let out = tool
        .run(serde_json::from_str(&call.arguments).unwrap(), ctx)
        .await
        .unwrap();
    let history = Arc::make_mut(&mut request.messages);
    history.push(ChatMessage::assistant(None, first.tool_calls.clone()));
    history.push(ChatMessage::tool(call, out.text));
    collect(backend.open(&request).await.unwrap(), &mut |_| {})
        .await
        .unwrap();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let llm = ScriptedLlm::start().await.unwrap();
        let (manager, config) = deps(&llm, 10).await;
        let ws = manager.create(None, WorkstreamOptions::default(), None).await.unwrap();
        let backend = OpenAiBackend::new(&config.api.base_url, None, Duration::from_secs(10)).unwrap();
        let mut engine = Vec::with_capacity(TURNS);
        let mut direct = Vec::with_capacity(TURNS);
        for i in 0..TURNS + 20 {
            script(&llm);
            let mut rx = ws.subscribe();
            let t = Instant::now();
            ws.send("go").await.unwrap();
            loop {
                if let Ok(e) = rx.recv().await
                    && matches!(*e, WsEvent::StreamEnd)
                {
                    break;
                }
            }
            let e = t.elapsed();
            script(&llm);
            let t = Instant::now();
            direct_turn(&backend, &Look).await;
            let d = t.elapsed();
            if i >= 20 {
                engine.push(e);
                direct.push(d);
            }
            if i % 50 == 0 {
                // keep the conversation short: every turn is then the same work
                ws.configure(turnstone_actors::workstream::Setting::Clear).await.unwrap();
            }
        }
        let overhead: Vec<Duration> = engine.iter().zip(&direct).map(|(e, d)| e.saturating_sub(*d)).collect();
        let mut sorted_e = engine.clone();
        sorted_e.sort();
        let mut sorted_d = direct.clone();
        sorted_d.sort();
        let mut sorted_o = overhead.clone();
        sorted_o.sort();
        println!("turn = 2 model rounds + 1 tool call ({TURNS} turns, paired)");
        println!("| measure | p50 | p90 | p99 |");
        println!("|---|---:|---:|---:|");
        for (name, v) in [("through the engine", &sorted_e), ("direct (client + server only)", &sorted_d), ("engine overhead per turn", &sorted_o)] {
            println!("| {name} | {} | {} | {} |", ms(pct(v, 0.5)), ms(pct(v, 0.9)), ms(pct(v, 0.99)));
        }
        println!(
            "| engine overhead per model round or tool call (turn / 3) | {} | {} | {} |",
            ms(pct(&sorted_o, 0.5) / 3),
            ms(pct(&sorted_o, 0.9) / 3),
            ms(pct(&sorted_o, 0.99) / 3)
        );

        // Memory per idle workstream.
        let (manager, _) = deps(&llm, IDLE_WORKSTREAMS + 1).await;
        let first = manager.create(None, WorkstreamOptions::default(), None).await.unwrap();
        let _ = first.status().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_kb();
        for _ in 0..IDLE_WORKSTREAMS {
            manager.create(None, WorkstreamOptions::default(), None).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kb();
        println!("\n{IDLE_WORKSTREAMS} idle workstreams: RSS {before} KB → {after} KB, {:.1} KB per workstream",
            (after.saturating_sub(before)) as f64 / IDLE_WORKSTREAMS as f64);
    });
}
