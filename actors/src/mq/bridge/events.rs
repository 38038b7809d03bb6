//! The node's events turned into MQ events: forwarding, approvals and plan reviews through
//! reply lists, their answers and time-outs, and node-wide events.

use super::{BridgeState, Review, Waiting, lock};
use crate::mq::outbound::{Outbound, WsFrame};
use crate::mq::port::PortEvent;
use crate::mq::protocol::{ApproveMsg, PlanFeedbackMsg, new_id};
use crate::workstream::GlobalEvent;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use tokio::time::Instant;

impl BridgeState {
    /// An event that needs an await: a review, or a node-wide event. The forwarded ones never
    /// come here: `handle` relays them at once ([`Self::relay_ws`]).
    pub(super) async fn on_event(&mut self, event: PortEvent) {
        match event {
            PortEvent::Ws { ws_id, event } => self.on_ws_event(&ws_id, &event).await,
            PortEvent::Global(event) => self.on_global(&event).await,
            PortEvent::Node(event) => self.on_node(&event).await,
        }
    }

    /// Relays a workstream's forwarded event ([`super::FORWARDED`]); the bridge's `handle` calls it
    /// without an await, and the turn completes with its `stream_end`.
    pub(super) fn relay_ws(&mut self, ws_id: &str, event: &WsFrame) {
        self.emit_ws_json(ws_id, event.outbound(ws_id, ""));
        if event.kind() == "stream_end"
            && let Some(entry) = self.ws.get_mut(ws_id)
            && let Some((cid, delivery)) = entry.active.take()
        {
            let trace_id = entry.trace_id.take();
            self.complete_turn(ws_id, &cid, delivery, trace_id.as_deref());
        }
    }

    async fn on_ws_event(&mut self, ws_id: &str, event: &WsFrame) {
        match event.kind() {
            "approve_request" => {
                let items = event.fields().get("items").cloned().unwrap_or(json!([]));
                self.review(ws_id, Review::Approval, json!({"items": items}))
                    .await;
            }
            "plan_review" => {
                let content = event.fields().get("content").cloned().unwrap_or(json!(""));
                self.review(ws_id, Review::Plan, json!({"content": content}))
                    .await;
            }
            _ => {}
        }
    }

