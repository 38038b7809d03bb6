#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `turnstone-sim` as people run it.

use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_turnstone-sim"))
}

#[test]
fn help_lists_the_flags_of_turnstone_041_and_ours() {
    let out = sim().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--nodes",
        "--scenario",
        "--duration",
        "--mps",
        "--burst-size",
        "--node-kill-interval",
        "--node-kill-count",
        "--llm-latency",
        "--tool-latency",
        "--tool-failure-rate",
        "--seed",
        "--redis-host",
        "--redis-port",
        "--prefix",
        "--metrics-file",
        "--transport",
        "--plot",
        "--token-rate",
        "--max-ws-per-node",
        "--redis-outage",
        "redis_restart",
        "partition",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn a_memory_run_prints_a_table_and_writes_json_and_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let svg = dir.path().join("plot.svg");
    let run = |seed: &str| {
        sim()
            .args([
                "--transport",
                "memory",
                "--nodes",
                "3",
                "--scenario",
                "node_failure",
                "--duration",
                "20",
                "--mps",
                "2",
                "--node-kill-interval",
                "5",
                "--heartbeat-ttl",
                "3",
                "--quiet",
                "--seed",
                seed,
                "--metrics-file",
            ])
            .arg(&json)
            .arg("--plot")
            .arg(&svg)
            .output()
            .unwrap()
    };
    let out = run("11");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("node_failure (memory transport)"), "{table}");
    assert!(table.contains("lost messages                0"), "{table}");
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(first["messages_injected"], 40);
    assert_eq!(first["total_turns"], 40);
    assert_eq!(first["node_kills"], 1);
    assert!(first["host"]["wall_seconds"].as_f64().unwrap() > 0.0);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.matches("<polyline").count() == 4);

    // Another process, the same seed: the same report but for the host measurements.
    assert!(run("11").status.success());
    let mut second: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut first = first;
    first["host"] = serde_json::Value::Null;
    second["host"] = serde_json::Value::Null;
    assert_eq!(first, second);
}

#[test]
fn bad_flags_and_an_unreachable_redis_are_clear_errors() {
    let out = sim().args(["--scenario", "stampede"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'stampede'"));

    let out = sim()
        .args(["--redis-host", "127.0.0.1", "--redis-port", "1", "--quiet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach Redis at 127.0.0.1"), "{err}");
}

/// `--trace-sample 1` exports every simulated turn as a trace (queue message → turn → model
/// call), each node's spans naming it; `--trace-sample 0` exports none; without a collector
/// the flag is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_sample_exports_that_share_of_the_simulated_turns() {
    let receiver = turnstone_tests::otlp::OtlpReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let run = |ratio: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstone-sim"))
            .args(["--transport", "memory", "--nodes", "3", "--duration", "5"])
            .args([
                "--mps",
                "2",
                "--quiet",
                "--seed",
                "7",
                "--trace-sample",
                ratio,
            ])
            .arg("--metrics-file")
            .arg(&json)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
            .output()
    };
    let out = run("1").await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let turns = report["total_turns"].as_u64().unwrap() as usize;
    assert!(turns >= 10, "{report}");
    let spans = receiver
        .wait_for(std::time::Duration::from_secs(10), |s| {
            s.iter().filter(|s| s.name == "workstream turn").count() >= turns
        })
        .await
        .unwrap_or_else(|s| panic!("{} turns, spans: {s:#?}", turns));
    let turn_spans: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "workstream turn")
        .collect();
    assert_eq!(turn_spans.len(), turns, "one trace per turn");
    for turn in &turn_spans {
        assert_eq!(turn.service, "turnstone-sim");
        assert!(
            turn.attr("turnstone.node.id")
                .is_some_and(|n| !n.is_empty())
        );
        let parent = spans
            .iter()
            .find(|s| s.span_id == turn.parent_id)
            .unwrap_or_else(|| panic!("the turn's message span: {turn:#?}"));
        assert_eq!(parent.attr("messaging.system"), Some("redis"));
        assert!(
            spans
                .iter()
                .any(|s| s.parent_id == turn.span_id && s.name.starts_with("chat ")),
            "a model call below each turn"
        );
    }
    let before = receiver.spans().len();
    let out = run("0").await.unwrap();
    assert!(out.status.success());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(receiver.spans().len(), before, "ratio 0 exports nothing");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstone-sim"))
        .args(["--transport", "memory", "--trace-sample", "0.5", "--quiet"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--trace-sample needs a collector"));
}

/// What mimalloc prints of its `purge_delay` option when told to be verbose, in the program
/// that runs the simulation (the last to start in the process).
fn purge_delay_of(sim: &mut Command) -> String {
    let out = sim
        .env("MIMALLOC_VERBOSE", "1")
        .args(["--transport", "memory", "--nodes", "1", "--duration", "1"])
        .args(["--mps", "1", "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .rfind(|l| l.contains("option 'purge_delay'"))
        .unwrap_or_else(|| panic!("no purge_delay in:\n{log}"));
    line.rsplit(':').next().unwrap().trim().to_owned()
}

#[test]
fn the_simulator_keeps_freed_memory_unless_told_otherwise() {
    // It starts itself again with freed memory kept (no page is faulted in twice) ...
    let mut plain = sim();
    plain.env_remove("MIMALLOC_PURGE_DELAY");
    assert_eq!(purge_delay_of(&mut plain), "-1");
    // ... and a delay the caller chose stands.
    let mut chosen = sim();
    chosen.env("MIMALLOC_PURGE_DELAY", "250");
    assert_eq!(purge_delay_of(&mut chosen), "250");
}
