//! A workstream's life on this node: creation (with an initial message held until its client
//! listens), a turn's start with its auto-approval, its completion, and forgetting it.

use super::{BridgeMsg, BridgeState, Out, PERSIST_WAIT, lock};
use crate::mq::outbound::Outbound;
use crate::mq::port::{CreateRequest, PortError, SendOutcome};
use crate::mq::protocol::{CreateMsg, SendMsg};
use ractor::ActorRef;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;
use turnstone_runtime::remote::Delivery;

impl BridgeState {
    pub(super) async fn create(
        &mut self,
        myself: &ActorRef<BridgeMsg>,
        create: CreateMsg,
        delivery: Delivery,
    ) {
        let cid = create.correlation_id.clone();
        let request = CreateRequest {
            name: create.name.clone(),
            auto_approve: create.auto_approve,
            auto_approve_tools: create.auto_approve_tools.clone(),
            model: create.model.clone(),
            resume_session: create.resume_session.clone(),
        };
        let created = match self.port.create(request).await {
            Ok(c) => c,
            Err(PortError::AtCapacity(reason)) if delivery.from == self.keys.shared() => {
                // Every workstream here is busy: leave the work to a node with room, and take
                // no shared work until one is free here.
                self.room.store(false, Ordering::Relaxed);
                tracing::debug!(%reason, "full: the message goes back to the shared queue");
                self.out(Out::Return(delivery));
                return;
            }
            Err(e) => {
                self.emit_global(&Outbound::ack("", &cid, false, &e.to_string()));
                self.ack(delivery);
                return;
            }
        };
        let ws_id = created.ws_id.clone();
        self.claim(&ws_id).await;
        if let Some(entry) = self.ws.get_mut(&ws_id) {
            entry.auto_approve = create.auto_approve;
            if !create.auto_approve_tools.is_empty() {
                entry.tools = create.auto_approve_tools.iter().cloned().collect();
            }
        }
        let mut announced = json!({
            "name": created.name, "resumed": created.resumed,
            "message_count": created.message_count, "node_id": self.me,
        });
        if created.resumed {
            announced["session_id"] = Value::from(created.session_id.clone());
        }
        self.emit_global(&Outbound::new("ws_created", &ws_id, &cid, announced));
        self.emit_cluster(&Outbound::new(
            "ws_created",
            &ws_id,
            &cid,
            json!({"name": created.name, "node_id": self.me}),
        ));
        if created.resumed {
            self.emit_ws(
                &ws_id,
                &Outbound::new(
                    "session_resumed",
                    &ws_id,
                    &cid,
                    json!({"session_id": created.session_id,
                        "message_count": created.message_count, "name": created.name}),
                ),
            );
        }
        if create.initial_message.trim().is_empty() || created.resumed {
            self.ack(delivery);
            return;
        }
        let send = SendMsg {
            correlation_id: cid,
            ws_id: ws_id.clone(),
            message: create.initial_message.clone(),
            ..SendMsg::default()
        };
        if create.reads_stream {
            self.start_turn(&ws_id, &send, Some(delivery), false).await;
            return;
        }
        // A 0.4.1 client subscribes to the workstream's channel only once it has seen
        // `ws_created`: start the turn when it listens, so it cannot miss the first events.
        let transport = self.transport.clone();
        let channel = self.keys.ws_channel(&ws_id);
        let wait = self.settings.subscriber_wait;
        let me = myself.clone();
        let span = tracing::Span::current();
        tokio::spawn(async move {
            let deadline = Instant::now() + wait;
            let mut pause = Duration::from_millis(1);
            while Instant::now() < deadline {
                if transport.subscribers(&channel).await.unwrap_or(0) > 0 {
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            let _ = me.cast(BridgeMsg::Held {
                ws_id,
                send: Box::new(send),
                delivery,
                span,
            });
        });
    }

    /// Sends a user message (or resumes the turn a dead node left unfinished) and keeps the
    /// delivery in flight until the turn ends.
    pub(super) async fn start_turn(
        &mut self,
        ws_id: &str,
        send: &SendMsg,
        delivery: Option<Delivery>,
        adopted: bool,
    ) {
        let cid = send.correlation_id.clone();
        let resumed = adopted
            && self
                .port
                .resume_turn(ws_id, &send.message)
                .await
                .unwrap_or(false);
        let outcome = if resumed {
            Ok(SendOutcome::Started)
        } else {
            self.port.send(ws_id, &send.message).await
        };
        let (ok, detail) = match &outcome {
            Ok(SendOutcome::Started) => (true, String::new()),
            Ok(SendOutcome::Busy) => (false, "Workstream is busy".to_owned()),
            Err(e) => (false, e.to_string()),
        };
        // Inside the message's span: its trace is the turn's.
        let trace_id = turnstone_runtime::telemetry::ids(&tracing::Span::current()).map(|(t, _)| t);
        self.emit_ws(
            ws_id,
            &Outbound::ack(ws_id, &cid, ok, &detail).traced(trace_id.as_deref()),
        );
        match (ok, self.ws.get_mut(ws_id)) {
            (true, Some(entry)) => {
                entry.active = Some((cid, delivery));
                entry.trace_id = trace_id;
            }
            _ => {
                if let Some(delivery) = delivery {
                    self.ack(delivery);
                }
            }
        }
    }

    /// Announces the end of the turn of `send` `cid` — on the workstream's channel and stream
    /// for its client, and on the global channel (as 0.4.1's simulated nodes do) for
    /// dashboards and load generators that follow every turn — then acknowledges the send
    /// once the turn is stored ([`NodePort::persisted`], at most [`PERSIST_WAIT`]); until
    /// then it stays in flight, for the reaper if this node dies.
    pub(super) fn complete_turn(
        &self,
        ws_id: &str,
        cid: &str,
        delivery: Option<Delivery>,
        trace_id: Option<&str>,
    ) {
        let done = Outbound::new("turn_complete", ws_id, cid, json!({})).traced(trace_id);
        self.emit_ws_and_global(ws_id, &done);
        if let Some(delivery) = delivery {
            let (port, outbox, ws_id) = (self.port.clone(), self.outbox.clone(), ws_id.to_owned());
            tokio::spawn(async move {
                if tokio::time::timeout(PERSIST_WAIT, port.persisted(&ws_id))
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        ws_id,
                        "the turn was not stored in time; acknowledged anyway"
                    );
                }
                let _ = outbox.send(Out::Ack(delivery));
            });
        }
    }

    pub(super) async fn forget(&mut self, ws_id: &str) {
        // A review's request id is kept while it waits (and expires with it): gone with the
        // workstream, unless this bridge knows there is none.
        let mut reviewing = true;
        if let Some(entry) = self.ws.remove(ws_id) {
            reviewing = entry.pending.is_some();
            if let Some(key) = entry.pending {
                lock(&self.waiting).remove(&key);
            }
            if let Some((cid, delivery)) = entry.active {
                // The turn ends with the workstream: tell the waiting client.
                self.complete_turn(ws_id, &cid, delivery, entry.trace_id.as_deref());
            }
        }
        let key = self.keys.owner(ws_id);
        if matches!(self.transport.get(&key).await, Ok(Some(owner)) if owner == self.me) {
            let _ = self.transport.delete(&key).await;
        }
        if reviewing {
            let _ = self.transport.delete(&self.keys.pending(ws_id)).await;
        }
        let stream = self.keys.ws_stream(ws_id);
        if let Err(e) = self
            .transport
            .expire(&stream, self.settings.closed_stream_ttl)
            .await
        {
            tracing::warn!(error = %e, ws_id, "could not expire a closed workstream's stream");
        }
    }
}
