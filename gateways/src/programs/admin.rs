//! `turnstone-admin`: manage users and API tokens.

use std::process::ExitCode;

use crate::admin::{AdminCommand, run};
use clap::Parser;
use turnstone_actors::config::EngineArgs;
use turnstone_actors::storage::Store;

/// Manage Turnstone users and API tokens in the configured database.
#[derive(Debug, Parser)]
#[command(name = "turnstone-admin", version)]
struct Cli {
    /// Configuration file (default: ~/.config/turnstone/config.toml)
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[tokio::main(flavor = "current_thread")]
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = EngineArgs {
        config: cli.config,
        ..EngineArgs::default()
    };
    let config = match super::load_config(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match Store::open(&config.database).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdin = std::io::stdin().lock();
    match run(&store, cli.command, &mut stdin).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
