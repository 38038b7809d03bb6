//! Outbound events (SPEC §1): a type, the base fields every event carries (`ws_id`,
//! `correlation_id`, `timestamp`) and the type's own fields — each always present, its default
//! when not given, unknown fields dropped.
//!
//! A workstream's events reach the bridge already serialised by the node ([`WsFrame`]); the
//! bridge splices the base fields into that text rather than parsing and rebuilding it, so an
//! event is serialised once on its way from the workstream to Redis.

use std::ops::Range;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};

use super::protocol::now;
use crate::workstream::WsEvent;

/// A field's default.
#[derive(Clone, Copy, Debug)]
enum Blank {
    Text(&'static str),
    Int,
    Float,
    False,
    List,
    Object,
}

impl Blank {
    fn value(self) -> Value {
        match self {
            Self::Text(text) => Value::from(text),
            Self::Int => Value::from(0),
            Self::Float => Value::from(0.0),
            Self::False => Value::Bool(false),
            Self::List => Value::Array(Vec::new()),
            Self::Object => Value::Object(Map::new()),
        }
    }
}

const EMPTY: Blank = Blank::Text("");

/// Each outbound type's own fields and their defaults (all are always sent).
fn own_fields(kind: &str) -> &'static [(&'static str, Blank)] {
    match kind {
        "ack" => &[("status", Blank::Text("ok")), ("detail", EMPTY)],
        "content" | "reasoning" => &[("text", EMPTY)],
        // `approve_request` is the workstream's event the bridge turns into `approval_request`.
        "tool_info" | "approval_request" | "approve_request" => &[("items", Blank::List)],
        "tool_output_chunk" => &[("call_id", EMPTY), ("chunk", EMPTY)],
        "tool_result" => &[("call_id", EMPTY), ("name", EMPTY), ("output", EMPTY)],
        "plan_review" => &[("content", EMPTY)],
        "health_response" => &[("data", Blank::Object)],
        "node_list" => &[("nodes", Blank::List)],
        "cluster_state" => &[
            ("state", EMPTY),
            ("node_id", EMPTY),
            ("tokens", Blank::Int),
            ("context_ratio", Blank::Float),
            ("activity", EMPTY),
            ("activity_state", EMPTY),
        ],
        "status" => &[
            ("prompt_tokens", Blank::Int),
            ("completion_tokens", Blank::Int),
            ("total_tokens", Blank::Int),
            ("context_window", Blank::Int),
            ("pct", Blank::Float),
            ("effort", EMPTY),
        ],
        "state_change" => &[("state", EMPTY)],
        "ws_created" => &[
            ("name", EMPTY),
            ("node_id", EMPTY),
            ("resumed", Blank::False),
            ("session_id", EMPTY),
            ("message_count", Blank::Int),
        ],
        "ws_list" => &[("workstreams", Blank::List)],
        "ws_rename" => &[("name", EMPTY)],
        "error" | "info" => &[("message", EMPTY)],
        "session_resumed" => &[
            ("session_id", EMPTY),
            ("message_count", Blank::Int),
            ("name", EMPTY),
        ],
        _ => &[],
    }
}

