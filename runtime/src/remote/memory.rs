//! The in-process transport.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::transport::{
    Attempt, DeadLetter, Delivery, Emit, MailboxAddress, STREAM_START, StreamEntry, Subscription,
    SubscriptionSender, Transport, TransportError,
};

/// Buffered messages per subscriber before further publishes to it are dropped and counted as
/// missed (pub/sub is at-most-once, as Redis pub/sub). Allocated as it fills.
const SUBSCRIBER_BUFFER: usize = 65_536;

/// Dead letters kept.
const DEAD_LETTER_LIMIT: usize = 10_000;

/// Queues, in-flight lists and channels in process memory. Cheap to clone; clones share state.
///
/// Blocking receives use tokio timers, so on paused time they are deterministic. A push
/// wakes one receiver waiting on its queue (the longest waiting), not all of them, so a
/// thousand idle nodes cost nothing per message.
#[derive(Clone, Debug)]
pub struct MemoryTransport {
    prefix: Arc<str>,
    state: Arc<Mutex<State>>,
    /// Replies and stream entries arrived.
    appended: Arc<Notify>,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::with_prefix("turnstone")
    }
}

/// One blocked receive, registered with each queue it waits on.
#[derive(Debug, Default)]
struct Waiter {
    wake: Notify,
    /// Still waiting and not yet woken.
    waiting: AtomicBool,
}

impl Waiter {
    /// Claims the waiter for one wake-up; false if it was woken already or stopped waiting.
    fn claim(&self) -> bool {
        self.waiting.swap(false, Ordering::AcqRel)
    }
}

/// The transport's maps, keyed by queue, stream and channel names: hashed with foldhash,
/// since every emitted event looks up its stream and its channel.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct State {
    queues: Map<MailboxAddress, VecDeque<String>>,
    /// Receives waiting per queue, longest waiting first (stale entries are skipped).
    waiters: Map<MailboxAddress, VecDeque<Arc<Waiter>>>,
    in_flight: Map<String, Vec<Delivery>>,
    dead: VecDeque<DeadLetter>,
    channels: Map<String, Vec<SubscriptionSender>>,
    /// Node → (metadata, expiry).
    heartbeats: Map<String, (String, tokio::time::Instant)>,
    workers: std::collections::BTreeSet<String>,
    /// Key → (value, expiry).
    values: Map<String, (String, Option<tokio::time::Instant>)>,
    replies: Map<String, VecDeque<String>>,
    /// Stream → (last sequence number, entries).
    streams: Map<String, (u64, VecDeque<(u64, String)>)>,
    /// Streams to remove, by when (checked as streams are written).
    stream_expiry: std::collections::BTreeSet<(tokio::time::Instant, String)>,
    /// Each stream's pending expiry, to replace it when set again.
    stream_expires_at: Map<String, tokio::time::Instant>,
}

impl State {
    /// Wakes up to `n` receivers waiting on `queue`.
    fn wake(&mut self, queue: &MailboxAddress, mut n: usize) {
        let Some(waiters) = self.waiters.get_mut(queue) else {
            return;
        };
        while n > 0 {
            let Some(waiter) = waiters.pop_front() else {
                return;
            };
            if waiter.claim() {
                waiter.wake.notify_one();
                n -= 1;
            }
        }
    }

    fn register(&mut self, queue: &MailboxAddress, waiter: &Arc<Waiter>) {
        let waiters = self.waiters.entry(queue.clone()).or_default();
        // Receives that timed out leave entries behind: drop them now and then.
        if waiters.len() >= 32 && waiters.len().is_power_of_two() {
            waiters.retain(|w| w.waiting.load(Ordering::Acquire));
        }
        waiters.push_back(Arc::clone(waiter));
    }

    /// Delivers `payload` to `channel`'s live subscribers; how many there are (as Redis
    /// counts them: also one whose buffer is full).
    fn publish(&mut self, channel: &str, payload: &str) -> usize {
        let Some(subscribers) = self.channels.get_mut(channel) else {
            return 0;
        };
        subscribers.retain(|tx| tx.deliver(payload.to_owned()));
        subscribers.len()
    }

