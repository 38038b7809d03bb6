//! Remote mailboxes: typed envelopes carried by a [`Transport`].
//!
//! A remote mailbox is a named queue, optionally owned by one node (`inbound` is shared,
//! `inbound:{node}` is directed). Delivery is at-least-once with the reliable-queue pattern: a
//! receiving node moves a message into its own in-flight list, acknowledges it when handled, and
//! a node that dies has its in-flight messages [reclaimed](Transport::reclaim) to the queues they
//! came from. Messages that cannot be handled go to a dead-letter list with the reason. Events
//! fan out over publish/subscribe channels.
//!
//! [`MemoryTransport`] implements this in process (one node, tests, deterministic simulation on
//! paused time); the Redis implementation lives with the cluster.

mod envelope;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redis_emit;
#[cfg(feature = "redis")]
mod redis_server;
mod transport;

#[cfg(feature = "redis")]
pub use self::redis::{DEAD_LETTER_CAP, RedisTransport};
pub use envelope::{
    ENVELOPE_VERSION, Envelope, EnvelopeError, EnvelopeMeta, META_KEY, TraceContext,
};
pub use memory::MemoryTransport;
#[cfg(feature = "redis")]
pub use redis_emit::WINDOW_VAR as GROUP_WINDOW_VAR;
#[cfg(feature = "redis")]
pub use redis_server::RedisServer;
pub use transport::{
    Attempt, DeadLetter, Delivery, Emit, MailboxAddress, Route, STREAM_START, StreamEntry,
    Subscription, SubscriptionSender, Transport, TransportError, reap_dead_nodes, receive_envelope,
    send_envelope,
};
