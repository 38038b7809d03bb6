//! The transport contract for remote mailboxes and event channels.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::{Envelope, EnvelopeError};

/// A queue, optionally owned by one node: `inbound` (shared) or `inbound:{node}` (directed).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct MailboxAddress {
    /// The queue's name.
    pub queue: String,
    /// The owning node, for a directed queue.
    pub node: Option<String>,
}

impl MailboxAddress {
    /// A queue any node may consume.
    pub fn shared(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            node: None,
        }
    }

    /// A queue consumed only by `node`.
    pub fn directed(queue: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            node: Some(node.into()),
        }
    }

    /// The key without prefix: `queue` or `queue:node`.
    pub fn key(&self) -> String {
        match &self.node {
            Some(node) => format!("{}:{node}", self.queue),
            None => self.queue.clone(),
        }
    }
}

impl fmt::Display for MailboxAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// A message handed to a node; it stays in that node's in-flight list until acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The queue it came from (and returns to if the node dies).
    pub from: MailboxAddress,
    /// The node that received it.
    pub node: String,
    /// The raw message.
    pub payload: String,
}

/// A message that could not be handled, kept with the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Where it was received from.
    pub from: MailboxAddress,
    /// Which node gave up on it.
    pub node: String,
    /// The raw message.
    pub payload: String,
    /// Why.
    pub reason: String,
}

/// Transport failures.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The backend (e.g. Redis) failed or is unreachable: transient, retry with backoff.
    #[error("transport backend error: {0}")]
    Backend(String),
    /// The delivery is not in flight for its node (already acknowledged or reclaimed).
    #[error("delivery from {from} is not in flight on node {node:?}")]
    NotInFlight {
        /// Its queue.
        from: MailboxAddress,
        /// Its node.
        node: String,
    },
    /// Encoding or decoding an envelope failed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// A live subscription to one event channel. Fan-out is at most once: a subscriber that falls
/// more than its buffer behind loses messages, and [`missed`](Self::missed) counts them, so
/// a reader that must not miss anything knows when to read the durable streams instead.
#[derive(Debug)]
pub struct Subscription {
    channel: String,
    rx: mpsc::Receiver<String>,
    missed: Arc<AtomicU64>,
}

impl Subscription {
    /// The channel's name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next published message; `None` when the transport closed the subscription.
    pub async fn next(&mut self) -> Option<String> {
        self.rx.recv().await
    }

    /// Messages dropped so far because this subscriber's buffer was full.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

/// The sending end of a [`Subscription`]: delivers without waiting, counting what a full
/// buffer drops.
#[derive(Clone, Debug)]
pub struct SubscriptionSender {
    tx: mpsc::Sender<String>,
    missed: Arc<AtomicU64>,
}

impl SubscriptionSender {
    /// A subscription to `channel` buffering up to `buffer` messages, and its sender.
    pub fn channel(channel: &str, buffer: usize) -> (Self, Subscription) {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let missed = Arc::new(AtomicU64::new(0));
        let subscription = Subscription {
            channel: channel.to_owned(),
            rx,
            missed: missed.clone(),
        };
        (Self { tx, missed }, subscription)
    }

    /// Delivers `payload`; false once the subscriber is gone. A full buffer drops it and
    /// counts it as missed.
    pub fn deliver(&self, payload: String) -> bool {
        match self.tx.try_send(payload) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.missed.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Whether the subscriber is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the subscriber is gone.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// One event of a durable event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    /// The stream's key.
    pub stream: String,
    /// Its entry's id: increasing within the stream (`{ms}-{n}` on Redis, `{n}-0` in memory).
    /// On Redis, the events one batch added to a stream are one entry and share its id; a
    /// reader that resumes after an id has had all of them.
    pub id: String,
    /// The event.
    pub payload: String,
}

/// An event to publish, and to keep in a durable stream if `stream` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emit {
    /// The stream that keeps it for late readers, if any.
    pub stream: Option<String>,
    /// The pub/sub channel.
    pub channel: String,
    /// The event.
    pub payload: String,
}

/// Whether [`Transport::emit`] sends a batch for the first time or again after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The batch was never sent.
    First,
    /// The batch was sent before and failed: it may have been applied all the same.
    Retry,
}

/// Where [`Transport::push_routed`] sends a message.
#[derive(Clone, Debug)]
pub struct Route<'a> {
    /// The key naming the owning node, which counts while it heartbeats; `None`: no owner to
    /// look up.
    pub owner: Option<&'a str>,
    /// The owner's queue is this queue directed to it.
    pub owner_queue: &'a str,
    /// Where the message goes without a live owner.
    pub fallback: MailboxAddress,
    /// A stream whose position to read before the push.
    pub tail_of: Option<&'a str>,
}

