//! `turnstone-console`'s flags (SPEC §15: `--host`, `--port`, the Redis flags,
//! `--poll-interval`, `--auth-token`), applied over `[console]`, `[redis]` and `[auth]`.

use std::path::PathBuf;

use turnstone_actors::config::TurnstoneConfig;

use crate::server::cli::RedisArgs;

/// Turnstone's cluster console: a live dashboard of every node and workstream, workstream
/// creation with node targeting, and a reverse proxy to each node's UI.
#[derive(Debug, clap::Parser)]
#[command(name = "turnstone-console", version)]
pub struct ConsoleArgs {
    /// Config file (default: ~/.config/turnstone/config.toml)
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0]
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on [default: 8090]
    #[arg(long)]
    pub port: Option<u16>,
    /// Redis flags.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Seconds between two polls of each node [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub poll_interval: Option<u64>,
    /// Bearer token for the nodes (also $TURNSTONE_AUTH_TOKEN); without one, service JWTs
    /// are minted with [auth] jwt_secret ($TURNSTONE_JWT_SECRET)
    #[arg(long, value_name = "TOKEN")]
    pub auth_token: Option<String>,
    /// Log level (error, warn, info, debug, trace)
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log format: auto, json or text
    #[arg(long)]
    pub log_format: Option<String>,
}

impl ConsoleArgs {
    /// The flags over the configuration.
    pub fn apply(&self, config: &mut TurnstoneConfig) {
        if let Some(v) = &self.host {
            config.console.host.clone_from(v);
        }
        if let Some(v) = self.port {
            config.console.port = v;
        }
        if let Some(v) = self.poll_interval {
            config.console.poll_interval = v.max(1);
        }
        self.redis.apply(config);
    }
}
