//! `remember`, `recall`, `forget`: notes the model keeps across sessions, in the database.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::provider::ToolSpec;
use crate::storage::Store;
use crate::tools::{Tool, ToolContext, ToolOutput};

fn arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, String> {
    args[key]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("missing required argument '{key}'"))
}

/// `remember`.
#[derive(Debug)]
pub struct Remember {
    store: Store,
}

impl Remember {
    /// Over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Tool for Remember {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "remember".into(),
            description: "Save a note under a key for later sessions (replaces an existing one)."
                .into(),
            parameters: json!({"type": "object", "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
                "required": ["key", "value"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        false
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("key")
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        arg(args, "key")?;
        arg(args, "value").map(|_| ())
    }
    async fn run(&self, args: Value, _: ToolContext) -> Result<ToolOutput, String> {
        let key = self
            .store
            .remember(arg(&args, "key")?, arg(&args, "value")?)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ToolOutput::text(format!("Remembered {key}")))
    }
}

/// `recall`.
#[derive(Debug)]
pub struct Recall {
    store: Store,
}

impl Recall {
    /// Over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Tool for Recall {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "recall".into(),
            description:
                "Search saved notes and past conversations; without a query, list all notes.".into(),
            parameters: json!({"type": "object", "properties": {"query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20}}}),
        }
    }
    fn needs_approval(&self) -> bool {
        false
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("query")
    }
    async fn run(&self, args: Value, _: ToolContext) -> Result<ToolOutput, String> {
        let query = args["query"].as_str().unwrap_or("").trim().to_owned();
        let limit = args["limit"].as_u64().unwrap_or(20).clamp(1, 50);
        let memories = self
            .store
            .memories(&query, limit)
            .await
            .map_err(|e| e.to_string())?;
        let mut out: Vec<String> = memories
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        if !query.is_empty() {
            let hits = self
                .store
                .search_history(&query, limit)
                .await
                .map_err(|e| e.to_string())?;
            out.extend(hits.into_iter().map(|h| {
                format!(
                    "[history {} {}] {}",
                    h.timestamp,
                    h.role,
                    crate::text::ellipsize(&h.content, 300)
                )
            }));
        }
        Ok(ToolOutput::text(if out.is_empty() {
            "(nothing found)".into()
        } else {
            out.join("\n")
        }))
    }
}

/// `forget`.
#[derive(Debug)]
pub struct Forget {
    store: Store,
}

impl Forget {
    /// Over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Tool for Forget {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "forget".into(),
            description: "Delete a saved note.".into(),
            parameters: json!({"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        false
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("key")
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        arg(args, "key").map(|_| ())
    }
    async fn run(&self, args: Value, _: ToolContext) -> Result<ToolOutput, String> {
        let key = arg(&args, "key")?;
        match self.store.forget(key).await.map_err(|e| e.to_string())? {
            true => Ok(ToolOutput::text(format!("Forgot {key}"))),
            false => Err(format!("no note named {key}")),
        }
    }
}