/// The id before every entry of a stream: reading from it returns everything kept.
pub const STREAM_START: &str = "0-0";

/// Remote mailboxes and event channels between nodes.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// The key prefix (`turnstone` by default); queue keys get it added by the transport,
    /// the keys of the key-value, reply and stream operations are passed complete.
    fn prefix(&self) -> &str;

    /// Appends a raw message to the queue at `to`.
    async fn push(&self, to: &MailboxAddress, payload: String) -> Result<(), TransportError>;

    /// Waits up to `timeout` for a message from the first non-empty queue of `from` (earlier
    /// queues have priority) and atomically moves it into `node`'s in-flight list.
    async fn receive(
        &self,
        node: &str,
        from: &[MailboxAddress],
        timeout: Duration,
    ) -> Result<Option<Delivery>, TransportError>;

    /// Marks a delivery handled: it leaves the in-flight list for good.
    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError>;

    /// Moves a delivery from in-flight to the dead-letter list with `reason`.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), TransportError>;

    /// Returns every in-flight message of `node` to the front of the queue it came from, in
    /// order; used when `node` is dead. Returns how many were returned.
    async fn reclaim(&self, node: &str) -> Result<usize, TransportError>;

    /// Moves every message waiting at `from` to the end of `to`, in order (the directed queue
    /// of a dead node to the shared queue). Returns how many moved.
    async fn requeue(
        &self,
        from: &MailboxAddress,
        to: &MailboxAddress,
    ) -> Result<usize, TransportError>;

    /// Drops a node that holds nothing from the list of workers.
    async fn forget_worker(&self, node: &str) -> Result<(), TransportError>;

    /// Messages waiting in the queue at `at`.
    async fn queue_len(&self, at: &MailboxAddress) -> Result<usize, TransportError>;

    /// Messages in flight on `node`.
    async fn in_flight_len(&self, node: &str) -> Result<usize, TransportError>;

    /// The most recent dead letters, oldest first, at most `limit`.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, TransportError>;

    /// Announces that `node` is alive, with `metadata`, for `ttl`.
    async fn heartbeat(
        &self,
        node: &str,
        metadata: String,
        ttl: Duration,
    ) -> Result<(), TransportError>;

    /// Nodes whose heartbeat has not expired, with their metadata, sorted by name.
    async fn live_nodes(&self) -> Result<Vec<(String, String)>, TransportError>;

    /// Nodes that have received messages (and may hold some in flight), sorted by name.
    async fn workers(&self) -> Result<Vec<String>, TransportError>;

    /// Whether each of `nodes` heartbeats, in order — what a reaper asks about the
    /// [`workers`](Transport::workers), without listing every live node (on Redis a scan of
    /// the whole keyspace). One round trip on Redis.
    async fn heartbeating(&self, nodes: &[String]) -> Result<Vec<bool>, TransportError> {
        let live: std::collections::HashSet<String> = self
            .live_nodes()
            .await?
            .into_iter()
            .map(|(node, _)| node)
            .collect();
        Ok(nodes.iter().map(|n| live.contains(n)).collect())
    }

    /// Publishes to a channel; returns how many subscribers received it (at-most-once).
    async fn publish(&self, channel: &str, payload: String) -> Result<usize, TransportError>;

    /// Subscribes to a channel.
    async fn subscribe(&self, channel: &str) -> Result<Subscription, TransportError>;

    /// Subscribers of a channel right now.
    async fn subscribers(&self, channel: &str) -> Result<usize, TransportError>;

    /// The value at `key`.
    async fn get(&self, key: &str) -> Result<Option<String>, TransportError>;

    /// Pushes `payload` to its route's queue — the owner's, while the owner heartbeats, else the
    /// fallback — after reading the position of the route's stream, if it names one (a reader
    /// from there misses nothing the message causes). Returns the queue and the position. One
    /// atomic round trip on Redis: a client's send costs one wait, not three.
    async fn push_routed(
        &self,
        route: &Route<'_>,
        payload: String,
    ) -> Result<(MailboxAddress, Option<String>), TransportError> {
        let tail = match route.tail_of {
            Some(stream) => Some(self.stream_tail(stream).await?),
            None => None,
        };
        let owner = match route.owner {
            Some(key) => match self.get(key).await? {
                Some(node) if self.heartbeating(std::slice::from_ref(&node)).await? == [true] => {
                    Some(node)
                }
                _ => None,
            },
            None => None,
        };
        let to = match owner {
            Some(node) => MailboxAddress::directed(route.owner_queue, node),
            None => route.fallback.clone(),
        };
        self.push(&to, payload).await?;
        Ok((to, tail))
    }

    /// Sets `key`, expiring after `ttl` if given.
    async fn set(
        &self,
        key: &str,
        value: String,
        ttl: Option<Duration>,
    ) -> Result<(), TransportError>;

    /// Sets `key` to `value` only if it currently holds `expected` (`None`: absent); returns
    /// whether it was set. Two nodes taking over the same key cannot both win.
    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        value: String,
    ) -> Result<bool, TransportError>;

    /// Deletes `key`; returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, TransportError>;

    /// Takes the lease `key` for `owner` until `ttl` passes, unless someone holds it (SET NX
    /// with an expiry); returns whether it was taken.
    async fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, TransportError>;

    /// Gives the lease `key` back if `owner` still holds it (one that expired and was taken
    /// by another stays theirs); returns whether it was given back.
    async fn release_lease(&self, key: &str, owner: &str) -> Result<bool, TransportError>;

    /// Pushes `payload` to `to` and sets `marker` to `value` for `ttl`, in one atomic step —
    /// unless `marker` is set, when nothing is pushed and its value is returned. A message
    /// pushed this way is pushed once however often, and by however many processes, it is
    /// tried.
    async fn push_once(
        &self,
        to: &MailboxAddress,
        payload: String,
        marker: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<String>, TransportError>;

    /// Appends an answer to the reply list `key` (RPUSH), which expires after `ttl`.
    async fn reply(&self, key: &str, payload: String, ttl: Duration) -> Result<(), TransportError>;

    /// Waits up to `timeout` for an answer on any of the reply lists `keys` (BLPOP) and
    /// returns `(key, answer)`.
    async fn take_reply(
        &self,
        keys: &[String],
        timeout: Duration,
    ) -> Result<Option<(String, String)>, TransportError>;

    /// Publishes each event on its channel and appends those with a stream to it (keeping
    /// about `cap` entries per stream; on Redis one entry per stream and batch holds the
    /// batch's events for it), in order, at once and in one round trip; returns each event's
    /// stream entry id (empty for events without a stream). A [`Attempt::Retry`] of a batch
    /// that was applied (its answer lost with the connection) adds nothing and returns empty
    /// ids; a first attempt is not checked (it cannot have been applied).
    async fn emit(
        &self,
        events: &[Emit],
        cap: usize,
        attempt: Attempt,
    ) -> Result<Vec<String>, TransportError>;

    /// The id of the newest entry of `stream` ([`STREAM_START`] when empty).
    async fn stream_tail(&self, stream: &str) -> Result<String, TransportError>;

    /// Entries after the given ids, `(stream, id)` pairs, waiting up to `timeout` for the
    /// first one; in stream order within each stream.
    async fn read_streams(
        &self,
        after: &[(String, String)],
        timeout: Duration,
    ) -> Result<Vec<StreamEntry>, TransportError>;

    /// Removes `key` (a value or a stream) after `ttl`; returns whether it exists.
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, TransportError>;

    /// Drops what this process holds open for `node`'s receives (its blocking fetches), as
    /// the node's process dying would. Its in-flight messages stay for [`Transport::reclaim`].
    async fn release(&self, node: &str) {
        let _ = node;
    }
}

