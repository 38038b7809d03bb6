//! Where an inbound message goes: this node (claimed or adopted), another live node (forwarded
//! to its directed queue), or nowhere (an error event); and what it does once here.

use super::{BridgeMsg, BridgeState, REPLY_TTL, Route};
use crate::mq::outbound::Outbound;
use crate::mq::protocol::{ApproveMsg, CreateMsg, Inbound, PlanFeedbackMsg, node_entry};
use ractor::ActorRef;
use serde_json::{Value, json};
use turnstone_runtime::remote::Delivery;

impl BridgeState {
    async fn alive(&self, node: &str) -> bool {
        let node = [node.to_owned()];
        matches!(
            self.transport.heartbeating(&node).await.as_deref(),
            Ok([true])
        )
    }

    /// Serves a workstream from here on: owner key, events.
    pub(super) async fn claim(&mut self, ws_id: &str) {
        self.ws.entry(ws_id.to_owned()).or_default();
        if let Err(e) = self
            .transport
            .set(&self.keys.owner(ws_id), self.me.clone(), None)
            .await
        {
            tracing::warn!(error = %e, ws_id, "could not record workstream ownership");
        }
        self.port.watch(ws_id).await;
    }

    pub(super) async fn dispatch(&mut self, myself: &ActorRef<BridgeMsg>, delivery: Delivery) {
        let message = match Inbound::decode(&delivery.payload) {
            Ok(m) => m,
            Err(e) => {
                let peeked = Inbound::peek(&delivery.payload);
                self.reject(
                    delivery,
                    &peeked.ws_id,
                    &peeked.correlation_id,
                    &e.to_string(),
                );
                return;
            }
        };
        let cid = message.correlation_id().to_owned();
        let target = message.target_node();
        if !target.is_empty() && target != self.me {
            let ws_id = message.ws_id().to_owned();
            if self.alive(target).await {
                self.forward(target.to_owned(), delivery).await;
            } else {
                let reason = format!("Unknown node {target:?}: no live node has that id");
                self.reject(delivery, &ws_id, &cid, &reason);
            }
            return;
        }
        match message {
            Inbound::Approve(ApproveMsg { request_id, .. })
            | Inbound::PlanFeedback(PlanFeedbackMsg { request_id, .. }) => {
                let key = self.keys.resp(&request_id);
                match self
                    .transport
                    .reply(&key, delivery.payload.clone(), REPLY_TTL)
                    .await
                {
                    Ok(()) => self.ack(delivery),
                    Err(e) => tracing::warn!(error = %e, "could not pass an answer on"),
                }
            }
            Inbound::ListWorkstreams(_) => {
                let answer = match self.port.list().await {
                    Ok(list) => Outbound::new("ws_list", "", &cid, json!({"workstreams": list})),
                    Err(e) => Outbound::error("", &cid, e.to_string()),
                };
                self.emit_global(&answer);
                self.ack(delivery);
            }
            Inbound::Health(_) => {
                let data = self
                    .port
                    .health()
                    .await
                    .unwrap_or_else(|e| json!({"status": "error", "error": e.to_string()}));
                self.emit_global(&Outbound::new(
                    "health_response",
                    "",
                    &cid,
                    json!({"data": data}),
                ));
                self.ack(delivery);
            }
            Inbound::ListNodes(_) => {
                let nodes = self.nodes().await;
                self.emit_global(&Outbound::new(
                    "node_list",
                    "",
                    &cid,
                    json!({"nodes": nodes}),
                ));
                self.ack(delivery);
            }
            Inbound::CreateWorkstream(create) => {
                self.create(myself, create, delivery).await;
            }
            Inbound::Send(send) if send.ws_id.is_empty() => {
                let create = CreateMsg {
                    correlation_id: send.correlation_id.clone(),
                    name: send.name.clone(),
                    auto_approve: send.auto_approve,
                    auto_approve_tools: send.auto_approve_tools.clone(),
                    initial_message: send.message.clone(),
                    reads_stream: send.reads_stream,
                    ..CreateMsg::default()
                };
                self.create(myself, create, delivery).await;
            }
            message => {
                let ws_id = message.ws_id().to_owned();
                match self.route(&ws_id).await {
                    Route::Forward(owner) => self.forward(owner, delivery).await,
                    Route::Unknown => {
                        self.reject(delivery, &ws_id, &cid, "Unknown workstream");
                    }
                    Route::Here { adopted } => self.handle_here(message, delivery, adopted).await,
                }
            }
        }
    }

