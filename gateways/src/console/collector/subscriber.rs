//! Follows the cluster channel (`{p}:events:cluster`): every event updates the model and goes
//! to the dashboard readers. The subscription is made in the actor's first message, not at
//! start, so the collector starts while Redis is down; a subscription that cannot be made or
//! that ends (Redis went away) fails the actor, and its supervisor subscribes again after a
//! backoff — then discovery looks again, for what changed meanwhile.

use std::sync::Arc;

use tokio::task::JoinHandle;
use turnstone_runtime::ractor::{Actor, ActorProcessingErr, ActorRef};

use super::Collector;

/// The subscriber actor.
#[derive(Debug)]
pub struct Subscriber;

/// Its messages.
#[derive(Debug)]
pub enum SubscriberMsg {
    /// Subscribe now.
    Subscribe,
    /// A message of the channel.
    Event(String),
    /// The subscription ended.
    Ended,
}

/// Its state: the collector, and the task moving messages from the subscription into the
/// mailbox.
#[derive(Debug)]
pub struct SubscriberState {
    collector: Arc<Collector>,
    pump: Option<JoinHandle<()>>,
}

impl Actor for Subscriber {
    type Msg = SubscriberMsg;
    type State = SubscriberState;
    type Arguments = Arc<Collector>;

    async fn pre_start(
        &self,
        myself: ActorRef<SubscriberMsg>,
        collector: Arc<Collector>,
    ) -> Result<SubscriberState, ActorProcessingErr> {
        myself.cast(SubscriberMsg::Subscribe)?;
        Ok(SubscriberState {
            collector,
            pump: None,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<SubscriberMsg>,
        state: &mut SubscriberState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(pump) = state.pump.take() {
            pump.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SubscriberMsg>,
        msg: SubscriberMsg,
        state: &mut SubscriberState,
    ) -> Result<(), ActorProcessingErr> {
        let collector = &state.collector;
        match msg {
            SubscriberMsg::Subscribe => {
                let transport = collector.link.transport().await?;
                let channel = collector.keys.cluster_channel();
                let mut subscription = transport.subscribe(&channel).await?;
                let me = myself.clone();
                state.pump = Some(tokio::spawn(async move {
                    while let Some(raw) = subscription.next().await {
                        if me.cast(SubscriberMsg::Event(raw)).is_err() {
                            return;
                        }
                    }
                    let _ = me.cast(SubscriberMsg::Ended);
                }));
                tracing::info!(%channel, "following the cluster channel");
                // What happened while the console was not listening: look again.
                collector.nudge_discovery();
            }
            SubscriberMsg::Event(raw) => collector.on_cluster_event(raw),
            SubscriberMsg::Ended => {
                return Err("the cluster channel's subscription ended (Redis went away?)".into());
            }
        }
        Ok(())
    }
}