/// Appends `kind`'s own fields: what `given` has for each (unless null), else its default.
fn fill(
    kind: &str,
    mut given: impl FnMut(&str) -> Option<Value>,
    out: &mut Vec<(&'static str, Value)>,
) {
    for (key, blank) in own_fields(kind) {
        let value = given(key).filter(|v| !v.is_null());
        out.push((key, value.unwrap_or_else(|| blank.value())));
    }
}

/// Fields in order, as a JSON object.
struct Fields<'a>(&'a [(&'static str, Value)]);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// An event for clients, built from its type and fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Outbound(Vec<(&'static str, Value)>);

impl Outbound {
    /// An event of `kind` about `ws_id` answering `correlation_id`, with `fields` over the
    /// type's defaults (unknown fields are dropped).
    pub fn new(kind: &str, ws_id: &str, correlation_id: &str, fields: Value) -> Self {
        let mut given = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let mut out = Vec::with_capacity(4 + own_fields(kind).len());
        out.push(("type", Value::from(kind)));
        out.push(("ws_id", Value::from(ws_id)));
        out.push(("correlation_id", Value::from(correlation_id)));
        out.push(("timestamp", Value::from(now())));
        fill(kind, |key| given.remove(key), &mut out);
        Self(out)
    }

    /// An `error` event.
    pub fn error(ws_id: &str, correlation_id: &str, message: impl Into<String>) -> Self {
        let fields = json!({"message": message.into()});
        Self::new("error", ws_id, correlation_id, fields)
    }

    /// An `ack`.
    pub fn ack(ws_id: &str, correlation_id: &str, ok: bool, detail: &str) -> Self {
        let fields = json!({"status": if ok { "ok" } else { "error" }, "detail": detail});
        Self::new("ack", ws_id, correlation_id, fields)
    }

    /// The event with a `trace_id` (the turn's trace, so a client can find it in its trace
    /// viewer); an extra field, which 0.4.1's clients ignore.
    pub fn traced(mut self, trace_id: Option<&str>) -> Self {
        if let Some(id) = trace_id {
            self.0.push(("trace_id", Value::from(id)));
        }
        self
    }

    /// The JSON text of `Outbound::new(kind, ws_id, correlation_id, fields).to_json()`, with
    /// each of the type's own fields looked up by `field` (a borrow: nothing is copied into a
    /// map first). The bridge writes every state change this way, twice: 4 of them a turn.
    pub fn json_of<'v>(
        kind: &str,
        ws_id: &str,
        correlation_id: &str,
        mut field: impl FnMut(&str) -> Option<&'v Value>,
    ) -> String {
        let mut out = Vec::with_capacity(192);
        out.extend_from_slice(b"{\"type\":");
        let _ = serde_json::to_writer(&mut out, kind);
        push_str_field(&mut out, "ws_id", ws_id);
        push_str_field(&mut out, "correlation_id", correlation_id);
        push_field(&mut out, "timestamp", &now());
        for (key, blank) in own_fields(kind) {
            match field(key).filter(|v| !v.is_null()) {
                Some(value) => push_field(&mut out, key, value),
                None => push_field(&mut out, key, &blank.value()),
            }
        }
        out.push(b'}');
        String::from_utf8(out).unwrap_or_default()
    }

    /// The type.
    pub fn kind(&self) -> &str {
        self.0.first().and_then(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Fields(&self.0)).unwrap_or_default()
    }
}

/// How a node's own events begin: with their type.
const TYPE_FIRST: &str = "{\"type\":\"";

/// A workstream event as a node serialised it (SPEC §2.1): a JSON object whose first key is
/// its type, followed by exactly its type's own fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsFrame {
    json: String,
    /// Where the type's name is in `json`.
    kind: Range<usize>,
}

fn is_type_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

impl WsFrame {
    /// An event of a workstream in this process.
    pub fn of(event: &WsEvent) -> Option<Self> {
        match event {
            WsEvent::Content { text } => Some(Self::text("content", text)),
            WsEvent::Reasoning { text } => Some(Self::text("reasoning", text)),
            _ => serde_json::to_string(event).ok().and_then(Self::from_node),
        }
    }

    /// A text event, `{"type":kind,"text":"…"}`, as serde writes it: most of a turn's events,
    /// and most of their bytes.
    fn text(kind: &str, text: &str) -> Self {
        let mut json = Vec::with_capacity(TYPE_FIRST.len() + kind.len() + text.len() + 12);
        json.extend_from_slice(TYPE_FIRST.as_bytes());
        json.extend_from_slice(kind.as_bytes());
        json.extend_from_slice(b"\",\"text\":");
        push_json_str(&mut json, text);
        json.push(b'}');
        Self {
            json: String::from_utf8(json).unwrap_or_default(),
            kind: TYPE_FIRST.len()..TYPE_FIRST.len() + kind.len(),
        }
    }

    /// A node's event text: taken as it is when it starts with its type (as a node serialises
    /// its workstream events), otherwise read and normalised as [`WsFrame::from_value`] does.
    pub fn from_node(json: String) -> Option<Self> {
        let start = TYPE_FIRST.len();
        let end = json
            .strip_prefix(TYPE_FIRST)
            .and_then(|rest| rest.find('"'))
            .map(|len| start + len);
        if let Some(end) = end
            && is_type_name(&json[start..end])
            && matches!(json.as_bytes().get(end + 1), Some(b',' | b'}'))
        {
            return Some(Self {
                json,
                kind: start..end,
            });
        }
        serde_json::from_str::<Value>(&json)
            .ok()
            .and_then(|event| Self::from_value(&event))
    }

