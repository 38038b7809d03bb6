//! Sub-agents: `task` (an autonomous worker with the task tool list) and `plan` (a planner that
//! writes `.plan-<session>.md` and whose plan the person reviews). They use the agent model,
//! stop after `agent_max_turns` rounds of tool calls, cannot start further agents, and their
//! calls that need approval are asked through the workstream like any other.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::confine;
use crate::config::{ReasoningEffort, TurnstoneConfig};
use crate::provider::{ChatMessage, FinishReason, ModelRequest, ModelRouter, ToolSpec, collect};
use crate::tools::{
    ApprovalDecision, Tool, ToolContext, ToolOutput, ToolRegistry, prepare_calls, truncate_output,
};

/// Tools a planner may use (Turnstone's agent list). These run without asking inside
/// sub-agents.
pub const AGENT_TOOLS: &[&str] = &[
    "man",
    "math",
    "notify",
    "read_file",
    "search",
    "web_fetch",
    "web_search",
];
/// Tools a task agent may use: the agent list plus editing and commands.
pub const TASK_TOOLS: &[&str] = &[
    "bash",
    "edit_file",
    "man",
    "math",
    "notify",
    "read_file",
    "search",
    "web_fetch",
    "web_search",
    "write_file",
];

const TASK_BRIEF: &str = "You are a focused sub-agent. Complete the task below using your tools, \
then reply with a concise report of what you found and changed.";
const PLAN_BRIEF: &str = "You are a planner. Investigate with your tools (read-only), then write a \
plan in Markdown with the sections: ## Goal, ## Current State, ## Plan (numbered steps), ## Risks.";
const LIMIT_NUDGE: &str = "You have reached the tool call limit. Give your final answer now, \
without calling tools.";

/// What a sub-agent needs from the node.
#[derive(Clone, Debug)]
pub struct AgentKit {
    /// Model lanes (the agent alias is used).
    pub router: ModelRouter,
    /// The tools sub-agents may call (never `task` or `plan`).
    pub tools: ToolRegistry,
    /// Limits and sampling.
    pub config: Arc<TurnstoneConfig>,
}

fn prompt_arg(args: &Value) -> Result<&str, String> {
    args["prompt"]
        .as_str()
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| "missing required argument 'prompt'".to_owned())
}

impl AgentKit {
    /// Runs one sub-agent to its final answer.
    async fn run(
        &self,
        brief: &str,
        prompt: &str,
        allowed: &[&str],
        effort: ReasoningEffort,
        ctx: &ToolContext,
    ) -> Result<String, String> {
        // The fixed list plus every MCP tool (SPEC §8: appended to the task and plan lists).
        let mut allowed: Vec<&str> = allowed.to_vec();
        allowed.extend(self.tools.names().filter(|n| n.starts_with("mcp__")));
        let allowed = allowed.as_slice();
        let specs: Arc<[ToolSpec]> = allowed
            .iter()
            .filter_map(|n| self.tools.get(n).map(|t| t.spec()))
            .collect();
        // Shared with each round's request, which is gone before the conversation grows.
        let mut messages = Arc::new(vec![ChatMessage::system(brief), ChatMessage::user(prompt)]);
        let max_turns = self.config.tools.agent_max_turns;
        let timeout = Duration::from_secs(self.config.tools.timeout.max(1));
        let limit = usize::try_from(self.config.model.context_window).unwrap_or(usize::MAX) * 2;
        let mut turns: i64 = 0;
        loop {
            let at_limit = max_turns >= 0 && turns >= max_turns;
            if at_limit {
                Arc::make_mut(&mut messages).push(ChatMessage::user(LIMIT_NUDGE));
            }
            let request = ModelRequest {
                model: String::new(),
                messages: Arc::clone(&messages),
                tools: if at_limit {
                    Arc::default()
                } else {
                    specs.clone()
                },
                temperature: Some(self.config.model.temperature),
                max_tokens: self.config.model.max_tokens,
                reasoning_effort: Some(effort),
            };
            let opened = self
                .router
                .open(self.router.agent_alias(), &request, &mut |_| {})
                .await
                .map_err(|e| format!("sub-agent model request failed: {e}"))?;
            drop(request);
            let done = collect(opened.stream, &mut |_| {})
                .await
                .map_err(|(e, _)| format!("sub-agent model stream failed: {e}"))?;
            if done.tool_calls.is_empty() || at_limit {
                return Ok(match done.finish {
                    FinishReason::ContentFilter => "(content filter)".to_owned(),
                    _ => done.content.unwrap_or_else(|| "(no answer)".to_owned()),
                });
            }
            Arc::make_mut(&mut messages).push(ChatMessage::assistant(
                done.content.clone(),
                done.tool_calls.clone(),
            ));
            for prepared in prepare_calls(&done.tool_calls, &self.tools) {
                let name = prepared.call.name.as_str();
                let output = if name == "task" || name == "plan" {
                    "Error: agents cannot spawn further agents".to_owned()
                } else if !allowed.contains(&name) {
                    format!("Error: tool '{name}' is not available to this agent")
                } else if let Some(error) = &prepared.item.error {
                    error.clone()
                } else {
                    let decision = if AGENT_TOOLS.contains(&name) || !prepared.item.needs_approval {
                        ApprovalDecision {
                            approved: true,
                            feedback: None,
                        }
                    } else {
                        match &ctx.approver {
                            Some(approver) => approver.approve(vec![prepared.item.clone()]).await,
                            None => ApprovalDecision {
                                approved: false,
                                feedback: Some("nobody can approve this call".into()),
                            },
                        }
                    };
                    match (decision.approved, prepared.tool.clone()) {
                        (false, _) => match decision.feedback {
                            Some(f) => format!("Denied by user: {f}"),
                            None => "Denied by user".to_owned(),
                        },
                        (true, None) => "Error: unknown tool".to_owned(),
                        (true, Some(tool)) => {
                            let call_ctx = ToolContext {
                                call_id: prepared.call.id.clone(),
                                ..ctx.clone()
                            };
                            match tokio::time::timeout(
                                timeout,
                                tool.run(prepared.args.clone(), call_ctx),
                            )
                            .await
                            {
                                Ok(Ok(out)) => out.text,
                                Ok(Err(e)) => format!("Error: {e}"),
                                Err(_) => {
                                    format!("Error: {name} timed out after {}s", timeout.as_secs())
                                }
                            }
                        }
                    }
                };
                Arc::make_mut(&mut messages).push(ChatMessage::tool(
                    &prepared.call,
                    truncate_output(&output, limit),
                ));
            }
            turns += 1;
        }
    }
}

