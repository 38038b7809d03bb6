//! `turnstone-server`'s flags: the engine's, plus the server's own (SPEC §15), applied over
//! the loaded configuration (flags win).

use std::path::PathBuf;

use turnstone_actors::config::{EngineArgs, TurnstoneConfig};

/// Turnstone's node server: the HTTP/SSE API and browser UI of parallel workstreams.
#[derive(Debug, clap::Parser)]
#[command(name = "turnstone-server", version)]
pub struct ServerArgs {
    /// Engine flags shared with the terminal REPL.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Address to listen on
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on
    #[arg(long)]
    pub port: Option<u16>,
    /// Close idle workstreams after this many minutes
    #[arg(long, value_name = "MINUTES")]
    pub workstream_idle_timeout: Option<u64>,
    /// Most workstreams open at once (the least recently active idle one is evicted)
    #[arg(long)]
    pub max_workstreams: Option<usize>,
    /// Limit requests per client IP
    #[arg(long)]
    pub ratelimit_enabled: bool,
    /// Sustained requests per second per IP
    #[arg(long, value_name = "RPS")]
    pub ratelimit_rps: Option<f64>,
    /// Burst size per IP
    #[arg(long)]
    pub ratelimit_burst: Option<u32>,
    /// Proxies whose X-Forwarded-For is trusted (comma-separated CIDRs)
    #[arg(long, value_name = "CIDRS")]
    pub ratelimit_trusted_proxies: Option<String>,
    /// Seconds between backend health probes
    #[arg(long, value_name = "SECONDS")]
    pub health_probe_interval: Option<f64>,
    /// Seconds a health probe may take
    #[arg(long, value_name = "SECONDS")]
    pub health_probe_timeout: Option<f64>,
    /// Failures in a row that open the backend circuit
    #[arg(long)]
    pub circuit_breaker_threshold: Option<u32>,
    /// Seconds the circuit stays open before a trial request
    #[arg(long, value_name = "SECONDS")]
    pub circuit_breaker_cooldown: Option<f64>,
    /// Resume a saved session in the first workstream (alias, id or unique prefix)
    #[arg(long, value_name = "SESSION")]
    pub resume: Option<String>,
    /// Working directory for the tools (default: the current directory)
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Cluster flags: join a Redis-backed cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// The Redis a cluster shares (SPEC §15's Redis flags, over `[redis]`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RedisArgs {
    /// The cluster's Redis host [default: localhost]
    #[arg(long, env = "REDIS_HOST", value_name = "HOST")]
    pub redis_host: Option<String>,
    /// Redis port [default: 6379]
    #[arg(long, value_name = "PORT")]
    pub redis_port: Option<u16>,
    /// Redis password (also $REDIS_PASSWORD)
    #[arg(long, value_name = "PASSWORD")]
    pub redis_password: Option<String>,
    /// Redis database number [default: 0]
    #[arg(long, value_name = "N")]
    pub redis_db: Option<u32>,
    /// Connect to Redis over TLS
    #[arg(long)]
    pub redis_tls: bool,
    /// Prefix of every Redis key and channel
    #[arg(long, value_name = "PREFIX", default_value = "turnstone")]
    pub redis_prefix: String,
}

/// Joining a cluster: the Redis the nodes share and this node's place in it (SPEC §1, §15).
/// `--redis-host` makes the node join (it runs the bridge inside the node).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClusterArgs {
    /// Redis flags.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// This node's id (also $TURNSTONE_NODE_ID) [default: {hostname}_{4 hex}]
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// Seconds a heartbeat stays valid; renewed every half of it [default: 60]
    #[arg(long, value_name = "SECONDS")]
    pub heartbeat_ttl: Option<u64>,
    /// Seconds an approval or plan review waits for its answer [default: 3600]
    #[arg(long, value_name = "SECONDS")]
    pub approval_timeout: Option<u64>,
    /// The URL clients reach this node at, announced in its heartbeat
    #[arg(long, value_name = "URL")]
    pub advertise_url: Option<String>,
}

impl RedisArgs {
    /// The flags over `[redis]`.
    pub fn apply(&self, config: &mut TurnstoneConfig) {
        if let Some(v) = &self.redis_host {
            config.redis.host.clone_from(v);
        }
        if let Some(v) = self.redis_port {
            config.redis.port = v;
        }
        if let Some(v) = &self.redis_password {
            config.redis.password = Some(v.clone());
        }
        if let Some(v) = self.redis_db {
            config.redis.db = v;
        }
    }

    /// The Redis URL of the configuration.
    pub fn redis_url(&self, config: &TurnstoneConfig) -> Result<String, String> {
        let scheme = if self.redis_tls { "rediss" } else { "redis" };
        let mut url =
            url::Url::parse(&format!("{scheme}://localhost/")).map_err(|e| e.to_string())?;
        url.set_host(Some(&config.redis.host))
            .map_err(|e| format!("invalid Redis host {:?}: {e}", config.redis.host))?;
        let _ = url.set_port(Some(config.redis.port));
        if let Some(password) = config.redis.password.as_deref().filter(|p| !p.is_empty()) {
            let _ = url.set_password(Some(password));
        }
        url.set_path(&config.redis.db.to_string());
        Ok(url.to_string())
    }
}

impl ClusterArgs {
    /// The flags over the configuration: `[redis]` and `[bridge]`.
    pub fn apply(&self, config: &mut TurnstoneConfig) {
        self.redis.apply(config);
        if let Some(v) = &self.node_id {
            config.bridge.node_id = Some(v.clone());
        }
        if let Some(v) = self.heartbeat_ttl {
            config.bridge.heartbeat_ttl = v;
        }
        if let Some(v) = self.approval_timeout {
            config.bridge.approval_timeout = v;
        }
    }

    /// The Redis URL of the configuration.
    pub fn redis_url(&self, config: &TurnstoneConfig) -> Result<String, String> {
        self.redis.redis_url(config)
    }
}

impl ServerArgs {
    /// Applies the server flags that were given.
    pub fn apply(&self, config: &mut TurnstoneConfig) {
        let s = &mut config.server;
        if let Some(v) = &self.host {
            s.host.clone_from(v);
        }
        if let Some(v) = self.port {
            s.port = v;
        }
        if let Some(v) = self.workstream_idle_timeout {
            s.workstream_idle_timeout = v;
        }
        if let Some(v) = self.max_workstreams {
            s.max_workstreams = v;
        }
        let r = &mut config.ratelimit;
        if self.ratelimit_enabled {
            r.enabled = true;
        }
        if let Some(v) = self.ratelimit_rps {
            r.requests_per_second = v;
        }
        if let Some(v) = self.ratelimit_burst {
            r.burst = v;
        }
        if let Some(v) = &self.ratelimit_trusted_proxies {
            r.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
        }
        self.cluster.apply(config);
        let h = &mut config.health;
        if let Some(v) = self.health_probe_interval {
            h.backend_probe_interval = v;
        }
        if let Some(v) = self.health_probe_timeout {
            h.backend_probe_timeout = v;
        }
        if let Some(v) = self.circuit_breaker_threshold {
            h.circuit_breaker_threshold = v;
        }
        if let Some(v) = self.circuit_breaker_cooldown {
            h.circuit_breaker_cooldown = v;
        }
    }
}

/// `{hostname}_{4 hex}`, as 0.4.1 names nodes.
pub fn node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}_{}", &suffix[..4])
}
