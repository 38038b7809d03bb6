//! Finds the nodes (SPEC §3.1 (2)): reads their heartbeats (`{p}:node:*`) every discovery
//! period and when nudged (an event named a node not known yet, or the subscription was
//! made again), announces `node_joined` / `node_lost`, and keeps one poller per node whose
//! `server_url` is http(s) — simulated nodes (`sim://…`) are known from their events only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use turnstone_actors::mq::protocol::node_entry;
use turnstone_runtime::ractor::{Actor, ActorProcessingErr, ActorRef};
use turnstone_runtime::supervise::{ChildRef, ChildSpec, Restart, SupervisorHandle, SupervisorMsg};

use super::Collector;
use super::poller::{Poller, PollerArgs};
use crate::console::model::{Heartbeat, is_http};

/// Nudges closer together than this are one discovery.
const NUDGE_DEBOUNCE: Duration = Duration::from_secs(1);

/// The discovery actor.
#[derive(Debug)]
pub struct Discovery;

/// What it starts from.
#[derive(Clone, Debug)]
pub struct DiscoveryArgs {
    /// The collector.
    pub collector: Arc<Collector>,
    /// The pollers' supervisor.
    pub pollers: ChildRef<SupervisorMsg>,
}

/// Its messages.
#[derive(Debug)]
pub enum DiscoveryMsg {
    /// The period passed.
    Tick,
    /// Look now, unless just looked.
    Nudge,
}

/// Its state.
#[derive(Debug)]
pub struct DiscoveryState {
    args: DiscoveryArgs,
    /// Pollers running: node → the URL they poll (None: started by an earlier incarnation).
    polled: BTreeMap<String, Option<String>>,
    last: Option<tokio::time::Instant>,
}

fn poller_id(node: &str) -> String {
    format!("poller:{node}")
}

impl Actor for Discovery {
    type Msg = DiscoveryMsg;
    type State = DiscoveryState;
    type Arguments = DiscoveryArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<DiscoveryMsg>,
        args: DiscoveryArgs,
    ) -> Result<DiscoveryState, ActorProcessingErr> {
        // Pollers an earlier incarnation started go on; remember them.
        let mut polled = BTreeMap::new();
        if let Some(pollers) = args.pollers.get() {
            let handle = SupervisorHandle::from_ref(pollers);
            if let Ok(children) = handle.children().await {
                for child in children {
                    if let Some(node) = child.id.strip_prefix("poller:") {
                        polled.insert(node.to_owned(), None);
                    }
                }
            }
        }
        myself.cast(DiscoveryMsg::Tick)?;
        Ok(DiscoveryState {
            args,
            polled,
            last: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<DiscoveryMsg>,
        msg: DiscoveryMsg,
        state: &mut DiscoveryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DiscoveryMsg::Tick => {
                let period = state.args.collector.settings.discovery_interval;
                myself.send_after(period, || DiscoveryMsg::Tick);
                discover(state).await?;
            }
            DiscoveryMsg::Nudge => {
                let recent = state.last.is_some_and(|t| t.elapsed() < NUDGE_DEBOUNCE);
                if !recent {
                    discover(state).await?;
                }
            }
        }
        Ok(())
    }
}

async fn discover(state: &mut DiscoveryState) -> Result<(), ActorProcessingErr> {
    let collector = state.args.collector.clone();
    state.last = Some(tokio::time::Instant::now());
    let transport = collector.link.transport().await?;
    let beats: Vec<Heartbeat> = transport
        .live_nodes()
        .await?
        .into_iter()
        .map(|(node, metadata)| Heartbeat::from_entry(&node_entry(node, &metadata)))
        .collect();
    let grace = collector.settings.lost_after.as_secs_f64();
    let change = collector
        .model_mut()
        .discovered(&beats, collector.now(), grace);
    for node in &change.joined {
        tracing::info!(%node, "node joined");
        collector.announce("node_joined", node);
    }
    for node in &change.lost {
        tracing::info!(%node, "node lost");
        collector.announce("node_lost", node);
    }
    // One poller per http(s) node.
    let wanted: BTreeMap<String, String> = collector
        .model()
        .nodes()
        .filter(|n| is_http(&n.server_url))
        .map(|n| (n.node_id.clone(), n.server_url.to_string()))
        .collect();
    let Some(pollers) = state.args.pollers.get().map(SupervisorHandle::from_ref) else {
        return Err("the pollers' supervisor is not running".into());
    };
    let stale: Vec<String> = state
        .polled
        .iter()
        .filter(|(node, url)| match wanted.get(*node) {
            None => true,
            Some(want) => url.as_ref().is_some_and(|u| u != want),
        })
        .map(|(node, _)| node.clone())
        .collect();
    for node in stale {
        let _ = pollers.terminate_child(&poller_id(&node)).await;
        state.polled.remove(&node);
    }
    for (node, url) in wanted {
        if state.polled.contains_key(&node) {
            continue;
        }
        let args = PollerArgs {
            collector: collector.clone(),
            node_id: node.clone(),
            server_url: url.clone(),
        };
        let (spec, _) = ChildSpec::actor(poller_id(&node), Restart::Transient, move || {
            (Poller, args.clone())
        });
        match pollers.start_child(spec).await {
            Ok(_) => {
                state.polled.insert(node, Some(url));
            }
            Err(e) => tracing::warn!(%node, error = %e, "cannot start the node's poller"),
        }
    }
    Ok(())
}
