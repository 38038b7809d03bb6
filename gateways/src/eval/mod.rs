//! `turnstone-eval`: scores a system prompt and the tool set against cases with the real
//! engine, and (unless `--no-optimize`) lets the model revise the prompt from the failures for
//! up to `--max-iter` rounds, keeping the best.
//!
//! ```text
//! cases.json ─► cases::load ─► per iteration: run::run_case × n_runs × cases (a node each)
//!                                  └► score ─► iteration::Iteration ─► optimize::propose
//! results: JSON (--output), HTML + SVG report (--report), the best prompt, a table
//! ```

pub mod cases;
pub mod iteration;
pub mod optimize;
pub mod report;
pub mod run;
pub mod score;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use turnstone_actors::config::{self, EngineArgs, TurnstoneConfig};
use turnstone_actors::node::{Node, NodeOptions};
use turnstone_actors::provider::PoolOptions;
use turnstone_actors::workstream::system_prompt;

use self::iteration::Iteration;
use self::run::RunSettings;

/// Scores a system prompt and the tool set against test cases with the real engine, and
/// optionally improves the prompt.
#[derive(Debug, Parser)]
#[command(
    name = "turnstone-eval",
    version,
    after_help = "Examples:\n  turnstone-eval examples/eval/cases.json --no-optimize\n  \
                  turnstone-eval cases.json --prompt prompt.txt --n-runs 5 --max-iter 10"
)]
pub struct EvalArgs {
    /// The test cases (JSON: {"defaults": {"n_runs": 3}, "cases": [...]})
    pub test_file: PathBuf,
    /// Model, endpoint and sampling flags, as `turnstone` takes them; --model may name a
    /// [models] alias. The temperature defaults to 0.7 here.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// The initial system prompt, from a file [default: Turnstone's built-in]
    #[arg(long, value_name = "FILE")]
    pub prompt: Option<PathBuf>,
    /// Runs per case [default: the file's defaults.n_runs, else 3]
    #[arg(long, value_name = "N")]
    pub n_runs: Option<u32>,
    /// Most optimisation iterations
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_iter: usize,
    /// Score the prompt once; do not optimise it
    #[arg(long)]
    pub no_optimize: bool,
    /// Runs at once
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub parallel: usize,
    /// Seconds one run may take before it is stopped and counted failed
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub run_timeout: u64,
    /// Results with every run's calls (JSON)
    #[arg(long, value_name = "FILE", default_value = "eval_results.json")]
    pub output: PathBuf,
    /// The HTML report with its charts [default: the output's name with .html]
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print each run as it finishes
    #[arg(short, long)]
    pub verbose: bool,
}

/// The eval could not run; the exit code says which kind.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The flags, the configuration or the case file are wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Something needed at run time failed (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl EvalError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Failed(_) => 1,
        }
    }
}

/// What an eval produced.
#[derive(Debug)]
pub struct Outcome {
    /// Every iteration.
    pub iterations: Vec<Iteration>,
    /// The table printed at the end.
    pub table: String,
}

fn configure(args: &EvalArgs) -> Result<(TurnstoneConfig, Option<String>), EvalError> {
    let mut config = config::load(&args.engine, std::env::vars())
        .map_err(|e| EvalError::Usage(e.to_string()))?;
    // `--model NAME` naming a [models] alias runs on that lane.
    let alias = args
        .engine
        .model
        .as_ref()
        .filter(|m| config.models.contains_key(*m))
        .cloned();
    if alias.is_some() {
        let mut engine = args.engine.clone();
        engine.model = None;
        config =
            config::load(&engine, std::env::vars()).map_err(|e| EvalError::Usage(e.to_string()))?;
    }
    if args.engine.temperature.is_none() {
        config.model.temperature = 0.7;
    }
    Ok((config, alias))
}

