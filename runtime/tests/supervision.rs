#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Real child actors panic, fail and stop under a real supervisor; each strategy, restart kind,
//! intensity limit, backoff and eviction policy is checked through the supervisor's children and
//! its decision records.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, call};
use tokio::sync::broadcast::Receiver;
use turnstone_runtime::mailbox::{Admitted, BoundedMailbox, MailboxError};
use turnstone_runtime::policy::{Backoff, Capacity, CapacityError, IdleTimeout};
use turnstone_runtime::supervise::{
    ChildRef, ChildSpec, Decision, DecisionKind, EvictReason, ExitReason, Observer, Restart,
    Strategy, SupervisionRecord, SupervisorError, SupervisorHandle, SupervisorSpec,
};

#[derive(Debug)]
enum WorkerMsg {
    Ping(RpcReplyPort<&'static str>),
    Panic,
    Fail,
    Finish,
}

struct Worker;

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<WorkerMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Ping(reply) => {
                let _ = reply.send("pong");
            }
            WorkerMsg::Panic => panic!("worker crashed on purpose"),
            WorkerMsg::Fail => return Err("disk full".into()),
            WorkerMsg::Finish => myself.stop(Some("work done".into())),
        }
        Ok(())
    }
}

fn worker(id: &str, restart: Restart) -> (ChildSpec, ChildRef<WorkerMsg>) {
    ChildSpec::actor(id, restart, || (Worker, ()))
}

async fn next_record(rx: &mut Receiver<SupervisionRecord>) -> SupervisionRecord {
    tokio::time::timeout(Duration::from_secs(120), rx.recv())
        .await
        .expect("a supervision record within 120 s")
        .expect("observer open")
}

/// Collects records until one of `kind` for `child` arrives; returns all collected.
async fn until(
    rx: &mut Receiver<SupervisionRecord>,
    kind: DecisionKind,
    child: &str,
) -> Vec<SupervisionRecord> {
    let mut seen = Vec::new();
    loop {
        let r = next_record(rx).await;
        let done = r.decision.kind() == kind && r.child.as_deref() == Some(child);
        seen.push(r);
        if done {
            return seen;
        }
    }
}

async fn generations(sup: &SupervisorHandle) -> Vec<(String, u64)> {
    sup.children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id, c.generation))
        .collect()
}

fn gens(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(i, g)| ((*i).to_owned(), *g)).collect()
}

async fn three_workers(
    strategy: Strategy,
) -> (SupervisorHandle, Observer, [ChildRef<WorkerMsg>; 3]) {
    let observer = Observer::unregistered();
    let (s1, w1) = worker("w1", Restart::Permanent);
    let (s2, w2) = worker("w2", Restart::Permanent);
    let (s3, w3) = worker("w3", Restart::Permanent);
    let spec = SupervisorSpec::new("pool")
        .strategy(strategy)
        .child(s1)
        .child(s2)
        .child(s3);
    let (sup, _) = SupervisorHandle::start(spec, observer.clone())
        .await
        .unwrap();
    (sup, observer, [w1, w2, w3])
}

async fn ping(w: &ChildRef<WorkerMsg>) -> &'static str {
    let actor = w.get().expect("child running");
    call!(actor, WorkerMsg::Ping).unwrap()
}

#[tokio::test]
async fn one_for_one_restarts_only_the_panicking_child() {
    let (sup, observer, [w1, w2, w3]) = three_workers(Strategy::OneForOne).await;
    let mut rx = observer.subscribe();
    let before = [w1.get().unwrap().get_id(), w3.get().unwrap().get_id()];

    w2.cast(WorkerMsg::Panic).unwrap();
    let records = until(&mut rx, DecisionKind::Restarted, "w2").await;
    let restarted = records.last().unwrap();
    assert!(
        restarted
            .cause
            .iter()
            .any(|c| c.contains("worker crashed on purpose")),
        "the panic message is in the cause chain: {:?}",
        restarted.cause
    );
    assert_eq!(
        restarted.decision,
        Decision::Restarted {
            generation: 2,
            attempt: 0,
            delay_ms: 0
        }
    );
    assert_eq!(
        generations(&sup).await,
        gens(&[("w1", 1), ("w2", 2), ("w3", 1)])
    );
    assert_eq!(
        before,
        [w1.get().unwrap().get_id(), w3.get().unwrap().get_id()]
    );
    assert_eq!(ping(&w2).await, "pong", "the ChildRef follows the restart");
    sup.shutdown(None).await.unwrap();
}

