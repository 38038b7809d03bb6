//! `turnstone-console`: the cluster dashboard, cluster API and reverse proxy to node UIs.

use std::process::ExitCode;
use std::time::Duration;

use crate::console::cli::ConsoleArgs;
use crate::console::collector::CollectorSettings;
use crate::console::link::Link;
use crate::console::schedules::{Clock, SchedulerSettings};
use crate::console::{ConsoleOptions, ConsoleState, listen, serve};
use crate::web::service_token::Credentials;
use crate::web::starting::Starting;
use clap::Parser;
use turnstone_actors::config::{DatabaseBackend, EngineArgs};
use turnstone_actors::storage::Store;
use turnstone_runtime::policy::Backoff;

#[tokio::main]
pub async fn main() -> ExitCode {
    let args = ConsoleArgs::parse();
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
    args.apply(&mut config);
    let level = if args.log_level.is_none() && config.log.level == "info" {
        format!("{},warp::server=off", config.console.log_level)
    } else {
        format!("{},warp::server=off", config.log.level)
    };
    let _telemetry = match super::start_logging(
        "turnstone-console",
        level,
        config.log.format,
        Some((&config, None)),
    ) {
        Ok(guard) => guard,
        Err(code) => return code,
    };
    let url = match args.redis.redis_url(&config) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match listen(&config.console.host, config.console.port) {
        Ok(l) => l,
        Err((e, code)) => {
            eprintln!("error: {e}");
            return ExitCode::from(code);
        }
    };
    // Users and API tokens live in the nodes' database; without it, static tokens still work.
    // The console asks it little: two connections are plenty.
    let mut database = config.database.clone();
    database.pool_size = database.pool_size.clamp(1, 2);
    // A configured PostgreSQL that is still starting is waited for (the port answers 503
    // "starting" meanwhile); the SQLite default opens at once or not at all.
    let starting = Starting::serve(&listener, "turnstone-console", "waiting for the database")
        .map_err(|e| tracing::warn!("cannot answer while starting: {e}"))
        .ok();
    let opened = match database.backend {
        DatabaseBackend::Postgresql => {
            let wait = Duration::from_secs(database.startup_wait);
            let backoff = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(10));
            match Store::open_patiently(&database, wait, backoff).await {
                Ok(store) => Ok(store),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        DatabaseBackend::Sqlite => Store::open(&database).await,
    };
    let store = match opened {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "no database: sign-in by user or API token, the admin API and the scheduler are off"
            );
            None
        }
    };
    let credentials = Credentials::from_config(
        args.auth_token
            .clone()
            .or_else(|| config.auth.token.clone()),
        config.auth.jwt_secret.clone(),
    );
    if config.auth.enabled && matches!(credentials, Credentials::None) {
        tracing::warn!(
            "neither --auth-token nor a JWT secret: nodes with auth on will refuse the console"
        );
    }
    let options = ConsoleOptions {
        link: Link::redis(url, &args.redis.redis_prefix),
        credentials,
        collector: CollectorSettings {
            poll_interval: Duration::from_secs(config.console.poll_interval.max(1)),
            ..CollectorSettings::default()
        },
        auth: config.auth.clone(),
        ratelimit: config.ratelimit.clone(),
        store,
        scheduler: SchedulerSettings::default(),
        clock: Clock::System,
    };
    let state = match ConsoleState::start(options).await {
        Ok(state) => state,
        Err(e) => {
            eprintln!("error: the collector failed to start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(starting) = starting {
        starting.finish();
    }
    let Ok(local) = listener.local_addr() else {
        eprintln!("error: the listener has no address");
        return ExitCode::FAILURE;
    };
    tracing::info!(%local, "turnstone-console listening");
    eprintln!("Turnstone console on http://{local}/");
    serve(state.clone(), listener, super::terminated()).await;
    state.shutdown().await;
    ExitCode::SUCCESS
}
