//! `turnstone-server`: one node's HTTP/SSE API and browser UI.

use std::process::ExitCode;

use crate::server::cli::{ServerArgs, node_id};
use crate::server::{ServerOptions, ServerState, listen, serve};
use clap::Parser;
use std::sync::Arc;
use std::time::Duration;
use turnstone_actors::node::{Node, NodeOptions};
use turnstone_actors::provider::PoolOptions;
use turnstone_actors::workstream::WorkstreamOptions;

use crate::server::cluster;
use crate::web::starting::Starting;
use turnstone_actors::mq::BridgeSettings;
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::remote::{RedisTransport, Transport};

#[tokio::main]
pub async fn main() -> ExitCode {
    let args = ServerArgs::parse();
    let mut config = match super::load_config(&args.engine) {
        Ok(c) => c,
        Err(code) => return code,
    };
    args.apply(&mut config);
    // A client that disconnects mid-request is not a server error (hyper reports it as one).
    let level = if config.log.level.contains("warp") {
        config.log.level.clone()
    } else {
        format!("{},warp::server=off", config.log.level)
    };
    let node_id = config.bridge.node_id.clone().unwrap_or_else(node_id);
    let _telemetry = match super::start_logging(
        "turnstone-server",
        level,
        config.log.format,
        Some((&config, Some(&node_id))),
    ) {
        Ok(guard) => guard,
        Err(code) => return code,
    };
    let listener = match listen(&config.server.host, config.server.port) {
        Ok(l) => l,
        Err((e, code)) => {
            eprintln!("error: {e}");
            return ExitCode::from(code);
        }
    };
    let skip_permissions = config.tools.skip_permissions;
    let cluster = match args.cluster.redis.redis_host.is_some() {
        true => match args.cluster.redis_url(&config) {
            Ok(url) => Some((url, config.bridge.clone())),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        false => None,
    };
    let options = NodeOptions {
        // A model server that is still loading: start without a model, keep detecting.
        pool: PoolOptions {
            detect: Some(Backoff::exponential(
                Duration::from_secs(1),
                Duration::from_secs(30),
            )),
            ..PoolOptions::default()
        },
        workdir: args
            .workdir
            .clone()
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| ".".into()),
        node_id,
        storage: true,
        model_backend: None,
    };
    // Until the node is up (a PostgreSQL that is still starting is waited for), the port
    // answers 503 "starting" instead of refusing connections.
    let starting = Starting::serve(
        &listener,
        "turnstone-server",
        "waiting for the database and the model lanes",
    )
    .map_err(|e| tracing::warn!("cannot answer while starting: {e}"))
    .ok();
    let node = match Node::start_with_builtin_tools(config, options).await {
        Ok(node) => node,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let first = WorkstreamOptions {
        auto_approve: skip_permissions,
        ..WorkstreamOptions::default()
    };
    if let Err(e) = node
        .manager
        .create(Some("default"), first, args.resume.as_deref())
        .await
    {
        eprintln!("error: {e}");
        node.shutdown().await;
        return ExitCode::FAILURE;
    }
    let state = ServerState::new(node, ServerOptions { skip_permissions });
    if let Some(starting) = starting {
        starting.finish();
    }
    let Ok(local) = listener.local_addr() else {
        eprintln!("error: the listener has no address");
        return ExitCode::FAILURE;
    };
    if let Some((url, bridge)) = cluster {
        let advertised = args
            .cluster
            .advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        let settings = BridgeSettings {
            heartbeat_ttl: Duration::from_secs(bridge.heartbeat_ttl.max(1)),
            approval_timeout: Duration::from_secs(bridge.approval_timeout.max(1)),
            ..BridgeSettings::default()
        };
        let prefix = args.cluster.redis.redis_prefix.clone();
        // Redis may come up after the node: the node serves meanwhile and keeps trying.
        tokio::spawn(cluster::join(
            Arc::downgrade(&state),
            move || {
                let (url, prefix) = (url.clone(), prefix.clone());
                async move {
                    let transport = RedisTransport::connect(&url, &prefix).await?;
                    Ok(Arc::new(transport) as Arc<dyn Transport>)
                }
            },
            advertised,
            settings,
            cluster::JOIN_BACKOFF,
        ));
    }
    tracing::info!(%local, node_id = %state.node.node_id, "turnstone-server listening");
    eprintln!("Turnstone server on http://{local}/");
    serve(state.clone(), listener, super::terminated()).await;
    state.node.shutdown().await;
    ExitCode::SUCCESS
}