#[tokio::test]
async fn one_for_all_restarts_every_child_in_start_order() {
    let (sup, observer, [w1, w2, _w3]) = three_workers(Strategy::OneForAll).await;
    let mut rx = observer.subscribe();
    let w1_before = w1.get().unwrap().get_id();

    w2.cast(WorkerMsg::Fail).unwrap();
    let records = until(&mut rx, DecisionKind::Restarted, "w3").await;
    let restarted: Vec<_> = records
        .iter()
        .filter(|r| r.decision.kind() == DecisionKind::Restarted)
        .filter_map(|r| r.child.as_deref())
        .collect();
    assert_eq!(restarted, ["w1", "w2", "w3"]);
    let w2_record = records
        .iter()
        .find(|r| r.child.as_deref() == Some("w2"))
        .unwrap();
    assert_eq!(
        w2_record.cause,
        vec!["disk full".to_owned()],
        "an Err return is a failure too"
    );
    assert_eq!(
        generations(&sup).await,
        gens(&[("w1", 2), ("w2", 2), ("w3", 2)])
    );
    assert_ne!(
        w1.get().unwrap().get_id(),
        w1_before,
        "a sibling got a new incarnation"
    );
    assert_eq!(ping(&w1).await, "pong");
    sup.shutdown(None).await.unwrap();
}

#[tokio::test]
async fn rest_for_one_restarts_the_child_and_those_started_after_it() {
    let (sup, observer, [w1, w2, _]) = three_workers(Strategy::RestForOne).await;
    let mut rx = observer.subscribe();
    let w1_before = w1.get().unwrap().get_id();

    w2.cast(WorkerMsg::Panic).unwrap();
    until(&mut rx, DecisionKind::Restarted, "w3").await;
    assert_eq!(
        generations(&sup).await,
        gens(&[("w1", 1), ("w2", 2), ("w3", 2)])
    );
    assert_eq!(w1.get().unwrap().get_id(), w1_before);
    sup.shutdown(None).await.unwrap();
}

