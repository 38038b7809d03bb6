//! Flags shared by `turnstone` and `turnstone-server` (SPEC §15) that set configuration keys.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::ReasoningEffort;

/// Engine flags. Each flag given on the command line overrides every other layer; flags not
/// given leave the key to the file, the environment or the default.
#[derive(Clone, Debug, Default, PartialEq, Args)]
pub struct EngineArgs {
    /// Config file (default: ~/.config/turnstone/config.toml)
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// OpenAI-compatible API base URL [config: api.base_url]
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// API key [config: api.api_key, env: OPENAI_API_KEY]
    #[arg(long)]
    pub api_key: Option<String>,
    /// Model protocol: openai or anthropic [config: api.provider]
    #[arg(long, value_enum)]
    pub provider: Option<super::ProviderKind>,
    /// Model name (auto-detected when unset) [config: model.name]
    #[arg(long)]
    pub model: Option<String>,
    /// Extra system instructions [config: session.instructions]
    #[arg(long)]
    pub instructions: Option<String>,
    /// Sampling temperature [config: model.temperature]
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Completion token limit [config: model.max_tokens]
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Seconds a tool may run [config: tools.timeout]
    #[arg(long)]
    pub tool_timeout: Option<u64>,
    /// Reasoning effort [config: model.reasoning_effort]
    #[arg(long, value_enum)]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Context window in tokens [config: model.context_window]
    #[arg(long)]
    pub context_window: Option<u32>,
    /// Token budget of a compaction summary [config: session.compact_max_tokens]
    #[arg(long)]
    pub compact_max_tokens: Option<u32>,
    /// Context fraction that triggers auto-compaction [config: session.auto_compact_pct]
    #[arg(long)]
    pub auto_compact_pct: Option<f64>,
    /// Turns a sub-agent may take, -1 = unlimited [config: tools.agent_max_turns]
    #[arg(long, allow_negative_numbers = true)]
    pub agent_max_turns: Option<i64>,
    /// Tool output characters kept, 0 = auto [config: tools.truncation]
    #[arg(long)]
    pub tool_truncation: Option<u64>,
    /// Approve every tool call without asking [config: tools.skip_permissions]
    #[arg(long)]
    pub skip_permissions: bool,
    /// Days to keep unnamed sessions [config: session.retention_days]
    #[arg(long)]
    pub session_retention_days: Option<u32>,
    /// An mcpServers JSON file [config: mcp.config_path]
    #[arg(long, value_name = "PATH")]
    pub mcp_config: Option<String>,
    /// Log level or filter directives [config: log.level, env: TURNSTONE_LOG_LEVEL]
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log format: auto, json or text [config: log.format, env: TURNSTONE_LOG_FORMAT]
    #[arg(long)]
    pub log_format: Option<String>,
}

impl EngineArgs {
    /// The `(key, value)` pairs of the flags that were given.
    pub fn overrides(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut set = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                out.push((key.to_owned(), v));
            }
        };
        set("api.base_url", self.base_url.clone());
        set("api.api_key", self.api_key.clone());
        set(
            "api.provider",
            self.provider
                .and_then(|p| p.to_possible_value())
                .map(|v| v.get_name().to_owned()),
        );
        set("model.name", self.model.clone());
        set("session.instructions", self.instructions.clone());
        set("model.temperature", self.temperature.map(|v| v.to_string()));
        set("model.max_tokens", self.max_tokens.map(|v| v.to_string()));
        set("tools.timeout", self.tool_timeout.map(|v| v.to_string()));
        set(
            "model.reasoning_effort",
            self.reasoning_effort
                .and_then(|e| e.to_possible_value())
                .map(|v| v.get_name().to_owned()),
        );
        set(
            "model.context_window",
            self.context_window.map(|v| v.to_string()),
        );
        set(
            "session.compact_max_tokens",
            self.compact_max_tokens.map(|v| v.to_string()),
        );
        set(
            "session.auto_compact_pct",
            self.auto_compact_pct.map(|v| v.to_string()),
        );
        set(
            "tools.agent_max_turns",
            self.agent_max_turns.map(|v| v.to_string()),
        );
        set(
            "tools.truncation",
            self.tool_truncation.map(|v| v.to_string()),
        );
        set(
            "tools.skip_permissions",
            self.skip_permissions.then(|| "true".to_owned()),
        );
        set(
            "session.retention_days",
            self.session_retention_days.map(|v| v.to_string()),
        );
        set("mcp.config_path", self.mcp_config.clone());
        set("log.level", self.log_level.clone());
        set("log.format", self.log_format.clone());
        out
    }
}
