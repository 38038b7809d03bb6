//! The bridge's helper tasks: the consumer that takes inbound messages, the publisher that
//! writes events in order and settles deliveries after them, and the reply-list waiter.

use super::{ACK_ATTEMPTS, BridgeMsg, BridgeSettings, Out, Waiting, lock};
use crate::mq::keys::Keys;
use crate::mq::outbound::merge_text;
use ractor::ActorRef;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::remote::{Attempt, Emit, Transport, TransportError};

/// The loop that takes inbound messages for the bridge.
pub(super) struct Consumer {
    pub(super) transport: Arc<dyn Transport>,
    pub(super) keys: Keys,
    pub(super) me: String,
    pub(super) settings: BridgeSettings,
    pub(super) last_poll: Arc<AtomicU64>,
    pub(super) accepting: Arc<AtomicBool>,
    pub(super) room: Arc<AtomicBool>,
    pub(super) epoch: Instant,
    pub(super) bridge: ActorRef<BridgeMsg>,
}

/// Takes inbound messages (directed queue first) while the bridge keeps up and the node can
/// work.
pub(super) async fn consume(consumer: Consumer) {
    let Consumer {
        transport,
        keys,
        me,
        settings,
        last_poll,
        accepting,
        room,
        epoch,
        bridge,
    } = consumer;
    let from = [keys.directed(&me), keys.shared()];
    let directed_only = [keys.directed(&me)];
    let prefetch = Arc::new(Semaphore::new(settings.prefetch.max(1)));
    let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5));
    let mut failures = 0u32;
    loop {
        let Ok(permit) = prefetch.clone().acquire_owned().await else {
            return;
        };
        if !accepting.load(Ordering::Relaxed) {
            // Out of the cluster until the node can work again: other nodes take the work.
            tokio::time::sleep(settings.poll).await;
        } else {
            let queues: &[_] = if room.load(Ordering::Relaxed) {
                &from
            } else {
                &directed_only
            };
            match transport.receive(&me, queues, settings.poll).await {
                // Taken while the node stopped being able to work (the receive was under
                // way): back to its queue, for the other nodes.
                Ok(Some(delivery)) if !accepting.load(Ordering::Relaxed) => {
                    failures = 0;
                    settle_delivery(&*transport, &Out::Return(delivery), &backoff).await;
                }
                Ok(Some(delivery)) => {
                    failures = 0;
                    if bridge.cast(BridgeMsg::Inbound(delivery, permit)).is_err() {
                        return;
                    }
                    // Let the other nodes' consumers at the queue too.
                    tokio::task::yield_now().await;
                }
                Ok(None) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "receiving failed; retrying");
                    tokio::time::sleep(backoff.delay(failures)).await;
                }
            }
        }
        let elapsed = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        last_poll.store(elapsed.max(1), Ordering::Relaxed);
    }
}