#[tokio::test]
async fn restart_kinds_decide_what_comes_back() {
    let observer = Observer::unregistered();
    let mut rx = observer.subscribe();
    let (perm, perm_ref) = worker("permanent", Restart::Permanent);
    let (trans_ok, trans_ok_ref) = worker("transient-normal", Restart::Transient);
    let (trans_bad, trans_bad_ref) = worker("transient-panic", Restart::Transient);
    let (temp, temp_ref) = worker("temporary", Restart::Temporary);
    let spec = SupervisorSpec::new("kinds")
        .child(perm)
        .child(trans_ok)
        .child(trans_bad)
        .child(temp);
    let (sup, _) = SupervisorHandle::start(spec, observer.clone())
        .await
        .unwrap();

    perm_ref.cast(WorkerMsg::Finish).unwrap();
    until(&mut rx, DecisionKind::Restarted, "permanent").await;

    trans_ok_ref.cast(WorkerMsg::Finish).unwrap();
    let stopped = until(&mut rx, DecisionKind::Stopped, "transient-normal").await;
    assert_eq!(
        stopped.last().unwrap().decision,
        Decision::Stopped {
            reason: ExitReason::Normal(Some("work done".into()))
        }
    );

    trans_bad_ref.cast(WorkerMsg::Panic).unwrap();
    until(&mut rx, DecisionKind::Restarted, "transient-panic").await;

    temp_ref.cast(WorkerMsg::Panic).unwrap();
    let stopped = until(&mut rx, DecisionKind::Stopped, "temporary").await;
    assert!(matches!(
        stopped.last().unwrap().decision,
        Decision::Stopped {
            reason: ExitReason::Failed(_)
        }
    ));

    assert_eq!(
        generations(&sup).await,
        gens(&[("permanent", 2), ("transient-panic", 2)])
    );
    assert!(
        temp_ref.get().is_none(),
        "a removed child's ChildRef points at nothing"
    );
    assert!(temp_ref.cast(WorkerMsg::Panic).is_err());
    sup.shutdown(None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn exceeding_the_restart_intensity_escalates_and_stops_the_children() {
    let observer = Observer::unregistered();
    let mut rx = observer.subscribe();
    let (w, w_ref) = worker("flaky", Restart::Permanent);
    let (steady, steady_ref) = worker("steady", Restart::Permanent);
    let spec = SupervisorSpec::new("fragile")
        .intensity(2, Duration::from_secs(10))
        .backoff(Backoff::none())
        .child(w)
        .child(steady);
    let (sup, join) = SupervisorHandle::start(spec, observer.clone())
        .await
        .unwrap();

    for attempt in 1..=2_u64 {
        w_ref.cast(WorkerMsg::Panic).unwrap();
        let r = until(&mut rx, DecisionKind::Restarted, "flaky").await;
        assert!(matches!(
            r.last().unwrap().decision,
            Decision::Restarted { generation, .. } if generation == attempt + 1
        ));
    }
    w_ref.cast(WorkerMsg::Panic).unwrap();
    let records = until(&mut rx, DecisionKind::Escalated, "flaky").await;
    let escalated = records.last().unwrap();
    assert_eq!(
        escalated.decision,
        Decision::Escalated {
            restarts: 3,
            period_ms: 10_000
        }
    );
    assert!(escalated.cause[0].contains("worker crashed on purpose"));
    tokio::time::timeout(Duration::from_secs(10), join)
        .await
        .expect("the supervisor stops")
        .unwrap();
    assert!(steady_ref.get().is_none(), "siblings were stopped");
    assert!(sup.children().await.is_err());
    assert_eq!(observer.count(DecisionKind::Escalated), 1);
}

#[tokio::test(start_paused = true)]
async fn restarts_spread_out_over_time_stay_within_the_intensity() {
    let observer = Observer::unregistered();
    let mut rx = observer.subscribe();
    let (w, w_ref) = worker("w", Restart::Permanent);
    let spec = SupervisorSpec::new("patient")
        .intensity(1, Duration::from_secs(5))
        .child(w);
    let (sup, _) = SupervisorHandle::start(spec, observer).await.unwrap();
    for _ in 0..4 {
        w_ref.cast(WorkerMsg::Panic).unwrap();
        until(&mut rx, DecisionKind::Restarted, "w").await;
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    assert_eq!(generations(&sup).await, gens(&[("w", 5)]));
}

#[tokio::test(start_paused = true)]
async fn an_escalating_child_supervisor_is_restarted_by_its_parent() {
    let observer = Observer::unregistered();
    let mut rx = observer.subscribe();
    let (leaf, leaf_ref) = worker("leaf", Restart::Permanent);
    let inner = SupervisorSpec::new("inner")
        .intensity(0, Duration::from_secs(5))
        .child(leaf);
    let (inner_child, _) =
        ChildSpec::supervisor("inner", Restart::Permanent, inner, observer.clone());
    let outer = SupervisorSpec::new("outer").child(inner_child);
    let (outer, _) = SupervisorHandle::start(outer, observer.clone())
        .await
        .unwrap();

    leaf_ref.cast(WorkerMsg::Panic).unwrap();
    let records = until(&mut rx, DecisionKind::Restarted, "inner").await;
    let escalation = records
        .iter()
        .find(|r| r.decision.kind() == DecisionKind::Escalated)
        .expect("inner escalated first");
    assert_eq!(escalation.supervisor, "inner");
    let restart = records.last().unwrap();
    assert_eq!(restart.supervisor, "outer");
    assert!(
        restart.cause[0].contains("restart intensity exceeded"),
        "{:?}",
        restart.cause
    );
    assert!(
        restart
            .cause
            .iter()
            .any(|c| c.contains("worker crashed on purpose")),
        "the cause chain crosses the escalation: {:?}",
        restart.cause
    );
    // the restarted inner supervisor started a fresh leaf (recorded before outer's restart)
    let escalated_at = records
        .iter()
        .position(|r| r.decision.kind() == DecisionKind::Escalated)
        .unwrap();
    assert!(
        records[escalated_at..]
            .iter()
            .any(|r| r.decision == Decision::Started && r.child.as_deref() == Some("leaf"))
    );
    assert_eq!(ping(&leaf_ref).await, "pong");
    assert_eq!(generations(&outer).await, gens(&[("inner", 2)]));
}

/// Panics in `pre_start` from its second incarnation on, until the test allows it to start.
struct FragileStart {
    allowed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    starts: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl Actor for FragileStart {
    type Msg = WorkerMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<WorkerMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        use std::sync::atomic::Ordering;
        let n = self.starts.fetch_add(1, Ordering::SeqCst);
        if n > 0 && !self.allowed.load(Ordering::SeqCst) {
            panic!("cannot start yet");
        }
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Panic => panic!("boom"),
            WorkerMsg::Ping(r) => {
                let _ = r.send("pong");
            }
            WorkerMsg::Fail | WorkerMsg::Finish => {}
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_spaces_restarts_and_failed_restarts_are_retried() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    let observer = Observer::unregistered();
    let mut rx = observer.subscribe();
    let allowed = Arc::new(AtomicBool::new(false));
    let starts = Arc::new(AtomicU32::new(0));
    let (spec, child) = {
        let (allowed, starts) = (Arc::clone(&allowed), Arc::clone(&starts));
        ChildSpec::actor("fragile", Restart::Permanent, move || {
            (
                FragileStart {
                    allowed: Arc::clone(&allowed),
                    starts: Arc::clone(&starts),
                },
                (),
            )
        })
    };
    let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1));
    let sup_spec = SupervisorSpec::new("backoff")
        .intensity(10, Duration::from_secs(60))
        .backoff(backoff)
        .child(spec);
    let (sup, _) = SupervisorHandle::start(sup_spec, observer).await.unwrap();

    let t0 = tokio::time::Instant::now();
    child.cast(WorkerMsg::Panic).unwrap();
    // restart attempts at +100 ms (fails), +300 ms (fails), then allowed: +700 ms succeeds
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !sup.children().await.unwrap()[0].running,
        "waiting out the backoff"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        starts.load(Ordering::SeqCst),
        3,
        "two failed restart attempts so far"
    );
    allowed.store(true, Ordering::SeqCst);
    let records = until(&mut rx, DecisionKind::Restarted, "fragile").await;
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(700),
        "100 + 200 + 400 ms of backoff"
    );
    assert_eq!(
        records.last().unwrap().decision,
        Decision::Restarted {
            generation: 2,
            attempt: 2,
            delay_ms: 400
        }
    );
    assert!(records.last().unwrap().cause[0].contains("cannot start yet"));
    assert_eq!(ping(&child).await, "pong");
}