    /// An event object of any node (a node server over HTTP, maybe another version): its
    /// type's own fields, defaults for those missing, others dropped. `None` without a type.
    pub fn from_value(event: &Value) -> Option<Self> {
        let kind = event.get("type")?.as_str().filter(|k| is_type_name(k))?;
        let mut fields = vec![("type", Value::from(kind))];
        fill(kind, |key| event.get(key).cloned(), &mut fields);
        let json = serde_json::to_string(&Fields(&fields)).ok()?;
        let start = TYPE_FIRST.len();
        Some(Self {
            json,
            kind: start..start + kind.len(),
        })
    }

    /// The type.
    pub fn kind(&self) -> &str {
        &self.json[self.kind.clone()]
    }

    /// The event read back, for the few the bridge looks into (reviews).
    pub fn fields(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }

    /// The event for clients about `ws_id` answering `correlation_id`: the base fields spliced
    /// in after the type, then the type's own fields as the node wrote them.
    pub fn outbound(&self, ws_id: &str, correlation_id: &str) -> String {
        // `{"type":"content"` | `,"text":"…"}`
        let (head, rest) = self.json.split_at(self.kind.end + 1);
        let mut out = Vec::with_capacity(self.json.len() + ws_id.len() + correlation_id.len() + 64);
        out.extend_from_slice(head.as_bytes());
        push_str_field(&mut out, "ws_id", ws_id);
        push_str_field(&mut out, "correlation_id", correlation_id);
        push_field(&mut out, "timestamp", &now());
        out.extend_from_slice(rest.as_bytes());
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Text events that may be merged when they follow each other: their text is their last
/// field.
const MERGEABLE: [&str; 2] = ["content", "reasoning"];

/// The parts of a text event as [`WsFrame::outbound`] writes it, `{"type":"content",…,
/// "timestamp":…,"text":"…"}`: everything before the timestamp (type, workstream and
/// correlation id), and the text still escaped. `None` for any other event.
fn text_parts(json: &str) -> Option<(&str, &str)> {
    let kind = json.strip_prefix(TYPE_FIRST)?.split('"').next()?;
    if !MERGEABLE.contains(&kind) {
        return None;
    }
    const TEXT: &str = ",\"text\":\"";
    let stamp = json.find(",\"timestamp\":")?;
    let rest = &json[stamp..];
    let text_at = rest.find(TEXT)?;
    let text = rest[text_at + TEXT.len()..].strip_suffix("\"}")?;
    // The text must be one whole string: no unescaped quote in it (another field after it).
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => {
                bytes.next();
            }
            b'"' => return None,
            _ => {}
        }
    }
    Some((&json[..stamp], text))
}

/// Merges the text event `next` into `into` when both are the same type of text event of the
/// same workstream and correlation id (`into` keeps its timestamp and gains `next`'s text);
/// false, and nothing changed, otherwise. Consecutive deltas that reach the publisher together
/// (a model streaming faster than they go out) are published as one event.
pub fn merge_text(into: &mut String, next: &str) -> bool {
    let (Some((head, _)), Some((next_head, text))) = (text_parts(into), text_parts(next)) else {
        return false;
    };
    if head != next_head {
        return false;
    }
    into.truncate(into.len() - 2);
    into.push_str(text);
    into.push_str("\"}");
    true
}

/// Appends `text` as a JSON string. Text that needs no escaping (no quote, backslash or
/// control character: one branch-free pass) is copied whole; serde_json escapes the rest,
/// byte by byte, which was the largest single cost of relaying a streamed answer.
fn push_json_str(out: &mut Vec<u8>, text: &str) {
    let plain = text.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into memory cannot fail.
        let _ = serde_json::to_writer(out, text);
    }
}

/// Appends `,"name":"text"`.
fn push_str_field(out: &mut Vec<u8>, name: &str, text: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    push_json_str(out, text);
}

