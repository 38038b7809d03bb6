//! Stage 1 of the tool pipeline: parse and validate each call before anyone approves it.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Tool, ToolItem, ToolRegistry};
use crate::provider::ToolCall;
use crate::text::ellipsize;

/// Argument names tried when a call's JSON does not parse (SPEC §5).
const RECOVERABLE_KEYS: [&str; 9] = [
    "command", "code", "content", "page", "path", "pattern", "prompt", "query", "url",
];

/// A call ready for approval and execution.
#[derive(Clone)]
pub struct PreparedCall {
    /// The model's call.
    pub call: ToolCall,
    /// The tool, when it exists.
    pub tool: Option<Arc<dyn Tool>>,
    /// Parsed (or recovered) arguments.
    pub args: Value,
    /// What people see.
    pub item: ToolItem,
}

impl std::fmt::Debug for PreparedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCall")
            .field("call", &self.call)
            .field("args", &self.args)
            .field("item", &self.item)
            .finish_non_exhaustive()
    }
}

impl PreparedCall {
    /// Whether it will run (no preparation error).
    pub fn runnable(&self) -> bool {
        self.item.error.is_none() && self.tool.is_some()
    }
}

/// Prepares every call of a model reply.
pub fn prepare_calls(calls: &[ToolCall], tools: &ToolRegistry) -> Vec<PreparedCall> {
    calls.iter().map(|call| prepare(call, tools)).collect()
}

fn prepare(call: &ToolCall, tools: &ToolRegistry) -> PreparedCall {
    let tool = tools.get(&call.name).cloned();
    let (args, error) = match &tool {
        None => (
            Value::Object(Map::new()),
            Some(format!("Error: unknown tool '{}'", call.name)),
        ),
        Some(tool) => match parse_args(&call.arguments, tool.primary_key()) {
            Ok(args) => {
                let error = tool.validate(&args).err().map(|e| format!("Error: {e}"));
                (args, error)
            }
            Err(e) => (Value::Object(Map::new()), Some(format!("Error: {e}"))),
        },
    };
    let preview = match &tool {
        Some(t) if error.is_none() => t.preview(&args),
        Some(_) | None => call.arguments.clone(),
    };
    let needs_approval = error.is_none() && tool.as_ref().is_some_and(|t| t.needs_approval());
    PreparedCall {
        item: ToolItem {
            call_id: call.id.clone(),
            header: format!("{}({})", call.name, ellipsize(&preview, 80)),
            preview,
            func_name: call.name.clone(),
            approval_label: call.name.clone(),
            needs_approval,
            error,
        },
        call: call.clone(),
        tool,
        args,
    }
}

/// Parses arguments; malformed JSON is recovered as Turnstone does: a recognisable
/// `"key": "value"` for one of the usual argument names, or the bare text as the tool's
/// primary argument.
fn parse_args(raw: &str, primary_key: Option<&str>) -> Result<Value, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(map)) => return Ok(Value::Object(map)),
        Ok(other) => {
            if let Some(key) = primary_key {
                let text = other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_owned);
                return Ok(single(key, text));
            }
            return Err(format!("arguments must be a JSON object, got {other}"));
        }
        Err(_) => {}
    }
    for key in primary_key.into_iter().chain(RECOVERABLE_KEYS) {
        if let Some(value) = extract_string_field(trimmed, key) {
            return Ok(single(key, value));
        }
    }
    match primary_key {
        Some(key) if !trimmed.starts_with('{') => Ok(single(key, trimmed.to_owned())),
        _ => Err(format!(
            "invalid JSON arguments: {}",
            ellipsize(trimmed, 200)
        )),
    }
}

fn single(key: &str, value: String) -> Value {
    let mut map = Map::new();
    map.insert(key.to_owned(), Value::String(value));
    Value::Object(map)
}

/// Finds `"key": "…"` in broken JSON and returns the string, with JSON escapes undone where
/// possible; an unterminated string runs to the end.
fn extract_string_field(text: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\"");
    let after_key = &text[text.find(&needle)? + needle.len()..];
    let after_colon = after_key.trim_start().strip_prefix(':')?.trim_start();
    let body = after_colon.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => break,
            },
            other => out.push(other),
        }
    }
    Some(out.trim_end_matches(['}', ' ', '\n']).to_owned())
}

/// Keeps the head and tail halves of an output longer than `limit` characters, as Turnstone.
pub fn truncate_output(output: &str, limit: usize) -> String {
    let total = output.chars().count();
    if limit == 0 || total <= limit {
        return output.to_owned();
    }
    let half = limit / 2;
    let head: String = output.chars().take(half).collect();
    let tail: String = output.chars().skip(total - half).collect();
    format!(
        "{head}\n… [{} chars truncated — output exceeded {limit} char limit] …\n{tail}",
        total - 2 * half
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_json_objects_pass_through() {
        assert_eq!(
            parse_args(r#"{"command": "ls"}"#, Some("command")),
            Ok(serde_json::json!({"command": "ls"}))
        );
        assert_eq!(parse_args("  ", None), Ok(serde_json::json!({})));
    }

    #[test]
    fn broken_json_recovers_a_known_key() {
        assert_eq!(
            parse_args(r#"{"command": "echo \"hi\"\nls", "#, Some("command")),
            Ok(serde_json::json!({"command": "echo \"hi\"\nls"}))
        );
        assert_eq!(
            parse_args(r#"{"path": "/tmp/a.txt"#, Some("path")),
            Ok(serde_json::json!({"path": "/tmp/a.txt"}))
        );
    }

    #[test]
    fn bare_text_becomes_the_primary_argument() {
        assert_eq!(
            parse_args("ls -la /tmp", Some("command")),
            Ok(serde_json::json!({"command": "ls -la /tmp"}))
        );
        assert_eq!(
            parse_args("\"just a string\"", Some("query")),
            Ok(serde_json::json!({"query": "just a string"}))
        );
    }

    #[test]
    fn unrecoverable_arguments_are_a_clear_error() {
        let err = parse_args("{\"x\": 1", None).unwrap_err();
        assert!(err.starts_with("invalid JSON arguments"), "{err}");
        assert!(
            parse_args("[1, 2]", None)
                .unwrap_err()
                .contains("must be a JSON object")
        );
    }

    #[test]
    fn truncation_keeps_head_and_tail() {
        let long: String = (0..100)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let cut = truncate_output(&long, 20);
        assert!(cut.starts_with("abcdefghij\n"));
        assert!(cut.ends_with("\nmnopqrstuv"), "{cut}");
        assert!(cut.contains("[80 chars truncated — output exceeded 20 char limit]"));
        assert_eq!(truncate_output("short", 20), "short");
    }
}