/// Which sub-agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentKind {
    /// `task`: delegates a self-contained job; may edit and run commands.
    Task,
    /// `plan`: investigates read-only and writes a plan the person reviews.
    Plan,
}

/// The `task` and `plan` tools.
#[derive(Debug)]
pub struct SubAgent {
    kind: AgentKind,
    kit: AgentKit,
}

impl SubAgent {
    /// A sub-agent tool of `kind` over `kit`.
    pub fn new(kind: AgentKind, kit: AgentKit) -> Self {
        Self { kind, kit }
    }
}

#[async_trait]
impl Tool for SubAgent {
    fn spec(&self) -> ToolSpec {
        let (name, description) = match self.kind {
            AgentKind::Task => (
                "task",
                "Delegate a self-contained task to an autonomous sub-agent that can read, search, \
                 edit and run commands; returns its report.",
            ),
            AgentKind::Plan => (
                "plan",
                "Have a planner investigate (read-only) and write a step-by-step plan, which the \
                 user reviews before you continue.",
            ),
        };
        ToolSpec {
            name: name.into(),
            description: description.into(),
            parameters: json!({"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        true
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("prompt")
    }
    fn timeout(&self) -> Option<Duration> {
        // A sub-agent makes many model and tool calls; each of those has its own timeout.
        Some(Duration::from_secs(3600))
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        prompt_arg(args).map(|_| ())
    }
    async fn run(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, String> {
        let prompt = prompt_arg(&args)?;
        match self.kind {
            AgentKind::Task => {
                let effort = self.kit.config.model.reasoning_effort;
                let report = self
                    .kit
                    .run(TASK_BRIEF, prompt, TASK_TOOLS, effort, &ctx)
                    .await?;
                Ok(ToolOutput::text(report))
            }
            AgentKind::Plan => {
                let plan = self
                    .kit
                    .run(PLAN_BRIEF, prompt, AGENT_TOOLS, ReasoningEffort::High, &ctx)
                    .await?;
                let file = format!(".plan-{}.md", ctx.session_id);
                let path = confine(&ctx.workdir, &file)?;
                std::fs::write(&path, &plan).map_err(|e| format!("could not save {file}: {e}"))?;
                Ok(ToolOutput {
                    text: format!("{plan}\n\n(saved to {file})"),
                    review: Some(plan),
                })
            }
        }
    }
}
