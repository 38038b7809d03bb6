//! What the bridge writes: events on the workstream's and the node's channels (pub/sub and
//! the durable stream), errors, acknowledgements and rejections, all through its publisher in
//! order.

use super::{BridgeState, Out};
use crate::mq::outbound::Outbound;
use turnstone_runtime::remote::{Delivery, Emit};

impl BridgeState {
    pub(super) fn out(&self, out: Out) {
        let _ = self.outbox.send(out);
    }

    /// Publishes `event` on `channel`, kept in `stream` if given.
    pub(super) fn emit(&self, channel: String, stream: Option<String>, event: &Outbound) {
        self.emit_json(channel, stream, event.to_json());
    }

    /// Publishes an event's JSON on `channel`, kept in `stream` if given.
    fn emit_json(&self, channel: String, stream: Option<String>, payload: String) {
        self.out(Out::Event(Emit {
            stream,
            channel,
            payload,
        }));
    }

    pub(super) fn emit_ws(&self, ws_id: &str, event: &Outbound) {
        self.emit_ws_json(ws_id, event.to_json());
    }

    /// Publishes an event's JSON on `ws_id`'s channel, kept in its stream.
    pub(super) fn emit_ws_json(&self, ws_id: &str, payload: String) {
        let stream = Some(self.keys.ws_stream(ws_id));
        self.emit_json(self.keys.ws_channel(ws_id), stream, payload);
    }

    /// Publishes `event` on `ws_id`'s channel (kept in its stream) and on the global channel
    /// (not kept), serialised once.
    pub(super) fn emit_ws_and_global(&self, ws_id: &str, event: &Outbound) {
        self.emit_ws_and_global_json(ws_id, event.to_json());
    }

    /// [`Self::emit_ws_and_global`] of an event's JSON.
    pub(super) fn emit_ws_and_global_json(&self, ws_id: &str, payload: String) {
        self.emit_ws_json(ws_id, payload.clone());
        self.emit_json(self.keys.global_channel(), None, payload);
    }

    pub(super) fn emit_global(&self, event: &Outbound) {
        self.emit(
            self.keys.global_channel(),
            Some(self.keys.global_stream()),
            event,
        );
    }

    pub(super) fn emit_cluster(&self, event: &Outbound) {
        self.emit_cluster_json(event.to_json());
    }

    /// Publishes an event's JSON on the cluster channel (not kept).
    pub(super) fn emit_cluster_json(&self, payload: String) {
        self.emit_json(self.keys.cluster_channel(), None, payload);
    }

    /// An error about a message: on its workstream's channel if it names one, else global.
    fn emit_error(&self, ws_id: &str, cid: &str, message: &str) {
        let event = Outbound::error(ws_id, cid, message);
        if ws_id.is_empty() {
            self.emit_global(&event);
        } else {
            self.emit_ws(ws_id, &event);
        }
    }

    pub(super) fn ack(&self, delivery: Delivery) {
        self.out(Out::Ack(delivery));
    }

    pub(super) fn reject(&self, delivery: Delivery, ws_id: &str, cid: &str, reason: &str) {
        tracing::warn!(%reason, ws_id, "inbound message dead-lettered");
        self.emit_error(ws_id, cid, reason);
        self.out(Out::DeadLetter(delivery, reason.to_owned()));
    }
}
