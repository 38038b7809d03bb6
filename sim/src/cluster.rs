//! A cluster of simulated nodes on one transport: each node is a real [`Node`] (workstream
//! manager, workstream actors, tool-call actors, provider actor) with the simulated model and
//! tools plugged in, and a real [`Bridge`] actor under the node's supervisor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use ractor::ActorCell;
use rand::SeedableRng;
use rand::rngs::StdRng;
use turnstone_actors::config::TurnstoneConfig;
use turnstone_actors::mq::{Bridge, BridgeArgs, BridgeMsg, BridgeSettings, Keys};
use turnstone_actors::node::{Node, NodeError, NodeOptions};
use turnstone_actors::provider::{Backend, PoolOptions, RetryPolicy};
use turnstone_actors::tools::ToolRegistry;
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::remote::Transport;
use turnstone_runtime::supervise::{ChildSpec, Restart};

use crate::behaviour::{Behaviour, TOOLS};
use crate::model::{SimModel, SimTool};
use crate::partition::Link;
use crate::port::SimPort;

/// How long a closed workstream's event stream stays readable.
const CLOSED_STREAM_TTL: Duration = Duration::from_secs(60);

/// Nodes started at once.
const START_CONCURRENCY: usize = 64;

/// Starting a simulated node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The node itself.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Its bridge.
    #[error("bridge of {node} failed to start: {reason}")]
    Bridge {
        /// Which node.
        node: String,
        /// Why.
        reason: String,
    },
}

/// How the cluster's nodes are set up.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Nodes.
    pub nodes: usize,
    /// Workstreams per node (`[server] max_workstreams`).
    pub max_workstreams: usize,
    /// The simulated model and tools.
    pub behaviour: Behaviour,
    /// Seeds each node's generator (with its index).
    pub seed: u64,
    /// Heartbeat TTL of the bridges.
    pub heartbeat_ttl: Duration,
}

/// One simulated node.
pub struct SimNode {
    /// Its id (`sim-0000`, …).
    pub id: String,
    node: Option<Arc<Node>>,
    link: Arc<Link>,
}

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("id", &self.id)
            .field("alive", &self.node.is_some())
            .finish()
    }
}

impl SimNode {
    /// Whether it runs.
    pub fn alive(&self) -> bool {
        self.node.is_some()
    }

    /// Its open workstreams (0 once killed).
    pub fn workstreams(&self) -> usize {
        self.node.as_ref().map_or(0, |n| n.manager.list().len())
    }
}

/// The simulated nodes.
pub struct SimCluster {
    transport: Arc<dyn Transport>,
    nodes: Vec<SimNode>,
}

impl std::fmt::Debug for SimCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCluster")
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

/// The id of node `i`.
pub fn node_id(i: usize) -> String {
    format!("sim-{i:04}")
}

fn node_config(spec: &ClusterSpec) -> TurnstoneConfig {
    let mut config = TurnstoneConfig::default();
    config.model.name = Some("sim".into());
    config.model.context_window = spec.behaviour.context_window;
    config.server.max_workstreams = spec.max_workstreams.max(1);
    config.session.auto_compact_pct = 0.0;
    config
}

async fn start_node(
    spec: &ClusterSpec,
    transport: Arc<dyn Transport>,
    index: usize,
    on_started: &(dyn Fn() + Sync),
) -> Result<SimNode, ClusterError> {
    let id = node_id(index);
    let behaviour = Arc::new(spec.behaviour.clone());
    let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(
        spec.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )));
    let model = SimModel::new(behaviour.clone(), rng.clone());
    let options = NodeOptions {
        pool: PoolOptions {
            open_timeout: Duration::from_secs(300),
            retry: RetryPolicy {
                retries: 0,
                backoff: Backoff::none(),
            },
            probes: false,
            detect: None,
        },
        workdir: std::env::temp_dir(),
        node_id: id.clone(),
        storage: false,
        model_backend: Some(Backend::Custom(Arc::new(model))),
    };
    let tools = move |_: Option<_>, _: &_, _: &_, _: Vec<_>| {
        let mut registry = ToolRegistry::new();
        for name in TOOLS {
            registry.register(Arc::new(SimTool::new(name, behaviour.clone(), rng.clone())));
        }
        registry
    };
    let node = Arc::new(Node::start(node_config(spec), tools, options).await?);
    let settings = BridgeSettings {
        heartbeat_ttl: spec.heartbeat_ttl,
        // Nobody reads a simulated workstream's stream long after it closed.
        closed_stream_ttl: CLOSED_STREAM_TTL,
        ..BridgeSettings::default()
    };
    let link = Link::new(transport, &id);
    let args = BridgeArgs {
        transport: link.clone(),
        port: SimPort::new(node.clone()),
        settings,
    };
    let (child, _) = ChildSpec::actor("bridge", Restart::Permanent, move || (Bridge, args.clone()));
    node.supervisor
        .start_child(child)
        .await
        .map_err(|e| ClusterError::Bridge {
            node: id.clone(),
            reason: e.to_string(),
        })?;
    on_started();
    Ok(SimNode {
        id,
        node: Some(node),
        link,
    })
}

