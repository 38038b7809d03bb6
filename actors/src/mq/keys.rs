//! Turnstone's Redis keys and channels (SPEC §1), under a prefix (`turnstone` by default),
//! plus ours: durable event streams beside the pub/sub channels, and the pending approval of
//! a workstream (so a node that takes a workstream over asks under the same request id).

use turnstone_runtime::remote::MailboxAddress;

/// Key names under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// The queue name of inbound messages (`{p}:inbound`, `{p}:inbound:{node}`).
pub const INBOUND: &str = "inbound";

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches(':').to_owned(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The shared queue.
    pub fn shared(&self) -> MailboxAddress {
        MailboxAddress::shared(INBOUND)
    }

    /// A node's own queue.
    pub fn directed(&self, node: &str) -> MailboxAddress {
        MailboxAddress::directed(INBOUND, node)
    }

    /// Where the answer to request `id` is pushed.
    pub fn resp(&self, id: &str) -> String {
        format!("{}:resp:{id}", self.prefix)
    }

    /// The node serving a workstream.
    pub fn owner(&self, ws_id: &str) -> String {
        format!("{}:ws:{ws_id}", self.prefix)
    }

    /// A node's heartbeat.
    pub fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// The request id of a workstream's unanswered approval or plan review.
    pub fn pending(&self, ws_id: &str) -> String {
        format!("{}:pending:{ws_id}", self.prefix)
    }

    /// Pub/sub channel of a workstream's events.
    pub fn ws_channel(&self, ws_id: &str) -> String {
        format!("{}:events:{ws_id}", self.prefix)
    }

    /// Pub/sub channel of node-wide events.
    pub fn global_channel(&self) -> String {
        format!("{}:events:global", self.prefix)
    }

    /// Pub/sub channel for dashboards.
    pub fn cluster_channel(&self) -> String {
        format!("{}:events:cluster", self.prefix)
    }

    /// Durable stream of a workstream's events.
    pub fn ws_stream(&self, ws_id: &str) -> String {
        format!("{}:stream:{ws_id}", self.prefix)
    }

    /// Durable stream of node-wide events.
    pub fn global_stream(&self) -> String {
        format!("{}:stream:global", self.prefix)
    }
}