#[tokio::test(start_paused = true)]
async fn capacity_evicts_the_least_recently_active_idle_child_never_a_busy_one() {
    let observer = Observer::unregistered();
    let mut rx = observer.subscribe();
    let spec = SupervisorSpec::new("workstreams").capacity(Capacity::new(2));
    let (sup, _) = SupervisorHandle::start(spec, observer).await.unwrap();

    let (a, _) = worker("a", Restart::Transient);
    let (b, b_ref) = worker("b", Restart::Transient);
    sup.start_child(a).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    sup.start_child(b).await.unwrap();
    sup.report_activity("a", true).unwrap();

    let (c, _) = worker("c", Restart::Transient);
    sup.start_child(c).await.unwrap();
    let records = until(&mut rx, DecisionKind::Evicted, "b").await;
    assert!(matches!(
        records.last().unwrap().decision,
        Decision::Evicted {
            reason: EvictReason::Capacity,
            ..
        }
    ));
    assert!(b_ref.get().is_none());
    let ids: Vec<_> = sup
        .children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["a", "c"], "busy a stays although it is older");

    sup.report_activity("c", true).unwrap();
    let (d, _) = worker("d", Restart::Transient);
    match sup.start_child(d).await {
        Err(SupervisorError::Capacity(CapacityError::AllBusy { max: 2 })) => {}
        other => panic!("expected a capacity refusal, got {other:?}"),
    }
    let (dup, _) = worker("a", Restart::Transient);
    assert!(matches!(
        sup.start_child(dup).await,
        Err(SupervisorError::DuplicateChild(id)) if id == "a"
    ));
}