    pub(super) async fn review(&mut self, ws_id: &str, review: Review, fields: Value) {
        let Some(entry) = self.ws.get(ws_id) else {
            return;
        };
        let automatic = match review {
            Review::Approval => {
                let asking: Vec<&str> = fields["items"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter(|i| i["needs_approval"].as_bool().unwrap_or(true))
                            .filter_map(|i| i["func_name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                entry.auto_approve
                    || (!asking.is_empty() && asking.iter().all(|n| entry.tools.contains(*n)))
            }
            Review::Plan => entry.auto_approve,
        };
        if automatic {
            let answered = match review {
                Review::Approval => self.port.approve(ws_id, true, None, false).await,
                Review::Plan => self.port.plan_feedback(ws_id, "").await,
            };
            if let Err(e) = answered {
                tracing::warn!(error = %e, ws_id, "automatic approval failed");
            }
            return;
        }
        if entry.pending.is_some() {
            return; // the same review again (a replay)
        }
        // A node that took the workstream over asks under the request id clients know.
        let pending_key = self.keys.pending(ws_id);
        let request_id = match self.transport.get(&pending_key).await {
            Ok(Some(id)) => id,
            _ => new_id(),
        };
        let _ = self
            .transport
            .set(
                &pending_key,
                request_id.clone(),
                Some(self.settings.approval_timeout),
            )
            .await;
        let key = self.keys.resp(&request_id);
        lock(&self.waiting).insert(
            key.clone(),
            Waiting {
                ws_id: ws_id.to_owned(),
                request_id: request_id.clone(),
                review,
                deadline: Instant::now() + self.settings.approval_timeout,
            },
        );
        self.waiting_changed.notify_one();
        if let Some(entry) = self.ws.get_mut(ws_id) {
            entry.pending = Some(key);
        }
        let kind = match review {
            Review::Approval => "approval_request",
            Review::Plan => "plan_review",
        };
        self.emit_ws(ws_id, &Outbound::new(kind, ws_id, &request_id, fields));
    }

    pub(super) async fn on_reply(&mut self, key: &str, payload: &str) {
        let Some(waiting) = lock(&self.waiting).remove(key) else {
            return;
        };
        let answered = match waiting.review {
            Review::Approval => {
                let answer: ApproveMsg = serde_json::from_str(payload).unwrap_or_default();
                if answer.always
                    && answer.approved
                    && let Some(entry) = self.ws.get_mut(&waiting.ws_id)
                {
                    entry.auto_approve = true;
                }
                let feedback = answer.feedback.filter(|f| !f.trim().is_empty());
                self.port
                    .approve(&waiting.ws_id, answer.approved, feedback, answer.always)
                    .await
            }
            Review::Plan => {
                let answer: PlanFeedbackMsg = serde_json::from_str(payload).unwrap_or_default();
                self.port
                    .plan_feedback(&waiting.ws_id, &answer.feedback)
                    .await
            }
        };
        if let Err(e) = answered {
            tracing::warn!(error = %e, ws_id = %waiting.ws_id, "answer not accepted");
        }
        self.settle(&waiting).await;
    }

    pub(super) async fn settle(&mut self, waiting: &Waiting) {
        if let Some(entry) = self.ws.get_mut(&waiting.ws_id) {
            entry.pending = None;
        }
        let _ = self
            .transport
            .delete(&self.keys.pending(&waiting.ws_id))
            .await;
    }

    /// A node-wide event from a node over HTTP, as JSON.
    async fn on_global(&mut self, event: &Value) {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let ws_id = event.get("ws_id").and_then(Value::as_str).unwrap_or("");
        match kind {
            "ws_state" => {
                let state = event.get("state").cloned().unwrap_or(json!(""));
                self.on_ws_state(ws_id, &state, |key| event.get(key)).await;
            }
            "ws_rename" => self.on_ws_rename(ws_id, event.clone()),
            "ws_closed" => self.on_ws_closed(ws_id).await,
            _ => {}
        }
    }

    /// A node-wide event of this process's node, read from its fields without a JSON tree.
    async fn on_node(&mut self, event: &GlobalEvent) {
        match event {
            GlobalEvent::WsState {
                ws_id,
                state,
                tokens,
                context_ratio,
                activity,
                activity_state,
            } => {
                let fields = [
                    ("state", Value::from(state.as_str())),
                    ("tokens", Value::from(*tokens)),
                    ("context_ratio", Value::from(*context_ratio)),
                    ("activity", Value::from(activity.as_str())),
                    ("activity_state", Value::from(activity_state.as_str())),
                ];
                let field = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
                self.on_ws_state(ws_id, &fields[0].1, field).await;
            }
            GlobalEvent::WsRename { ws_id, name } => {
                self.on_ws_rename(ws_id, json!({ "name": name }));
            }
            GlobalEvent::WsClosed { ws_id, .. } => self.on_ws_closed(ws_id).await,
        }
    }

    /// `ws_state`: `state_change` on the workstream's and the global channel, `cluster_state`
    /// (with `field`'s values) on the cluster channel.
    async fn on_ws_state<'v>(
        &mut self,
        ws_id: &str,
        state: &Value,
        field: impl Fn(&str) -> Option<&'v Value>,
    ) {
        if !self.ws.contains_key(ws_id) {
            self.claim(ws_id).await; // opened on the node directly
        }
        if state == "idle" || state == "error" {
            self.room.store(true, Ordering::Relaxed);
        }
        if state != "attention" {
            // Answered elsewhere (the browser UI): stop waiting.
            let pending = self.ws.get(ws_id).and_then(|e| e.pending.clone());
            if let Some(key) = pending {
                let removed = lock(&self.waiting).remove(&key);
                if let Some(waiting) = removed {
                    self.settle(&waiting).await;
                }
            }
        }
        let change = Outbound::json_of("state_change", ws_id, "", |key| {
            (key == "state").then_some(state)
        });
        self.emit_ws_and_global_json(ws_id, change);
        let me = Value::from(self.me.as_str());
        let cluster = Outbound::json_of("cluster_state", ws_id, "", |key| {
            if key == "node_id" {
                Some(&me)
            } else {
                field(key)
            }
        });
        self.emit_cluster_json(cluster);
    }

    fn on_ws_rename(&mut self, ws_id: &str, fields: Value) {
        let event = Outbound::new("ws_rename", ws_id, "", fields);
        self.emit_global(&event);
        self.emit_cluster(&event);
    }

    async fn on_ws_closed(&mut self, ws_id: &str) {
        self.room.store(true, Ordering::Relaxed);
        let event = Outbound::new("ws_closed", ws_id, "", json!({}));
        self.emit_global(&event);
        self.emit_cluster(&event);
        self.forget(ws_id).await;
    }
}
