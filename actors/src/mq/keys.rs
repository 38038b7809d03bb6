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

    /// `{prefix}:{kind}:{name}`, built without the formatting machinery: the bridge makes
    /// two of these for every event it relays.
    fn key(&self, kind: &str, name: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + name.len() + 2);
        key.push_str(&self.prefix);
        key.push(':');
        key.push_str(kind);
        key.push(':');
        key.push_str(name);
        key
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
        self.key("resp", id)
    }

    /// The node serving a workstream.
    pub fn owner(&self, ws_id: &str) -> String {
        self.key("ws", ws_id)
    }

    /// A node's heartbeat.
    pub fn node(&self, node: &str) -> String {
        self.key("node", node)
    }

    /// The request id of a workstream's unanswered approval or plan review.
    pub fn pending(&self, ws_id: &str) -> String {
        self.key("pending", ws_id)
    }

    /// Pub/sub channel of a workstream's events.
    pub fn ws_channel(&self, ws_id: &str) -> String {
        self.key("events", ws_id)
    }

    /// Pub/sub channel of node-wide events.
    pub fn global_channel(&self) -> String {
        self.key("events", "global")
    }

    /// Pub/sub channel for dashboards.
    pub fn cluster_channel(&self) -> String {
        self.key("events", "cluster")
    }

    /// Durable stream of a workstream's events.
    pub fn ws_stream(&self, ws_id: &str) -> String {
        self.key("stream", ws_id)
    }

    /// Durable stream of node-wide events.
    pub fn global_stream(&self) -> String {
        self.key("stream", "global")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_0_4_1_shapes_under_the_prefix() {
        let keys = Keys::new("turnstone:");
        assert_eq!(keys.ws_channel("w1"), "turnstone:events:w1");
        assert_eq!(keys.global_channel(), "turnstone:events:global");
        assert_eq!(keys.cluster_channel(), "turnstone:events:cluster");
        assert_eq!(keys.owner("w1"), "turnstone:ws:w1");
        assert_eq!(keys.node("n1"), "turnstone:node:n1");
        assert_eq!(keys.resp("r1"), "turnstone:resp:r1");
        assert_eq!(keys.pending("w1"), "turnstone:pending:w1");
        assert_eq!(keys.ws_stream("w1"), "turnstone:stream:w1");
        assert_eq!(keys.global_stream(), "turnstone:stream:global");
    }
}
