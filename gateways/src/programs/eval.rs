//! `turnstone-eval`: score a system prompt and the tool set against cases, with the real
//! engine, and optionally improve the prompt.

use std::process::ExitCode;

use crate::eval::{EvalArgs, best_prompt_path, run};
use clap::Parser;
use turnstone_runtime::telemetry::{LogSettings, init_logging};

#[tokio::main]
pub async fn main() -> ExitCode {
    let args = EvalArgs::parse();
    let level = args
        .engine
        .log_level
        .clone()
        .unwrap_or_else(|| "warn".to_owned());
    let format = match args.engine.log_format.as_deref() {
        Some(f) => match f.parse() {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: --log-format: {e}");
                return ExitCode::from(2);
            }
        },
        None => Default::default(),
    };
    let _telemetry = match init_logging(&LogSettings {
        level,
        format,
        service: "turnstone-eval".into(),
        traces: Default::default(),
    }) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args).await {
        Ok(outcome) => {
            print!("{}", outcome.table);
            println!(
                "results: {}  report: {}  best prompt: {}",
                args.output.display(),
                args.report
                    .clone()
                    .unwrap_or_else(|| args.output.with_extension("html"))
                    .display(),
                best_prompt_path(&args.output).display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
