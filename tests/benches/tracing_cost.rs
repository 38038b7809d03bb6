#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What tracing costs a turn: the same turns through the engine (a model round, a tool call,
//! a second round, against the scripted server on loopback) with span export off, on at 100 %
//! sampling and on at 1 %, each in a process of its own (the subscriber is global).
//!
//! ```text
//! TURNSTONE_TEST_OTLP_ENDPOINT=http://127.0.0.1:14318 cargo bench -p turnstone-tests --bench tracing_cost
//! ```
//!
//! CPU is the whole process's (engine, scripted model server, exporter thread) from
//! `/proc/self/stat`, divided by the turns; the extra CPU of a mode is its difference from
//! "off", in µs per turn and as a share of "off".

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::broadcast;
use turnstone_actors::config::TurnstoneConfig;
use turnstone_actors::provider::{PoolOptions, RetryPolicy, start_providers};
use turnstone_actors::tools::builtin::builtin_tools;
use turnstone_actors::workstream::{WorkstreamDeps, WorkstreamManager, WorkstreamOptions, WsEvent};
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::supervise::Observer;
use turnstone_runtime::telemetry::{
    LogFormat, LogSettings, Sampling, TraceSettings, init_logging, traces_url,
};
use turnstone_tests::llm::{ScriptedLlm, Turn};

const TURNS: usize = 2000;
const WARM_UP: usize = 100;

/// CPU seconds of this process so far (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command: state is field 0, utime 11, stime 12 (fields 14 and 15 of stat).
    (ticks(11) + ticks(12)) / 100.0
}

fn run(mode: &str) {
    let endpoint = std::env::var("TURNSTONE_TEST_OTLP_ENDPOINT").ok();
    let traces = match (mode, endpoint) {
        ("off", _) => TraceSettings::default(),
        (_, None) => panic!("TURNSTONE_TEST_OTLP_ENDPOINT: a collector to export to"),
        (ratio, Some(endpoint)) => TraceSettings {
            endpoint: Some(traces_url(&endpoint)),
            sampling: Sampling {
                parent_based: true,
                ratio: ratio.parse().unwrap(),
            },
            ..TraceSettings::default()
        },
    };
    // As a server logs: JSON at info (to a sink here), with or without export.
    let _guard = init_logging(&LogSettings {
        level: "info".into(),
        format: LogFormat::Json,
        service: "tracing-cost".into(),
        traces,
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let llm = ScriptedLlm::start().await.unwrap();
        llm.route_latest(
            "go",
            Turn::new()
                .tool_call("c1", "read_file", &json!({"path": "note.txt"}).to_string())
                .usage(100, 10),
        );
        llm.route_latest("\"role\":\"tool\"", Turn::text("done").usage(120, 5));
        let mut config = TurnstoneConfig::default();
        config.api.base_url = llm.base_url();
        config.model.name = Some("scripted-model".into());
        let options = PoolOptions {
            open_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                retries: 0,
                backoff: Backoff::none(),
            },
            probes: false,
            detect: None,
        };
        let observer = Observer::unregistered();
        let (_, router) = start_providers(&config, options, observer.clone(), None)
            .await
            .unwrap();
        let config = Arc::new(config);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("note.txt"), "a short note\n").unwrap();
        let deps = WorkstreamDeps {
            router: router.clone(),
            tools: builtin_tools(None, Arc::clone(&config), Some(router), Vec::new()),
            config,
            global: broadcast::channel(4096).0,
            workdir: dir.path().to_path_buf(),
            store: None,
            node_id: "bench".into(),
        };
        let manager = WorkstreamManager::start(deps, 10, Duration::from_secs(7200), observer, None)
            .await
            .unwrap();
        let ws = manager
            .create(
                None,
                WorkstreamOptions {
                    auto_approve: true,
                    ..WorkstreamOptions::default()
                },
                None,
            )
            .await
            .unwrap();
        let mut started = (Instant::now(), cpu_seconds());
        for i in 0..TURNS + WARM_UP {
            if i == WARM_UP {
                started = (Instant::now(), cpu_seconds());
            }
            let mut rx = ws.subscribe();
            ws.send("go").await.unwrap();
            while let Ok(e) = rx.recv().await {
                if matches!(*e, WsEvent::StreamEnd) {
                    break;
                }
            }
            if i % 50 == 0 {
                ws.configure(turnstone_actors::workstream::Setting::Clear)
                    .await
                    .unwrap();
            }
        }
        let wall = started.0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - started.1;
        println!(
            "{mode} {:.1} {:.1}",
            cpu / TURNS as f64 * 1e6,
            wall / TURNS as f64 * 1e6
        );
    });
}

fn main() {
    if let Ok(mode) = std::env::var("TRACING_COST_MODE") {
        run(&mode);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut rows = Vec::new();
    // Interleaved rounds, so drift in the machine's load hits every mode alike.
    let modes = ["off", "1.0", "0.01"];
    let rounds = 3;
    for _ in 0..rounds {
        for mode in modes {
            let out = std::process::Command::new(&exe)
                .env("TRACING_COST_MODE", mode)
                .stderr(std::process::Stdio::null())
                .output()
                .unwrap();
            let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "{line}");
            rows.push((
                mode,
                parts[1].parse::<f64>().unwrap(),
                parts[2].parse::<f64>().unwrap(),
            ));
        }
    }
    let median = |mode: &str, pick: fn(&(&str, f64, f64)) -> f64| {
        let mut v: Vec<f64> = rows.iter().filter(|r| r.0 == mode).map(pick).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let off = median("off", |r| r.1);
    println!("{TURNS} turns per run, {rounds} interleaved runs per mode (medians)");
    println!("| tracing | CPU per turn | extra CPU per turn | wall per turn |");
    println!("|---|---:|---:|---:|");
    for (mode, name) in [
        ("off", "off (no exporter)"),
        ("1.0", "on, 100 % sampled"),
        ("0.01", "on, 1 % sampled"),
    ] {
        let cpu = median(mode, |r| r.1);
        println!(
            "| {name} | {cpu:.0} µs | {:+.0} µs ({:+.1} %) | {:.0} µs |",
            cpu - off,
            (cpu - off) / off * 100.0,
            median(mode, |r| r.2)
        );
    }
}
