//! The test node: a scripted model, a few test tools, a store, and helpers to read events.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use turnstone_actors::config::TurnstoneConfig;
use turnstone_actors::provider::{
    ModelRouter, PoolOptions, RetryPolicy, ToolSpec, start_providers,
};
use turnstone_actors::storage::Store;
use turnstone_actors::tools::{Tool, ToolContext, ToolOutput, ToolRegistry};
use turnstone_actors::workstream::{
    GlobalEvent, TITLE_PROMPT, WorkstreamDeps, WorkstreamHandle, WorkstreamManager,
    WorkstreamOptions, WsEvent,
};
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::supervise::Observer;
use turnstone_tests::llm::{ScriptedLlm, Turn};

pub(super) struct TestTool {
    pub(super) name: &'static str,
    pub(super) approval: bool,
    pub(super) behaviour: fn(&Value, &ToolContext) -> Behaviour,
}

pub(super) enum Behaviour {
    Output(String),
    Review(String),
    Hang,
    Panic,
}

#[async_trait]
impl Tool for TestTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.into(),
            description: format!("test tool {}", self.name),
            parameters: json!({"type": "object", "properties": {"text": {"type": "string"}}}),
        }
    }
    fn needs_approval(&self) -> bool {
        self.approval
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("text")
    }
    async fn run(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, String> {
        match (self.behaviour)(&args, &ctx) {
            Behaviour::Output(s) => Ok(ToolOutput::text(s)),
            Behaviour::Review(plan) => Ok(ToolOutput {
                text: plan.clone(),
                review: Some(plan),
            }),
            Behaviour::Hang => {
                futures::future::pending::<()>().await;
                Ok(ToolOutput::text("unreachable"))
            }
            Behaviour::Panic => panic!("tool exploded"),
        }
    }
}

pub(super) fn tools() -> ToolRegistry {
    let mut r = ToolRegistry::new();
    let echo = |args: &Value, ctx: &ToolContext| {
        ctx.emit("line 1");
        Behaviour::Output(format!("echo: {}", args["text"].as_str().unwrap_or("")))
    };
    r.register(Arc::new(TestTool {
        name: "echo",
        approval: true,
        behaviour: echo,
    }));
    r.register(Arc::new(TestTool {
        name: "look",
        approval: false,
        behaviour: |args, _| Behaviour::Output(format!("looked at {}", args["text"])),
    }));
    r.register(Arc::new(TestTool {
        name: "hang",
        approval: false,
        behaviour: |_, _| Behaviour::Hang,
    }));
    r.register(Arc::new(TestTool {
        name: "boom",
        approval: false,
        behaviour: |_, _| Behaviour::Panic,
    }));
    r.register(Arc::new(TestTool {
        name: "plan",
        approval: false,
        behaviour: |_, _| Behaviour::Review("1. read\n2. fix".into()),
    }));
    r
}

pub(super) struct Node {
    pub(super) llm: ScriptedLlm,
    pub(super) manager: WorkstreamManager,
    pub(super) global: broadcast::Receiver<GlobalEvent>,
    pub(super) _router: ModelRouter,
}

pub(super) async fn node_with(max: usize, tweak: impl FnOnce(&mut TurnstoneConfig)) -> Node {
    node_with_store(max, tweak, None).await
}

pub(super) async fn node_with_store(
    max: usize,
    tweak: impl FnOnce(&mut TurnstoneConfig),
    store: Option<Store>,
) -> Node {
    node_on(ScriptedLlm::start().await.unwrap(), max, tweak, store).await
}

pub(super) async fn node_on(
    llm: ScriptedLlm,
    max: usize,
    tweak: impl FnOnce(&mut TurnstoneConfig),
    store: Option<Store>,
) -> Node {
    llm.route(TITLE_PROMPT, Turn::text("A test title"));
    let mut config = TurnstoneConfig::default();
    config.api.base_url = llm.base_url();
    config.model.name = Some("scripted-model".into());
    config.model.context_window = 1000;
    config.tools.timeout = 1;
    tweak(&mut config);
    let observer = Observer::unregistered();
    let router = start_router(&config, &observer).await;
    let (global, global_rx) = broadcast::channel(4096);
    let deps = WorkstreamDeps {
        router: router.clone(),
        tools: tools(),
        config: Arc::new(config),
        global,
        workdir: std::env::temp_dir(),
        store,
        node_id: "node-test".into(),
    };
    let manager = WorkstreamManager::start(deps, max, Duration::from_secs(7200), observer, None)
        .await
        .unwrap();
    Node {
        llm,
        manager,
        global: global_rx,
        _router: router,
    }
}

/// Providers for a test node: fast failures, no retries, no probes; a model not listed yet
/// is detected in the background.
pub(super) async fn start_router(config: &TurnstoneConfig, observer: &Observer) -> ModelRouter {
    let options = PoolOptions {
        open_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            retries: 0,
            backoff: Backoff::none(),
        },
        probes: false,
        detect: Some(Backoff::exponential(
            Duration::from_millis(10),
            Duration::from_millis(40),
        )),
    };
    start_providers(config, options, observer.clone(), None)
        .await
        .unwrap()
        .1
}

pub(super) async fn node() -> Node {
    node_with(10, |_| {}).await
}

/// Events until (and including) the first that matches.
pub(super) async fn until(
    rx: &mut broadcast::Receiver<Arc<WsEvent>>,
    done: impl Fn(&WsEvent) -> bool,
) -> Vec<WsEvent> {
    let mut seen = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out; saw {seen:#?}"))
            .map(Arc::unwrap_or_clone)
            .unwrap();
        let stop = done(&e);
        seen.push(e);
        if stop {
            return seen;
        }
    }
}

pub(super) fn is_end(e: &WsEvent) -> bool {
    matches!(e, WsEvent::StreamEnd)
}

pub(super) async fn new_ws(node: &Node) -> (WorkstreamHandle, broadcast::Receiver<Arc<WsEvent>>) {
    let ws = node
        .manager
        .create(None, WorkstreamOptions::default(), None)
        .await
        .unwrap();
    let rx = ws.subscribe();
    (ws, rx)
}
