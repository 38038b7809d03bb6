//! A node's link to the cluster's transport that can be cut: while cut, everything the node
//! asks of Redis (or the in-memory transport) fails as if the network were down. The node
//! keeps running — it finishes its turns, its heartbeat lapses, other nodes reclaim its
//! in-flight work — and when the link heals it reconnects and its late acknowledgements are
//! refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use turnstone_runtime::remote::{
    Attempt, DeadLetter, Delivery, Emit, MailboxAddress, StreamEntry, Subscription, Transport,
    TransportError,
};

/// One node's view of the shared transport, with a switch.
pub struct Link {
    inner: Arc<dyn Transport>,
    node: String,
    cut: AtomicBool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("node", &self.node)
            .field("cut", &self.cut.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Link {
    /// `node`'s link to `inner`, up.
    pub fn new(inner: Arc<dyn Transport>, node: &str) -> Arc<Self> {
        Arc::new(Self {
            inner,
            node: node.to_owned(),
            cut: AtomicBool::new(false),
        })
    }

    /// Cuts the link (and drops the node's pending fetches, as a dropped connection would).
    pub async fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        self.inner.release(&self.node).await;
    }

    /// Restores the link.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }

    fn up(&self) -> Result<(), TransportError> {
        if self.cut.load(Ordering::Relaxed) {
            Err(TransportError::Backend(format!(
                "{} is cut off from the transport (simulated partition)",
                self.node
            )))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Transport for Link {
    fn prefix(&self) -> &str {
        self.inner.prefix()
    }

    async fn push(&self, to: &MailboxAddress, payload: String) -> Result<(), TransportError> {
        self.up()?;
        self.inner.push(to, payload).await
    }

    async fn receive(
        &self,
        node: &str,
        from: &[MailboxAddress],
        timeout: Duration,
    ) -> Result<Option<Delivery>, TransportError> {
        self.up()?;
        self.inner.receive(node, from, timeout).await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError> {
        self.up()?;
        self.inner.ack(delivery).await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), TransportError> {
        self.up()?;
        self.inner.dead_letter(delivery, reason).await
    }

    async fn reclaim(&self, node: &str) -> Result<usize, TransportError> {
        self.up()?;
        self.inner.reclaim(node).await
    }

    async fn requeue(
        &self,
        from: &MailboxAddress,
        to: &MailboxAddress,
    ) -> Result<usize, TransportError> {
        self.up()?;
        self.inner.requeue(from, to).await
    }

    async fn forget_worker(&self, node: &str) -> Result<(), TransportError> {
        self.up()?;
        self.inner.forget_worker(node).await
    }

    async fn queue_len(&self, at: &MailboxAddress) -> Result<usize, TransportError> {
        self.up()?;
        self.inner.queue_len(at).await
    }

    async fn in_flight_len(&self, node: &str) -> Result<usize, TransportError> {
        self.up()?;
        self.inner.in_flight_len(node).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, TransportError> {
        self.up()?;
        self.inner.dead_letters(limit).await
    }

    async fn heartbeat(
        &self,
        node: &str,
        metadata: String,
        ttl: Duration,
    ) -> Result<(), TransportError> {
        self.up()?;
        self.inner.heartbeat(node, metadata, ttl).await
    }

    async fn live_nodes(&self) -> Result<Vec<(String, String)>, TransportError> {
        self.up()?;
        self.inner.live_nodes().await
    }

    async fn heartbeating(&self, nodes: &[String]) -> Result<Vec<bool>, TransportError> {
        self.up()?;
        self.inner.heartbeating(nodes).await
    }

    async fn workers(&self) -> Result<Vec<String>, TransportError> {
        self.up()?;
        self.inner.workers().await
    }

    async fn publish(&self, channel: &str, payload: String) -> Result<usize, TransportError> {
        self.up()?;
        self.inner.publish(channel, payload).await
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription, TransportError> {
        self.up()?;
        self.inner.subscribe(channel).await
    }

    async fn subscribers(&self, channel: &str) -> Result<usize, TransportError> {
        self.up()?;
        self.inner.subscribers(channel).await
    }

    async fn get(&self, key: &str) -> Result<Option<String>, TransportError> {
        self.up()?;
        self.inner.get(key).await
    }

    async fn set(
        &self,
        key: &str,
        value: String,
        ttl: Option<Duration>,
    ) -> Result<(), TransportError> {
        self.up()?;
        self.inner.set(key, value, ttl).await
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        value: String,
    ) -> Result<bool, TransportError> {
        self.up()?;
        self.inner.compare_and_set(key, expected, value).await
    }

    async fn delete(&self, key: &str) -> Result<bool, TransportError> {
        self.up()?;
        self.inner.delete(key).await
    }

    async fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, TransportError> {
        self.up()?;
        self.inner.acquire_lease(key, owner, ttl).await
    }

    async fn release_lease(&self, key: &str, owner: &str) -> Result<bool, TransportError> {
        self.up()?;
        self.inner.release_lease(key, owner).await
    }

    async fn push_once(
        &self,
        to: &MailboxAddress,
        payload: String,
        marker: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<String>, TransportError> {
        self.up()?;
        self.inner.push_once(to, payload, marker, value, ttl).await
    }

    async fn reply(&self, key: &str, payload: String, ttl: Duration) -> Result<(), TransportError> {
        self.up()?;
        self.inner.reply(key, payload, ttl).await
    }

    async fn take_reply(
        &self,
        keys: &[String],
        timeout: Duration,
    ) -> Result<Option<(String, String)>, TransportError> {
        self.up()?;
        self.inner.take_reply(keys, timeout).await
    }

    async fn emit(
        &self,
        events: &[Emit],
        cap: usize,
        attempt: Attempt,
    ) -> Result<Vec<String>, TransportError> {
        self.up()?;
        self.inner.emit(events, cap, attempt).await
    }

    async fn stream_tail(&self, stream: &str) -> Result<String, TransportError> {
        self.up()?;
        self.inner.stream_tail(stream).await
    }

    async fn read_streams(
        &self,
        after: &[(String, String)],
        timeout: Duration,
    ) -> Result<Vec<StreamEntry>, TransportError> {
        self.up()?;
        self.inner.read_streams(after, timeout).await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, TransportError> {
        self.up()?;
        self.inner.expire(key, ttl).await
    }

    async fn release(&self, node: &str) {
        self.inner.release(node).await;
    }
}
