//! `search`: content search with a regular expression, like `grep -rnIE -m 200`, on the ignore
//! and regex crates (respects .gitignore, skips binary files).

use std::io::BufRead;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::confine;
use crate::provider::ToolSpec;
use crate::tools::{Tool, ToolContext, ToolOutput};

/// Matches kept per file.
const PER_FILE: usize = 200;
/// Matches kept in all.
const TOTAL: usize = 2000;

/// The search tool.
#[derive(Debug)]
pub struct Search;

#[async_trait]
impl Tool for Search {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "search".into(),
            description: "Search file contents with a regular expression (extended syntax); returns path:line:text.".into(),
            parameters: json!({"type": "object", "properties": {
                "query": {"type": "string"}, "path": {"type": "string", "default": "."}},
                "required": ["query"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        false
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("query")
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        let query = args["query"]
            .as_str()
            .ok_or("missing required argument 'query'")?;
        regex::Regex::new(query)
            .map(|_| ())
            .map_err(|e| format!("invalid pattern: {e}"))
    }
    async fn run(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, String> {
        let query = args["query"].as_str().unwrap_or_default().to_owned();
        let root = confine(&ctx.workdir, args["path"].as_str().unwrap_or("."))?;
        let base = ctx.workdir.canonicalize().map_err(|e| e.to_string())?;
        let pattern = regex::Regex::new(&query).map_err(|e| format!("invalid pattern: {e}"))?;
        // The walk is blocking I/O: off the async threads.
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for entry in ignore::WalkBuilder::new(&root).build().flatten() {
                if out.len() >= TOTAL {
                    break;
                }
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    continue;
                }
                let Ok(file) = std::fs::File::open(entry.path()) else {
                    continue;
                };
                let shown = entry
                    .path()
                    .strip_prefix(&base)
                    .unwrap_or(entry.path())
                    .display()
                    .to_string();
                let mut found = 0;
                for (n, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
                    let Ok(bytes) = line else { break };
                    if bytes.contains(&0) {
                        break; // binary
                    }
                    let text = String::from_utf8_lossy(&bytes);
                    if pattern.is_match(&text) {
                        out.push(format!("{shown}:{}:{}", n + 1, text.trim_end()));
                        found += 1;
                        if found >= PER_FILE || out.len() >= TOTAL {
                            break;
                        }
                    }
                }
            }
            let text = if out.is_empty() {
                "(no matches)".to_owned()
            } else {
                out.join("\n")
            };
            Ok(ToolOutput::text(text))
        })
        .await
        .map_err(|e| format!("search failed: {e}"))?
    }
}