    /// Appends `payload` to `stream`, keeping its newest `cap` entries; the new entry's id.
    fn append(&mut self, stream: &str, payload: &str, cap: usize) -> String {
        // Looked up by `&str` first: a stream's key is copied only when the stream is new.
        let (last, entries) = match self.streams.get_mut(stream) {
            Some(found) => found,
            None => self.streams.entry(stream.to_owned()).or_default(),
        };
        *last += 1;
        entries.push_back((*last, payload.to_owned()));
        while entries.len() > cap.max(1) {
            entries.pop_front();
        }
        stream_id(*last)
    }

    /// Removes the streams whose expiry passed.
    fn expire_streams(&mut self) {
        let now = tokio::time::Instant::now();
        while self.stream_expiry.first().is_some_and(|(at, _)| *at <= now) {
            let Some((_, stream)) = self.stream_expiry.pop_first() else {
                break;
            };
            self.stream_expires_at.remove(&stream);
            self.streams.remove(&stream);
        }
    }

    fn value(&mut self, key: &str) -> Option<&String> {
        let now = tokio::time::Instant::now();
        if self
            .values
            .get(key)
            .is_some_and(|(_, expiry)| expiry.is_some_and(|e| e <= now))
        {
            self.values.remove(key);
        }
        self.values.get(key).map(|(v, _)| v)
    }
}

fn stream_id(n: u64) -> String {
    let mut id = String::with_capacity(24);
    id.push_str(itoa::Buffer::new().format(n));
    id.push_str("-0");
    id
}

