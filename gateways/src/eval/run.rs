//! One run of one case through the real engine: a node of its own whose tools work in a fresh
//! temporary directory seeded with the case's files, one workstream with the prompt under
//! test that approves its own tools, the case's message, and a cap on model requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use turnstone_actors::config::TurnstoneConfig;
use turnstone_actors::node::{Node, NodeOptions};
use turnstone_actors::provider::{PoolOptions, Role};
use turnstone_actors::workstream::{WorkstreamOptions, WsEvent};

use super::cases::Case;
use super::score::{Call, Score, score};

/// What every run shares.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// The engine's configuration (model name resolved, the eval's temperature).
    pub config: Arc<TurnstoneConfig>,
    /// A `[models]` alias to run on instead of the default lane.
    pub model_alias: Option<String>,
    /// The longest one run may take.
    pub timeout: Duration,
}

/// How one run went.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    /// The case.
    pub case: String,
    /// The run's number within the case (0-based).
    pub run: u32,
    /// The tool calls, in order.
    pub calls: Vec<Call>,
    /// Their tools' names.
    pub tool_sequence: Vec<String>,
    /// The model's last words.
    pub final_content: String,
    /// Model requests made.
    pub turns: u32,
    /// Why the run failed, when it did (the model endpoint down, the turn limit, a timeout).
    pub error: Option<String>,
    /// Errors the workstream reported on the way (a reply cut at the token limit, a retry).
    pub notices: Vec<String>,
    /// Seconds.
    pub elapsed: f64,
    /// The score.
    pub score: Score,
}

/// What the workstream did, as the run watched it.
#[derive(Default)]
struct Watched {
    turns: u32,
    errors: Vec<String>,
    limit_hit: bool,
}

/// Runs `case` once with `prompt` as the system message.
pub async fn run_case(case: &Case, prompt: &str, run: u32, settings: &RunSettings) -> RunRecord {
    let started = Instant::now();
    let outcome = tokio::time::timeout(settings.timeout, drive(case, prompt, settings)).await;
    let (calls, final_content, watched, error) = match outcome {
        Ok(Ok((calls, content, watched))) => {
            let error = if watched.limit_hit {
                Some(format!(
                    "stopped at the turn limit ({} model requests)",
                    case.max_turns
                ))
            } else if calls.is_empty() && content.is_empty() && !watched.errors.is_empty() {
                Some(watched.errors.join("; "))
            } else {
                None
            };
            (calls, content, watched, error)
        }
        Ok(Err(e)) => (Vec::new(), String::new(), Watched::default(), Some(e)),
        Err(_) => (
            Vec::new(),
            String::new(),
            Watched::default(),
            Some(format!("no answer within {} s", settings.timeout.as_secs())),
        ),
    };
    let notices = watched.errors.clone();
    let mut scored = score(&calls, &case.expected_actions, case.match_mode);
    if let Some(why) = error.as_deref().filter(|_| calls.is_empty()) {
        // A run that never got to act fails, whatever was expected.
        scored.pass = false;
        scored.score = 0.0;
        scored.detail = format!("run failed: {why}");
    }
    RunRecord {
        case: case.id.clone(),
        run,
        tool_sequence: calls.iter().map(|c| c.tool.clone()).collect(),
        calls,
        final_content,
        turns: watched.turns,
        error,
        notices,
        elapsed: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        score: scored,
    }
}

async fn drive(
    case: &Case,
    prompt: &str,
    settings: &RunSettings,
) -> Result<(Vec<Call>, String, Watched), String> {
    let dir = tempfile::Builder::new()
        .prefix("turnstone_eval_")
        .tempdir()
        .map_err(|e| format!("no temporary directory: {e}"))?;
    for (path, content) in &case.files {
        let full = dir.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&full, content)
            .map_err(|e| format!("cannot write {}: {e}", full.display()))?;
    }
    let options = NodeOptions {
        pool: PoolOptions::default(),
        workdir: dir.path().to_path_buf(),
        node_id: "eval".into(),
        storage: false,
        model_backend: None,
    };
    let node = Node::start_with_builtin_tools((*settings.config).clone(), options)
        .await
        .map_err(|e| e.to_string())?;
    let result = converse(&node, case, prompt, settings).await;
    node.shutdown().await;
    result
}

async fn converse(
    node: &Node,
    case: &Case,
    prompt: &str,
    settings: &RunSettings,
) -> Result<(Vec<Call>, String, Watched), String> {
    let ws = node
        .manager
        .create(
            Some(&case.id),
            WorkstreamOptions {
                auto_approve: true,
                model_alias: settings.model_alias.clone(),
                system_prompt: Some(prompt.to_owned()),
                ..WorkstreamOptions::default()
            },
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut events = ws.subscribe();
    ws.send(&case.user_prompt)
        .await
        .map_err(|e| e.to_string())?;
    let mut watched = Watched::default();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return Err("the workstream stopped".into()),
        };
        match &*event {
            WsEvent::ThinkingStart => {
                watched.turns += 1;
                if watched.turns > case.max_turns {
                    watched.turns = case.max_turns;
                    watched.limit_hit = true;
                    let _ = ws.cancel();
                }
            }
            // A plan is accepted as written, as a person who approves everything would.
            WsEvent::PlanReview { .. } => {
                let _ = ws.plan_feedback("").await;
            }
            WsEvent::Error { message } => watched.errors.push(message.clone()),
            WsEvent::StreamEnd => break,
            _ => {}
        }
    }
    let history = ws.history().await.map_err(|e| e.to_string())?;
    let calls = history
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .flat_map(|m| m.tool_calls.iter())
        .map(|c| Call::parse(&c.name, &c.arguments))
        .collect();
    let final_content = history
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant && m.content.as_deref().is_some_and(|c| !c.is_empty()))
        .and_then(|m| m.content.clone())
        .unwrap_or_default();
    Ok((calls, final_content, watched))
}