/// Publishes events in order, batching what is queued into one round trip; acknowledges
/// deliveries only after the events before them went out.
pub(super) async fn publish(
    transport: Arc<dyn Transport>,
    mut queue: mpsc::UnboundedReceiver<Out>,
    cap: usize,
) {
    let backoff = Backoff::exponential(Duration::from_millis(50), Duration::from_secs(5));
    let mut batch = Vec::new();
    while let Some(first) = queue.recv().await {
        batch.push(first);
        // The bridge usually has more of the same moment to hand on (a round's end is a status,
        // the tool calls and a state change): let it, so they go as one batch, one stream
        // entry per workstream.
        tokio::task::yield_now().await;
        while batch.len() < 512 {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut events = Vec::new();
        for out in batch.drain(..) {
            match out {
                Out::Event(emit) => push_merged(&mut events, emit),
                done => {
                    flush(transport.as_ref(), &mut events, cap, &backoff).await;
                    settle_delivery(transport.as_ref(), &done, &backoff).await;
                }
            }
        }
        flush(transport.as_ref(), &mut events, cap, &backoff).await;
    }
}

/// Adds `emit` to the events going out, merged into the last one when both are text deltas of
/// one workstream's turn: a model that streams faster than its events go out (a busy Redis,
/// a burst of chunks read at once) costs one event per batch, not one per delta.
fn push_merged(events: &mut Vec<Emit>, emit: Emit) {
    if let Some(last) = events.last_mut()
        && last.channel == emit.channel
        && last.stream == emit.stream
        && merge_text(&mut last.payload, &emit.payload)
    {
        return;
    }
    events.push(emit);
}

/// Acknowledges (or dead-letters, or returns) a delivery, retrying while Redis is
/// unreachable: a lost acknowledgement would leave the message in flight, to be run again if
/// this node dies.
async fn settle_delivery(transport: &dyn Transport, out: &Out, backoff: &Backoff) {
    match out {
        Out::Event(_) => {}
        Out::Ack(delivery) => {
            retrying("acknowledgement", backoff, || transport.ack(delivery)).await;
        }
        Out::DeadLetter(delivery, reason) => {
            retrying("dead-lettering", backoff, || {
                transport.dead_letter(delivery, reason)
            })
            .await;
        }
        // Pushed back once only (a retried push could queue it twice), then acknowledged;
        // while it is not pushed, it stays in flight here, for the reaper if this node dies.
        Out::Return(delivery) => {
            let pushed = retrying("returning a message", backoff, || {
                transport.push(&delivery.from, delivery.payload.clone())
            })
            .await;
            if pushed {
                retrying("acknowledgement", backoff, || transport.ack(delivery)).await;
            }
        }
    }
}

/// Runs `op` until it succeeds, retrying with backoff while Redis is unreachable; false if it
/// was refused (e.g. the message is already gone: reclaimed by another node after a long
/// outage) or given up after [`ACK_ATTEMPTS`] (the message stays in flight).
async fn retrying<F, Fut>(what: &str, backoff: &Backoff, mut op: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), TransportError>>,
{
    for attempt in 0..ACK_ATTEMPTS {
        match op().await {
            Ok(()) => return true,
            Err(TransportError::Backend(e)) => {
                tracing::warn!(error = %e, attempt, "{what} failed; retrying");
                tokio::time::sleep(backoff.delay(attempt + 1)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what} refused");
                return false;
            }
        }
    }
    tracing::error!("{what} given up; the message stays in flight");
    false
}

/// Emits until Redis takes the events (it may be restarting).
async fn flush(transport: &dyn Transport, events: &mut Vec<Emit>, cap: usize, backoff: &Backoff) {
    if events.is_empty() {
        return;
    }
    let mut failures = 0u32;
    let mut attempt = Attempt::First;
    while let Err(e) = transport.emit(events, cap, attempt).await {
        attempt = Attempt::Retry;
        failures += 1;
        tracing::warn!(error = %e, failures, "publishing events failed; retrying");
        tokio::time::sleep(backoff.delay(failures)).await;
    }
    events.clear();
}

/// Waits on the reply lists of the reviews in progress.
pub(super) async fn await_replies(
    transport: Arc<dyn Transport>,
    waiting: Arc<Mutex<HashMap<String, Waiting>>>,
    changed: Arc<Notify>,
    bridge: ActorRef<BridgeMsg>,
) {
    loop {
        let keys: Vec<String> = lock(&waiting).keys().cloned().collect();
        if keys.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), changed.notified()).await;
            continue;
        }
        match transport
            .take_reply(&keys, Duration::from_millis(500))
            .await
        {
            Ok(Some((key, payload))) => {
                if bridge.cast(BridgeMsg::Reply { key, payload }).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "waiting for answers failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mq::outbound::WsFrame;
    use crate::mq::protocol::Event;
    use crate::workstream::WsEvent;

    fn content(ws: &str, text: &str) -> Emit {
        let frame = WsFrame::of(&WsEvent::Content { text: text.into() }).unwrap();
        Emit {
            stream: Some(format!("s:{ws}")),
            channel: format!("c:{ws}"),
            payload: frame.outbound(ws, ""),
        }
    }

    #[test]
    fn deltas_going_out_together_are_merged_per_workstream_in_order() {
        let end = Emit {
            payload: WsFrame::of(&WsEvent::StreamEnd).unwrap().outbound("a", ""),
            ..content("a", "")
        };
        let mut events = Vec::new();
        for emit in [
            content("a", "1"),
            content("a", "2"),
            content("b", "x"),
            content("a", "3"),
            content("a", "4"),
            end,
            content("a", "5"),
        ] {
            push_merged(&mut events, emit);
        }
        let seen: Vec<(String, String)> = events
            .iter()
            .map(|e| {
                let event = Event::parse(&e.payload).unwrap();
                (
                    event.ws_id.clone(),
                    format!("{}{}", event.kind, event.str("text")),
                )
            })
            .collect();
        let expected = [
            ("a", "content12"),
            ("b", "contentx"),
            ("a", "content34"),
            ("a", "stream_end"),
            ("a", "content5"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(w, k)| ((*w).to_owned(), (*k).to_owned()))
            .collect();
        assert_eq!(seen, expected);
    }
}