fn parse_stream_id(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl MemoryTransport {
    /// An empty transport with the default prefix `turnstone`.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty transport whose keys start with `prefix`.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            prefix: Arc::from(prefix.trim_end_matches(':')),
            state: Arc::default(),
            appended: Arc::default(),
        }
    }

    fn read_now(&self, after: &[(String, String)]) -> Vec<StreamEntry> {
        let state = self.state();
        let mut out = Vec::new();
        for (stream, id) in after {
            let Some((_, entries)) = state.streams.get(stream) else {
                continue;
            };
            let from = parse_stream_id(id);
            out.extend(
                entries
                    .iter()
                    .filter(|(n, _)| *n > from)
                    .map(|(n, payload)| StreamEntry {
                        stream: stream.clone(),
                        id: stream_id(*n),
                        payload: payload.clone(),
                    }),
            );
        }
        out
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_first(state: &mut State, node: &str, from: &[MailboxAddress]) -> Option<Delivery> {
        let (address, payload) = from.iter().find_map(|address| {
            state
                .queues
                .get_mut(address)
                .and_then(VecDeque::pop_front)
                .map(|payload| (address.clone(), payload))
        })?;
        let delivery = Delivery {
            from: address,
            node: node.to_owned(),
            payload,
        };
        state
            .in_flight
            .entry(node.to_owned())
            .or_default()
            .push(delivery.clone());
        if !state.workers.contains(node) {
            state.workers.insert(node.to_owned());
        }
        // A receive woken for one queue may have taken from another: pass the wake-up on.
        for address in from {
            if state.queues.get(address).is_some_and(|q| !q.is_empty()) {
                state.wake(address, 1);
            }
        }
        Some(delivery)
    }

    fn remove_in_flight(
        &self,
        state: &mut State,
        delivery: &Delivery,
    ) -> Result<(), TransportError> {
        let list = state.in_flight.get_mut(&delivery.node);
        let position = list
            .as_ref()
            .and_then(|l| l.iter().position(|d| d == delivery));
        match (list, position) {
            (Some(list), Some(i)) => {
                list.remove(i);
                Ok(())
            }
            _ => Err(TransportError::NotInFlight {
                from: delivery.from.clone(),
                node: delivery.node.clone(),
            }),
        }
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn push(&self, to: &MailboxAddress, payload: String) -> Result<(), TransportError> {
        let mut state = self.state();
        state
            .queues
            .entry(to.clone())
            .or_default()
            .push_back(payload);
        state.wake(to, 1);
        Ok(())
    }

    async fn receive(
        &self,
        node: &str,
        from: &[MailboxAddress],
        timeout: Duration,
    ) -> Result<Option<Delivery>, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let waiter = Arc::new(Waiter::default());
            {
                let mut state = self.state();
                if let Some(delivery) = Self::take_first(&mut state, node, from) {
                    return Ok(Some(delivery));
                }
                // Registered under the lock that pushes take, so no push is missed.
                waiter.waiting.store(true, Ordering::Release);
                for address in from {
                    state.register(address, &waiter);
                }
            }
            if tokio::time::timeout_at(deadline, waiter.wake.notified())
                .await
                .is_err()
            {
                if !waiter.claim() {
                    // Woken just as the wait ended: take what the wake-up was for.
                    let mut state = self.state();
                    if let Some(delivery) = Self::take_first(&mut state, node, from) {
                        return Ok(Some(delivery));
                    }
                }
                return Ok(None);
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError> {
        let mut state = self.state();
        self.remove_in_flight(&mut state, delivery)
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), TransportError> {
        let mut state = self.state();
        self.remove_in_flight(&mut state, delivery)?;
        if state.dead.len() == DEAD_LETTER_LIMIT {
            state.dead.pop_front();
        }
        state.dead.push_back(DeadLetter {
            from: delivery.from.clone(),
            node: delivery.node.clone(),
            payload: delivery.payload.clone(),
            reason: reason.to_owned(),
        });
        Ok(())
    }

    async fn reclaim(&self, node: &str) -> Result<usize, TransportError> {
        let mut state = self.state();
        let deliveries = state.in_flight.remove(node).unwrap_or_default();
        // Newest first to the front, so the oldest ends up first again.
        for delivery in deliveries.iter().rev() {
            state
                .queues
                .entry(delivery.from.clone())
                .or_default()
                .push_front(delivery.payload.clone());
        }
        for delivery in &deliveries {
            state.wake(&delivery.from, 1);
        }
        Ok(deliveries.len())
    }

    async fn requeue(
        &self,
        from: &MailboxAddress,
        to: &MailboxAddress,
    ) -> Result<usize, TransportError> {
        let mut state = self.state();
        let waiting: Vec<String> = state
            .queues
            .get_mut(from)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default();
        let moved = waiting.len();
        state.queues.entry(to.clone()).or_default().extend(waiting);
        state.wake(to, moved);
        Ok(moved)
    }

    async fn forget_worker(&self, node: &str) -> Result<(), TransportError> {
        let mut state = self.state();
        state.workers.remove(node);
        state.in_flight.remove(node);
        Ok(())
    }

    async fn queue_len(&self, at: &MailboxAddress) -> Result<usize, TransportError> {
        Ok(self.state().queues.get(at).map_or(0, VecDeque::len))
    }

    async fn in_flight_len(&self, node: &str) -> Result<usize, TransportError> {
        Ok(self.state().in_flight.get(node).map_or(0, Vec::len))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, TransportError> {
        let state = self.state();
        let skip = state.dead.len().saturating_sub(limit);
        Ok(state.dead.iter().skip(skip).cloned().collect())
    }

    async fn heartbeat(
        &self,
        node: &str,
        metadata: String,
        ttl: Duration,
    ) -> Result<(), TransportError> {
        let expires = tokio::time::Instant::now() + ttl;
        self.state()
            .heartbeats
            .insert(node.to_owned(), (metadata, expires));
        Ok(())
    }

    async fn heartbeating(&self, nodes: &[String]) -> Result<Vec<bool>, TransportError> {
        let now = tokio::time::Instant::now();
        let state = self.state();
        Ok(nodes
            .iter()
            .map(|n| {
                state
                    .heartbeats
                    .get(n)
                    .is_some_and(|(_, expires)| *expires > now)
            })
            .collect())
    }

    async fn live_nodes(&self) -> Result<Vec<(String, String)>, TransportError> {
        let now = tokio::time::Instant::now();
        let mut state = self.state();
        state.heartbeats.retain(|_, (_, expires)| *expires > now);
        let mut live: Vec<(String, String)> = state
            .heartbeats
            .iter()
            .map(|(n, (m, _))| (n.clone(), m.clone()))
            .collect();
        live.sort();
        Ok(live)
    }

    async fn workers(&self) -> Result<Vec<String>, TransportError> {
        Ok(self.state().workers.iter().cloned().collect())
    }

    async fn publish(&self, channel: &str, payload: String) -> Result<usize, TransportError> {
        Ok(self.state().publish(channel, &payload))
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription, TransportError> {
        let (tx, subscription) = SubscriptionSender::channel(channel, SUBSCRIBER_BUFFER);
        self.state()
            .channels
            .entry(channel.to_owned())
            .or_default()
            .push(tx);
        Ok(subscription)
    }

    async fn subscribers(&self, channel: &str) -> Result<usize, TransportError> {
        let mut state = self.state();
        Ok(state.channels.get_mut(channel).map_or(0, |subscribers| {
            subscribers.retain(|tx| !tx.is_closed());
            subscribers.len()
        }))
    }

    async fn get(&self, key: &str) -> Result<Option<String>, TransportError> {
        Ok(self.state().value(key).cloned())
    }

    async fn set(
        &self,
        key: &str,
        value: String,
        ttl: Option<Duration>,
    ) -> Result<(), TransportError> {
        let expiry = ttl.map(|t| tokio::time::Instant::now() + t);
        self.state().values.insert(key.to_owned(), (value, expiry));
        Ok(())
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        value: String,
    ) -> Result<bool, TransportError> {
        let mut state = self.state();
        if state.value(key).map(String::as_str) != expected {
            return Ok(false);
        }
        state.values.insert(key.to_owned(), (value, None));
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<bool, TransportError> {
        let mut state = self.state();
        let existed = state.value(key).is_some();
        state.values.remove(key);
        Ok(existed)
    }

    async fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, TransportError> {
        let mut state = self.state();
        if state.value(key).is_some() {
            return Ok(false);
        }
        let expiry = tokio::time::Instant::now() + ttl;
        state
            .values
            .insert(key.to_owned(), (owner.to_owned(), Some(expiry)));
        Ok(true)
    }

    async fn release_lease(&self, key: &str, owner: &str) -> Result<bool, TransportError> {
        let mut state = self.state();
        if state.value(key).map(String::as_str) != Some(owner) {
            return Ok(false);
        }
        state.values.remove(key);
        Ok(true)
    }

    async fn push_once(
        &self,
        to: &MailboxAddress,
        payload: String,
        marker: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<String>, TransportError> {
        let mut state = self.state();
        if let Some(existing) = state.value(marker) {
            return Ok(Some(existing.clone()));
        }
        let expiry = tokio::time::Instant::now() + ttl;
        state
            .values
            .insert(marker.to_owned(), (value.to_owned(), Some(expiry)));
        state
            .queues
            .entry(to.clone())
            .or_default()
            .push_back(payload);
        state.wake(to, 1);
        Ok(None)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, TransportError> {
        let at = tokio::time::Instant::now() + ttl;
        let mut state = self.state();
        if let Some((_, expiry)) = state.values.get_mut(key) {
            *expiry = Some(at);
            return Ok(true);
        }
        if !state.streams.contains_key(key) {
            return Ok(false);
        }
        if let Some(before) = state.stream_expires_at.insert(key.to_owned(), at) {
            state.stream_expiry.remove(&(before, key.to_owned()));
        }
        state.stream_expiry.insert((at, key.to_owned()));
        Ok(true)
    }

    async fn reply(
        &self,
        key: &str,
        payload: String,
        _ttl: Duration,
    ) -> Result<(), TransportError> {
        self.state()
            .replies
            .entry(key.to_owned())
            .or_default()
            .push_back(payload);
        self.appended.notify_waiters();
        Ok(())
    }

    async fn take_reply(
        &self,
        keys: &[String],
        timeout: Duration,
    ) -> Result<Option<(String, String)>, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let appended = self.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            {
                let mut state = self.state();
                for key in keys {
                    if let Some(payload) = state.replies.get_mut(key).and_then(VecDeque::pop_front)
                    {
                        return Ok(Some((key.clone(), payload)));
                    }
                }
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn emit(
        &self,
        events: &[Emit],
        cap: usize,
        _: Attempt,
    ) -> Result<Vec<String>, TransportError> {
        let mut state = self.state();
        state.expire_streams();
        let mut ids = Vec::with_capacity(events.len());
        for event in events {
            let id = match &event.stream {
                Some(stream) => state.append(stream, &event.payload, cap),
                None => String::new(),
            };
            state.publish(&event.channel, &event.payload);
            ids.push(id);
        }
        drop(state);
        self.appended.notify_waiters();
        Ok(ids)
    }

    async fn stream_tail(&self, stream: &str) -> Result<String, TransportError> {
        Ok(self
            .state()
            .streams
            .get(stream)
            .and_then(|(_, entries)| entries.back())
            .map_or_else(|| STREAM_START.to_owned(), |(n, _)| stream_id(*n)))
    }

    async fn read_streams(
        &self,
        after: &[(String, String)],
        timeout: Duration,
    ) -> Result<Vec<StreamEntry>, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let appended = self.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let entries = self.read_now(after);
            if !entries.is_empty() {
                return Ok(entries);
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::remote::{Envelope, receive_envelope, send_envelope};

    fn shared() -> MailboxAddress {
        MailboxAddress::shared("inbound")
    }

    fn directed(node: &str) -> MailboxAddress {
        MailboxAddress::directed("inbound", node)
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn directed_queue_has_priority_over_the_shared_queue() {
        let t = MemoryTransport::new();
        t.push(&shared(), "generic".into()).await.unwrap();
        t.push(&directed("a"), "for-a".into()).await.unwrap();
        let from = [directed("a"), shared()];
        let first = t.receive("a", &from, WAIT).await.unwrap().unwrap();
        let second = t.receive("a", &from, WAIT).await.unwrap().unwrap();
        assert_eq!(
            (first.payload.as_str(), second.payload.as_str()),
            ("for-a", "generic")
        );
        assert_eq!(directed("a").key(), "inbound:a");
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_pushed_once_is_pushed_once_and_a_lease_has_one_holder() {
        let t = MemoryTransport::new();
        let ttl = Duration::from_secs(60);
        assert_eq!(
            t.push_once(&shared(), "m".into(), "fired:1", "cid-a", ttl)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            t.push_once(&shared(), "m".into(), "fired:1", "cid-b", ttl)
                .await
                .unwrap()
                .as_deref(),
            Some("cid-a"),
            "the second attempt learns the first one's value"
        );
        assert_eq!(t.queue_len(&shared()).await.unwrap(), 1);

        assert!(t.acquire_lease("lock", "a", ttl).await.unwrap());
        assert!(!t.acquire_lease("lock", "b", ttl).await.unwrap());
        assert!(!t.release_lease("lock", "b").await.unwrap(), "not b's");
        tokio::time::advance(ttl).await;
        assert!(t.acquire_lease("lock", "b", ttl).await.unwrap(), "expired");
        assert!(!t.release_lease("lock", "a").await.unwrap());
        assert!(t.release_lease("lock", "b").await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn unacknowledged_work_of_a_dead_node_is_reclaimed_in_order() {
        let t = MemoryTransport::new();
        for m in ["m1", "m2", "m3"] {
            t.push(&shared(), m.into()).await.unwrap();
        }
        let d1 = t.receive("a", &[shared()], WAIT).await.unwrap().unwrap();
        let _d2 = t.receive("a", &[shared()], WAIT).await.unwrap().unwrap();
        t.ack(&d1).await.unwrap();
        assert_eq!(t.in_flight_len("a").await.unwrap(), 1);

        // node a dies holding m2; m3 is still queued
        assert_eq!(t.reclaim("a").await.unwrap(), 1);
        assert_eq!(t.in_flight_len("a").await.unwrap(), 0);
        let again = t.receive("b", &[shared()], WAIT).await.unwrap().unwrap();
        assert_eq!(again.payload, "m2", "reclaimed work goes first");
        let next = t.receive("b", &[shared()], WAIT).await.unwrap().unwrap();
        assert_eq!(next.payload, "m3");
        assert!(matches!(
            t.ack(&d1).await,
            Err(TransportError::NotInFlight { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_receiver_wakes_on_push_and_times_out_on_silence() {
        let t = MemoryTransport::new();
        let receiver = {
            let t = t.clone();
            tokio::spawn(async move { t.receive("a", &[shared()], WAIT).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        t.push(&shared(), "late".into()).await.unwrap();
        let got = receiver.await.unwrap().unwrap().unwrap();
        assert_eq!(got.payload, "late");

        let before = tokio::time::Instant::now();
        assert_eq!(t.receive("a", &[shared()], WAIT).await.unwrap(), None);
        assert_eq!(before.elapsed(), WAIT);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }

    #[tokio::test(start_paused = true)]
    async fn undecodable_messages_go_to_the_dead_letter_list_with_the_reason() {
        let t = MemoryTransport::new();
        send_envelope(&t, &shared(), &Envelope::new(Ping { n: 7 }))
            .await
            .unwrap();
        t.push(&shared(), "{\"n\": \"seven\"}".into())
            .await
            .unwrap();

        let (delivery, env) = receive_envelope::<Ping>(&t, "a", &[shared()], WAIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(env.body, Ping { n: 7 });
        t.ack(&delivery).await.unwrap();

        let err = receive_envelope::<Ping>(&t, "a", &[shared()], WAIT)
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("malformed envelope"), "{err}");
        let dead = t.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].payload, "{\"n\": \"seven\"}");
        assert!(
            dead[0].reason.contains("invalid type"),
            "{}",
            dead[0].reason
        );
        assert_eq!(t.in_flight_len("a").await.unwrap(), 0, "not left in flight");
    }

    #[tokio::test(start_paused = true)]
    async fn publish_fans_out_to_every_live_subscriber() {
        let t = MemoryTransport::new();
        assert_eq!(t.publish("events:ws1", "lost".into()).await.unwrap(), 0);
        let mut s1 = t.subscribe("events:ws1").await.unwrap();
        let s2 = t.subscribe("events:ws1").await.unwrap();
        let mut other = t.subscribe("events:ws2").await.unwrap();
        assert_eq!(t.publish("events:ws1", "hello".into()).await.unwrap(), 2);
        drop(s2);
        assert_eq!(t.publish("events:ws1", "again".into()).await.unwrap(), 1);
        assert_eq!(s1.next().await.as_deref(), Some("hello"));
        assert_eq!(s1.next().await.as_deref(), Some("again"));
        assert_eq!(s1.channel(), "events:ws1");
        t.publish("events:ws2", "x".into()).await.unwrap();
        assert_eq!(other.next().await.as_deref(), Some("x"));
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_counts_what_it_missed() {
        let t = MemoryTransport::new();
        let mut slow = t.subscribe("events:global").await.unwrap();
        for n in 0..SUBSCRIBER_BUFFER + 3 {
            // Still counted as a receiver, as Redis counts a client whose buffer is full.
            assert_eq!(t.publish("events:global", n.to_string()).await.unwrap(), 1);
        }
        assert_eq!(slow.missed(), 3);
        assert_eq!(slow.next().await.as_deref(), Some("0"));
        t.publish("events:global", "room again".into())
            .await
            .unwrap();
        assert_eq!(slow.missed(), 3);
    }
}
