//! `man`: a manual page as plain text (`info` when man has none).

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::provider::ToolSpec;
use crate::tools::{Tool, ToolContext, ToolOutput};

/// The man tool.
#[derive(Debug)]
pub struct Man;

fn valid_page(page: &str) -> bool {
    !page.is_empty()
        && page
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn valid_section(section: &str) -> bool {
    let mut chars = section.chars();
    matches!(chars.next(), Some('1'..='9'))
        && match chars.next() {
            None => true,
            Some(c) => c.is_ascii_lowercase() && chars.next().is_none(),
        }
}

/// Removes backspace overstrike (`X\bX`, `_\bX`) and ANSI escape sequences.
pub fn plain(text: &str) -> String {
    let mut out: Vec<char> = Vec::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{8}' => {
                out.pop();
            }
            '\u{1b}' => {
                // ESC [ … final byte
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for n in chars.by_ref() {
                        if ('@'..='~').contains(&n) {
                            break;
                        }
                    }
                }
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
}

async fn run_reader(program: &str, args: &[&str]) -> Option<String> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(10), child)
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !text.trim().is_empty()).then_some(text)
}

#[async_trait]
impl Tool for Man {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "man".into(),
            description: "Show a manual page (falls back to info).".into(),
            parameters: json!({"type": "object", "properties": {
                "page": {"type": "string"}, "section": {"type": "string"}}, "required": ["page"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        false
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("page")
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        let page = args["page"]
            .as_str()
            .ok_or("missing required argument 'page'")?;
        if !valid_page(page) {
            return Err(format!(
                "invalid page name {page:?}: letters, digits, '.', '_' and '-' only"
            ));
        }
        match args["section"].as_str() {
            Some(s) if !valid_section(s) => Err(format!(
                "invalid section {s:?}: a digit 1-9, optionally one letter"
            )),
            Some(_) | None => Ok(()),
        }
    }
    async fn run(&self, args: Value, _: ToolContext) -> Result<ToolOutput, String> {
        self.validate(&args)?;
        let page = args["page"].as_str().unwrap_or_default();
        let mut man_args: Vec<&str> = Vec::new();
        if let Some(section) = args["section"].as_str() {
            man_args.push(section);
        }
        man_args.push(page);
        if let Some(text) = run_reader("man", &man_args).await {
            return Ok(ToolOutput::text(plain(&text)));
        }
        if let Some(text) = run_reader("info", &["--subnodes", "-o", "-", page]).await {
            return Ok(ToolOutput::text(plain(&text)));
        }
        Err(format!("no manual entry for {page}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overstrike_and_escapes_are_removed() {
        assert_eq!(plain("N\u{8}NA\u{8}AM\u{8}ME\u{8}E _\u{8}x"), "NAME x");
        assert_eq!(plain("\u{1b}[1mbold\u{1b}[0m"), "bold");
    }

    #[test]
    fn names_and_sections_are_checked() {
        assert!(
            valid_page("git-commit") && valid_page("ls") && !valid_page("ls;rm") && !valid_page("")
        );
        assert!(
            valid_section("1")
                && valid_section("3p")
                && !valid_section("0")
                && !valid_section("1ab")
        );
    }
}
