#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Message throughput through a bare ractor actor, the same actor supervised (sent to through
//! its `ChildRef`), and supervised behind a bounded mailbox; and restart latency after a panic.
//!
//! ```text
//! cargo bench -p turnstone-runtime --bench supervision
//! ```

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, call};
use tokio::sync::mpsc;
use turnstone_runtime::mailbox::{Admitted, BoundedMailbox};
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::supervise::{
    ChildRef, ChildSpec, Observer, Restart, SupervisorHandle, SupervisorSpec,
};

const MESSAGES: u64 = 200_000;
const RUNS: usize = 7;
const RESTARTS: usize = 2_000;

enum CounterMsg {
    Add(u64),
    Total(RpcReplyPort<u64>),
    Panic,
}

struct Counter {
    started: Option<mpsc::UnboundedSender<Instant>>,
}

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<CounterMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        if let Some(tx) = &self.started {
            let _ = tx.send(Instant::now());
        }
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<CounterMsg>,
        msg: CounterMsg,
        total: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Add(n) => *total += n,
            CounterMsg::Total(reply) => {
                let _ = reply.send(*total);
            }
            CounterMsg::Panic => panic!("benchmark crash"),
        }
        Ok(())
    }
}

/// The same counter taking its messages through a bounded mailbox.
struct BoundedCounter;

impl Actor for BoundedCounter {
    type Msg = Admitted<CounterMsg>;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        total: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg.into_inner() {
            CounterMsg::Add(n) => *total += n,
            CounterMsg::Total(reply) => {
                let _ = reply.send(*total);
            }
            CounterMsg::Panic => panic!("benchmark crash"),
        }
        Ok(())
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn bare_run() -> f64 {
    let (actor, _) = Actor::spawn(None, Counter { started: None }, ())
        .await
        .unwrap();
    let t = Instant::now();
    for _ in 0..MESSAGES {
        actor.cast(CounterMsg::Add(1)).unwrap();
    }
    assert_eq!(call!(actor, CounterMsg::Total).unwrap(), MESSAGES);
    let rate = MESSAGES as f64 / t.elapsed().as_secs_f64();
    actor.stop(None);
    rate
}

async fn supervised_run() -> f64 {
    let (spec, child) = ChildSpec::actor("counter", Restart::Permanent, || {
        (Counter { started: None }, ())
    });
    let (sup, _) = SupervisorHandle::start(
        SupervisorSpec::new("bench").child(spec),
        Observer::unregistered(),
    )
    .await
    .unwrap();
    let t = Instant::now();
    for _ in 0..MESSAGES {
        child.cast(CounterMsg::Add(1)).unwrap();
    }
    let actor = child.get().unwrap();
    assert_eq!(call!(actor, CounterMsg::Total).unwrap(), MESSAGES);
    let rate = MESSAGES as f64 / t.elapsed().as_secs_f64();
    sup.shutdown(None).await.unwrap();
    rate
}

async fn bounded_run() -> f64 {
    let (spec, child) = ChildSpec::actor("counter", Restart::Permanent, || (BoundedCounter, ()));
    let (sup, _) = SupervisorHandle::start(
        SupervisorSpec::new("bench").child(spec),
        Observer::unregistered(),
    )
    .await
    .unwrap();
    let mailbox = BoundedMailbox::new(child.clone(), 1024);
    let t = Instant::now();
    for _ in 0..MESSAGES {
        if mailbox.send(CounterMsg::Add(1)).await.is_err() {
            panic!("mailbox closed");
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reply = RpcReplyPort::from(tx);
    if mailbox.send(CounterMsg::Total(reply)).await.is_err() {
        panic!("mailbox closed");
    }
    assert_eq!(rx.await.unwrap(), MESSAGES);
    let rate = MESSAGES as f64 / t.elapsed().as_secs_f64();
    sup.shutdown(None).await.unwrap();
    rate
}

async fn restart_latencies() -> Vec<Duration> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (spec, child): (ChildSpec, ChildRef<CounterMsg>) =
        ChildSpec::actor("crasher", Restart::Permanent, move || {
            (
                Counter {
                    started: Some(tx.clone()),
                },
                (),
            )
        });
    let (sup, _) = SupervisorHandle::start(
        SupervisorSpec::new("bench")
            .intensity(u32::MAX, Duration::from_secs(1))
            .backoff(Backoff::none())
            .child(spec),
        Observer::unregistered(),
    )
    .await
    .unwrap();
    rx.recv().await.unwrap(); // first start
    let mut latencies = Vec::with_capacity(RESTARTS);
    for _ in 0..RESTARTS {
        let actor = child.get().unwrap();
        let t = Instant::now();
        actor.cast(CounterMsg::Panic).unwrap();
        let started = rx.recv().await.unwrap();
        latencies.push(started.duration_since(t));
        // wait until the ChildRef points at the new incarnation
        while child
            .get()
            .is_none_or(|current| current.get_id() == actor.get_id())
        {
            tokio::task::yield_now().await;
        }
    }
    sup.shutdown(None).await.unwrap();
    latencies.sort();
    latencies
}

fn main() {
    // Thousands of deliberate panics: keep their messages off the terminal.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"benchmark crash") {
            default_hook(info);
        }
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // warm-up
        bare_run().await;
        supervised_run().await;
        bounded_run().await;

        let (mut bare, mut supervised, mut bounded) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            bare.push(bare_run().await);
            supervised.push(supervised_run().await);
            bounded.push(bounded_run().await);
        }
        let (bare, supervised, bounded) = (median(bare), median(supervised), median(bounded));
        println!("message path ({MESSAGES} casts, median of {RUNS} runs)");
        println!("| actor | msgs/s | time per message vs bare |");
        println!("|---|---:|---:|");
        println!("| bare ractor actor | {bare:.0} | 1.00 |");
        println!(
            "| supervised (via ChildRef) | {supervised:.0} | {:.2} |",
            bare / supervised
        );
        println!(
            "| supervised + bounded mailbox (1024 slots) | {bounded:.0} | {:.2} |",
            bare / bounded
        );

        let lat = restart_latencies().await;
        println!("\nrestart after a panic ({RESTARTS} restarts, one-for-one, no backoff)");
        println!("| median | p90 | p99 | max |");
        println!("|---:|---:|---:|---:|");
        println!(
            "| {:?} | {:?} | {:?} | {:?} |",
            percentile(&lat, 0.5),
            percentile(&lat, 0.9),
            percentile(&lat, 0.99),
            lat[lat.len() - 1]
        );
    });
}
