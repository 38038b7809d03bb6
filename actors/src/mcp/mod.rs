//! MCP client with rmcp: each configured server is a supervised `McpServerActor` that owns the
//! connection and reconnects with backoff; its tools are offered as `mcp__{server}__{tool}`.
//! Stdio servers are spawned as child processes; `url` servers speak streamable HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rmcp::model::{CallToolRequestParams, ContentBlock, RequestParamsMeta};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tracing::Instrument;
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::remote::TraceContext;

use crate::config::{McpConfig, McpServerConfig};

mod tool;

pub use tool::McpTool;

/// How long connecting (spawn + initialize + list) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// MCP failures.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The `mcpServers` file cannot be read or parsed.
    #[error("MCP config {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A server name contains `__`, which separates server and tool in tool names.
    #[error("MCP server name {0:?} must not contain \"__\"")]
    BadName(String),
    /// The server could not be started or did not initialise.
    #[error("MCP server {server}: {reason}")]
    Connect {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
}

/// The servers of `[mcp.servers]` and of the `mcpServers` JSON file (`--mcp-config`).
pub fn configured_servers(
    config: &McpConfig,
) -> Result<BTreeMap<String, McpServerConfig>, McpError> {
    let mut servers = config.servers.clone();
    if let Some(path) = &config.config_path {
        let text = std::fs::read_to_string(path).map_err(|e| McpError::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| McpError::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let listed = value
            .get("mcpServers")
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        let parsed: BTreeMap<String, McpServerConfig> =
            serde_json::from_value(listed).map_err(|e| McpError::Config {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        servers.extend(parsed);
    }
    if let Some(bad) = servers.keys().find(|n| n.contains("__")) {
        return Err(McpError::BadName(bad.clone()));
    }
    Ok(servers)
}

/// A tool a server offers.
#[derive(Clone, Debug, PartialEq)]
pub struct McpToolInfo {
    /// Its name at the server.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its input schema.
    pub input_schema: Value,
}

struct Connection {
    service: RunningService<RoleClient, ()>,
    pid: Option<u32>,
}

async fn connect(
    name: &str,
    config: &McpServerConfig,
) -> Result<(Connection, Vec<McpToolInfo>), McpError> {
    let fail = |reason: String| McpError::Connect {
        server: name.to_owned(),
        reason,
    };
    let connecting = async {
        let (service, pid) = match (&config.url, &config.command) {
            (Some(url), _) => (serve_http(url, &config.headers).await.map_err(fail)?, None),
            (None, Some(command)) => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(&config.args).envs(&config.env);
                let transport = TokioChildProcess::new(cmd)
                    .map_err(|e| fail(format!("cannot start {command}: {e}")))?;
                let pid = transport.id();
                let service =
                    ().serve(transport)
                        .await
                        .map_err(|e| fail(format!("initialize failed: {e}")))?;
                (service, pid)
            }
            (None, None) => {
                return Err(fail(
                    "needs a command (stdio) or a url (streamable HTTP)".into(),
                ));
            }
        };
        let tools = service
            .list_all_tools()
            .await
            .map_err(|e| fail(format!("tools/list failed: {e}")))?;
        let tools = tools
            .into_iter()
            .map(|t| McpToolInfo {
                name: t.name.to_string(),
                description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                input_schema: Value::Object((*t.input_schema).clone()),
            })
            .collect();
        Ok((Connection { service, pid }, tools))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| {
            fail(format!(
                "did not answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
}

/// A streamable-HTTP session (headers from the config, on the shared TLS provider).
async fn serve_http(
    url: &str,
    headers: &BTreeMap<String, String>,
) -> Result<RunningService<RoleClient, ()>, String> {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    crate::provider::install_crypto_provider();
    let mut custom = std::collections::HashMap::new();
    for (k, v) in headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| format!("header {k:?}: {e}"))?;
        let value =
            reqwest::header::HeaderValue::from_str(v).map_err(|e| format!("header {k:?}: {e}"))?;
        custom.insert(name, value);
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut transport_config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    transport_config.custom_headers = custom;
    let transport = StreamableHttpClientTransport::with_client(client, transport_config);
    ().serve(transport)
        .await
        .map_err(|e| format!("initialize failed at {url}: {e}"))
}

/// Connects to a server and lists its tools (used at start-up to build the tool set).
pub async fn discover(name: &str, config: &McpServerConfig) -> Result<Vec<McpToolInfo>, McpError> {
    let (connection, tools) = connect(name, config).await?;
    let _ = connection.service.cancel().await;
    Ok(tools)
}

/// Requests an MCP server actor answers.
pub enum McpMsg {
    /// Call a tool; the reply is the result text or the error text.
    Call {
        /// Tool name at the server.
        tool: String,
        /// Arguments.
        args: Value,
        /// The caller's trace context, written into the request's `_meta` (SEP-414) so the
        /// server's spans join the turn's trace on every transport.
        trace: Option<TraceContext>,
        /// The result.
        reply: RpcReplyPort<Result<String, String>>,
    },
    /// The connection broke (internal).
    Lost,
    /// The server process id, when connected (for tests and diagnostics).
    Pid(RpcReplyPort<Option<u32>>),
}

/// One MCP server connection.
#[derive(Clone, Debug)]
pub struct McpServerActor {
    /// Server name.
    pub name: String,
    /// How to start it.
    pub config: McpServerConfig,
    /// Delay between reconnection attempts.
    pub backoff: Backoff,
}

/// The live connection, if any, and failed attempts in a row.
pub struct McpState {
    connection: Option<Connection>,
    failures: u32,
}

fn render(result: rmcp::model::CallToolResult) -> String {
    let parts: Vec<String> = result
        .content
        .iter()
        .map(|c| match c {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => format!("[{} data, {} bytes]", i.mime_type, i.data.len()),
            ContentBlock::Audio(a) => format!("[{} data, {} bytes]", a.mime_type, a.data.len()),
            other => serde_json::to_string(other).unwrap_or_default(),
        })
        .collect();
    let text = parts.join("\n");
    if result.is_error == Some(true) {
        format!("Error: {text}")
    } else {
        text
    }
}

impl Actor for McpServerActor {
    type Msg = McpMsg;
    type State = McpState;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<McpMsg>, _: ()) -> Result<McpState, ActorProcessingErr> {
        // Connect lazily on the first call: start-up already waited for discovery.
        Ok(McpState {
            connection: None,
            failures: 0,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<McpMsg>,
        state: &mut McpState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(c) = state.connection.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), c.service.cancel()).await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<McpMsg>,
        msg: McpMsg,
        state: &mut McpState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            McpMsg::Lost => {
                state.connection = None;
            }
            McpMsg::Pid(reply) => {
                let _ = reply.send(state.connection.as_ref().and_then(|c| c.pid));
            }
            McpMsg::Call {
                tool,
                args,
                trace,
                reply,
            } => {
                if state
                    .connection
                    .as_ref()
                    .is_none_or(|c| c.service.is_closed())
                {
                    if state.failures > 0 {
                        tokio::time::sleep(self.backoff.delay(state.failures - 1)).await;
                    }
                    // Connected under a root span of its own: the connection (and rmcp's
                    // span for it) outlives the call that asked for it, and a child span keeps
                    // its parent open, which would keep the caller's turn from ever ending.
                    let connecting = tracing::info_span!(
                        parent: None,
                        "mcp_connect",
                        otel.name = "connect mcp server",
                        turnstone.mcp.server = %self.name,
                    );
                    match connect(&self.name, &self.config)
                        .instrument(connecting)
                        .await
                    {
                        Ok((connection, _)) => {
                            state.connection = Some(connection);
                            state.failures = 0;
                        }
                        Err(e) => {
                            state.failures = state.failures.saturating_add(1);
                            let _ = reply.send(Err(format!("MCP tool error: {e}")));
                            return Ok(());
                        }
                    }
                }
                let Some(connection) = &state.connection else {
                    return Ok(());
                };
                let peer = connection.service.peer().clone();
                tokio::spawn(async move {
                    let mut params = CallToolRequestParams::new(tool)
                        .with_arguments(args.as_object().cloned().unwrap_or_default());
                    if let Some(trace) = trace {
                        params.set_traceparent(&trace.traceparent);
                        if let Some(state) = &trace.tracestate {
                            params.set_tracestate(state);
                        }
                    }
                    let result = match peer.call_tool(params).await {
                        Ok(result) => Ok(render(result)),
                        Err(e) => {
                            let _ = myself.cast(McpMsg::Lost);
                            Err(format!("MCP tool error: {e}"))
                        }
                    };
                    let _ = reply.send(result);
                });
            }
        }
        Ok(())
    }
}

/// What `/mcp` shows for one server.
#[derive(Clone, Debug, PartialEq)]
pub struct McpServerStatus {
    /// Server name.
    pub name: String,
    /// Its tools' full names, or why it is unavailable.
    pub tools: Result<Vec<String>, String>,
}

/// The MCP servers a node started: their tools, what `/mcp` shows, and their supervisor.
pub struct McpServers {
    /// Tools of the reachable servers.
    pub tools: Vec<std::sync::Arc<dyn crate::tools::Tool>>,
    /// Every configured server.
    pub status: Vec<McpServerStatus>,
    /// The `mcp` supervisor (None when nothing is configured).
    pub supervisor: Option<turnstone_runtime::supervise::SupervisorHandle>,
}

/// Connects to every configured server (each within 30 s), starts one supervised
/// `McpServerActor` per reachable server, and returns their tools. Unreachable servers are
/// logged and reported, not fatal.
pub async fn start_servers(
    config: &McpConfig,
    tool_timeout: Duration,
    observer: turnstone_runtime::supervise::Observer,
    parent: Option<ractor::ActorCell>,
) -> Result<McpServers, McpError> {
    use turnstone_runtime::supervise::{ChildSpec, Restart, SupervisorHandle, SupervisorSpec};
    let servers = configured_servers(config)?;
    if servers.is_empty() {
        return Ok(McpServers {
            tools: Vec::new(),
            status: Vec::new(),
            supervisor: None,
        });
    }
    let mut spec = SupervisorSpec::new("mcp");
    let mut tools: Vec<std::sync::Arc<dyn crate::tools::Tool>> = Vec::new();
    let mut status = Vec::new();
    for (name, server) in servers {
        match discover(&name, &server).await {
            Ok(infos) => {
                let actor = McpServerActor {
                    name: name.clone(),
                    config: server.clone(),
                    backoff: Backoff::exponential(
                        Duration::from_millis(500),
                        Duration::from_secs(30),
                    )
                    .with_free_attempts(1),
                };
                let (child, handle) =
                    ChildSpec::actor(name.clone(), Restart::Permanent, move || {
                        (actor.clone(), ())
                    });
                spec = spec.child(child);
                let names = infos
                    .iter()
                    .map(|t| format!("mcp__{name}__{}", t.name))
                    .collect();
                for info in infos {
                    tools.push(std::sync::Arc::new(McpTool::new(
                        &name,
                        info,
                        handle.clone(),
                        tool_timeout,
                    )));
                }
                status.push(McpServerStatus {
                    name,
                    tools: Ok(names),
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "MCP server unavailable");
                status.push(McpServerStatus {
                    name,
                    tools: Err(e.to_string()),
                });
            }
        }
    }
    let started = match parent {
        Some(parent) => SupervisorHandle::start_linked(spec, observer, parent).await,
        None => SupervisorHandle::start(spec, observer).await,
    };
    let (supervisor, _) = started.map_err(|e| McpError::Connect {
        server: "mcp".into(),
        reason: e.to_string(),
    })?;
    Ok(McpServers {
        tools,
        status,
        supervisor: Some(supervisor),
    })
}