/// Encodes `envelope` and pushes it to `to`.
pub async fn send_envelope<T: Serialize + Sync>(
    transport: &dyn Transport,
    to: &MailboxAddress,
    envelope: &Envelope<T>,
) -> Result<(), TransportError> {
    transport.push(to, envelope.encode()?).await
}

/// Receives one message and decodes it. A message that does not decode is moved to the
/// dead-letter list with the reason (never lost) and reported as an error.
pub async fn receive_envelope<T: DeserializeOwned>(
    transport: &dyn Transport,
    node: &str,
    from: &[MailboxAddress],
    timeout: Duration,
) -> Result<Option<(Delivery, Envelope<T>)>, TransportError> {
    let Some(delivery) = transport.receive(node, from, timeout).await? else {
        return Ok(None);
    };
    match Envelope::decode(&delivery.payload) {
        Ok(envelope) => Ok(Some((delivery, envelope))),
        Err(err) => {
            transport.dead_letter(&delivery, &err.to_string()).await?;
            Err(err.into())
        }
    }
}

/// Returns the in-flight messages of every node that has received work but whose heartbeat
/// expired to the queues they came from. Returns `(node, messages returned)` for each dead
/// node that held any.
pub async fn reap_dead_nodes(
    transport: &dyn Transport,
) -> Result<Vec<(String, usize)>, TransportError> {
    let workers = transport.workers().await?;
    let live = transport.heartbeating(&workers).await?;
    let mut reaped = Vec::new();
    for (node, live) in workers.into_iter().zip(live) {
        if live {
            continue;
        }
        let returned = transport.reclaim(&node).await?;
        if returned > 0 {
            tracing::warn!(%node, returned, "reclaimed the in-flight work of a dead node");
            reaped.push((node, returned));
        }
    }
    Ok(reaped)
}
