//! The sections of `config.toml`, with Turnstone 0.4.1's defaults (SPEC §11, §18).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Deserializes a unit enum from its command-line name (case-insensitive, aliases included), so
/// the config file, the environment and the flags accept the same values and a bad value is
/// answered with the list of valid ones.
macro_rules! named_values {
    ($($t:ty),* $(,)?) => {$(
        impl TryFrom<String> for $t {
            type Error = String;

            fn try_from(value: String) -> Result<Self, String> {
                <$t as clap::ValueEnum>::from_str(&value, true).map_err(|_| {
                    let expected: Vec<String> = <$t as clap::ValueEnum>::value_variants()
                        .iter()
                        .filter_map(clap::ValueEnum::to_possible_value)
                        .map(|v| v.get_name().to_owned())
                        .collect();
                    format!("unknown value {value:?}, expected one of: {}", expected.join(", "))
                })
            }
        }
    )*};
}

named_values!(ReasoningEffort, TokenRole, DatabaseBackend, ProviderKind);

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnstoneConfig {
    /// `[api]`: the LLM backend.
    pub api: ApiConfig,
    /// `[model]`: model choice and sampling.
    pub model: ModelConfig,
    /// `[session]`: conversations.
    pub session: SessionConfig,
    /// `[tools]`: tool execution.
    pub tools: ToolsConfig,
    /// `[server]`: the node HTTP server.
    pub server: ServerConfig,
    /// `[bridge]`: the queue bridge.
    pub bridge: BridgeConfig,
    /// `[redis]`: the cluster's Redis.
    pub redis: RedisConfig,
    /// `[console]`: the cluster console.
    pub console: ConsoleConfig,
    /// `[auth]`: authentication.
    pub auth: AuthConfig,
    /// `[mcp]`: MCP servers.
    pub mcp: McpConfig,
    /// `[ratelimit]`: per-IP rate limiting.
    pub ratelimit: RateLimitConfig,
    /// `[health]`: backend probes and circuit breaker.
    pub health: HealthConfig,
    /// `[database]`: storage.
    pub database: DatabaseConfig,
    /// `[log]`: log level and format (also `TURNSTONE_LOG_LEVEL` / `TURNSTONE_LOG_FORMAT`).
    pub log: LogConfig,
    /// `[models.<alias>]`: named model definitions.
    pub models: BTreeMap<String, ModelAlias>,
    /// `[telemetry]`: span export, the same keys as the standard `OTEL_*` variables (which
    /// win).
    pub telemetry: turnstone_runtime::telemetry::TelemetryConfig,
}

/// `[api]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// OpenAI-compatible base URL.
    pub base_url: String,
    /// API key (`$OPENAI_API_KEY`).
    pub api_key: Option<String>,
    /// Tavily key for web search (`$TAVILY_API_KEY`).
    pub tavily_key: Option<String>,
    /// Tavily API root (for a proxy or a self-hosted compatible service).
    pub tavily_url: String,
    /// Protocol of the command-line model (`--provider`).
    pub provider: ProviderKind,
    /// Key for Anthropic lanes (`$ANTHROPIC_API_KEY`).
    pub anthropic_api_key: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            base_url: "http://localhost:8000/v1".into(),
            api_key: None,
            tavily_key: None,
            tavily_url: "https://api.tavily.com".into(),
            provider: ProviderKind::Openai,
            anthropic_api_key: None,
        }
    }
}

/// Reasoning effort requested from reasoning models.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum ReasoningEffort {
    /// No reasoning.
    None,
    /// Minimal.
    Minimal,
    /// Low.
    Low,
    /// Medium (default).
    #[default]
    Medium,
    /// High.
    High,
    /// Extra high.
    Xhigh,
    /// Maximum.
    Max,
}

/// `[model]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Model name (`--model`); detected from the backend when unset.
    pub name: Option<String>,
    /// Sampling temperature.
    pub temperature: f64,
    /// Completion token limit.
    pub max_tokens: u32,
    /// Reasoning effort.
    pub reasoning_effort: ReasoningEffort,
    /// Context window in tokens.
    pub context_window: u32,
    /// Default model alias from `[models]`.
    pub default: Option<String>,
    /// Aliases tried in order when the default fails.
    pub fallback: Vec<String>,
    /// Alias used by sub-agents.
    pub agent_model: Option<String>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: None,
            temperature: 0.5,
            max_tokens: 32_768,
            reasoning_effort: ReasoningEffort::Medium,
            context_window: 131_072,
            default: None,
            fallback: Vec::new(),
            agent_model: None,
        }
    }
}

/// `[session]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Extra system instructions.
    pub instructions: Option<String>,
    /// Days to keep unnamed sessions.
    pub retention_days: u32,
    /// Token budget of a compaction summary.
    pub compact_max_tokens: u32,
    /// Context fraction that triggers auto-compaction.
    pub auto_compact_pct: f64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            instructions: None,
            retention_days: 90,
            compact_max_tokens: 32_768,
            auto_compact_pct: 0.8,
        }
    }
}

/// `[tools]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// Seconds a tool may run.
    pub timeout: u64,
    /// Characters of tool output kept (0 = automatic from the context window).
    pub truncation: u64,
    /// Turns a sub-agent may take (-1 = unlimited).
    pub agent_max_turns: i64,
    /// Approve every tool call without asking.
    pub skip_permissions: bool,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            timeout: 30,
            truncation: 0,
            agent_max_turns: -1,
            skip_permissions: false,
        }
    }
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Bind address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Minutes before an idle workstream is closed.
    pub workstream_idle_timeout: u64,
    /// Workstreams kept per node.
    pub max_workstreams: usize,
    /// Allowed CORS origins, comma-separated (`$TURNSTONE_CORS_ORIGINS`).
    pub cors_origins: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8080,
            workstream_idle_timeout: 120,
            max_workstreams: 10,
            cors_origins: None,
        }
    }
}

