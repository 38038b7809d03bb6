//! `turnstone`: the terminal REPL — a tool-using model conversation on this machine.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::repl::{self, ReplOptions};
use clap::Parser;
use turnstone_actors::config::EngineArgs;
use turnstone_actors::node::{Node, NodeOptions};
use turnstone_actors::provider::PoolOptions;
use turnstone_actors::workstream::WorkstreamOptions;

/// Turnstone: an agent that investigates, acts and reports, in your terminal.
#[derive(Debug, Parser)]
#[command(name = "turnstone", version)]
struct Cli {
    #[command(flatten)]
    engine: EngineArgs,
    /// Resume a saved session (alias, id or unique id prefix)
    #[arg(long, value_name = "SESSION")]
    resume: Option<String>,
    /// Cluster console URL, for /cluster [config: console.url]
    #[arg(long, value_name = "URL")]
    console_url: Option<String>,
    /// Token for the cluster console (also $TURNSTONE_AUTH_TOKEN) [config: auth.token]
    #[arg(long)]
    auth_token: Option<String>,
}

#[tokio::main]
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match super::load_config(&cli.engine) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Log lines would interleave with the conversation: warnings only unless asked.
    if cli.engine.log_level.is_none() && std::env::var_os("TURNSTONE_LOG_LEVEL").is_none() {
        config.log.level = "warn".into();
    }
    let _telemetry = match super::start_logging(
        "turnstone",
        config.log.level.clone(),
        config.log.format,
        None,
    ) {
        Ok(guard) => guard,
        Err(code) => return code,
    };
    let console = cli
        .console_url
        .clone()
        .or_else(|| config.console.url.clone())
        .filter(|u| !u.is_empty())
        .map(|url| {
            let token = cli.auth_token.clone().or_else(|| config.auth.token.clone());
            repl::cluster::ConsoleClient::new(&url, token)
        });
    let node_id = format!("cli-{}", &uuid::Uuid::new_v4().simple().to_string()[..4]);
    let workdir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let options = NodeOptions {
        pool: PoolOptions::default(),
        workdir,
        node_id,
        storage: true,
        model_backend: None,
    };
    let node = match Node::start_with_builtin_tools(config, options).await {
        Ok(node) => node,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let first = match node
        .manager
        .create(None, WorkstreamOptions::default(), cli.resume.as_deref())
        .await
    {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let terminal = std::io::stdout().is_terminal();
    let color = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let result = repl::run(
        &node,
        first,
        ReplOptions {
            color,
            spinner: terminal,
            console,
        },
    )
    .await;
    node.shutdown().await;
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    };
    // The stdin reader sits in a blocking read that would hold up the runtime's shutdown;
    // everything that matters is flushed and stopped, so leave now.
    std::process::exit(code)
}