#[tokio::test(start_paused = true)]
async fn idle_children_are_stopped_after_the_idle_timeout() {
    let observer = Observer::unregistered();
    let mut rx = observer.subscribe();
    let spec = SupervisorSpec::new("idle").idle_timeout(IdleTimeout::new(Duration::from_secs(60)));
    let (sup, _) = SupervisorHandle::start(spec, observer).await.unwrap();
    let (quiet, quiet_ref) = worker("quiet", Restart::Permanent);
    let (working, _) = worker("working", Restart::Permanent);
    sup.start_child(quiet).await.unwrap();
    sup.start_child(working).await.unwrap();
    sup.report_activity("working", true).unwrap();

    let t0 = tokio::time::Instant::now();
    let records = until(&mut rx, DecisionKind::Evicted, "quiet").await;
    let waited = t0.elapsed();
    assert!(
        (Duration::from_secs(60)..=Duration::from_secs(75)).contains(&waited),
        "evicted after the timeout, at the next 15 s check: {waited:?}"
    );
    assert!(matches!(
        records.last().unwrap().decision,
        Decision::Evicted {
            reason: EvictReason::Idle,
            idle_ms
        } if idle_ms >= 60_000
    ));
    assert!(quiet_ref.get().is_none());
    tokio::time::sleep(Duration::from_secs(600)).await;
    let ids: Vec<_> = sup
        .children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["working"], "a busy child is never idle-evicted");
}

#[tokio::test(start_paused = true)]
async fn idle_eviction_keeps_the_configured_minimum() {
    let observer = Observer::unregistered();
    let spec = SupervisorSpec::new("keep-one")
        .idle_timeout(IdleTimeout::new(Duration::from_secs(60)))
        .keep_at_least(1);
    let (sup, _) = SupervisorHandle::start(spec, observer.clone())
        .await
        .unwrap();
    for id in ["older", "newer"] {
        let (child, _) = worker(id, Restart::Permanent);
        sup.start_child(child).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let ids: Vec<_> = sup
        .children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        ids,
        ["newer"],
        "the oldest idle child went; the last one stays"
    );
    assert_eq!(observer.count(DecisionKind::Evicted), 1);
}

// ---- bounded mailbox ----

struct Gated;

impl Actor for Gated {
    type Msg = Admitted<tokio::sync::oneshot::Receiver<()>>;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        // Holds its slot while waiting for the gate, as a slow message would.
        let gate = msg.into_inner();
        let _ = gate.await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_mailbox_refuses_or_applies_backpressure_instead_of_growing() {
    let (actor, _) = Actor::spawn(None, Gated, ()).await.unwrap();
    let mailbox = BoundedMailbox::new(ChildRef::fixed(actor), 2);
    let mut gates = Vec::new();
    let mut gate = || {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        gates.push(tx);
        rx
    };
    // one being handled (slot freed by into_inner) + two queued
    mailbox.try_send(gate()).unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    mailbox.try_send(gate()).unwrap();
    mailbox.try_send(gate()).unwrap();
    assert_eq!(mailbox.queued(), 2);
    let err = mailbox.try_send(gate()).unwrap_err();
    assert_eq!(err.to_string(), "mailbox full: 2 messages already queued");
    assert!(matches!(err, MailboxError::Full { capacity: 2, .. }));

    let waited = mailbox.send_timeout(gate(), Duration::from_secs(1)).await;
    assert!(matches!(waited, Err(MailboxError::Timeout { .. })));

    // backpressure: a waiting sender proceeds once the receiver catches up
    let sender = {
        let mailbox = mailbox.clone();
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move { mailbox.send(rx).await.is_ok() })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !sender.is_finished(),
        "the sender waits while the mailbox is full"
    );
    for g in gates.drain(..) {
        let _ = g.send(());
    }
    assert!(sender.await.unwrap());
}

#[tokio::test]
async fn a_mailbox_to_a_stopped_actor_reports_closed() {
    let (actor, join) = Actor::spawn(None, Gated, ()).await.unwrap();
    let mailbox = BoundedMailbox::new(ChildRef::fixed(actor.clone()), 4);
    actor.stop(None);
    join.await.unwrap();
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    let err = mailbox.try_send(rx).unwrap_err();
    assert_eq!(
        err.to_string(),
        "mailbox closed: the receiving actor is not running"
    );
    assert_eq!(mailbox.queued(), 0, "the slot was released");
}
