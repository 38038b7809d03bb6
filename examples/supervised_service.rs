//! A small service that embeds the Turnstone runtime: a supervisor with three workers, one of
//! which crashes every few jobs and is restarted; every supervision decision is printed as it
//! happens, and the metrics are shown at the end.
//!
//! ```text
//! cargo run -p turnstone-examples --bin supervised-service -- --jobs 15 --crash-every 2
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use prometheus_client::registry::Registry;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use turnstone_runtime::supervise::{
    ChildRef, ChildSpec, Decision, Observer, Restart, Strategy, SupervisorHandle, SupervisorSpec,
};
use turnstone_runtime::telemetry::{LogSettings, encode_text, init_logging};

/// Runs a supervised worker pool and prints what the supervisor decides.
#[derive(Debug, Parser)]
#[command(name = "supervised-service", version)]
struct Args {
    /// Jobs to hand out, round-robin over the three workers
    #[arg(long, default_value_t = 15)]
    jobs: u32,
    /// The "flaky" worker panics on every Nth job it receives (0 = never)
    #[arg(long, default_value_t = 2)]
    crash_every: u32,
    /// Log level (trace, debug, info, warn, error, off)
    #[arg(long, default_value = "warn")]
    log_level: String,
}

enum WorkerMsg {
    Job(u32, RpcReplyPort<String>),
}

struct Worker {
    name: &'static str,
    crash_every: u32,
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    /// Jobs handled by this incarnation.
    type State = u32;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<WorkerMsg>, _: ()) -> Result<u32, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<WorkerMsg>,
        WorkerMsg::Job(job, reply): WorkerMsg,
        handled: &mut u32,
    ) -> Result<(), ActorProcessingErr> {
        *handled += 1;
        if self.crash_every > 0 && handled.is_multiple_of(self.crash_every) {
            // Dropping `reply` tells the caller the job was lost; the supervisor restarts us.
            return Err(format!("{} lost its footing on job {job}", self.name).into());
        }
        let _ = reply.send(format!("{} finished job {job}", self.name));
        Ok(())
    }
}

fn worker(name: &'static str, crash_every: u32) -> (ChildSpec, ChildRef<WorkerMsg>) {
    ChildSpec::actor(name, Restart::Permanent, move || {
        (Worker { name, crash_every }, ())
    })
}

fn describe(decision: &Decision) -> String {
    match decision {
        Decision::Started => "started".into(),
        Decision::Restarted {
            generation,
            delay_ms,
            ..
        } => format!("restarted (incarnation {generation}, after {delay_ms} ms)"),
        Decision::Stopped { reason } => format!("stopped ({reason:?})"),
        Decision::Escalated { restarts, .. } => format!("escalated after {restarts} restarts"),
        Decision::Evicted { reason, .. } => format!("evicted ({reason:?})"),
        Decision::BreakerTripped(t) => format!("breaker {} -> {}", t.from.as_str(), t.to.as_str()),
    }
}

async fn submit(worker: &ChildRef<WorkerMsg>, job: u32) -> Option<String> {
    // A crashed worker is restarted within a millisecond; retry a few times meanwhile.
    for _ in 0..50 {
        if let Some(actor) = worker.get() {
            match actor
                .call(
                    |reply| WorkerMsg::Job(job, reply),
                    Some(Duration::from_secs(1)),
                )
                .await
            {
                Ok(CallResult::Success(done)) => return Some(done),
                Ok(CallResult::SenderError) => return None,
                Ok(CallResult::Timeout) | Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let _telemetry = match init_logging(&LogSettings {
        level: args.log_level.clone(),
        service: "supervised-service".into(),
        ..LogSettings::default()
    }) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };

    let mut registry = Registry::default();
    let observer = Observer::new(&mut registry);
    let mut decisions = observer.subscribe();
    let printer = tokio::spawn(async move {
        while let Ok(record) = decisions.recv().await {
            let child = record.child.as_deref().unwrap_or("-");
            let cause = record
                .cause
                .first()
                .map(|c| format!("  cause: {c}"))
                .unwrap_or_default();
            println!(
                "[{}] {child} {}{cause}",
                record.supervisor,
                describe(&record.decision)
            );
        }
    });

    let (ingest_spec, ingest) = worker("ingest", 0);
    let (transform_spec, transform) = worker("transform", 0);
    let (flaky_spec, flaky) = worker("flaky", args.crash_every);
    let spec = SupervisorSpec::new("service")
        .strategy(Strategy::OneForOne)
        .intensity(args.jobs.max(3), Duration::from_secs(5))
        .child(ingest_spec)
        .child(transform_spec)
        .child(flaky_spec);
    let (supervisor, _) = match SupervisorHandle::start(spec, observer.clone()).await {
        Ok(started) => started,
        Err(err) => {
            eprintln!("error: supervisor failed to start: {err}");
            return ExitCode::FAILURE;
        }
    };

    let workers = [&ingest, &transform, &flaky];
    let mut lost = 0;
    for job in 1..=args.jobs {
        let worker = workers[(job as usize - 1) % workers.len()];
        match submit(worker, job).await {
            Some(done) => println!("  {done}"),
            None => {
                lost += 1;
                println!("  job {job} was lost in a crash");
            }
        }
    }

    let generations: BTreeMap<String, u64> = supervisor
        .children()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.id, c.generation))
        .collect();
    println!("\nincarnations per worker: {generations:?}; jobs lost in crashes: {lost}");
    if let Err(err) = supervisor.shutdown(Some(Duration::from_secs(5))).await {
        eprintln!("error: shutdown: {err}");
    }
    drop(observer);
    printer.abort();
    match encode_text(&registry) {
        Ok(text) => println!("\nmetrics:\n{text}"),
        Err(err) => eprintln!("error: metrics: {err}"),
    }
    ExitCode::SUCCESS
}