/// Appends `,"name":value` to a JSON object being written.
fn push_field(out: &mut Vec<u8>, name: &str, value: &impl Serialize) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    // Writing a string or a number into memory cannot fail.
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mq::protocol::{Event, OUTBOUND_TYPES};
    use crate::tools::ToolItem;

    /// An event's JSON without its timestamp, which differs between two writes.
    fn untimed(json: &str) -> Value {
        let mut event: Value = serde_json::from_str(json).unwrap();
        event.as_object_mut().unwrap().remove("timestamp").unwrap();
        event
    }

    #[test]
    fn text_frames_are_what_serde_writes() {
        for text in [
            "plain words",
            "",
            "a \"quote\"",
            "back\\slash",
            "line\nbreak\ttab\u{1}",
            "héllo wörld ✓",
            "\u{7f} del",
        ] {
            for event in [
                WsEvent::Content { text: text.into() },
                WsEvent::Reasoning { text: text.into() },
            ] {
                let frame = WsFrame::of(&event).unwrap();
                assert_eq!(
                    frame.json,
                    serde_json::to_string(&event).unwrap(),
                    "{text:?}"
                );
                assert_eq!(
                    frame.kind(),
                    if matches!(event, WsEvent::Content { .. }) {
                        "content"
                    } else {
                        "reasoning"
                    }
                );
            }
        }
    }

    #[test]
    fn json_of_writes_what_outbound_writes_in_the_same_order() {
        let given = json!({"state": "thinking", "tokens": 7, "context_ratio": 0.5,
            "activity": "a \"quoted\" thing", "activity_state": null, "junk": 1, "text": "hé"});
        for kind in OUTBOUND_TYPES {
            let made = Outbound::new(kind, "w", "c", given.clone()).to_json();
            let written = Outbound::json_of(kind, "w", "c", |key| given.get(key));
            assert_eq!(untimed(&written), untimed(&made), "{kind}");
            let keys = |json: &str| {
                let event: serde_json::Map<String, Value> = serde_json::from_str(json).unwrap();
                event.keys().cloned().collect::<Vec<_>>()
            };
            assert_eq!(keys(&written), keys(&made), "{kind}");
        }
    }

    #[test]
    fn outbound_events_carry_every_field_of_their_type() {
        for kind in OUTBOUND_TYPES {
            let event = Outbound::new(kind, "w", "c", json!({}));
            assert_eq!(event.kind(), kind);
            let parsed = Event::parse(&event.to_json()).unwrap();
            assert_eq!(parsed.kind, kind);
            assert_eq!(parsed.ws_id, "w");
            assert_eq!(parsed.correlation_id, "c");
            assert!(parsed.timestamp > 0.0);
            for (key, _) in own_fields(kind) {
                assert!(parsed.fields.contains_key(*key), "{kind} lacks {key}");
            }
            assert_eq!(parsed.fields.len(), own_fields(kind).len(), "{kind}");
        }
        let content = Outbound::new("content", "w", "", json!({"text": "hi", "junk": 1}));
        let parsed = Event::parse(&content.to_json()).unwrap();
        assert_eq!(parsed.str("text"), "hi");
        assert!(!parsed.fields.contains_key("junk"));
        let ack = Event::parse(&Outbound::ack("w", "c", false, "busy").to_json()).unwrap();
        assert_eq!((ack.str("status"), ack.str("detail")), ("error", "busy"));
    }

    fn without_time(mut event: Event) -> Event {
        event.timestamp = 0.0;
        event
    }

    #[test]
    fn a_spliced_workstream_event_reads_as_the_built_one() {
        let item = ToolItem {
            call_id: "c1".into(),
            header: "bash(ls \"a\")".into(),
            preview: "ls \"a\"".into(),
            func_name: "bash".into(),
            approval_label: "bash".into(),
            needs_approval: false,
            error: None,
        };
        let events = [
            WsEvent::Content {
                text: "hé \"quoted\"\n".into(),
            },
            WsEvent::Reasoning { text: "hmm".into() },
            WsEvent::ToolInfo { items: vec![item] },
            WsEvent::ToolResult {
                call_id: "c1".into(),
                name: "bash".into(),
                output: "{\"type\":\"x\"}".into(),
            },
            WsEvent::ToolOutputChunk {
                call_id: "c1".into(),
                chunk: "…".into(),
            },
            WsEvent::Status {
                prompt_tokens: 10,
                completion_tokens: 2,
                total_tokens: 12,
                context_window: 8192,
                pct: 0.1,
                effort: "medium".into(),
            },
            WsEvent::Error {
                message: "bad".into(),
            },
            WsEvent::Info {
                message: "note".into(),
            },
            WsEvent::StreamEnd,
        ];
        for event in events {
            let frame = WsFrame::of(&event).unwrap();
            let value = serde_json::to_value(&event).unwrap();
            let kind = value["type"].as_str().unwrap().to_owned();
            assert_eq!(frame.kind(), kind);
            let spliced = Event::parse(&frame.outbound("ws \"1\"", "cid")).unwrap();
            assert!(spliced.timestamp > 0.0);
            let built = Outbound::new(&kind, "ws \"1\"", "cid", value).to_json();
            let built = Event::parse(&built).unwrap();
            assert_eq!(without_time(spliced), without_time(built), "{kind}");
        }
    }

    #[test]
    fn consecutive_text_deltas_merge_into_one_event() {
        let frame = |event: WsEvent| WsFrame::of(&event).unwrap();
        let content = |text: &str| frame(WsEvent::Content { text: text.into() });
        let mut first = content("hé \"a\"\\").outbound("w1", "c");
        assert!(merge_text(&mut first, &content(" b\n").outbound("w1", "c")));
        assert!(merge_text(&mut first, &content("}c").outbound("w1", "c")));
        let merged = Event::parse(&first).unwrap();
        assert_eq!(
            (
                merged.kind.as_str(),
                merged.str("text"),
                merged.ws_id.as_str()
            ),
            ("content", "hé \"a\"\\ b\n}c", "w1")
        );
        assert_eq!(merged.fields.len(), 1);
        // Not merged: another workstream, correlation id or type, or not a text event.
        let before = first.clone();
        assert!(!merge_text(&mut first, &content("x").outbound("w2", "c")));
        assert!(!merge_text(&mut first, &content("x").outbound("w1", "d")));
        let reasoning = frame(WsEvent::Reasoning { text: "r".into() }).outbound("w1", "c");
        assert!(!merge_text(&mut first, &reasoning));
        let end = frame(WsEvent::StreamEnd).outbound("w1", "c");
        assert!(!merge_text(&mut first, &end));
        assert_eq!(first, before);
        // Reasoning merges with reasoning.
        let mut thought = reasoning.clone();
        assert!(merge_text(&mut thought, &reasoning));
        assert_eq!(Event::parse(&thought).unwrap().str("text"), "rr");
        // An event with a field after its text (a traced one) is left alone.
        let traced = Outbound::new("content", "w1", "c", json!({"text": "t"}))
            .traced(Some("abc"))
            .to_json();
        let mut plain = content("p").outbound("w1", "c");
        assert!(!merge_text(&mut plain, &traced));
    }

    #[test]
    fn a_foreign_event_is_normalised_to_its_type() {
        // Not type-first (a node that serialises otherwise): read and normalised.
        let frame =
            WsFrame::from_node(r#"{"message":"hi","type":"info","extra":1}"#.into()).unwrap();
        assert_eq!(frame.kind(), "info");
        let event = Event::parse(&frame.outbound("w", "")).unwrap();
        assert_eq!(event.str("message"), "hi");
        assert!(!event.fields.contains_key("extra"));
        // Missing fields take their defaults.
        let frame = WsFrame::from_value(&json!({"type": "tool_result", "name": "bash"})).unwrap();
        let event = Event::parse(&frame.outbound("w", "")).unwrap();
        assert_eq!(
            (event.str("name"), event.str("call_id"), event.str("output")),
            ("bash", "", "")
        );
        // Not an event.
        assert!(WsFrame::from_node("[1]".into()).is_none());
        assert!(WsFrame::from_value(&json!({"text": "no type"})).is_none());
        assert!(WsFrame::from_value(&json!({"type": "Bad Type"})).is_none());
    }
}