/// Every actor under `root`, root first.
fn tree(root: ActorCell) -> Vec<ActorCell> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let children = out[i].get_children();
        out.extend(children);
        i += 1;
    }
    out
}

impl SimCluster {
    /// Starts `spec.nodes` nodes on `transport`; `on_started` is called as each one is up.
    pub async fn start(
        spec: &ClusterSpec,
        transport: Arc<dyn Transport>,
        on_started: &(dyn Fn() + Sync),
    ) -> Result<Self, ClusterError> {
        let started: Vec<Result<SimNode, ClusterError>> = futures::stream::iter(0..spec.nodes)
            .map(|i| start_node(spec, transport.clone(), i, on_started))
            .buffered(START_CONCURRENCY)
            .collect()
            .await;
        let nodes = started.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(Self { transport, nodes })
    }

    /// The nodes, in index order.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// The transport they share.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Kills node `index` abruptly, as a crashed process: every actor of it is killed (no
    /// clean-up runs: its heartbeat lapses on its own, its in-flight messages stay for the
    /// other nodes' reapers) and the transport drops its pending fetches.
    pub async fn kill(&mut self, index: usize) -> bool {
        let Some(sim) = self.nodes.get_mut(index) else {
            return false;
        };
        let Some(node) = sim.node.take() else {
            return false;
        };
        for cell in tree(node.supervisor.actor().get_cell()) {
            cell.kill();
        }
        self.transport.release(&sim.id).await;
        tracing::debug!(node = %sim.id, "node killed");
        true
    }

    /// Crashes node `index`'s bridge actor alone (killed: no clean-up runs); the node's
    /// supervisor starts a new one, which must go on serving the node's workstreams. False if
    /// the node is not running.
    pub fn crash_bridge(&self, index: usize) -> bool {
        let Some(node) = self.nodes.get(index).and_then(|n| n.node.as_ref()) else {
            return false;
        };
        let bridge = node
            .supervisor
            .actor()
            .get_cell()
            .get_children()
            .into_iter()
            .find(|cell| cell.is_message_type_of::<BridgeMsg>() == Some(true));
        match bridge {
            Some(cell) => {
                cell.kill();
                true
            }
            None => false,
        }
    }

    /// Cuts node `index` off from the transport (a network partition) until [`heal`](Self::heal).
    pub async fn partition(&self, index: usize) -> bool {
        match self.nodes.get(index) {
            Some(sim) if sim.alive() => {
                sim.link.cut().await;
                true
            }
            _ => false,
        }
    }

    /// Reconnects node `index`.
    pub fn heal(&self, index: usize) {
        if let Some(sim) = self.nodes.get(index) {
            sim.link.heal();
        }
    }

    /// Cuts every node off from the transport at once, as a Redis restart does to every
    /// connection, until [`heal_all`](Self::heal_all).
    pub async fn cut_all(&self) {
        for sim in self.nodes.iter().filter(|n| n.alive()) {
            sim.link.cut().await;
        }
    }

    /// Reconnects every node.
    pub fn heal_all(&self) {
        for sim in &self.nodes {
            sim.link.heal();
        }
    }

    /// Stops every running node at once and removes their heartbeats, so they leave the
    /// cluster now rather than when their heartbeats would lapse. (A graceful stop node by
    /// node waits on each bridge; a thousand of them would take minutes.)
    pub async fn shutdown(&mut self) {
        let keys = Keys::new(self.transport.prefix());
        for index in 0..self.nodes.len() {
            if self.kill(index).await {
                let id = &self.nodes[index].id;
                let _ = self.transport.delete(&keys.node(id)).await;
            }
        }
    }
}
