//! Which node handles a piece of work: directed, owner, then least-loaded or rendezvous.
//!
//! The rules follow Turnstone's routing: work aimed at a node (`target_node`) goes there; work
//! for a workstream goes to the node that owns it; anything else goes to the least-loaded live
//! node with room. A dead owner is skipped, so its workstreams fail over. Where a choice must be
//! stable across nodes without coordination (every router picks the same node for a key),
//! [`rendezvous`] hashing is used.

use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// One candidate node and its load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLoad {
    /// The node's id.
    pub node: String,
    /// Work items it holds now.
    pub load: u32,
    /// Work items it may hold (0 = unknown, treated as unlimited).
    pub capacity: u32,
    /// Whether the node is live (heartbeat fresh and serving).
    pub alive: bool,
}

impl NodeLoad {
    fn has_room(&self) -> bool {
        self.alive && (self.capacity == 0 || self.load < self.capacity)
    }

    /// Load as a fraction of capacity (load itself when capacity is unknown).
    fn ratio(&self) -> f64 {
        if self.capacity == 0 {
            f64::from(self.load)
        } else {
            f64::from(self.load) / f64::from(self.capacity)
        }
    }
}

/// What is being placed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlacementRequest<'a> {
    /// The work's key (a workstream id, a correlation id): used for stable tie-breaks.
    pub key: &'a str,
    /// An explicit target node, if the sender named one.
    pub target: Option<&'a str>,
    /// The node that owns the key now, if any.
    pub owner: Option<&'a str>,
}

/// Which rule chose the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementRule {
    /// The sender named the node.
    Directed,
    /// The node owns the key.
    Owner,
    /// The live node with the lowest load ratio.
    LeastLoaded,
    /// The live node with the highest rendezvous score for the key.
    Rendezvous,
}

/// The chosen node and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The chosen node.
    pub node: String,
    /// The rule that chose it.
    pub rule: PlacementRule,
}

/// No node can take the work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The named target is unknown or not live.
    #[error("target node {0:?} is not available")]
    TargetUnavailable(String),
    /// Every live node is full, or none is live.
    #[error("no live node has room ({live} live of {total})")]
    NoNodeAvailable {
        /// Live nodes.
        live: usize,
        /// All known nodes.
        total: usize,
    },
}

/// The fallback rule when the work has no target and no live owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// Lowest load ratio; ties broken by rendezvous score so all routers agree.
    #[default]
    LeastLoaded,
    /// Highest rendezvous score among live nodes with room: stable per key.
    Rendezvous,
}

impl Placement {
    /// Chooses a node for `request` among `nodes`.
    pub fn place(
        &self,
        request: PlacementRequest<'_>,
        nodes: &[NodeLoad],
    ) -> Result<Placed, PlacementError> {
        if let Some(target) = request.target {
            return match nodes.iter().find(|n| n.node == target) {
                Some(n) if n.alive => Ok(Placed {
                    node: n.node.clone(),
                    rule: PlacementRule::Directed,
                }),
                _ => Err(PlacementError::TargetUnavailable(target.to_owned())),
            };
        }
        if let Some(owner) = request.owner
            && nodes.iter().any(|n| n.node == owner && n.alive)
        {
            return Ok(Placed {
                node: owner.to_owned(),
                rule: PlacementRule::Owner,
            });
        }
        let candidates = nodes.iter().filter(|n| n.has_room());
        let chosen = match self {
            Self::LeastLoaded => candidates
                .min_by(|a, b| {
                    a.ratio()
                        .total_cmp(&b.ratio())
                        .then_with(|| score(request.key, &b.node).cmp(&score(request.key, &a.node)))
                })
                .map(|n| (n, PlacementRule::LeastLoaded)),
            Self::Rendezvous => candidates
                .max_by_key(|n| score(request.key, &n.node))
                .map(|n| (n, PlacementRule::Rendezvous)),
        };
        chosen
            .map(|(n, rule)| Placed {
                node: n.node.clone(),
                rule,
            })
            .ok_or_else(|| PlacementError::NoNodeAvailable {
                live: nodes.iter().filter(|n| n.alive).count(),
                total: nodes.len(),
            })
    }
}

/// Rendezvous (highest-random-weight) hashing: the node among `nodes` with the highest score for
/// `key`. Every process computes the same answer; removing a node moves only its own keys.
pub fn rendezvous<'a>(key: &str, nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nodes.into_iter().max_by_key(|node| score(key, node))
}

