//! Once a second: time-outs of reviews, the heartbeat while the node can work, and reaping the
//! in-flight work of nodes that stopped heartbeating.

use super::{BridgeState, FORGET_AFTER, Review, Waiting, lock};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;
use turnstone_runtime::remote::{Transport, TransportError};

/// How many live successors on the ring of workers a node watches (see `reap`).
const REAP_WATCH: usize = 2;

/// How soon a node that cannot work is checked again.
const RECHECK_WHILE_UNABLE: Duration = Duration::from_secs(2);

impl BridgeState {
    pub(super) async fn tick(&mut self) {
        // A full node looks for room again once a second, whatever it heard.
        self.room.store(true, Ordering::Relaxed);
        let now = Instant::now();
        let expired: Vec<Waiting> = {
            let mut waiting = lock(&self.waiting);
            let keys: Vec<String> = waiting
                .iter()
                .filter(|(_, w)| w.deadline <= now)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| waiting.remove(k)).collect()
        };
        for waiting in expired {
            tracing::warn!(ws_id = %waiting.ws_id, request_id = %waiting.request_id, "review timed out");
            let answered = match waiting.review {
                Review::Approval => {
                    self.port
                        .approve(
                            &waiting.ws_id,
                            false,
                            Some("Approval timed out".into()),
                            false,
                        )
                        .await
                }
                Review::Plan => self.port.plan_feedback(&waiting.ws_id, "reject").await,
            };
            if let Err(e) = answered {
                tracing::warn!(error = %e, "timed-out review not answered");
            }
            self.settle(&waiting).await;
        }
        if now >= self.next_heartbeat {
            self.heartbeat().await;
            if let Err(e) = self.reap().await {
                tracing::warn!(error = %e, "reaping failed");
            }
        }
    }

    /// Returns the work of nodes whose heartbeat expired: their in-flight messages to the
    /// queues they came from, and what waits in their own queue to the shared one (clients
    /// still route follow-ups to a dead owner until another node takes its workstreams over).
    /// A dead node found empty [`FORGET_AFTER`] times in a row is forgotten.
    ///
    /// A node watches its successors on the ring of workers (sorted by name, after its own
    /// name), until it has seen [`REAP_WATCH`] of them heartbeat: a dead node is watched by
    /// every live node within that many live nodes before it, so by at least one (the
    /// nearest live node before a run of dead ones walks through the whole run). Each reap
    /// asks about a handful of nodes, not every worker: with every node asking about every
    /// other, a cluster of n nodes asked n² times per heartbeat interval.
    async fn reap(&mut self) -> Result<(), TransportError> {
        if Instant::now() < self.reap_after {
            return Ok(());
        }
        let workers = self.transport.workers().await?;
        let ring = Ring::after(workers, &self.me);
        for node in ring.walk(&*self.transport).await? {
            match node {
                Watched::Live(node) => {
                    self.empty_reaps.remove(node);
                }
                Watched::Dead(node) => self.reap_node(node).await?,
            }
        }
        Ok(())
    }

    /// Returns a dead node's work to the queues; forgets it after [`FORGET_AFTER`] empty
    /// reaps in a row.
    async fn reap_node(&mut self, node: &str) -> Result<(), TransportError> {
        let returned = self.transport.reclaim(node).await?;
        let moved = self
            .transport
            .requeue(&self.keys.directed(node), &self.keys.shared())
            .await?;
        if returned + moved > 0 {
            tracing::warn!(%node, returned, moved, "returned a dead node's work to the queues");
            self.empty_reaps.remove(node);
            return Ok(());
        }
        let empty = self.empty_reaps.entry(node.to_owned()).or_insert(0);
        *empty += 1;
        if *empty >= FORGET_AFTER {
            self.transport.forget_worker(node).await?;
            self.empty_reaps.remove(node);
        }
        Ok(())
    }

    /// Renews the heartbeat — only while the node really works: the consumer took a turn at
    /// the queue recently and the node answers a health check. A node that is up but stuck
    /// stops heartbeating, so it is no longer routed to and its work is reclaimed.
    pub(super) async fn heartbeat(&mut self) {
        let interval = (self.settings.heartbeat_ttl / 2).max(Duration::from_millis(500));
        self.next_heartbeat = Instant::now() + interval;
        let since_start = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last_poll = self.last_poll.load(Ordering::Relaxed);
        let stalled_after = self.settings.poll.as_millis() as u64 * 3 + 5_000;
        let consuming = last_poll == 0 && since_start < stalled_after
            || since_start.saturating_sub(last_poll) < stalled_after;
        let health = tokio::time::timeout(Duration::from_secs(5), self.port.health()).await;
        // "degraded": the model backend's circuit is open, so turns would fail here.
        let healthy = matches!(&health, Ok(Ok(h)) if h["status"] == "ok");
        let accepting = consuming && healthy;
        if self.accepting.swap(accepting, Ordering::Relaxed) != accepting {
            if accepting {
                tracing::info!("node can work again: taking messages and heartbeating");
            } else {
                tracing::error!(
                    consuming,
                    healthy,
                    "node cannot work: no longer taking messages or heartbeating"
                );
                // Blocking fetches still pending would go on taking messages (also those the
                // reaper returns to this node's queue): dropped now, giving back what they
                // took.
                self.transport.release(&self.me).await;
            }
        }
        if !accepting {
            // Look again soon: a node waiting for its model should take work once it can.
            self.next_heartbeat = Instant::now() + interval.min(RECHECK_WHILE_UNABLE);
            return;
        }
        let mut metadata = json!({
            "server_url": self.port.server_url(),
            "started": self.started,
            "workstreams": self.ws.len(),
        });
        if let Some(max) = self.port.max_workstreams() {
            metadata["max_ws"] = json!(max);
        }
        if let Err(e) = self
            .transport
            .heartbeat(&self.me, metadata.to_string(), self.settings.heartbeat_ttl)
            .await
        {
            // Retry at the next tick, not a whole interval later: the key has at most half of
            // its TTL left, and Redis may just be restarting.
            self.next_heartbeat = Instant::now();
            self.reap_after = Instant::now() + interval;
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
}

/// The workers after a node on the ring of workers (sorted by name, wrapping round), the node
/// itself left out.
struct Ring(Vec<String>);

/// What a walk of the ring found of a worker.
#[derive(Debug, PartialEq, Eq)]
enum Watched<'a> {
    Live(&'a str),
    Dead(&'a str),
}

impl Ring {
    fn after(mut workers: Vec<String>, me: &str) -> Self {
        workers.retain(|w| w != me);
        workers.sort();
        let split = workers.partition_point(|w| w.as_str() < me);
        workers.rotate_left(split);
        Self(workers)
    }

    /// Asks about the ring's workers in order, [`REAP_WATCH`] at a time (one round trip
    /// each), until [`REAP_WATCH`] of them heartbeat: what it found of each worker it asked
    /// about.
    async fn walk(&self, transport: &dyn Transport) -> Result<Vec<Watched<'_>>, TransportError> {
        let mut found = Vec::new();
        let mut live_seen = 0;
        for chunk in self.0.chunks(REAP_WATCH) {
            if live_seen >= REAP_WATCH {
                break;
            }
            let live = transport.heartbeating(chunk).await?;
            for (node, live) in chunk.iter().zip(live) {
                if live {
                    live_seen += 1;
                    found.push(Watched::Live(node));
                } else {
                    found.push(Watched::Dead(node));
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use turnstone_runtime::remote::MemoryTransport;

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_ring_runs_round_from_after_me_without_me() {
        let workers = names(&["n3", "n1", "n4", "n2"]);
        assert_eq!(
            Ring::after(workers.clone(), "n2").0,
            names(&["n3", "n4", "n1"])
        );
        assert_eq!(
            Ring::after(workers.clone(), "n4").0,
            names(&["n1", "n2", "n3"])
        );
        // A node that holds no work yet still has its place on the ring.
        assert_eq!(
            Ring::after(workers, "n25").0,
            names(&["n3", "n4", "n1", "n2"])
        );
        assert!(Ring::after(names(&["n1"]), "n1").0.is_empty());
    }

    /// Every dead worker is found by some live node's walk, asked of a real transport's
    /// heartbeats: the nearest live node before it walks until it has seen `REAP_WATCH` live
    /// ones, and none is live in between. Each walk asks about a handful, not every worker.
    #[tokio::test]
    async fn every_dead_worker_is_found_by_a_live_nodes_walk() {
        let workers: Vec<String> = (0..40).map(|i| format!("n{i:02}")).collect();
        for pattern in [
            0b1u64,
            0b1011,
            0xF0F0,
            0xFFFF_FFF0,
            0x8000_0001,
            0x000F_0F0F_0F0F,
        ] {
            let dead = |w: &str| pattern >> w[1..].parse::<u32>().unwrap_or(0) & 1 == 1;
            let transport = MemoryTransport::new();
            for node in workers.iter().filter(|w| !dead(w)) {
                transport
                    .heartbeat(node, String::new(), Duration::from_secs(60))
                    .await
                    .unwrap();
            }
            let mut found = BTreeSet::new();
            let mut most_asked = 0;
            for me in workers.iter().filter(|w| !dead(w)) {
                let ring = Ring::after(workers.clone(), me);
                let walk = ring.walk(&transport).await.unwrap();
                most_asked = most_asked.max(walk.len());
                for watched in walk {
                    match watched {
                        Watched::Dead(node) => {
                            assert!(dead(node), "{node} is live");
                            found.insert(node.to_owned());
                        }
                        Watched::Live(node) => assert!(!dead(node), "{node} is dead"),
                    }
                }
            }
            let all_dead: BTreeSet<String> = workers.iter().filter(|w| dead(w)).cloned().collect();
            assert_eq!(found, all_dead, "pattern {pattern:#x}");
            let longest_dead_run = (0..40)
                .map(|start| {
                    (0..40)
                        .take_while(|k| pattern >> ((start + k) % 40) & 1 == 1)
                        .count()
                })
                .max()
                .unwrap_or(0);
            assert!(
                most_asked <= longest_dead_run + 2 * REAP_WATCH,
                "a walk asked about {most_asked} workers (pattern {pattern:#x})"
            );
        }
    }
}
