//! An MCP server's tool as one of ours.

use std::time::Duration;

use async_trait::async_trait;
use ractor::rpc::CallResult;
use serde_json::Value;
use turnstone_runtime::supervise::ChildRef;

use super::{McpMsg, McpToolInfo};
use crate::provider::ToolSpec;
use crate::tools::{Tool, ToolContext, ToolOutput};

/// `mcp__{server}__{tool}`: always asks for approval; calls go through the server's actor.
#[derive(Debug)]
pub struct McpTool {
    server: String,
    info: McpToolInfo,
    actor: ChildRef<McpMsg>,
    timeout: Duration,
}

impl McpTool {
    /// The tool `info` of `server`, called through `actor`.
    pub fn new(
        server: &str,
        info: McpToolInfo,
        actor: ChildRef<McpMsg>,
        timeout: Duration,
    ) -> Self {
        Self {
            server: server.to_owned(),
            info,
            actor,
            timeout,
        }
    }
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: format!("mcp__{}__{}", self.server, self.info.name),
            description: format!("[MCP: {}] {}", self.server, self.info.description),
            parameters: self.info.input_schema.clone(),
        }
    }
    fn needs_approval(&self) -> bool {
        true
    }
    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout + Duration::from_secs(1))
    }
    async fn run(&self, args: Value, _: ToolContext) -> Result<ToolOutput, String> {
        let actor = self
            .actor
            .get()
            .ok_or_else(|| format!("MCP server {} is not running", self.server))?;
        let tool = self.info.name.clone();
        match actor
            .call(
                |reply| McpMsg::Call { tool, args, reply },
                Some(self.timeout),
            )
            .await
        {
            Ok(CallResult::Success(Ok(text))) => Ok(ToolOutput::text(text)),
            Ok(CallResult::Success(Err(e))) => Err(e),
            Ok(CallResult::Timeout) => Err(format!(
                "MCP tool timed out after {}s",
                self.timeout.as_secs()
            )),
            Ok(CallResult::SenderError) | Err(_) => Err(format!(
                "MCP server {} stopped during the call",
                self.server
            )),
        }
    }
}
