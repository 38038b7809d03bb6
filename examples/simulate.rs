//! Drives the simulator from code: 50 real nodes with the simulated model and tools, in memory
//! on virtual time, under steady load while nodes are killed; prints the report and checks
//! that nothing was lost.
//!
//! ```sh
//! cargo run -p turnstone-examples --bin simulate -- --nodes 50 --minutes 2
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use turnstone_sim::{Behaviour, ClusterSpec, Quiet, Scenario, SimConfig, run_in_memory};

/// Simulate a cluster under load with node failures, in memory (reproducible).
#[derive(Debug, Parser)]
struct Args {
    /// Nodes.
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// Simulated minutes of load.
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// Messages per second.
    #[arg(long, default_value_t = 20.0)]
    mps: f64,
    /// Seed: the same seed gives the same report.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = SimConfig {
        cluster: ClusterSpec {
            nodes: args.nodes,
            max_workstreams: 10,
            // Fast model and tools: a turn takes about a second.
            behaviour: Behaviour {
                llm_latency: 0.2,
                token_rate: 400.0,
                tool_latency: 0.1,
                ..Behaviour::default()
            },
            seed: args.seed,
            heartbeat_ttl: Duration::from_secs(10),
        },
        scenario: Scenario::NodeFailure,
        duration: Duration::from_secs_f64(args.minutes.max(0.0) * 60.0),
        mps: args.mps,
        burst_size: 100,
        kill_interval: Duration::from_secs(20),
        kill_count: 1,
        drain_timeout: Duration::from_secs(300),
        bucket: Duration::from_secs(5),
        redis_url: None,
        outage: Duration::from_secs(1),
        redis_server: None,
    };
    match run_in_memory(&config, &Quiet) {
        Ok(report) => {
            print!("{}", report.table());
            if report.lost_messages == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("simulation failed: {e}");
            ExitCode::FAILURE
        }
    }
}
