//! Tools: the contract every tool implements, the registry, argument preparation (with
//! Turnstone's recovery of malformed JSON), output truncation, and the `ToolCallActor` that runs
//! one call under its workstream's supervision.

pub mod builtin;
mod call;
mod prepare;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

pub use call::{ToolCallActor, ToolCallArgs, ToolCallMsg, ToolOutcome};
pub use prepare::{PreparedCall, prepare_calls, truncate_output};

use crate::provider::ToolSpec;

/// What a tool gets besides its arguments.
#[derive(Clone, Debug)]
pub struct ToolContext {
    /// The working directory.
    pub workdir: PathBuf,
    /// The session the call belongs to.
    pub session_id: String,
    /// The call's id (for streamed output).
    pub call_id: String,
    /// The workstream's turn number (for per-turn limits, such as notify's).
    pub turn: u64,
    /// Streamed output lines (`tool_output_chunk` events).
    pub output: mpsc::UnboundedSender<(String, String)>,
    /// Asks the workstream's person to approve calls made inside this call (sub-agents).
    pub approver: Option<Arc<dyn Approver>>,
}

/// A person's answer to an approval request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalDecision {
    /// Run the calls?
    pub approved: bool,
    /// Text for the model.
    pub feedback: Option<String>,
}

/// The workstream side of approvals requested from inside a running tool.
#[async_trait]
pub trait Approver: Send + Sync + std::fmt::Debug {
    /// Asks about `items`; resolves when the person answers (or the workstream auto-approves).
    async fn approve(&self, items: Vec<ToolItem>) -> ApprovalDecision;
}

impl ToolContext {
    /// Streams one chunk of output to whoever watches the workstream.
    pub fn emit(&self, chunk: impl Into<String>) {
        let _ = self.output.send((self.call_id.clone(), chunk.into()));
    }
}

/// A tool's result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolOutput {
    /// The text the model sees.
    pub text: String,
    /// Text the user must review before the turn goes on (the `plan` tool's plan).
    pub review: Option<String>,
}

impl ToolOutput {
    /// Plain text output.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            review: None,
        }
    }
}

/// One tool the model can call.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// Name, description and argument schema.
    fn spec(&self) -> ToolSpec;

    /// Whether a person must approve calls in the main session.
    fn needs_approval(&self) -> bool;

    /// The argument recovered from malformed JSON (`command` for bash, `path` for read_file…).
    fn primary_key(&self) -> Option<&'static str> {
        None
    }

    /// How long a call may run (None: the configured tool timeout).
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Checks arguments before approval; an `Err` becomes the call's result without running it.
    fn validate(&self, args: &Value) -> Result<(), String> {
        let _ = args;
        Ok(())
    }

    /// A one-line summary for approval prompts (default: the primary argument).
    fn preview(&self, args: &Value) -> String {
        self.primary_key()
            .and_then(|k| args.get(k))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_else(|| args.to_string())
    }

    /// Runs the call. An `Err` is reported to the model as the call's (error) result.
    async fn run(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, String>;
}

/// Tools by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    /// Every tool's spec, by name: built when a tool is registered, shared by every model
    /// request (a spec's schema is a JSON tree; rebuilding them per request was needless work).
    specs: Arc<[ToolSpec]>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.keys()).finish()
    }
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a tool.
    pub fn register(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.spec().name, tool);
        self.specs = self.tools.values().map(|t| t.spec()).collect();
    }

    /// A tool by name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    /// Specs of every tool, by name (shared, not copied).
    pub fn specs(&self) -> Arc<[ToolSpec]> {
        self.specs.clone()
    }

    /// Tool names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }
}

/// A tool call as shown to people (approval prompts, `tool_info`), as Turnstone's item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ToolItem {
    /// The call's id.
    pub call_id: String,
    /// `name(preview)`.
    pub header: String,
    /// The primary argument or a summary.
    pub preview: String,
    /// The tool's name.
    pub func_name: String,
    /// What the approval is for (the tool's name).
    pub approval_label: String,
    /// Whether this call waits for a person.
    pub needs_approval: bool,
    /// Why the call will not run, if it will not.
    pub error: Option<String>,
}