/// `[bridge]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// The node server the standalone bridge fronts.
    pub server_url: String,
    /// This node's id (`$TURNSTONE_NODE_ID`).
    pub node_id: Option<String>,
    /// Seconds to wait for an approval answer.
    pub approval_timeout: u64,
    /// Heartbeat key TTL in seconds.
    pub heartbeat_ttl: u64,
    /// Bridge log level.
    pub log_level: String,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            server_url: "http://localhost:8080".into(),
            node_id: None,
            approval_timeout: 3600,
            heartbeat_ttl: 60,
            log_level: "info".into(),
        }
    }
}

/// `[redis]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Host (`$REDIS_HOST`).
    pub host: String,
    /// Port (`$REDIS_PORT`).
    pub port: u16,
    /// Password (`$REDIS_PASSWORD`).
    pub password: Option<String>,
    /// Database number.
    pub db: u32,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 6379,
            password: None,
            db: 0,
        }
    }
}

/// `[console]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Bind address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The console's URL, for clients (`--console-url`).
    pub url: Option<String>,
    /// Seconds between node polls.
    pub poll_interval: u64,
    /// Console log level.
    pub log_level: String,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8090,
            url: None,
            poll_interval: 10,
            log_level: "info".into(),
        }
    }
}

/// Role of a static config token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum TokenRole {
    /// Read-only.
    Read,
    /// Everything.
    Full,
}

/// `[[auth.tokens]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticToken {
    /// The token.
    pub value: String,
    /// What it may do.
    pub role: TokenRole,
}

/// `[auth]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Full-access static token (`$TURNSTONE_AUTH_TOKEN`).
    pub token: Option<String>,
    /// Whether authentication is required (`$TURNSTONE_AUTH_ENABLED`).
    pub enabled: bool,
    /// HS256 secret for JWTs (`$TURNSTONE_JWT_SECRET`; random per process when unset).
    pub jwt_secret: Option<String>,
    /// Static tokens with roles.
    pub tokens: Vec<StaticToken>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token: None,
            enabled: true,
            jwt_secret: None,
            tokens: Vec::new(),
        }
    }
}

/// `[mcp.servers.<name>]`: a stdio (`command`) or streamable-HTTP (`url`) server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpServerConfig {
    /// Program to spawn (stdio).
    pub command: Option<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment for it.
    pub env: BTreeMap<String, String>,
    /// Endpoint (streamable HTTP).
    pub url: Option<String>,
    /// HTTP headers.
    pub headers: BTreeMap<String, String>,
}

/// `[mcp]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// An `mcpServers` JSON file (`--mcp-config`).
    pub config_path: Option<String>,
    /// Servers by name.
    pub servers: BTreeMap<String, McpServerConfig>,
}

/// `[ratelimit]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Off by default.
    pub enabled: bool,
    /// Tokens added per second per IP.
    pub requests_per_second: f64,
    /// Bucket size.
    pub burst: u32,
    /// CIDRs whose `X-Forwarded-For` is trusted.
    pub trusted_proxies: Vec<String>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            requests_per_second: 10.0,
            burst: 20,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[health]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Seconds between backend probes.
    pub backend_probe_interval: f64,
    /// Seconds a probe may take.
    pub backend_probe_timeout: f64,
    /// Consecutive failures that open the circuit.
    pub circuit_breaker_threshold: u32,
    /// Seconds before a half-open probe.
    pub circuit_breaker_cooldown: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            backend_probe_interval: 30.0,
            backend_probe_timeout: 5.0,
            circuit_breaker_threshold: 5,
            circuit_breaker_cooldown: 60.0,
        }
    }
}

/// Storage backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum DatabaseBackend {
    /// An embedded SQLite file (default).
    #[default]
    Sqlite,
    /// A shared PostgreSQL server (clusters).
    #[value(alias = "postgres")]
    Postgresql,
}

/// `[database]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Backend.
    pub backend: DatabaseBackend,
    /// Connection URL (PostgreSQL).
    pub url: Option<String>,
    /// SQLite file.
    pub path: String,
    /// Connection pool size.
    pub pool_size: u32,
    /// Seconds a starting process waits for a database that does not answer yet (retrying
    /// with backoff) before it exits.
    pub startup_wait: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            backend: DatabaseBackend::Sqlite,
            url: None,
            path: ".turnstone.db".into(),
            pool_size: 5,
            startup_wait: 180,
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Level or filter directives.
    pub level: String,
    /// `auto`, `json` or `text`.
    pub format: turnstone_runtime::telemetry::LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: turnstone_runtime::telemetry::LogFormat::Auto,
        }
    }
}

/// Provider protocol of a model alias.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions.
    #[default]
    Openai,
    /// Anthropic Messages API.
    Anthropic,
}

/// `[models.<alias>]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelAlias {
    /// Base URL (defaults to `[api].base_url`).
    pub base_url: Option<String>,
    /// API key.
    pub api_key: Option<String>,
    /// Model name at the backend.
    pub model: String,
    /// Context window in tokens.
    pub context_window: Option<u32>,
    /// Protocol.
    pub provider: ProviderKind,
}
