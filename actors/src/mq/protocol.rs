//! The MQ messages of Turnstone 0.4.1 (SPEC §1): 9 inbound types from clients, 22 outbound
//! event types from bridges. Flat JSON; every field always present on the way out; missing
//! fields take their defaults on the way in (strings "", booleans false, lists [], except
//! `approve.approved`, which defaults to true); unknown keys are ignored.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use turnstone_runtime::remote::TraceContext;

/// Float seconds since the epoch, as Turnstone's MQ timestamps.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A new correlation or request id: 12 hex digits.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn yes() -> bool {
    true
}

/// `send`: a message for a workstream (a new one when `ws_id` is empty).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SendMsg {
    /// Correlation id (12 hex).
    pub correlation_id: String,
    /// When it was sent.
    pub timestamp: f64,
    /// The workstream; empty: create one.
    pub ws_id: String,
    /// The user message.
    pub message: String,
    /// Approve every tool call.
    pub auto_approve: bool,
    /// Tools whose calls are approved without asking.
    pub auto_approve_tools: Vec<String>,
    /// Name for a created workstream.
    pub name: String,
    /// The node that must handle it.
    pub target_node: String,
    /// Ours, not 0.4.1's: the client reads the durable event stream, so the node need not
    /// hold a new workstream's first events until it subscribes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reads_stream: bool,
}

/// `approve`: the answer to an `approval_request`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApproveMsg {
    /// Correlation id.
    pub correlation_id: String,
    /// When it was sent.
    pub timestamp: f64,
    /// The workstream.
    pub ws_id: String,
    /// The request answered (the `approval_request`'s correlation id).
    pub request_id: String,
    /// Run the calls.
    #[serde(default = "yes")]
    pub approved: bool,
    /// Why not, or what to do instead.
    pub feedback: Option<String>,
    /// Approve everything from now on.
    pub always: bool,
}

impl Default for ApproveMsg {
    fn default() -> Self {
        Self {
            correlation_id: String::new(),
            timestamp: 0.0,
            ws_id: String::new(),
            request_id: String::new(),
            approved: true,
            feedback: None,
            always: false,
        }
    }
}

/// `plan_feedback`: the answer to a `plan_review`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanFeedbackMsg {
    /// Correlation id.
    pub correlation_id: String,
    /// When it was sent.
    pub timestamp: f64,
    /// The workstream.
    pub ws_id: String,
    /// The request answered.
    pub request_id: String,
    /// "" approves; anything else is the feedback.
    pub feedback: String,
}

/// `command`: a slash command.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandMsg {
    /// Correlation id.
    pub correlation_id: String,
    /// When it was sent.
    pub timestamp: f64,
    /// The workstream.
    pub ws_id: String,
    /// The command, e.g. `/clear`.
    pub command: String,
}

/// `create_workstream`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateMsg {
    /// Correlation id.
    pub correlation_id: String,
    /// When it was sent.
    pub timestamp: f64,
    /// Display name.
    pub name: String,
    /// Approve every tool call.
    pub auto_approve: bool,
    /// Tools whose calls are approved without asking.
    pub auto_approve_tools: Vec<String>,
    /// The node that must create it.
    pub target_node: String,
    /// Model alias.
    pub model: String,
    /// A first message to send.
    pub initial_message: String,
    /// A stored session to continue.
    pub resume_session: String,
    /// Who asks.
    pub user_id: String,
    /// Ours, not 0.4.1's: the client reads the durable event stream, so the node need not
    /// hold a new workstream's first events until it subscribes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reads_stream: bool,
}

/// `close_workstream`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloseMsg {
    /// Correlation id.
    pub correlation_id: String,
    /// When it was sent.
    pub timestamp: f64,
    /// The workstream.
    pub ws_id: String,
}

/// `list_workstreams`, `health`, `list_nodes`: no fields of their own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryMsg {
    /// Correlation id.
    pub correlation_id: String,
    /// When it was sent.
    pub timestamp: f64,
}

/// A client's message to the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Inbound {
    /// A user message.
    Send(SendMsg),
    /// An approval answer.
    Approve(ApproveMsg),
    /// A plan review answer.
    PlanFeedback(PlanFeedbackMsg),
    /// A slash command.
    Command(CommandMsg),
    /// Create a workstream.
    CreateWorkstream(CreateMsg),
    /// Close a workstream.
    CloseWorkstream(CloseMsg),
    /// List the node's workstreams.
    ListWorkstreams(QueryMsg),
    /// The node's health.
    Health(QueryMsg),
    /// The cluster's live nodes.
    ListNodes(QueryMsg),
}

