#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The remote-mailbox contract, run against the in-memory transport and against a real Redis
//! (each Redis case on its own key prefix): priority of the directed queue, acknowledgement,
//! reclaiming a dead node's in-flight work in order, blocking receive, dead letters with the
//! reason, pub/sub fan-out — plus the Redis key names of Turnstone 0.4.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use turnstone_runtime::remote::{
    Attempt, Emit, MailboxAddress, MemoryTransport, RedisTransport, Route, STREAM_START, Transport,
    TransportError, reap_dead_nodes,
};
use turnstone_tests::services::{PrivateRedis, redis_url};

fn shared() -> MailboxAddress {
    MailboxAddress::shared("inbound")
}

fn directed(node: &str) -> MailboxAddress {
    MailboxAddress::directed("inbound", node)
}

const WAIT: Duration = Duration::from_secs(5);

async fn redis(prefix: &str) -> Arc<dyn Transport> {
    let url = redis_url().expect("redis (run scripts/test)");
    Arc::new(RedisTransport::connect(&url, prefix).await.unwrap())
}

fn unique(prefix: &str) -> String {
    format!("t{}-{prefix}", uuid::Uuid::new_v4().simple())
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                let t: std::sync::Arc<dyn turnstone_runtime::remote::Transport> =
                    std::sync::Arc::new(turnstone_runtime::remote::MemoryTransport::new());
                super::cases::$name(t.clone(), t).await;
            }
            #[tokio::test]
            async fn redis() {
                let prefix = super::unique(stringify!($name));
                // Two connections on one prefix: as two nodes would be.
                super::cases::$name(super::redis(&prefix).await, super::redis(&prefix).await).await;
            }
        }
    )*};
}

on_both!(
    directed_queue_has_priority_over_the_shared_queue,
    unacknowledged_work_of_a_dead_node_is_reclaimed_in_order,
    a_blocked_receiver_wakes_on_push_and_times_out_on_silence,
    given_up_messages_go_to_the_dead_letter_list_with_the_reason,
    publish_fans_out_to_every_live_subscriber,
    the_work_of_nodes_whose_heartbeat_expired_is_reaped,
    nodes_sharing_one_transport_do_not_wait_for_each_other,
    durable_streams_keep_order_and_let_late_readers_catch_up,
    replies_wake_a_waiting_reader_and_keys_compare_and_set,
    closed_streams_and_values_expire,
    many_waiting_receivers_each_take_one_message,
    a_routed_push_goes_to_the_live_owner_after_reading_the_position,
);

mod cases {
    use super::*;

    pub async fn a_routed_push_goes_to_the_live_owner_after_reading_the_position(
        a: Arc<dyn Transport>,
        b: Arc<dyn Transport>,
    ) {
        let key = |k: &str| format!("{}:{k}", a.prefix());
        let (owner, stream) = (key("ws:w"), key("stream:w"));
        let shared = MailboxAddress::shared("inbound");
        let route = |tail_of| Route {
            owner: Some(&owner),
            owner_queue: "inbound",
            fallback: shared.clone(),
            tail_of,
        };
        let take = |from: MailboxAddress| {
            let b = b.clone();
            async move {
                let got = b.receive("x", &[from], Duration::from_millis(100)).await;
                let delivery = got.unwrap().expect("a message");
                b.ack(&delivery).await.unwrap();
                delivery.payload
            }
        };
        // No owner: the fallback; an empty stream's position is its start.
        let (to, tail) = a
            .push_routed(&route(Some(&stream)), "m1".into())
            .await
            .unwrap();
        assert_eq!((to, tail.as_deref()), (shared.clone(), Some(STREAM_START)));
        assert_eq!(take(shared.clone()).await, "m1");
        // An owner that does not heartbeat is passed over.
        a.set(&owner, "n1".into(), None).await.unwrap();
        let (to, _) = a.push_routed(&route(None), "m2".into()).await.unwrap();
        assert_eq!(to, shared);
        assert_eq!(take(shared.clone()).await, "m2");
        // A live owner gets it, and the position is the stream's newest entry before the push.
        a.heartbeat("n1", "{}".into(), Duration::from_secs(60))
            .await
            .unwrap();
        let event = Emit {
            stream: Some(stream.clone()),
            channel: key("events:w"),
            payload: "e".into(),
        };
        a.emit(std::slice::from_ref(&event), 1000, Attempt::First)
            .await
            .unwrap();
        let newest = b.stream_tail(&stream).await.unwrap();
        let (to, tail) = a
            .push_routed(&route(Some(&stream)), "m3".into())
            .await
            .unwrap();
        let directed = MailboxAddress::directed("inbound", "n1");
        assert_eq!((to, tail), (directed.clone(), Some(newest)));
        assert_eq!(take(directed).await, "m3");
        // No owner to look up: straight to the fallback, no position asked for.
        let no_owner = Route {
            owner: None,
            tail_of: None,
            ..route(None)
        };
        let (to, tail) = a.push_routed(&no_owner, "m4".into()).await.unwrap();
        assert_eq!((to, tail), (shared.clone(), None));
        assert_eq!(take(shared).await, "m4");
    }

