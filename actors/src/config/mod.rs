//! Turnstone's configuration: the sections and keys of `config.toml`, the environment variables
//! and the command-line flags of Turnstone 0.4.1, layered as Turnstone documents it:
//! built-in defaults < config file < environment < flags (0.4.1 itself lets the file beat the
//! environment; we implement the documented order, see docs/architecture.md).

mod cli;
mod schema;

use std::path::PathBuf;

pub use cli::EngineArgs;
pub use schema::*;
use turnstone_runtime::config::{ConfigError, ConfigLoader, EnvBinding};

/// Environment variables of Turnstone 0.4.1 and the keys they set. Besides these, any key can
/// be set as `TURNSTONE__SECTION__KEY` (e.g. `TURNSTONE__MODEL__TEMPERATURE=0.2`).
pub const ENV_BINDINGS: &[EnvBinding] = &[
    EnvBinding {
        var: "OPENAI_API_KEY",
        key: "api.api_key",
    },
    EnvBinding {
        var: "TAVILY_API_KEY",
        key: "api.tavily_key",
    },
    EnvBinding {
        var: "REDIS_HOST",
        key: "redis.host",
    },
    EnvBinding {
        var: "REDIS_PORT",
        key: "redis.port",
    },
    EnvBinding {
        var: "REDIS_PASSWORD",
        key: "redis.password",
    },
    EnvBinding {
        var: "TURNSTONE_AUTH_ENABLED",
        key: "auth.enabled",
    },
    EnvBinding {
        var: "TURNSTONE_AUTH_TOKEN",
        key: "auth.token",
    },
    EnvBinding {
        var: "TURNSTONE_JWT_SECRET",
        key: "auth.jwt_secret",
    },
    EnvBinding {
        var: "TURNSTONE_NODE_ID",
        key: "bridge.node_id",
    },
    EnvBinding {
        var: "TURNSTONE_CORS_ORIGINS",
        key: "server.cors_origins",
    },
    EnvBinding {
        var: "TURNSTONE_DB_BACKEND",
        key: "database.backend",
    },
    EnvBinding {
        var: "TURNSTONE_DB_URL",
        key: "database.url",
    },
    EnvBinding {
        var: "TURNSTONE_DB_PATH",
        key: "database.path",
    },
    EnvBinding {
        var: "TURNSTONE_DB_POOL_SIZE",
        key: "database.pool_size",
    },
    EnvBinding {
        var: "TURNSTONE_LOG_LEVEL",
        key: "log.level",
    },
    EnvBinding {
        var: "TURNSTONE_LOG_FORMAT",
        key: "log.format",
    },
];

/// Prefix of the generic `TURNSTONE__SECTION__KEY` variables.
pub const ENV_PREFIX: &str = "TURNSTONE";

/// `$XDG_CONFIG_HOME/turnstone/config.toml`, else `$HOME/.config/turnstone/config.toml`.
pub fn default_config_path<'a>(env: impl Fn(&str) -> Option<&'a str>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("turnstone").join("config.toml"))
}

/// Loads the configuration: defaults, then `--config PATH` (which must exist) or the default
/// file (if present), then `env`, then the flags in `args`.
pub fn load(
    args: &EngineArgs,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<TurnstoneConfig, ConfigError> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let mut loader = ConfigLoader::new()
        .env(env.iter().cloned())
        .bindings(ENV_BINDINGS)
        .prefix(ENV_PREFIX)
        .overrides(args.overrides());
    loader = match &args.config {
        Some(path) => loader.file(path, true),
        None => match default_config_path(lookup) {
            Some(path) => loader.file(path, false),
            None => loader,
        },
    };
    loader.load()
}
