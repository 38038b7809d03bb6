//! `turnstone-channel`: the chat gateway (Discord, Slack, Matrix) and the notify endpoint.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::channel::cli::ChannelArgs;
use crate::channel::notify::NotifyAuth;
use crate::channel::{GatewayOptions, RunOptions, run};
use clap::Parser;
use prometheus_client::registry::Registry;
use turnstone_actors::config::{DatabaseBackend, EngineArgs};
use turnstone_actors::mq::TurnstoneClient;
use turnstone_actors::storage::Store;
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::remote::RedisTransport;
use turnstone_runtime::supervise::Observer;

#[tokio::main]
pub async fn main() -> ExitCode {
    let args = ChannelArgs::parse();
    let engine = EngineArgs {
        config: args.config.clone(),
        log_level: args.log_level.clone(),
        log_format: args.log_format.clone(),
        ..EngineArgs::default()
    };
    let mut config = match super::load_config(&engine) {
        Ok(c) => c,
        Err(code) => return code,
    };
    args.redis.apply(&mut config);
    let matrix = match args.matrix() {
        Ok(m) => m,
        Err(e) => return super::fail(e, 2),
    };
    let slack = match args.slack() {
        Ok(s) => s,
        Err(e) => return super::fail(e, 2),
    };
    let _telemetry = match super::start_logging(
        "turnstone-channel",
        format!("{},warp::server=off", config.log.level),
        config.log.format,
        Some((&config, None)),
    ) {
        Ok(guard) => guard,
        Err(code) => return code,
    };
    let discord = args.discord();
    if matrix.is_none() && discord.is_none() && slack.is_none() {
        tracing::warn!(
            "no platform configured (--discord-token, --slack-bot-token, --matrix-homeserver): \
             only notify is served"
        );
    }
    let url = match args.redis.redis_url(&config) {
        Ok(url) => url,
        Err(e) => return super::fail(e, 2),
    };
    let listener = match crate::web::listen(&args.http_host, args.http_port) {
        Ok(l) => l,
        Err((e, code)) => return super::fail(e, code),
    };
    let mut database = config.database.clone();
    database.pool_size = database.pool_size.clamp(1, 4);
    let opened = match database.backend {
        DatabaseBackend::Postgresql => {
            let wait = Duration::from_secs(database.startup_wait);
            let backoff = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(10));
            Store::open_patiently(&database, wait, backoff).await
        }
        DatabaseBackend::Sqlite => Store::open(&database).await,
    };
    let store = match opened {
        Ok(store) => store,
        Err(e) => return super::fail(format!("the gateway needs the nodes' database: {e}"), 1),
    };
    let transport = match RedisTransport::connect(&url, &args.redis.redis_prefix).await {
        Ok(t) => t,
        Err(e) => return super::fail(format!("cannot reach Redis: {e}"), 1),
    };
    let client = TurnstoneClient::new(Arc::new(transport));
    let jwt_secret = config.auth.jwt_secret.clone().filter(|s| !s.is_empty());
    let notify = NotifyAuth {
        token: args.auth_token.clone().filter(|t| !t.is_empty()),
        jwt_secret: jwt_secret.clone(),
    };
    if notify.token.is_none() && notify.jwt_secret.is_none() {
        tracing::warn!("neither --auth-token nor a JWT secret: notify refuses every caller (401)");
    }
    let mut registry = Registry::default();
    let observer = Observer::new(&mut registry);
    let running = match run(
        RunOptions {
            gateway: GatewayOptions {
                client,
                store,
                route: args.route(),
                auth: config.auth.clone(),
                jwt_secret,
            },
            matrix,
            discord,
            slack,
            notify,
            listener,
            http_host: args.http_host.clone(),
            advertise_url: args.advertise_url.clone(),
        },
        observer,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return super::fail(e, 1),
    };
    tracing::info!(local = %running.local, service_id = %running.service_id, "turnstone-channel listening");
    eprintln!("Turnstone channel gateway on http://{}/", running.local);
    super::terminated().await;
    running.shutdown().await;
    ExitCode::SUCCESS
}