    async fn forward(&self, node: String, delivery: Delivery) {
        let to = self.keys.directed(&node);
        match self.transport.push(&to, delivery.payload.clone()).await {
            Ok(()) => self.ack(delivery),
            Err(e) => tracing::warn!(error = %e, %node, "could not forward; retried after reclaim"),
        }
    }

    pub(super) async fn nodes(&self) -> Vec<Value> {
        self.transport
            .live_nodes()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(node, metadata)| node_entry(node, &metadata))
            .collect()
    }

    /// Target node → owner → here; a workstream whose owner died is taken over (restored
    /// from the shared database).
    pub(super) async fn route(&mut self, ws_id: &str) -> Route {
        if self.ws.contains_key(ws_id) || self.port.has(ws_id).await {
            if !self.ws.contains_key(ws_id) {
                self.claim(ws_id).await;
            }
            return Route::Here { adopted: false };
        }
        let key = self.keys.owner(ws_id);
        for _ in 0..3 {
            let owner = self.transport.get(&key).await.ok().flatten();
            if let Some(owner) = &owner
                && owner != &self.me
                && self.alive(owner).await
            {
                return Route::Forward(owner.clone());
            }
            // Unowned, ours but gone from this node, or its node died: take it over.
            match self
                .transport
                .compare_and_set(&key, owner.as_deref(), self.me.clone())
                .await
            {
                Ok(true) => {
                    return match self.port.adopt(ws_id).await {
                        Ok(true) => {
                            tracing::info!(ws_id, previous = ?owner, "took over a workstream");
                            self.claim(ws_id).await;
                            Route::Here { adopted: true }
                        }
                        _ => {
                            let _ = self.transport.delete(&key).await;
                            Route::Unknown
                        }
                    };
                }
                Ok(false) => continue, // another node was faster: look again
                Err(e) => {
                    tracing::warn!(error = %e, ws_id, "ownership check failed");
                    return Route::Unknown;
                }
            }
        }
        Route::Unknown
    }

    async fn handle_here(&mut self, message: Inbound, delivery: Delivery, adopted: bool) {
        match message {
            Inbound::Send(send) => {
                if let Some(entry) = self.ws.get_mut(&send.ws_id) {
                    if send.auto_approve {
                        entry.auto_approve = true;
                    }
                    if !send.auto_approve_tools.is_empty() {
                        entry.tools = send.auto_approve_tools.iter().cloned().collect();
                    }
                }
                let ws_id = send.ws_id.clone();
                self.start_turn(&ws_id, &send, Some(delivery), adopted)
                    .await;
            }
            Inbound::Command(command) => {
                let result = self.port.command(&command.ws_id, &command.command).await;
                let detail = result.as_ref().err().map(ToString::to_string);
                self.emit_ws(
                    &command.ws_id,
                    &Outbound::ack(
                        &command.ws_id,
                        &command.correlation_id,
                        result.is_ok(),
                        detail.as_deref().unwrap_or(""),
                    ),
                );
                self.ack(delivery);
            }
            Inbound::CloseWorkstream(close) => {
                let result = self.port.close(&close.ws_id).await;
                let detail = result.as_ref().err().map(ToString::to_string);
                self.emit_ws(
                    &close.ws_id,
                    &Outbound::ack(
                        &close.ws_id,
                        &close.correlation_id,
                        result.is_ok(),
                        detail.as_deref().unwrap_or(""),
                    ),
                );
                if result.is_ok() {
                    self.forget(&close.ws_id).await;
                }
                self.ack(delivery);
            }
            _ => self.ack(delivery),
        }
    }
}
