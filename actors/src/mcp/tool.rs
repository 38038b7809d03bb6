//! An MCP server's tool as one of ours.

use std::time::Duration;

use async_trait::async_trait;
use ractor::rpc::CallResult;
use serde_json::Value;
use turnstone_runtime::remote::TraceContext;
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
        // The client span of the MCP request (OpenTelemetry's MCP conventions), below the
        // tool call's span; its context goes to the server in the request's `_meta`.
        let span = turnstone_runtime::telemetry::traced(|| {
            tracing::info_span!(
                "mcp",
                otel.name = format!("tools/call {tool}"),
                otel.kind = "client",
                mcp.method.name = "tools/call",
                gen_ai.operation.name = "execute_tool",
                gen_ai.tool.name = %tool,
                turnstone.mcp.server = %self.server,
                error.type = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            )
        });
        turnstone_runtime::telemetry::annotate(&span);
        let trace = span.in_scope(TraceContext::current);
        let answer = actor
            .call(
                |reply| McpMsg::Call {
                    tool,
                    args,
                    trace,
                    reply,
                },
                Some(self.timeout),
            )
            .await;
        let (result, error) = match answer {
            Ok(CallResult::Success(Ok(text))) => (Ok(ToolOutput::text(text)), None),
            Ok(CallResult::Success(Err(e))) => (Err(e), Some("tool_error")),
            Ok(CallResult::Timeout) => (
                Err(format!(
                    "MCP tool timed out after {}s",
                    self.timeout.as_secs()
                )),
                Some("timeout"),
            ),
            Ok(CallResult::SenderError) | Err(_) => (
                Err(format!(
                    "MCP server {} stopped during the call",
                    self.server
                )),
                Some("server_stopped"),
            ),
        };
        if let Some(error) = error {
            span.record("error.type", error);
        }
        result
    }
}
