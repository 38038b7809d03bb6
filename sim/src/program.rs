//! `turnstone-sim`: many real Turnstone nodes with a simulated model and tools, on Redis or
//! in memory (virtual time, reproducible), under a scenario; prints a report table, writes
//! JSON (`--metrics-file`) and an SVG plot (`--plot`).

use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::{Behaviour, ClusterSpec, Progress, Report, Scenario, SimConfig, run, run_in_memory};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use turnstone_runtime::remote::{RedisServer, RedisTransport};
use turnstone_runtime::telemetry::{
    LogSettings, Sampling, TelemetryConfig, TraceSettings, init_logging,
};

/// Where the nodes' queues and channels live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TransportKind {
    /// A real Redis: the nodes register and behave exactly like real nodes.
    Redis,
    /// In process, on virtual time: one seed gives the same report every time.
    Memory,
}

/// Simulate a Turnstone cluster: real node actors (workstreams, tool calls, bridge) with a
/// simulated model and tools.
#[derive(Debug, Parser)]
#[command(name = "turnstone-sim", version)]
struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Scenario to run.
    #[arg(long, value_enum, default_value_t = Scenario::Steady)]
    scenario: Scenario,
    /// Seconds of load.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Messages per second (steady, node_failure).
    #[arg(long, default_value_t = 5.0)]
    mps: f64,
    /// Messages at once (burst, directed).
    #[arg(long, default_value_t = 100)]
    burst_size: usize,
    /// Seconds between node kills (node_failure).
    #[arg(long, default_value_t = 15.0)]
    node_kill_interval: f64,
    /// Nodes killed each time (node_failure; at most half of them in all).
    #[arg(long, default_value_t = 1)]
    node_kill_count: usize,
    /// Seconds Redis stays down at each restart (redis_restart, which restarts every
    /// --node-kill-interval; in Redis mode it runs its own redis-server from PATH).
    #[arg(long, default_value_t = 1.0)]
    redis_outage: f64,
    /// Mean seconds before a model answer streams.
    #[arg(long, default_value_t = 2.0)]
    llm_latency: f64,
    /// Standard deviation of the model latency.
    #[arg(long, default_value_t = 0.5)]
    llm_latency_stddev: f64,
    /// Mean words per model answer.
    #[arg(long, default_value_t = 200.0)]
    llm_tokens: f64,
    /// Standard deviation of the words per answer.
    #[arg(long, default_value_t = 50.0)]
    llm_tokens_stddev: f64,
    /// Words the model streams per second.
    #[arg(long, default_value_t = 50.0)]
    token_rate: f64,
    /// Mean seconds a tool call takes.
    #[arg(long, default_value_t = 0.5)]
    tool_latency: f64,
    /// Standard deviation of the tool latency.
    #[arg(long, default_value_t = 0.2)]
    tool_latency_stddev: f64,
    /// Probability that a tool call fails.
    #[arg(long, default_value_t = 0.02)]
    tool_failure_rate: f64,
    /// Mean tool calls when the model calls tools.
    #[arg(long, default_value_t = 1.5)]
    tool_calls_mean: f64,
    /// Most tool calls in one answer.
    #[arg(long, default_value_t = 4)]
    tool_calls_max: usize,
    /// Model requests per turn at most.
    #[arg(long, default_value_t = 3)]
    max_rounds: usize,
    /// Probability of tool calls in a turn's first answer.
    #[arg(long, default_value_t = 0.6)]
    first_call_probability: f64,
    /// Probability of tool calls in later answers.
    #[arg(long, default_value_t = 0.3)]
    later_call_probability: f64,
    /// Workstreams per node.
    #[arg(long, default_value_t = 10)]
    max_ws_per_node: usize,
    /// Heartbeat TTL of the nodes, seconds (a killed node's work is reclaimed after it).
    #[arg(long, default_value_t = 60.0)]
    heartbeat_ttl: f64,
    /// Seconds to wait after the load for the last turns.
    #[arg(long, default_value_t = 120.0)]
    drain_timeout: f64,
    /// Width of the timeline's buckets, seconds.
    #[arg(long, default_value_t = 1.0)]
    bucket: f64,
    /// Random seed (the same seed gives the same report in memory mode).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Queues and channels: a real Redis, or in process on virtual time.
    #[arg(long, value_enum, default_value_t = TransportKind::Redis)]
    transport: TransportKind,
    /// Redis host.
    #[arg(long, env = "REDIS_HOST", default_value = "localhost")]
    redis_host: String,
    /// Redis port.
    #[arg(long, env = "REDIS_PORT", default_value_t = 6379)]
    redis_port: u16,
    /// Redis database.
    #[arg(long, env = "REDIS_DB", default_value_t = 0)]
    redis_db: u32,
    /// Redis password.
    #[arg(long, env = "REDIS_PASSWORD")]
    redis_password: Option<String>,
    /// Key prefix.
    #[arg(long, default_value = "turnstone")]
    prefix: String,
    /// Write the report as JSON to this file.
    #[arg(long, default_value = "")]
    metrics_file: String,
    /// Draw throughput and latency over time as SVG into this file.
    #[arg(long)]
    plot: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Export this share (0–1) of the simulated turns as OpenTelemetry traces to the collector
    /// OTEL_EXPORTER_OTLP_ENDPOINT names
    #[arg(long, value_name = "RATIO")]
    trace_sample: Option<f64>,
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn phase(&self, name: &str, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_prefix(name.to_owned());
    }

    fn update(&self, done: u64, status: &str) {
        self.0.set_position(done);
        self.0.set_message(status.to_owned());
    }
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn config(
    args: &Args,
    redis_url: Option<String>,
    redis_server: Option<Arc<Mutex<RedisServer>>>,
) -> SimConfig {
    SimConfig {
        cluster: ClusterSpec {
            nodes: args.nodes.max(1),
            max_workstreams: args.max_ws_per_node,
            behaviour: Behaviour {
                llm_latency: args.llm_latency,
                llm_latency_stddev: args.llm_latency_stddev,
                tokens: args.llm_tokens,
                tokens_stddev: args.llm_tokens_stddev,
                token_rate: args.token_rate,
                tool_latency: args.tool_latency,
                tool_latency_stddev: args.tool_latency_stddev,
                tool_failure_rate: args.tool_failure_rate,
                calls_mean: args.tool_calls_mean,
                calls_max: args.tool_calls_max,
                max_rounds: args.max_rounds.max(1),
                first_call_probability: args.first_call_probability,
                later_call_probability: args.later_call_probability,
                ..Behaviour::default()
            },
            seed: args.seed,
            heartbeat_ttl: seconds(args.heartbeat_ttl.max(1.0)),
        },
        scenario: args.scenario,
        duration: seconds(args.duration),
        mps: args.mps,
        burst_size: args.burst_size,
        kill_interval: seconds(args.node_kill_interval),
        kill_count: args.node_kill_count,
        drain_timeout: seconds(args.drain_timeout),
        bucket: seconds(args.bucket.max(0.001)),
        redis_url,
        outage: seconds(args.redis_outage),
        redis_server,
    }
}