/// The largest inbound message accepted (bytes).
pub const MAX_INBOUND: usize = 1024 * 1024;

/// Why an inbound message was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Not a JSON object.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// No or unknown `type`.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A field has the wrong type.
    #[error("invalid {kind} message: {detail}")]
    Invalid {
        /// The message type.
        kind: String,
        /// What is wrong.
        detail: String,
    },
    /// A required field is empty.
    #[error("{kind} message needs {field}")]
    Missing {
        /// The message type.
        kind: &'static str,
        /// The field.
        field: &'static str,
    },
    /// Over [`MAX_INBOUND`].
    #[error("message of {0} bytes exceeds the limit of {MAX_INBOUND} bytes")]
    TooLarge(usize),
}

const INBOUND_TYPES: [&str; 9] = [
    "send",
    "approve",
    "plan_feedback",
    "command",
    "create_workstream",
    "close_workstream",
    "list_workstreams",
    "health",
    "list_nodes",
];

impl Inbound {
    /// Decodes and checks a message; on failure the error says why, and [`Self::peek`] still
    /// tells which workstream and correlation id it was about.
    pub fn decode(raw: &str) -> Result<Self, ProtocolError> {
        if raw.len() > MAX_INBOUND {
            return Err(ProtocolError::TooLarge(raw.len()));
        }
        // A well-formed message (nearly every one) is read in one pass. Anything else takes
        // the long way below, through a JSON tree, which says what is wrong with it.
        if raw.trim_start().starts_with('{')
            && let Ok(message) = serde_json::from_str::<Self>(raw)
        {
            message.check()?;
            return Ok(message);
        }
        Self::decode_tree(raw)
    }

    /// Decodes through a JSON tree: each way a message can be wrong has its own error.
    fn decode_tree(raw: &str) -> Result<Self, ProtocolError> {
        let value: Value =
            serde_json::from_str(raw).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        let Some(object) = value.as_object() else {
            return Err(ProtocolError::Malformed("not a JSON object".into()));
        };
        let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
        if !INBOUND_TYPES.contains(&kind) {
            return Err(ProtocolError::UnknownType(kind.to_owned()));
        }
        let kind = kind.to_owned();
        let message: Self = serde_json::from_value(value).map_err(|e| ProtocolError::Invalid {
            kind,
            detail: e.to_string(),
        })?;
        message.check()?;
        Ok(message)
    }

    fn check(&self) -> Result<(), ProtocolError> {
        let missing = |kind, field| Err(ProtocolError::Missing { kind, field });
        match self {
            Self::Send(m) if m.message.trim().is_empty() => missing("send", "a message"),
            Self::Approve(m) if m.request_id.is_empty() => missing("approve", "a request_id"),
            Self::PlanFeedback(m) if m.request_id.is_empty() => {
                missing("plan_feedback", "a request_id")
            }
            Self::Command(m) if m.command.trim().is_empty() => missing("command", "a command"),
            Self::Command(m) if m.ws_id.is_empty() => missing("command", "a ws_id"),
            Self::CloseWorkstream(m) if m.ws_id.is_empty() => {
                missing("close_workstream", "a ws_id")
            }
            _ => Ok(()),
        }
    }

    /// What a raw message says of itself, as far as it can be read: enough to answer a
    /// message that does not decode, and to continue its trace.
    pub fn peek(raw: &str) -> Peeked {
        let value: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
        let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        Peeked {
            ws_id: field("ws_id").unwrap_or_default(),
            correlation_id: field("correlation_id").unwrap_or_default(),
            trace: field("traceparent").map(|traceparent| TraceContext {
                traceparent,
                tracestate: field("tracestate"),
            }),
        }
    }

