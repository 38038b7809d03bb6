//! `read_file`, `write_file`, `edit_file`.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::confine;
use crate::provider::ToolSpec;
use crate::tools::{Tool, ToolContext, ToolOutput};

/// Largest file the file tools read.
const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// Files each session has read (edit_file requires a prior read).
#[derive(Clone, Debug, Default)]
pub struct ReadSet(Arc<Mutex<HashMap<String, HashSet<PathBuf>>>>);

impl ReadSet {
    fn mark(&self, session: &str, path: &Path) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(session.to_owned())
            .or_default()
            .insert(path.to_path_buf());
    }

    fn contains(&self, session: &str, path: &Path) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session)
            .is_some_and(|s| s.contains(path))
    }
}

fn string_arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, String> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing required argument '{key}'"))
}

/// Reads a text file, refusing directories, binary and oversized files.
fn read_text(path: &Path, shown: &str) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if meta.is_dir() {
        return Err(format!("{shown} is a directory"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{shown} is too large ({} bytes; limit {MAX_FILE_BYTES})",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES).read_to_end(&mut bytes))
        .map_err(|e| format!("{shown}: {e}"))?;
    if bytes.iter().take(8192).any(|b| *b == 0) {
        return Err(format!("{shown} is a binary file"));
    }
    String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text"))
}

/// `read_file`: numbered lines, with offset and limit.
#[derive(Debug)]
pub struct ReadFile {
    read: ReadSet,
}

impl ReadFile {
    /// Shares `read` with the editing tools.
    pub fn new(read: ReadSet) -> Self {
        Self { read }
    }
}

#[async_trait]
impl Tool for ReadFile {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "read_file".into(),
            description:
                "Read a text file with line numbers. Use offset and limit for large files.".into(),
            parameters: json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "File path, relative to the working directory"},
                "offset": {"type": "integer", "minimum": 1, "description": "First line (1-based)"},
                "limit": {"type": "integer", "minimum": 1, "description": "Number of lines"}},
                "required": ["path"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        false
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("path")
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        string_arg(args, "path")?;
        for key in ["offset", "limit"] {
            if let Some(v) = args.get(key)
                && v.as_u64().is_none_or(|n| n < 1)
            {
                return Err(format!("'{key}' must be an integer ≥ 1"));
            }
        }
        Ok(())
    }
    async fn run(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, String> {
        let shown = string_arg(&args, "path")?;
        let path = confine(&ctx.workdir, shown)?;
        let text = read_text(&path, shown)?;
        let offset = args["offset"].as_u64().unwrap_or(1).max(1) as usize;
        let limit = args["limit"].as_u64().map_or(usize::MAX, |l| l as usize);
        let mut out = String::new();
        for (n, line) in text.lines().enumerate().skip(offset - 1).take(limit) {
            out.push_str(&format!("{:4}\t{line}\n", n + 1));
        }
        self.read.mark(&ctx.session_id, &path);
        if out.is_empty() {
            out = if text.is_empty() {
                "(empty file)".into()
            } else {
                format!("(no lines from {offset})")
            };
        }
        Ok(ToolOutput::text(out))
    }
}

/// `write_file`: creates or replaces a file (parent directories too).
#[derive(Debug)]
pub struct WriteFile {
    read: ReadSet,
}

impl WriteFile {
    /// Marks written files as read (their content is known).
    pub fn new(read: ReadSet) -> Self {
        Self { read }
    }
}

#[async_trait]
impl Tool for WriteFile {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "write_file".into(),
            description: "Create a file or replace its whole content.".into(),
            parameters: json!({"type": "object", "properties": {
                "path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path", "content"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        true
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("content")
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        string_arg(args, "path")?;
        string_arg(args, "content").map(|_| ())
    }
    fn preview(&self, args: &Value) -> String {
        format!(
            "{} ({} chars)",
            args["path"].as_str().unwrap_or(""),
            args["content"].as_str().map_or(0, |c| c.chars().count())
        )
    }
    async fn run(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, String> {
        let shown = string_arg(&args, "path")?;
        let content = string_arg(&args, "content")?;
        let path = confine(&ctx.workdir, shown)?;
        if path.is_dir() {
            return Err(format!("{shown} is a directory"));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{shown}: {e}"))?;
        }
        let existed = path.exists();
        std::fs::write(&path, content).map_err(|e| format!("{shown}: {e}"))?;
        self.read.mark(&ctx.session_id, &path);
        let verb = if existed { "Overwrote" } else { "Wrote" };
        Ok(ToolOutput::text(format!(
            "{verb} {shown} ({} lines)",
            content.lines().count()
        )))
    }
}

/// `edit_file`: replaces one exact occurrence; `near_line` picks among several.
#[derive(Debug)]
pub struct EditFile {
    read: ReadSet,
}

impl EditFile {
    /// Needs the read set: a file must be read before it is edited.
    pub fn new(read: ReadSet) -> Self {
        Self { read }
    }
}

#[async_trait]
impl Tool for EditFile {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "edit_file".into(),
            description:
                "Replace an exact piece of text in a file read before. If the text occurs \
                          more than once, give near_line to pick the occurrence."
                    .into(),
            parameters: json!({"type": "object", "properties": {
                "path": {"type": "string"}, "old_string": {"type": "string"},
                "new_string": {"type": "string"}, "near_line": {"type": "integer", "minimum": 1}},
                "required": ["path", "old_string", "new_string"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        true
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("old_string")
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        string_arg(args, "path")?;
        if string_arg(args, "old_string")?.is_empty() {
            return Err("'old_string' must not be empty".into());
        }
        string_arg(args, "new_string").map(|_| ())
    }
    fn preview(&self, args: &Value) -> String {
        args["path"].as_str().unwrap_or("").to_owned()
    }
    async fn run(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, String> {
        let shown = string_arg(&args, "path")?;
        let old = string_arg(&args, "old_string")?;
        let new = string_arg(&args, "new_string")?;
        let path = confine(&ctx.workdir, shown)?;
        if !self.read.contains(&ctx.session_id, &path) {
            return Err(format!("read {shown} with read_file before editing it"));
        }
        let text = read_text(&path, shown)?;
        let starts: Vec<usize> = text.match_indices(old).map(|(i, _)| i).collect();
        let line_of = |byte: usize| text[..byte].matches('\n').count() + 1;
        let at = match (starts.as_slice(), args["near_line"].as_u64()) {
            ([], _) => return Err(format!("old_string not found in {shown}")),
            ([one], _) => *one,
            (many, Some(near)) => *many
                .iter()
                .min_by_key(|s| (line_of(**s) as i64 - near as i64).abs())
                .unwrap_or(&many[0]),
            (many, None) => {
                let lines: Vec<String> = many.iter().map(|s| line_of(*s).to_string()).collect();
                return Err(format!(
                    "old_string occurs {} times in {shown} (lines {}); give near_line to choose one",
                    many.len(),
                    lines.join(", ")
                ));
            }
        };
        let mut edited = String::with_capacity(text.len() + new.len());
        edited.push_str(&text[..at]);
        edited.push_str(new);
        edited.push_str(&text[at + old.len()..]);
        std::fs::write(&path, edited).map_err(|e| format!("{shown}: {e}"))?;
        Ok(ToolOutput::text(format!(
            "Edited {shown} at line {}",
            line_of(at)
        )))
    }
}
