//! Queue-driven work from Rust: send a message to a Turnstone cluster through Redis, stream
//! the answer as it arrives, answer tool approvals on the terminal, print the outcome.
//!
//! ```text
//! turnstone-server --redis-host localhost &      # one or more nodes
//! cargo run -p turnstone-examples --bin queue-client -- "What is in this directory?"
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use turnstone_actors::mq::{SendRequest, TurnstoneClient};

/// Sends one message to a Turnstone cluster and waits for the turn to complete.
#[derive(Debug, Parser)]
#[command(name = "queue-client", version)]
struct Args {
    /// The message
    message: String,
    /// Redis URL of the cluster
    #[arg(long, default_value = "redis://localhost:6379/0")]
    redis_url: String,
    /// Key prefix of the cluster
    #[arg(long, default_value = "turnstone")]
    prefix: String,
    /// Continue this workstream (default: a new one)
    #[arg(long, default_value = "")]
    ws_id: String,
    /// Only this node may handle it
    #[arg(long, default_value = "")]
    target_node: String,
    /// Ask before each tool call instead of approving everything
    #[arg(long)]
    ask: bool,
    /// Seconds to wait for the turn
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let client = match TurnstoneClient::connect(&args.redis_url, &args.prefix).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Approval requests are answered from a task, so the turn keeps streaming meanwhile.
    let (approvals, mut asked) = tokio::sync::mpsc::unbounded_channel::<(String, String, String)>();
    let answering = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some((ws_id, request_id, what)) = asked.recv().await {
                eprint!("\nApprove {what}? [y/N] ");
                let _ = std::io::stderr().flush();
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                let yes = line.trim().eq_ignore_ascii_case("y");
                if let Err(e) = client.approve(&ws_id, &request_id, yes, None, false).await {
                    eprintln!("error: {e}");
                }
            }
        })
    };
    let request = SendRequest::new(args.message)
        .ws(args.ws_id)
        .target(args.target_node)
        .auto_approve(!args.ask)
        .timeout(Duration::from_secs(args.timeout))
        .on_event(move |event| match event.kind.as_str() {
            "content" => {
                print!("{}", event.str("text"));
                let _ = std::io::stdout().flush();
            }
            "tool_info" | "approval_request" => {
                let calls: Vec<String> = event.fields["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        format!(
                            "{} {}",
                            i["func_name"].as_str().unwrap_or("?"),
                            i["preview"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                if event.kind == "approval_request" {
                    let _ = approvals.send((
                        event.ws_id.clone(),
                        event.correlation_id.clone(),
                        calls.join("; "),
                    ));
                } else {
                    eprintln!("\n[running {}]", calls.join("; "));
                }
            }
            "ws_created" => eprintln!(
                "[workstream {} on node {}]",
                event.ws_id,
                event.str("node_id")
            ),
            _ => {}
        });
    let result = client.send_and_wait(request).await;
    answering.abort();
    match result {
        Ok(turn) => {
            println!();
            for error in &turn.errors {
                eprintln!("error: {error}");
            }
            if turn.timed_out {
                eprintln!("error: no answer within {} s", args.timeout);
            }
            eprintln!("[workstream {}]", turn.ws_id);
            if turn.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
