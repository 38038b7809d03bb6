//! Versioned JSON envelopes with trace context.
//!
//! On the wire an envelope is its body's JSON object with one reserved key, [`META_KEY`]
//! (`"_ts"`), holding the metadata. Turnstone 0.4.1 clients push plain flat JSON messages and drop
//! unknown keys, so both directions stay compatible: a plain message decodes as an envelope of
//! version 0, and a 0.4.1 node reading our envelope ignores `"_ts"`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The envelope format version this build writes.
pub const ENVELOPE_VERSION: u32 = 1;

/// The reserved JSON key holding the metadata.
pub const META_KEY: &str = "_ts";

/// W3C trace context of the span that sent the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// The `traceparent` header value.
    pub traceparent: String,
    /// The `tracestate` header value, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The current span's context, when spans are exported (the `otlp` feature with an
    /// exporter installed); `None` otherwise.
    pub fn current() -> Option<Self> {
        crate::telemetry::current_trace_context()
    }
}

/// Envelope metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeMeta {
    /// Format version; 0 for a plain message without metadata.
    pub v: u32,
    /// Unique id of this message (32 hex), stable across redeliveries.
    #[serde(default)]
    pub id: String,
    /// The sending node, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The sender's trace context.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
    /// When it was sent, float seconds since the epoch (as Turnstone's MQ timestamps).
    #[serde(default)]
    pub sent_at: f64,
    /// Delivery attempts so far (0 on first send).
    #[serde(default)]
    pub attempt: u32,
}

impl EnvelopeMeta {
    fn plain() -> Self {
        Self {
            v: 0,
            id: String::new(),
            from: None,
            trace: None,
            sent_at: 0.0,
            attempt: 0,
        }
    }
}

/// A typed message with its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope<T> {
    /// Metadata.
    pub meta: EnvelopeMeta,
    /// The message.
    pub body: T,
}

/// Encoding or decoding failed.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The text is not JSON, or the body does not match the expected type.
    #[error("malformed envelope: {0}")]
    Json(#[from] serde_json::Error),
    /// Bodies must be JSON objects so the metadata can sit beside their fields.
    #[error("envelope body must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// Written by a newer version of this software.
    #[error("envelope version {found} is newer than supported version {supported}")]
    UnsupportedVersion {
        /// Version found.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl<T> Envelope<T> {
    /// A new envelope around `body`, stamped now, with the current trace context.
    pub fn new(body: T) -> Self {
        let sent_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            meta: EnvelopeMeta {
                v: ENVELOPE_VERSION,
                id: uuid::Uuid::new_v4().simple().to_string(),
                from: None,
                trace: TraceContext::current(),
                sent_at,
                attempt: 0,
            },
            body,
        }
    }

    /// Sets the sending node.
    pub fn from_node(mut self, node: impl Into<String>) -> Self {
        self.meta.from = Some(node.into());
        self
    }
}

impl<T: Serialize> Envelope<T> {
    /// The wire form: the body's fields plus `"_ts": {metadata}`.
    pub fn encode(&self) -> Result<String, EnvelopeError> {
        let mut value = serde_json::to_value(&self.body)?;
        let kind = kind_of(&value);
        let object = value
            .as_object_mut()
            .ok_or(EnvelopeError::NotAnObject(kind))?;
        object.insert(META_KEY.to_owned(), serde_json::to_value(&self.meta)?);
        Ok(serde_json::to_string(&value)?)
    }
}

impl<T: DeserializeOwned> Envelope<T> {
    /// Reads the wire form; a plain JSON object without metadata is accepted as version 0.
    pub fn decode(raw: &str) -> Result<Self, EnvelopeError> {
        let mut value: serde_json::Value = serde_json::from_str(raw)?;
        let kind = kind_of(&value);
        let object = value
            .as_object_mut()
            .ok_or(EnvelopeError::NotAnObject(kind))?;
        let meta = match object.remove(META_KEY) {
            Some(meta) => serde_json::from_value::<EnvelopeMeta>(meta)?,
            None => EnvelopeMeta::plain(),
        };
        if meta.v > ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                found: meta.v,
                supported: ENVELOPE_VERSION,
            });
        }
        Ok(Self {
            meta,
            body: serde_json::from_value(value)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Send {
        #[serde(rename = "type")]
        kind: String,
        ws_id: String,
        message: String,
    }

    fn send() -> Send {
        Send {
            kind: "send".into(),
            ws_id: "abc".into(),
            message: "hi".into(),
        }
    }

    #[test]
    fn round_trips_with_metadata_beside_the_body_fields() {
        let env = Envelope::new(send()).from_node("node-a");
        let raw = env.encode().unwrap();
        let json: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(json["type"], "send", "body stays flat for 0.4.1 readers");
        assert_eq!(json["_ts"]["v"], 1);
        assert_eq!(json["_ts"]["from"], "node-a");
        assert_eq!(json["_ts"]["id"].as_str().map(str::len), Some(32));
        assert_eq!(Envelope::<Send>::decode(&raw).unwrap(), env);
    }

    #[test]
    fn a_plain_turnstone_041_message_decodes_as_version_0() {
        let raw = json!({"type": "send", "ws_id": "abc", "message": "hi", "correlation_id": "x"})
            .to_string();
        let env = Envelope::<Send>::decode(&raw).unwrap();
        assert_eq!(env.meta.v, 0);
        assert_eq!(env.body, send());
    }

    #[test]
    fn trace_context_travels_in_the_metadata() {
        let mut env = Envelope::new(send());
        env.meta.trace = Some(TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: None,
        });
        let raw = env.encode().unwrap();
        assert!(raw.contains(r#""traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736"#));
        assert_eq!(
            Envelope::<Send>::decode(&raw).unwrap().meta.trace,
            env.meta.trace
        );
    }

    #[test]
    fn bad_input_gets_clear_errors() {
        let newer =
            json!({"type": "send", "ws_id": "", "message": "", "_ts": {"v": 9}}).to_string();
        assert_eq!(
            Envelope::<Send>::decode(&newer).unwrap_err().to_string(),
            "envelope version 9 is newer than supported version 1"
        );
        assert_eq!(
            Envelope::<Send>::decode("[1,2]").unwrap_err().to_string(),
            "envelope body must be a JSON object, got an array"
        );
        assert!(
            Envelope::<Send>::decode("{not json")
                .unwrap_err()
                .to_string()
                .starts_with("malformed envelope:")
        );
        assert!(
            Envelope::new(5_u32).encode().is_err(),
            "a number body is refused"
        );
    }
}