/// Runs the eval `args` asks for.
pub async fn run(args: &EvalArgs) -> Result<Outcome, EvalError> {
    let (mut config, alias) = configure(args)?;
    let suite = cases::load(&args.test_file).map_err(|e| EvalError::Usage(e.to_string()))?;
    let initial_prompt = match &args.prompt {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| EvalError::Usage(format!("cannot read {}: {e}", path.display())))?,
        None => system_prompt(false, config.session.instructions.as_deref(), 0),
    };

    // A node of the same make as the runs': it detects the model once, tells the tool set
    // (MCP servers' tools too) and serves the optimiser.
    let probe_dir = tempfile::tempdir().map_err(|e| EvalError::Failed(e.to_string()))?;
    let names: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let seen = names.clone();
    let probe = Node::start(
        config.clone(),
        move |store, router, config, mcp| {
            let tools = turnstone_actors::tools::builtin::builtin_tools(
                store,
                Arc::clone(config),
                Some(router.clone()),
                mcp,
            );
            if let Ok(mut names) = seen.lock() {
                names.extend(tools.names().map(str::to_owned));
            }
            tools
        },
        NodeOptions {
            pool: PoolOptions::default(),
            workdir: probe_dir.path().to_path_buf(),
            node_id: "eval".into(),
            storage: false,
            model_backend: None,
        },
    )
    .await
    .map_err(|e| EvalError::Failed(e.to_string()))?;
    let known = names.lock().map(|n| n.clone()).unwrap_or_default();
    let unknown = cases::unknown_tools(&suite, &known);
    if !unknown.is_empty() {
        probe.shutdown().await;
        let listed: Vec<String> = unknown
            .iter()
            .map(|(case, tool)| format!("case {case}: expected_actions: unknown tool {tool:?}"))
            .collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        return Err(EvalError::Usage(format!(
            "{}\nknown tools: {}",
            listed.join("\n"),
            known.join(", ")
        )));
    }
    let lane_alias = alias
        .clone()
        .unwrap_or_else(|| probe.router.default_alias().to_owned());
    let model = probe
        .router
        .lane(&lane_alias)
        .map(|l| l.model.get())
        .unwrap_or_default();
    if alias.is_none() {
        config.model.name = Some(model.clone());
    }
    let settings = RunSettings {
        config: Arc::new(config),
        model_alias: alias,
        timeout: Duration::from_secs(args.run_timeout.max(1)),
    };
    let n_runs = args.n_runs.unwrap_or(suite.n_runs).max(1);
    let max_iter = if args.no_optimize {
        1
    } else {
        args.max_iter.max(1)
    };
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| args.output.with_extension("html"));
    let runs_per_iteration = suite.cases.len() as u64 * u64::from(n_runs);
    let bar = ProgressBar::new(runs_per_iteration * max_iter as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:14} [{bar:30}] {pos}/{len} runs, {elapsed} ({eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let meta = json!({
        "model": model,
        "base_url": settings.config.api.base_url,
        "started": chrono::Utc::now().to_rfc3339(),
        "test_suite": args.test_file.display().to_string(),
        "n_runs_default": n_runs,
        "temperature": settings.config.model.temperature,
    });

    let mut iterations: Vec<Iteration> = Vec::new();
    let mut prompt = initial_prompt;
    for i in 0..max_iter {
        bar.set_message(format!("iteration {i}"));
        let verbose = args.verbose;
        let on_run = |r: &run::RunRecord| {
            bar.inc(1);
            if verbose {
                say(
                    &bar,
                    format!(
                        "  {} run {}: {} — {} [{}]",
                        r.case,
                        r.run,
                        if r.score.pass { "pass" } else { "FAIL" },
                        r.error.as_deref().unwrap_or(&r.score.detail),
                        r.tool_sequence.join(", ")
                    ),
                );
            }
        };
        let mut done = iteration::run_iteration(
            i,
            &suite.cases,
            &prompt,
            n_runs,
            args.parallel,
            &settings,
            &on_run,
        )
        .await;
        if let Some(previous) = iterations.last() {
            let d = optimize::diff(&previous.prompt, &done.prompt);
            done.prompt_diff = (!d.is_empty()).then_some(d);
        }
        let agg = &done.aggregate;
        say(
            &bar,
            format!(
                "iteration {i}: pass rate {:.0}% (95% interval {:.0}–{:.0}%), mean score {:.2}{}",
                agg.overall_pass_rate * 100.0,
                agg.overall_pass_interval.0 * 100.0,
                agg.overall_pass_interval.1 * 100.0,
                agg.overall_avg_score,
                if agg.failed_runs > 0 {
                    format!(", {} runs failed before acting", agg.failed_runs)
                } else {
                    String::new()
                }
            ),
        );
        let all_pass = agg.overall_pass_rate >= 1.0;
        iterations.push(done);
        write_results(&args.output, &meta, &iterations)?;
        if all_pass || i + 1 == max_iter {
            if all_pass && max_iter > 1 {
                say(&bar, "every case passes: stopping");
            }
            break;
        }
        bar.set_message("optimising");
        let current = iterations.last().map(|it| (it, iterations.as_slice()));
        let Some((current, history)) = current else {
            break;
        };
        match optimize::propose(&probe.router, &lane_alias, &suite.cases, current, history).await {
            Ok(next) if next.trim() == prompt.trim() => {
                say(&bar, "the optimiser proposed the same prompt: stopping");
                break;
            }
            Ok(next) => prompt = next,
            Err(e) => {
                say(&bar, format!("the optimiser failed ({e}): stopping"));
                break;
            }
        }
    }
    bar.finish_and_clear();
    probe.shutdown().await;
    drop(probe_dir);

    let suite_name = args.test_file.display().to_string();
    let page = report::html(&model, &suite_name, &suite.cases, &iterations);
    std::fs::write(&report_path, page)
        .map_err(|e| EvalError::Failed(format!("cannot write {}: {e}", report_path.display())))?;
    if let Some(best) = report::best(&iterations) {
        let path = best_prompt_path(&args.output);
        std::fs::write(&path, &best.prompt)
            .map_err(|e| EvalError::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    let table = report::table(&suite.cases, &iterations);
    Ok(Outcome { iterations, table })
}

/// A line above the progress bar (on stderr even when the bar is hidden: not a terminal).
fn say(bar: &ProgressBar, line: impl AsRef<str>) {
    if bar.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        bar.println(line);
    }
}

/// `results.json` → `results.best_prompt.txt`.
pub fn best_prompt_path(output: &Path) -> PathBuf {
    output.with_extension("best_prompt.txt")
}

fn write_results(
    path: &Path,
    meta: &serde_json::Value,
    iterations: &[Iteration],
) -> Result<(), EvalError> {
    let best = report::best(iterations).map(|b| {
        json!({
            "iteration": b.iteration,
            "overall_pass_rate": b.aggregate.overall_pass_rate,
            "prompt": b.prompt,
        })
    });
    let body = json!({"meta": meta, "iterations": iterations, "best": best});
    let text = serde_json::to_string_pretty(&body).map_err(|e| EvalError::Failed(e.to_string()))?;
    std::fs::write(path, text)
        .map_err(|e| EvalError::Failed(format!("cannot write {}: {e}", path.display())))
}