/// A stable 64-bit score of (key, node): xxh3 of the node seeded by the key's hash.
fn score(key: &str, node: &str) -> u64 {
    xxh3_64_with_seed(node.as_bytes(), xxh3_64_with_seed(key.as_bytes(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, load: u32, capacity: u32, alive: bool) -> NodeLoad {
        NodeLoad {
            node: id.into(),
            load,
            capacity,
            alive,
        }
    }

    fn req<'a>(
        key: &'a str,
        target: Option<&'a str>,
        owner: Option<&'a str>,
    ) -> PlacementRequest<'a> {
        PlacementRequest { key, target, owner }
    }

    #[test]
    fn directed_work_goes_to_its_target_even_when_busier() {
        let nodes = [node("a", 9, 10, true), node("b", 0, 10, true)];
        let placed = Placement::default().place(req("k", Some("a"), Some("b")), &nodes);
        assert_eq!(
            placed,
            Ok(Placed {
                node: "a".into(),
                rule: PlacementRule::Directed
            })
        );
    }

    #[test]
    fn directed_work_to_a_dead_or_unknown_node_is_refused() {
        let nodes = [node("a", 0, 10, false)];
        assert_eq!(
            Placement::default().place(req("k", Some("a"), None), &nodes),
            Err(PlacementError::TargetUnavailable("a".into()))
        );
        assert_eq!(
            Placement::default().place(req("k", Some("zz"), None), &nodes),
            Err(PlacementError::TargetUnavailable("zz".into()))
        );
    }

    #[test]
    fn owned_work_goes_to_a_live_owner_and_fails_over_from_a_dead_one() {
        let mut nodes = vec![node("a", 5, 10, true), node("b", 1, 10, true)];
        let placed = Placement::default().place(req("ws1", None, Some("a")), &nodes);
        assert_eq!(placed.map(|p| p.rule), Ok(PlacementRule::Owner));

        nodes[0].alive = false;
        assert_eq!(
            Placement::default().place(req("ws1", None, Some("a")), &nodes),
            Ok(Placed {
                node: "b".into(),
                rule: PlacementRule::LeastLoaded
            })
        );
    }

    #[test]
    fn least_loaded_compares_ratios_and_skips_full_nodes() {
        let nodes = [
            node("full", 2, 2, true),
            node("half", 5, 10, true),
            node("third", 1, 3, true),
            node("dead", 0, 10, false),
        ];
        let placed = Placement::LeastLoaded.place(req("k", None, None), &nodes);
        assert_eq!(placed.map(|p| p.node), Ok("third".into()));
    }

    #[test]
    fn no_room_anywhere_is_a_clear_error() {
        let nodes = [node("a", 2, 2, true), node("b", 0, 2, false)];
        let err = Placement::LeastLoaded
            .place(req("k", None, None), &nodes)
            .unwrap_err();
        assert_eq!(err, PlacementError::NoNodeAvailable { live: 1, total: 2 });
        assert_eq!(err.to_string(), "no live node has room (1 live of 2)");
    }

    #[test]
    fn ties_are_broken_the_same_way_by_every_router() {
        let nodes: Vec<_> = (0..8)
            .map(|i| node(&format!("n{i}"), 0, 10, true))
            .collect();
        let mut reversed = nodes.clone();
        reversed.reverse();
        for key in ["a", "b", "c", "ws-42"] {
            let one = Placement::LeastLoaded.place(req(key, None, None), &nodes);
            let other = Placement::LeastLoaded.place(req(key, None, None), &reversed);
            assert_eq!(
                one, other,
                "order of the node list must not matter for {key}"
            );
        }
    }

    #[test]
    fn rendezvous_is_stable_and_moves_only_the_removed_nodes_keys() {
        let all: Vec<String> = (0..10).map(|i| format!("node-{i}")).collect();
        let keys: Vec<String> = (0..1000).map(|i| format!("ws-{i}")).collect();
        let before: Vec<&str> = keys
            .iter()
            .filter_map(|k| rendezvous(k, all.iter().map(String::as_str)))
            .collect();
        // spread: every node gets some keys
        for n in &all {
            let share = before.iter().filter(|b| **b == n.as_str()).count();
            assert!((50..=150).contains(&share), "{n} got {share} of 1000 keys");
        }
        let without_3: Vec<&str> = all
            .iter()
            .map(String::as_str)
            .filter(|n| *n != "node-3")
            .collect();
        for (k, was) in keys.iter().zip(&before) {
            let now = rendezvous(k, without_3.iter().copied());
            if *was != "node-3" {
                assert_eq!(now, Some(*was), "key {k} moved although its node stayed");
            } else {
                assert_ne!(now, Some("node-3"));
            }
        }
    }

    #[test]
    fn rendezvous_placement_skips_nodes_without_room() {
        let nodes = [node("a", 0, 1, true), node("b", 0, 1, true)];
        let first = Placement::Rendezvous
            .place(req("k", None, None), &nodes)
            .map(|p| p.node);
        let mut nodes2 = nodes.clone();
        let idx = nodes2
            .iter()
            .position(|n| Ok(&n.node) == first.as_ref())
            .unwrap_or(0);
        nodes2[idx].load = 1;
        let second = Placement::Rendezvous
            .place(req("k", None, None), &nodes2)
            .map(|p| p.node);
        assert_ne!(first, second);
    }
}
