//! `turnstone-bridge`: the cluster bridge in front of a node server's HTTP/SSE API.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::bridge::{Credentials, HttpPort, SharedHttpPort};
use crate::server::cli::ClusterArgs;
use clap::Parser;
use turnstone_actors::config::EngineArgs;
use turnstone_actors::mq::{Bridge, BridgeArgs, BridgeSettings, PortError};
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::remote::RedisTransport;
use turnstone_runtime::supervise::{
    ChildSpec, Observer, Restart, SupervisorHandle, SupervisorSpec,
};

/// Connects a Turnstone node server to the cluster's Redis queues (one bridge per server).
#[derive(Debug, Parser)]
#[command(name = "turnstone-bridge", version)]
struct Args {
    /// The node server to bridge [default: http://localhost:8080]
    #[arg(long, value_name = "URL")]
    server_url: Option<String>,
    /// Redis, node id, heartbeat and approval flags.
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Bearer token for the node server (also $TURNSTONE_AUTH_TOKEN); without one, JWTs are
    /// minted with [auth] jwt_secret
    #[arg(long, value_name = "TOKEN")]
    auth_token: Option<String>,
    /// Log level (error, warn, info, debug, trace)
    #[arg(long)]
    log_level: Option<String>,
    /// Log format: auto, json or text
    #[arg(long)]
    log_format: Option<String>,
}

#[tokio::main]
pub async fn main() -> ExitCode {
    let args = Args::parse();
    let engine = EngineArgs {
        log_level: args.log_level.clone(),
        log_format: args.log_format.clone(),
        ..EngineArgs::default()
    };
    let mut config = match super::load_config(&engine) {
        Ok(c) => c,
        Err(code) => return code,
    };
    args.cluster.apply(&mut config);
    let _telemetry = match super::start_logging(
        "turnstone-bridge",
        config.log.level.clone(),
        config.log.format,
        Some((&config, config.bridge.node_id.as_deref())),
    ) {
        Ok(guard) => guard,
        Err(code) => return code,
    };
    let server_url = args
        .server_url
        .clone()
        .unwrap_or_else(|| config.bridge.server_url.clone());
    let credentials = Credentials::from_config(
        args.auth_token
            .clone()
            .or_else(|| config.auth.token.clone()),
        config.auth.jwt_secret.clone(),
    );
    let url = match args.cluster.redis_url(&config) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Started before its server or Redis (any start order): keep trying, 1, 2, 4 … 30 s.
    let backoff = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(30));
    let node_id = config.bridge.node_id.clone();
    // A refusal (bad token) is final; anything else is tried again.
    let reach_server = backoff.retry(
        || async {
            match HttpPort::connect(&server_url, credentials.clone(), node_id.clone()).await {
                Ok(port) => Ok(Ok(port)),
                Err(e @ PortError::Rejected(_)) => Ok(Err(e)),
                Err(e) => Err(e),
            }
        },
        |attempt, e, delay| {
            tracing::warn!(attempt, error = %e, retry_in_s = delay.as_secs_f64(),
                "the node server at {server_url} does not answer yet");
        },
    );
    let port = tokio::select! {
        port = reach_server => match port {
            Ok(port) => port,
            Err(e) => {
                eprintln!("error: the node server at {server_url} refused the bridge: {e}");
                return ExitCode::FAILURE;
            }
        },
        () = super::terminated() => return ExitCode::SUCCESS,
    };
    let prefix = args.cluster.redis.redis_prefix.clone();
    let reach_redis = backoff.retry(
        || RedisTransport::connect(&url, &prefix),
        |attempt, e, delay| {
            tracing::warn!(attempt, error = %e, retry_in_s = delay.as_secs_f64(),
                "Redis does not answer yet");
        },
    );
    let transport = tokio::select! {
        transport = reach_redis => Arc::<RedisTransport>::new(transport),
        () = super::terminated() => return ExitCode::SUCCESS,
    };
    let bridge = BridgeArgs {
        transport,
        port: Arc::new(SharedHttpPort(port)),
        settings: BridgeSettings {
            heartbeat_ttl: Duration::from_secs(config.bridge.heartbeat_ttl.max(1)),
            approval_timeout: Duration::from_secs(config.bridge.approval_timeout.max(1)),
            ..BridgeSettings::default()
        },
    };
    let node_id = bridge.port.node_id().to_owned();
    let (child, _) = ChildSpec::actor("bridge", Restart::Permanent, move || {
        (Bridge, bridge.clone())
    });
    let mut registry = prometheus_client::registry::Registry::default();
    let observer = Observer::new(&mut registry);
    let root =
        match SupervisorHandle::start(SupervisorSpec::new("bridge").child(child), observer).await {
            Ok((root, _)) => root,
            Err(e) => {
                eprintln!("error: the bridge failed to start: {e}");
                return ExitCode::FAILURE;
            }
        };
    tracing::info!(%node_id, %server_url, "turnstone-bridge running");
    eprintln!("Turnstone bridge for {server_url} as node {node_id}");
    super::terminated().await;
    let _ = root.shutdown(Some(Duration::from_secs(10))).await;
    ExitCode::SUCCESS
}