fn redis_url(args: &Args) -> String {
    let auth = args
        .redis_password
        .as_ref()
        .map(|p| format!(":{p}@"))
        .unwrap_or_default();
    format!(
        "redis://{auth}{}:{}/{}",
        args.redis_host, args.redis_port, args.redis_db
    )
}

/// Runs on Redis, in a multi-threaded runtime.
fn on_redis(args: &Args, progress: &dyn Progress) -> Result<Report, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    // Restarting Redis needs a Redis of the run's own.
    let private = if args.scenario == Scenario::RedisRestart {
        let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
        let server = RedisServer::start(dir.path()).map_err(|e| e.to_string())?;
        eprintln!(
            "turnstone-sim: redis_restart runs on its own redis-server at 127.0.0.1:{} \
             (killed and started again every {} s)",
            server.port(),
            args.node_kill_interval
        );
        // The server before its directory: killed before the directory is removed.
        Some((Arc::new(Mutex::new(server)), dir))
    } else {
        None
    };
    let url = private.as_ref().map_or_else(
        || redis_url(args),
        |(server, _)| server.lock().unwrap_or_else(PoisonError::into_inner).url(),
    );
    let config = config(
        args,
        Some(url.clone()),
        private.as_ref().map(|(s, _)| s.clone()),
    );
    runtime.block_on(async {
        // Each node blocks on its own queue and the shared one.
        let transport = RedisTransport::connect_sized(&url, &args.prefix, 2 * args.nodes + 32)
            .await
            .map_err(|e| format!("cannot reach Redis at {}: {e}", args.redis_host))?;
        let mut report = run(&config, Arc::new(transport), progress)
            .await
            .map_err(|e| e.to_string())?;
        report.transport = "redis".into();
        Ok(report)
    })
}

fn simulate(args: &Args) -> Result<(), String> {
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>14} [{bar:40}] {pos}/{len} {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let progress = Bar(bar.clone());
    let result = match args.transport {
        TransportKind::Memory => {
            run_in_memory(&config(args, None, None), &progress).map_err(|e| e.to_string())
        }
        TransportKind::Redis => on_redis(args, &progress),
    };
    bar.finish_and_clear();
    let report = result?;
    print!("{}", report.table());
    if !args.metrics_file.is_empty() {
        std::fs::write(&args.metrics_file, report.to_json())
            .map_err(|e| format!("cannot write {}: {e}", args.metrics_file))?;
    }
    if let Some(plot) = &args.plot {
        std::fs::write(plot, report.svg()).map_err(|e| format!("cannot write {plot}: {e}"))?;
    }
    if report.lost_messages > 0 {
        return Err(format!("{} messages were lost", report.lost_messages));
    }
    Ok(())
}

/// `--trace-sample`: the `OTEL_*` settings with that sampling ratio (each simulated turn is
/// a root: a message no client traced); none without the flag.
fn trace_settings(args: &Args) -> Result<TraceSettings, String> {
    let Some(ratio) = args.trace_sample else {
        return Ok(TraceSettings::default());
    };
    if !(0.0..=1.0).contains(&ratio) {
        return Err(format!("--trace-sample {ratio}: a ratio between 0 and 1"));
    }
    let mut settings =
        TraceSettings::resolve(|k| std::env::var(k).ok(), &TelemetryConfig::default())
            .map_err(|e| e.to_string())?;
    if !settings.enabled() {
        return Err(
            "--trace-sample needs a collector: set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. \
             http://localhost:4318)"
                .into(),
        );
    }
    settings.sampling = Sampling {
        parent_based: false,
        ratio,
    };
    Ok(settings)
}

pub fn main() -> ExitCode {
    crate::allocator::keep_freed_memory();
    let args = Args::parse();
    // Warnings and errors only, on stderr (the report goes to stdout).
    let traces = match trace_settings(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let _logging = match init_logging(&LogSettings {
        level: "warn".into(),
        service: "turnstone-sim".into(),
        traces,
        ..LogSettings::default()
    }) {
        Ok(guard) => Some(guard),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match simulate(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("turnstone-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