    /// The wire type.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Send(_) => "send",
            Self::Approve(_) => "approve",
            Self::PlanFeedback(_) => "plan_feedback",
            Self::Command(_) => "command",
            Self::CreateWorkstream(_) => "create_workstream",
            Self::CloseWorkstream(_) => "close_workstream",
            Self::ListWorkstreams(_) => "list_workstreams",
            Self::Health(_) => "health",
            Self::ListNodes(_) => "list_nodes",
        }
    }

    /// The correlation id.
    pub fn correlation_id(&self) -> &str {
        match self {
            Self::Send(m) => &m.correlation_id,
            Self::Approve(m) => &m.correlation_id,
            Self::PlanFeedback(m) => &m.correlation_id,
            Self::Command(m) => &m.correlation_id,
            Self::CreateWorkstream(m) => &m.correlation_id,
            Self::CloseWorkstream(m) => &m.correlation_id,
            Self::ListWorkstreams(m) | Self::Health(m) | Self::ListNodes(m) => &m.correlation_id,
        }
    }

    /// The workstream it is about ("" for none).
    pub fn ws_id(&self) -> &str {
        match self {
            Self::Send(m) => &m.ws_id,
            Self::Approve(m) => &m.ws_id,
            Self::PlanFeedback(m) => &m.ws_id,
            Self::Command(m) => &m.ws_id,
            Self::CloseWorkstream(m) => &m.ws_id,
            Self::CreateWorkstream(_)
            | Self::ListWorkstreams(_)
            | Self::Health(_)
            | Self::ListNodes(_) => "",
        }
    }

    /// The node it is addressed to ("" for any).
    pub fn target_node(&self) -> &str {
        match self {
            Self::Send(m) => &m.target_node,
            Self::CreateWorkstream(m) => &m.target_node,
            _ => "",
        }
    }

    /// The JSON to push, with a fresh correlation id and timestamp if they are empty.
    pub fn encode(&mut self) -> String {
        let (cid, ts) = match self {
            Self::Send(m) => (&mut m.correlation_id, &mut m.timestamp),
            Self::Approve(m) => (&mut m.correlation_id, &mut m.timestamp),
            Self::PlanFeedback(m) => (&mut m.correlation_id, &mut m.timestamp),
            Self::Command(m) => (&mut m.correlation_id, &mut m.timestamp),
            Self::CreateWorkstream(m) => (&mut m.correlation_id, &mut m.timestamp),
            Self::CloseWorkstream(m) => (&mut m.correlation_id, &mut m.timestamp),
            Self::ListWorkstreams(m) | Self::Health(m) | Self::ListNodes(m) => {
                (&mut m.correlation_id, &mut m.timestamp)
            }
        };
        if cid.is_empty() {
            *cid = new_id();
        }
        if *ts == 0.0 {
            *ts = now();
        }
        match TraceContext::current() {
            // Sent inside a traced span: the node that takes it continues the trace. Extra
            // top-level fields, which 0.4.1 (and its clients and bridges) ignore.
            Some(trace) => {
                let mut value = serde_json::to_value(&*self).unwrap_or(Value::Null);
                if let Value::Object(object) = &mut value {
                    object.insert("traceparent".into(), Value::from(trace.traceparent));
                    if let Some(state) = trace.tracestate {
                        object.insert("tracestate".into(), Value::from(state));
                    }
                }
                value.to_string()
            }
            None => serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

/// What [`Inbound::peek`] reads of a raw message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Peeked {
    /// `ws_id`, empty when absent.
    pub ws_id: String,
    /// `correlation_id`, empty when absent.
    pub correlation_id: String,
    /// The caller's trace context (`traceparent`, `tracestate` at the top level).
    pub trace: Option<TraceContext>,
}

/// A `node_list` entry: a node's heartbeat metadata (anything but a JSON object reads as
/// `{}`, as 0.4.1 does) with its `node_id`.
pub fn node_entry(node: String, metadata: &str) -> Value {
    let mut value: Value = serde_json::from_str(metadata).unwrap_or_default();
    if !value.is_object() {
        value = json!({});
    }
    value["node_id"] = Value::from(node);
    value
}

/// The 22 outbound event types.
pub const OUTBOUND_TYPES: [&str; 22] = [
    "ack",
    "content",
    "reasoning",
    "tool_info",
    "approval_request",
    "tool_output_chunk",
    "tool_result",
    "plan_review",
    "health_response",
    "node_list",
    "cluster_state",
    "status",
    "state_change",
    "turn_complete",
    "stream_end",
    "ws_closed",
    "ws_created",
    "ws_list",
    "ws_rename",
    "error",
    "info",
    "session_resumed",
];

/// An event as a client reads it: the base fields plus the type's own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The type.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The workstream.
    #[serde(default)]
    pub ws_id: String,
    /// What it answers.
    #[serde(default)]
    pub correlation_id: String,
    /// When it was sent.
    #[serde(default)]
    pub timestamp: f64,
    /// The type's own fields.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Event {
    /// Reads an event; `None` if it is not an event object.
    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_str(raw).ok()
    }

    /// A string field ("" if absent).
    pub fn str(&self, key: &str) -> &str {
        self.fields.get(key).and_then(Value::as_str).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inbound_type_round_trips_with_defaults() {
        for kind in INBOUND_TYPES {
            let raw = match kind {
                "send" => json!({"type": kind, "message": "hi"}),
                "approve" | "plan_feedback" => json!({"type": kind, "request_id": "r"}),
                "command" => json!({"type": kind, "command": "/clear", "ws_id": "w"}),
                "close_workstream" => json!({"type": kind, "ws_id": "w"}),
                _ => json!({"type": kind}),
            };
            let mut message = Inbound::decode(&raw.to_string()).unwrap();
            assert_eq!(message.kind(), kind);
            let encoded = message.encode();
            assert_eq!(message.correlation_id().len(), 12);
            assert_eq!(Inbound::decode(&encoded).unwrap(), message);
        }
    }

    #[test]
    fn one_pass_decodes_what_the_tree_decodes() {
        let samples = [
            r#"{"type":"send","message":"hi","ws_id":"w","correlation_id":"c"}"#,
            r#" {"type":"send","message":"a \"quoted\" h\u00e9","auto_approve":true,"auto_approve_tools":["bash"],"target_node":"n"}"#,
            r#"{"message":"type comes last","type":"send"}"#,
            r#"{"type":"send","message":"first","message":"twice"}"#,
            r#"{"type":"send","message":"hi","extra":{"nested":[1,2.5,null]}}"#,
            r#"{"type":"approve","request_id":"r","approved":false,"feedback":"no","always":true}"#,
            r#"{"type":"create_workstream","name":"n","initial_message":"go","model":"m"}"#,
            r#"{"type":"command","command":"/clear","ws_id":"w"}"#,
            r#"{"type":"health"}"#,
            r#"["send","hi"]"#,
            r#"{"type":"send","message":null}"#,
            r#"{"type":"send","message":5}"#,
            r#"{"type":"explode"}"#,
            r#"{"type":"close_workstream"}"#,
            r#"{"type":"send","message":"hi"} trailing"#,
            "{not json",
        ];
        for raw in samples {
            assert_eq!(Inbound::decode(raw), Inbound::decode_tree(raw), "{raw}");
        }
    }

    #[test]
    fn approve_defaults_to_approved_and_unknown_keys_are_ignored() {
        let raw = json!({"type": "approve", "request_id": "abc", "extra": 1}).to_string();
        let Inbound::Approve(m) = Inbound::decode(&raw).unwrap() else {
            panic!("approve")
        };
        assert!(m.approved);
        assert_eq!(m.feedback, None);
    }

    #[test]
    fn bad_messages_get_clear_errors() {
        assert!(matches!(
            Inbound::decode("{not json"),
            Err(ProtocolError::Malformed(_))
        ));
        assert_eq!(
            Inbound::decode(r#"{"type":"explode"}"#)
                .unwrap_err()
                .to_string(),
            r#"unknown message type "explode""#
        );
        assert_eq!(
            Inbound::decode(r#"{"type":"send","ws_id":"w"}"#)
                .unwrap_err()
                .to_string(),
            "send message needs a message"
        );
        assert!(
            Inbound::decode(r#"{"type":"send","message":5}"#)
                .unwrap_err()
                .to_string()
                .starts_with("invalid send message:")
        );
        let huge = format!(
            r#"{{"type":"send","message":"{}"}}"#,
            "x".repeat(MAX_INBOUND)
        );
        assert!(matches!(
            Inbound::decode(&huge),
            Err(ProtocolError::TooLarge(_))
        ));
        let peeked =
            Inbound::peek(r#"{"type":"send","ws_id":"w1","correlation_id":"c1","message":5}"#);
        assert_eq!(
            (peeked.ws_id.as_str(), peeked.correlation_id.as_str()),
            ("w1", "c1")
        );
        assert_eq!(peeked.trace, None);
        let traced = Inbound::peek(
            r#"{"type":"send","ws_id":"w1","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"k=v"}"#,
        );
        let trace = traced.trace.expect("the traceparent is read");
        assert_eq!(
            trace.traceparent,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(trace.tracestate.as_deref(), Some("k=v"));
    }
}