    pub async fn closed_streams_and_values_expire(a: Arc<dyn Transport>, b: Arc<dyn Transport>) {
        let stream = format!("{}:stream:gone", a.prefix());
        let kept = format!("{}:stream:kept", a.prefix());
        let key = format!("{}:ws:gone", a.prefix());
        let event = |stream: &str| Emit {
            stream: Some(stream.to_owned()),
            channel: format!("{stream}:channel"),
            payload: "e".into(),
        };
        a.emit(&[event(&stream), event(&kept)], 1000, Attempt::First)
            .await
            .unwrap();
        a.set(&key, "node-a".into(), None).await.unwrap();
        assert!(b.expire(&stream, Duration::from_millis(300)).await.unwrap());
        assert!(b.expire(&key, Duration::from_millis(300)).await.unwrap());
        assert!(!b.expire(&format!("{stream}:never"), WAIT).await.unwrap());
        let everything = |s: &str| vec![(s.to_owned(), STREAM_START.to_owned())];
        assert_eq!(
            b.read_streams(&everything(&stream), Duration::from_millis(10))
                .await
                .unwrap()
                .len(),
            1,
            "readable until it expires"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.emit(&[event(&kept)], 1000, Attempt::First).await.unwrap();
        assert!(
            b.read_streams(&everything(&stream), Duration::from_millis(10))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(b.get(&key).await.unwrap(), None);
        let left = b
            .read_streams(&everything(&kept), Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(left.len(), 2, "other streams stay");
    }

    /// Many idle nodes block on the shared queue; each message goes to exactly one of them.
    pub async fn many_waiting_receivers_each_take_one_message(
        a: Arc<dyn Transport>,
        b: Arc<dyn Transport>,
    ) {
        let receivers: Vec<_> = (0..40)
            .map(|i| {
                let t = b.clone();
                tokio::spawn(async move {
                    t.receive(&format!("n{i}"), &[shared()], WAIT)
                        .await
                        .unwrap()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for m in 0..25 {
            a.push(&shared(), format!("m{m}")).await.unwrap();
        }
        let mut got = Vec::new();
        for r in receivers {
            if let Some(d) = r.await.unwrap() {
                got.push(d.payload);
            }
        }
        got.sort_by_key(|p| p[1..].parse::<u32>().unwrap());
        let expected: Vec<String> = (0..25).map(|m| format!("m{m}")).collect();
        assert_eq!(got, expected, "each message to one receiver, none lost");
        assert_eq!(a.queue_len(&shared()).await.unwrap(), 0);
    }

    pub async fn directed_queue_has_priority_over_the_shared_queue(
        t: Arc<dyn Transport>,
        _: Arc<dyn Transport>,
    ) {
        t.push(&shared(), "generic".into()).await.unwrap();
        t.push(&directed("a"), "for-a".into()).await.unwrap();
        let from = [directed("a"), shared()];
        let first = t.receive("a", &from, WAIT).await.unwrap().unwrap();
        let second = t.receive("a", &from, WAIT).await.unwrap().unwrap();
        assert_eq!(
            (first.payload.as_str(), second.payload.as_str()),
            ("for-a", "generic")
        );
        assert_eq!(first.from, directed("a"));
        t.ack(&first).await.unwrap();
        t.ack(&second).await.unwrap();
        assert!(matches!(
            t.ack(&second).await,
            Err(TransportError::NotInFlight { .. })
        ));
    }

    pub async fn unacknowledged_work_of_a_dead_node_is_reclaimed_in_order(
        node_a: Arc<dyn Transport>,
        node_b: Arc<dyn Transport>,
    ) {
        for m in ["m1", "m2", "m3", "m4"] {
            node_a.push(&shared(), m.into()).await.unwrap();
        }
        let d1 = node_a
            .receive("a", &[shared()], WAIT)
            .await
            .unwrap()
            .unwrap();
        let d2 = node_a
            .receive("a", &[shared()], WAIT)
            .await
            .unwrap()
            .unwrap();
        let d3 = node_a
            .receive("a", &[shared()], WAIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            [
                d1.payload.as_str(),
                d2.payload.as_str(),
                d3.payload.as_str()
            ],
            ["m1", "m2", "m3"]
        );
        node_a.ack(&d1).await.unwrap();
        assert_eq!(node_a.in_flight_len("a").await.unwrap(), 2);

        // node a dies holding m2 and m3; another node's reaper returns them to the front
        assert_eq!(node_b.reclaim("a").await.unwrap(), 2);
        assert_eq!(node_b.in_flight_len("a").await.unwrap(), 0);
        let mut order = Vec::new();
        for _ in 0..3 {
            let d = node_b
                .receive("b", &[shared()], WAIT)
                .await
                .unwrap()
                .unwrap();
            order.push(d.payload.clone());
            node_b.ack(&d).await.unwrap();
        }
        assert_eq!(
            order,
            ["m2", "m3", "m4"],
            "reclaimed work goes first, in order"
        );
        assert!(
            matches!(
                node_a.ack(&d2).await,
                Err(TransportError::NotInFlight { .. })
            ),
            "the dead node's late ack is refused: nothing is acknowledged twice"
        );
        assert_eq!(node_b.queue_len(&shared()).await.unwrap(), 0);
    }

    pub async fn a_blocked_receiver_wakes_on_push_and_times_out_on_silence(
        t: Arc<dyn Transport>,
        other: Arc<dyn Transport>,
    ) {
        let started = Instant::now();
        let silent = t
            .receive("a", &[directed("a"), shared()], Duration::from_millis(300))
            .await
            .unwrap();
        assert!(silent.is_none());
        assert!(started.elapsed() >= Duration::from_millis(250));
        let waiting = tokio::spawn({
            let t = t.clone();
            async move { t.receive("a", &[directed("a"), shared()], WAIT).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let pushed = Instant::now();
        other.push(&directed("a"), "wake".into()).await.unwrap();
        let got = waiting.await.unwrap().unwrap().unwrap();
        assert_eq!(got.payload, "wake");
        assert!(
            pushed.elapsed() < Duration::from_millis(500),
            "woken promptly: {:?}",
            pushed.elapsed()
        );
    }

    pub async fn given_up_messages_go_to_the_dead_letter_list_with_the_reason(
        t: Arc<dyn Transport>,
        _: Arc<dyn Transport>,
    ) {
        t.push(&shared(), "{not json".into()).await.unwrap();
        let d = t.receive("a", &[shared()], WAIT).await.unwrap().unwrap();
        t.dead_letter(&d, "malformed JSON").await.unwrap();
        assert_eq!(t.in_flight_len("a").await.unwrap(), 0);
        let dead = t.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].payload, "{not json");
        assert_eq!(dead[0].reason, "malformed JSON");
        assert_eq!(dead[0].node, "a");
        assert_eq!(dead[0].from, shared());
        assert!(matches!(
            t.dead_letter(&d, "again").await,
            Err(TransportError::NotInFlight { .. })
        ));
    }

    pub async fn publish_fans_out_to_every_live_subscriber(
        t: Arc<dyn Transport>,
        other: Arc<dyn Transport>,
    ) {
        let channel = format!("events:{}", uuid::Uuid::new_v4().simple());
        let mut one = t.subscribe(&channel).await.unwrap();
        let mut two = other.subscribe(&channel).await.unwrap();
        let reached = t.publish(&channel, "hello".into()).await.unwrap();
        assert_eq!(reached, 2);
        for sub in [&mut one, &mut two] {
            let got = tokio::time::timeout(WAIT, sub.next()).await.unwrap();
            assert_eq!(got.as_deref(), Some("hello"));
        }
        drop(two);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(t.publish(&channel, "again".into()).await.unwrap(), 1);
        assert_eq!(
            tokio::time::timeout(WAIT, one.next())
                .await
                .unwrap()
                .as_deref(),
            Some("again")
        );
    }
    pub async fn the_work_of_nodes_whose_heartbeat_expired_is_reaped(
        node_a: Arc<dyn Transport>,
        node_b: Arc<dyn Transport>,
    ) {
        // Long enough that a busy machine (the suite runs tests side by side) still finds a
        // alive at the first reap; the wait below outlasts it.
        node_a
            .heartbeat("a", r#"{"max_ws":10}"#.into(), Duration::from_secs(3))
            .await
            .unwrap();
        node_b
            .heartbeat("b", "{}".into(), Duration::from_secs(30))
            .await
            .unwrap();
        for m in ["w1", "w2"] {
            node_a.push(&shared(), m.into()).await.unwrap();
        }
        node_a
            .receive("a", &[shared()], WAIT)
            .await
            .unwrap()
            .unwrap();
        node_a
            .receive("a", &[shared()], WAIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            node_b.live_nodes().await.unwrap(),
            [
                ("a".to_owned(), r#"{"max_ws":10}"#.to_owned()),
                ("b".to_owned(), "{}".to_owned())
            ]
        );
        assert!(node_b.workers().await.unwrap().contains(&"a".to_owned()));
        assert!(
            reap_dead_nodes(node_b.as_ref()).await.unwrap().is_empty(),
            "a live node keeps its work"
        );
        // node a stops heartbeating (it died)
        tokio::time::sleep(Duration::from_millis(4100)).await;
        let live: Vec<String> = node_b
            .live_nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(live, ["b"]);
        assert_eq!(
            reap_dead_nodes(node_b.as_ref()).await.unwrap(),
            [("a".to_owned(), 2)]
        );
        let first = node_b
            .receive("b", &[shared()], WAIT)
            .await
            .unwrap()
            .unwrap();
        let second = node_b
            .receive("b", &[shared()], WAIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.payload.as_str(), second.payload.as_str()),
            ("w1", "w2")
        );
        assert!(
            reap_dead_nodes(node_b.as_ref()).await.unwrap().is_empty(),
            "nothing twice"
        );
    }
    pub async fn nodes_sharing_one_transport_do_not_wait_for_each_other(
        t: Arc<dyn Transport>,
        _: Arc<dyn Transport>,
    ) {
        // Node a waits on its empty queue; node b, on the same transport, is served at once.
        let waiting = tokio::spawn({
            let t = t.clone();
            async move {
                t.receive("a", &[directed("a")], Duration::from_secs(3))
                    .await
                    .unwrap()
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        t.push(&directed("b"), "for-b".into()).await.unwrap();
        let started = Instant::now();
        let got = t
            .receive("b", &[directed("b")], WAIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.payload, "for-b");
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "b waited {:?} behind a",
            started.elapsed()
        );
        t.push(&directed("a"), "for-a".into()).await.unwrap();
        assert_eq!(waiting.await.unwrap().unwrap().payload, "for-a");
    }

    pub async fn durable_streams_keep_order_and_let_late_readers_catch_up(
        producer: Arc<dyn Transport>,
        reader: Arc<dyn Transport>,
    ) {
        let stream = format!("{}:stream:ws1", producer.prefix());
        let channel = format!("{}:events:ws1", producer.prefix());
        assert_eq!(reader.stream_tail(&stream).await.unwrap(), STREAM_START);
        let mut live = reader.subscribe(&channel).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(reader.subscribers(&channel).await.unwrap(), 1);
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.extend(
                producer
                    .emit(
                        &[Emit {
                            stream: Some(stream.clone()),
                            channel: channel.clone(),
                            payload: format!("e{n}"),
                        }],
                        1000,
                        Attempt::First,
                    )
                    .await
                    .unwrap(),
            );
        }
        for n in 0..3 {
            assert_eq!(live.next().await.unwrap(), format!("e{n}"), "live fan-out");
        }
        // A late reader gets everything kept, in order, with increasing ids.
        let all = reader
            .read_streams(&[(stream.clone(), STREAM_START.into())], WAIT)
            .await
            .unwrap();
        let payloads: Vec<_> = all.iter().map(|e| e.payload.as_str()).collect();
        assert_eq!(payloads, ["e0", "e1", "e2"]);
        assert_eq!(all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids);
        assert_eq!(reader.stream_tail(&stream).await.unwrap(), ids[2]);
        // A reconnecting reader resumes after what it saw.
        let rest = reader
            .read_streams(&[(stream.clone(), ids[0].clone())], WAIT)
            .await
            .unwrap();
        assert_eq!(rest.len(), 2);
        assert!(
            reader
                .read_streams(
                    &[(stream.clone(), ids[2].clone())],
                    Duration::from_millis(50)
                )
                .await
                .unwrap()
                .is_empty()
        );
        // A blocked reader wakes on the next event.
        let waiting = tokio::spawn({
            let (reader, stream, after) = (reader.clone(), stream.clone(), ids[2].clone());
            async move { reader.read_streams(&[(stream, after)], WAIT).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        producer
            .emit(
                &[Emit {
                    stream: Some(stream.clone()),
                    channel: channel.clone(),
                    payload: "e3".into(),
                }],
                1000,
                Attempt::First,
            )
            .await
            .unwrap();
        let woke = waiting.await.unwrap();
        assert_eq!(woke.len(), 1);
        assert_eq!(woke[0].payload, "e3");
        // The stream is capped.
        for n in 0..300 {
            producer
                .emit(
                    &[Emit {
                        stream: Some(stream.clone()),
                        channel: channel.clone(),
                        payload: format!("x{n}"),
                    }],
                    10,
                    Attempt::First,
                )
                .await
                .unwrap();
        }
        let kept = reader
            .read_streams(&[(stream.clone(), STREAM_START.into())], WAIT)
            .await
            .unwrap();
        assert!(kept.len() < 300, "kept {} of 304", kept.len());
        assert_eq!(kept.last().unwrap().payload, "x299");
    }

    pub async fn replies_wake_a_waiting_reader_and_keys_compare_and_set(
        a: Arc<dyn Transport>,
        b: Arc<dyn Transport>,
    ) {
        let key = |k: &str| format!("{}:{k}", a.prefix());
        // A reader waiting on two reply lists gets the answer that arrives on either.
        let waiting = tokio::spawn({
            let (a, keys) = (a.clone(), vec![key("resp:r1"), key("resp:r2")]);
            async move { a.take_reply(&keys, WAIT).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.reply(&key("resp:r2"), "yes".into(), Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(
            waiting.await.unwrap(),
            Some((key("resp:r2"), "yes".to_owned()))
        );
        assert_eq!(
            a.take_reply(&[key("resp:r1")], Duration::from_millis(50))
                .await
                .unwrap(),
            None
        );
        // Owner keys: only one of two nodes takes over a workstream.
        let owner = key("ws:w1");
        assert_eq!(a.get(&owner).await.unwrap(), None);
        a.set(&owner, "dead".into(), None).await.unwrap();
        let (x, y) = tokio::join!(
            a.compare_and_set(&owner, Some("dead"), "a".into()),
            b.compare_and_set(&owner, Some("dead"), "b".into()),
        );
        assert!(x.unwrap() ^ y.unwrap(), "exactly one wins");
        let winner = b.get(&owner).await.unwrap().unwrap();
        assert!(winner == "a" || winner == "b");
        assert!(!a.compare_and_set(&owner, None, "c".into()).await.unwrap());
        assert!(a.delete(&owner).await.unwrap());
        assert!(!a.delete(&owner).await.unwrap());
        assert!(a.compare_and_set(&owner, None, "c".into()).await.unwrap());
        // Expiring keys.
        a.set(&key("t"), "v".into(), Some(Duration::from_millis(100)))
            .await
            .unwrap();
        assert_eq!(b.get(&key("t")).await.unwrap().as_deref(), Some("v"));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(b.get(&key("t")).await.unwrap(), None);
    }
}

/// A batch of events goes in at once, and a retry of one already applied (its reply lost when
/// Redis went away) adds nothing: events are neither torn nor doubled by a restart.
#[tokio::test]
async fn a_retried_event_batch_is_not_added_twice() {
    let url = redis_url().unwrap();
    let prefix = unique("emit");
    let t = RedisTransport::connect(&url, &prefix).await.unwrap();
    let (stream, other) = (format!("{prefix}:stream:a"), format!("{prefix}:stream:b"));
    let channel = format!("{prefix}:events:a");
    let mut live = t.subscribe(&channel).await.unwrap();
    let event = |stream: &str, payload: &str| Emit {
        stream: Some(stream.to_owned()),
        channel: channel.clone(),
        payload: payload.to_owned(),
    };
    let batch = [
        event(&stream, "e1"),
        event(&other, "o1"),
        event(&stream, "e2"),
    ];
    let ids = t.emit(&batch, 1000, Attempt::First).await.unwrap();
    assert!(ids.iter().all(|id| !id.is_empty()), "{ids:?}");
    // The same batch again after a failure (as if its reply had been lost): applied already.
    let again = t.emit(&batch, 1000, Attempt::Retry).await.unwrap();
    assert_eq!(again, ["", "", ""], "applied already: nothing added");
    t.emit(
        &[event(&stream, "e3"), event(&other, "o2")],
        1000,
        Attempt::First,
    )
    .await
    .unwrap();
    // Retried again after another batch went into its streams (shared ones, another node's).
    let late = t.emit(&batch, 1000, Attempt::Retry).await.unwrap();
    assert_eq!(late, ["", "", ""], "still found: nothing added");
    let kept = t
        .read_streams(
            &[
                (stream.clone(), STREAM_START.into()),
                (other.clone(), STREAM_START.into()),
            ],
            WAIT,
        )
        .await
        .unwrap();
    let payloads: Vec<&str> = kept.iter().map(|e| e.payload.as_str()).collect();
    assert_eq!(payloads, ["e1", "e2", "e3", "o1", "o2"]);
    for expected in ["e1", "o1", "e2", "e3", "o2"] {
        assert_eq!(
            live.next().await.as_deref(),
            Some(expected),
            "published once"
        );
    }
}

/// Many callers emitting at once through one transport (a process running many nodes): their
/// batches go to Redis in groups (far fewer calls than batches, counted by a Redis of the
/// test's own), yet each caller gets the ids of its own events, each stream keeps its
/// caller's order, and a retried batch that was applied is skipped alone while the batches
/// grouped with it are added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_are_grouped_yet_each_applied_once_in_order() {
    let server = PrivateRedis::start();
    let url = server.url();
    let prefix = unique("group");
    let t = Arc::new(RedisTransport::connect(&url, &prefix).await.unwrap());
    let owned = prefix.clone();
    let event = move |ws: usize, n: usize| Emit {
        stream: Some(format!("{owned}:stream:ws{ws}")),
        channel: format!("{owned}:events:ws{ws}"),
        payload: format!("ws{ws}-e{n}"),
    };
    // Applied once; retried below, in the middle of the others' traffic.
    let applied = [event(99, 0), event(99, 1)];
    t.emit(&applied, 1000, Attempt::First).await.unwrap();

    const CALLERS: usize = 40;
    const BATCHES: usize = 25;
    let mut callers = tokio::task::JoinSet::new();
    for ws in 0..CALLERS {
        let (t, event) = (t.clone(), event.clone());
        callers.spawn(async move {
            for b in 0..BATCHES {
                let batch: Vec<Emit> = (0..=b % 3).map(|i| event(ws, b * 3 + i)).collect();
                let ids = t.emit(&batch, 1000, Attempt::First).await.unwrap();
                assert_eq!(ids.len(), batch.len());
                assert!(ids.iter().all(|id| !id.is_empty()), "{ids:?}");
            }
        });
    }
    let retried = {
        let t = t.clone();
        let applied = applied.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..BATCHES {
                answers.push(t.emit(&applied, 1000, Attempt::Retry).await.unwrap());
                tokio::task::yield_now().await;
            }
            answers
        })
    };
    while let Some(done) = callers.join_next().await {
        done.unwrap();
    }
    for answer in retried.await.unwrap() {
        assert_eq!(answer, ["", ""], "applied already: skipped");
    }
    let payloads_of = |ws: usize| {
        let (t, stream) = (t.clone(), format!("{prefix}:stream:ws{ws}"));
        async move {
            let kept = t
                .read_streams(&[(stream, STREAM_START.into())], WAIT)
                .await
                .unwrap();
            kept.into_iter().map(|e| e.payload).collect::<Vec<_>>()
        }
    };
    for ws in 0..CALLERS {
        let expected: Vec<String> = (0..BATCHES)
            .flat_map(|b| (0..=b % 3).map(move |i| format!("ws{ws}-e{}", b * 3 + i)))
            .collect();
        assert_eq!(
            payloads_of(ws).await,
            expected,
            "ws{ws}: every event once, in order"
        );
    }
    assert_eq!(
        payloads_of(99).await,
        ["ws99-e0", "ws99-e1"],
        "the retried batch added nothing"
    );
    let batches = 1 + CALLERS * BATCHES + BATCHES;
    let mut admin = admin(&url).await;
    // A group of first attempts is one transaction (EXEC), a group with a retry one script.
    let transactions = calls_of(&mut admin, "exec").await;
    let scripts = calls_of(&mut admin, "evalsha").await + calls_of(&mut admin, "eval").await;
    let calls = transactions + scripts;
    assert!(
        transactions > 0 && scripts > 0 && calls * 2 <= batches,
        "{transactions} transactions and {scripts} script calls for {batches} batches: not grouped"
    );
}

#[tokio::test]
async fn redis_keys_are_turnstones() {
    let url = redis_url().unwrap();
    let prefix = unique("keys");
    let t = RedisTransport::connect(&url, &prefix).await.unwrap();
    assert_eq!(t.queue_key(&shared()), format!("{prefix}:inbound"));
    assert_eq!(t.queue_key(&directed("n1")), format!("{prefix}:inbound:n1"));
    t.push(&directed("n1"), "x".into()).await.unwrap();
    // A plain Redis client (as 0.4.1's nodes and clients are) sees the message where 0.4.1
    // puts it, and can push where we read.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let len: usize = redis::cmd("LLEN")
        .arg(format!("{prefix}:inbound:n1"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(len, 1);
    let _: usize = redis::cmd("RPUSH")
        .arg(format!("{prefix}:inbound"))
        .arg("from-python")
        .query_async(&mut c)
        .await
        .unwrap();
    let got = t
        .receive("n1", &[directed("n1"), shared()], WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.payload, "x");
    let got = t
        .receive("n1", &[directed("n1"), shared()], WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.payload, "from-python");
    let in_flight: usize = redis::cmd("LLEN")
        .arg(format!("{prefix}:processing:n1:{prefix}:inbound"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(in_flight, 1, "moved, not popped");
    let _ = MemoryTransport::new();
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let err = RedisTransport::connect("redis://127.0.0.1:1/0", "x")
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("transport backend error"),
        "{err}"
    );
}

/// A private Redis that can be restarted (the shared one serves other tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_survive_a_redis_restart_without_loss_or_double_acks() {
    let mut server = PrivateRedis::start();
    let t = RedisTransport::connect(&server.url(), "turnstone")
        .await
        .unwrap();
    let from = [directed("n1"), shared()];
    t.push(&shared(), "before".into()).await.unwrap();
    let first = t.receive("n1", &from, WAIT).await.unwrap().unwrap();
    t.push(&shared(), "in-flight-at-crash".into())
        .await
        .unwrap();
    let second = t.receive("n1", &from, WAIT).await.unwrap().unwrap();
    t.ack(&first).await.unwrap();
    // Wait for the append-only file to hold the writes (fsync every second by default).
    tokio::time::sleep(Duration::from_millis(1200)).await;

    server.kill();
    // While Redis is down, work is refused with a clear, retryable error — not lost.
    let down = t.push(&shared(), "while-down".into()).await;
    assert!(matches!(down, Err(TransportError::Backend(_))), "{down:?}");
    server.up();

    // The client reconnects (with backoff) and consumption resumes.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match t.push(&shared(), "after".into()).await {
            Ok(()) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "no reconnection: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let got = t
        .receive("n1", &from, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(got.as_ref().map(|d| d.payload.as_str()), Some("after"));
    t.ack(&got.unwrap()).await.unwrap();
    // The message that was in flight when Redis went down is still in flight (not lost, not
    // redelivered), and is acknowledged exactly once.
    assert_eq!(t.in_flight_len("n1").await.unwrap(), 1);
    t.ack(&second).await.unwrap();
    assert!(matches!(
        t.ack(&second).await,
        Err(TransportError::NotInFlight { .. })
    ));
    assert!(
        matches!(t.ack(&first).await, Err(TransportError::NotInFlight { .. })),
        "acknowledged before the restart, not again after"
    );
    assert_eq!(t.queue_len(&shared()).await.unwrap(), 0);
}

/// A plain connection to the Redis at `url`, for looking at it from outside the transport.
async fn admin(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Redis' count of calls of `command` since it started (`INFO commandstats`).
async fn calls_of(admin: &mut redis::aio::MultiplexedConnection, command: &str) -> usize {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await
        .unwrap();
    stats
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&format!("cmdstat_{command}:calls="))?;
            rest.split(',').next()?.parse::<usize>().ok()
        })
        .sum()
}

/// A batch's events for one stream are one stream entry (one `XADD`), read back as its
/// events in order under the entry's id; each event is still published on its own.
#[tokio::test]
async fn a_batch_is_one_stream_entry_per_stream() {
    let server = PrivateRedis::start();
    let prefix = unique("entry");
    let t = RedisTransport::connect(&server.url(), &prefix)
        .await
        .unwrap();
    let mut admin = admin(&server.url()).await;
    let (a, b) = (format!("{prefix}:stream:a"), format!("{prefix}:stream:b"));
    let channel = format!("{prefix}:events:a");
    let mut live = t.subscribe(&channel).await.unwrap();
    let event = |stream: Option<&str>, payload: &str| Emit {
        stream: stream.map(str::to_owned),
        channel: channel.clone(),
        payload: payload.to_owned(),
    };
    let batch = [
        event(Some(&a), "a1"),
        event(Some(&b), "b1"),
        event(None, "loose"),
        event(Some(&a), "a2"),
        event(Some(&a), "a3"),
    ];
    let ids = t.emit(&batch, 1000, Attempt::First).await.unwrap();
    assert_eq!(
        calls_of(&mut admin, "xadd").await,
        2,
        "one entry per stream"
    );
    assert_eq!(
        (ids[0] == ids[3], ids[3] == ids[4]),
        (true, true),
        "{ids:?}"
    );
    assert!(!ids[1].is_empty() && ids[2].is_empty(), "{ids:?}");
    let kept = t
        .read_streams(&[(a.clone(), STREAM_START.into())], WAIT)
        .await
        .unwrap();
    let payloads: Vec<(&str, &str)> = kept
        .iter()
        .map(|e| (e.id.as_str(), e.payload.as_str()))
        .collect();
    assert_eq!(
        payloads,
        [(&*ids[0], "a1"), (&*ids[0], "a2"), (&*ids[0], "a3")]
    );
    // Resuming after the entry has had all of it.
    t.emit(&[event(Some(&a), "a4")], 1000, Attempt::First)
        .await
        .unwrap();
    let after = t
        .read_streams(&[(a.clone(), ids[0].clone())], WAIT)
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>(),
        ["a4"]
    );
    for expected in ["a1", "b1", "loose", "a2", "a3", "a4"] {
        assert_eq!(live.next().await.as_deref(), Some(expected), "in order");
    }
}

/// An idle node asking again and again (each receive timing out) leaves its waiting moves
/// in place: Redis sees one scripted take for the first receive and none after, and a message
/// pushed later still arrives at once.
#[tokio::test]
async fn an_idle_receiver_polls_without_asking_redis_again() {
    let server = PrivateRedis::start();
    let prefix = unique("idle");
    let t = RedisTransport::connect(&server.url(), &prefix)
        .await
        .unwrap();
    let mut admin = admin(&server.url()).await;
    let queues = [directed("n1"), shared()];
    let mut takes = Vec::new();
    for _ in 0..5 {
        let got = t
            .receive("n1", &queues, Duration::from_millis(40))
            .await
            .unwrap();
        assert!(got.is_none());
        takes.push(calls_of(&mut admin, "evalsha").await + calls_of(&mut admin, "lmove").await);
    }
    assert!(takes[0] > 0, "the first receive looks at the queues");
    assert!(
        takes.iter().all(|n| *n == takes[0]),
        "then nothing: {takes:?}"
    );
    t.push(&shared(), "later".into()).await.unwrap();
    let got = t.receive("n1", &queues, WAIT).await.unwrap().unwrap();
    assert_eq!(got.payload, "later");
    t.ack(&got).await.unwrap();
}

/// The group window holds only batches that find a write in flight: a lone batch, and each of
/// one caller's batches in turn, goes at once even with a window longer than the test waits.
#[tokio::test]
async fn a_lone_batch_does_not_wait_for_the_group_window() {
    let url = redis_url().unwrap();
    let prefix = unique("window");
    let t = RedisTransport::connect_grouped(&url, &prefix, 4, Duration::from_secs(60))
        .await
        .unwrap();
    let stream = format!("{prefix}:stream");
    for n in 0..3 {
        let event = Emit {
            stream: Some(stream.clone()),
            channel: format!("{prefix}:events"),
            payload: format!("e{n}"),
        };
        let ids = tokio::time::timeout(WAIT, t.emit(&[event], 1000, Attempt::First))
            .await
            .expect("sent at once, not held for the window")
            .unwrap();
        assert!(!ids[0].is_empty());
    }
}
