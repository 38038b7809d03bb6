//! The queue's spans (OpenTelemetry's messaging conventions, `messaging.system` = `redis`):
//! a producer span around publishing an inbound message, whose context the message carries
//! as its top-level `traceparent`, and a consumer span around handling one on a node.
//! Both are `Span::none()` unless spans are exported.

use turnstone_runtime::remote::{Delivery, MailboxAddress};

use super::Inbound;

/// A queue's name in spans: the queue key, with `:{node}` for a node's directed queue.
pub fn destination_name(address: &MailboxAddress) -> String {
    match &address.node {
        Some(node) => format!("{}:{node}", address.queue),
        None => address.queue.clone(),
    }
}

/// The span of publishing `message` to `destination` (only asked while spans are exported).
fn publish_span(message: &Inbound, destination: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "queue",
        otel.name = format!("send {destination}"),
        otel.kind = "producer",
        messaging.system = "redis",
        messaging.destination.name = %destination,
        messaging.operation.type = "send",
        messaging.operation.name = message.kind(),
        messaging.message.conversation_id = tracing::field::Empty,
        turnstone.ws.id = %message.ws_id(),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    turnstone_runtime::telemetry::annotate(&span);
    span
}

/// Encodes `message` inside a producer span for the queue `destination` names, returning
/// the span (to enter while pushing) and the payload, which carries the span's context.
/// `destination` is only asked while spans are exported.
pub fn encode_published(
    message: &mut Inbound,
    destination: impl FnOnce(&Inbound) -> String,
) -> (tracing::Span, String) {
    if !turnstone_runtime::telemetry::exporting() {
        return (tracing::Span::none(), message.encode());
    }
    let span = publish_span(message, &destination(message));
    let raw = span.in_scope(|| message.encode());
    span.record(
        "messaging.message.conversation_id",
        message.correlation_id(),
    );
    (span, raw)
}

/// The span of handling one queue message: a consumer span below the sender's, when the
/// message carries a `traceparent`.
pub fn delivery_span(delivery: &Delivery, operation: &'static str) -> tracing::Span {
    if !turnstone_runtime::telemetry::exporting() {
        return tracing::Span::none();
    }
    let peeked = Inbound::peek(&delivery.payload);
    let destination = destination_name(&delivery.from);
    let span = tracing::info_span!(
        parent: None,
        "queue",
        otel.name = format!("{operation} {destination}"),
        otel.kind = "consumer",
        messaging.system = "redis",
        messaging.destination.name = %destination,
        messaging.operation.type = operation,
        messaging.message.conversation_id = %peeked.correlation_id,
        turnstone.ws.id = %peeked.ws_id,
        turnstone.node.id = %delivery.node,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if let Some(parent) = &peeked.trace {
        turnstone_runtime::telemetry::set_parent(&span, parent);
    }
    turnstone_runtime::telemetry::annotate(&span);
    span
}
