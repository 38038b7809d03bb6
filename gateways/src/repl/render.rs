//! Markdown for the terminal, rendered line by line as the answer streams.

/// ANSI styles, or none (NO_COLOR, not a terminal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Styles on or off.
    pub fn new(color: bool) -> Self {
        Self { color }
    }

    fn wrap(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Bold.
    pub fn bold(&self, t: &str) -> String {
        self.wrap("1", t)
    }
    /// Dim (reasoning, tool output).
    pub fn dim(&self, t: &str) -> String {
        self.wrap("2", t)
    }
    /// Cyan (code).
    pub fn code(&self, t: &str) -> String {
        self.wrap("36", t)
    }
    /// Red (errors).
    pub fn error(&self, t: &str) -> String {
        self.wrap("31", t)
    }
    /// Yellow (notices, approvals).
    pub fn notice(&self, t: &str) -> String {
        self.wrap("33", t)
    }
    /// Green (results).
    pub fn ok(&self, t: &str) -> String {
        self.wrap("32", t)
    }
}

/// Turns streamed text into rendered lines; holds back an incomplete line.
#[derive(Debug)]
pub struct Markdown {
    style: Style,
    pending: String,
    in_code: bool,
}

impl Markdown {
    /// A renderer.
    pub fn new(style: Style) -> Self {
        Self {
            style,
            pending: String::new(),
            in_code: false,
        }
    }

    /// Takes streamed text; returns the complete lines rendered (each ending in `\n`).
    pub fn push(&mut self, text: &str) -> String {
        self.pending.push_str(text);
        let mut out = String::new();
        while let Some(i) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=i).collect();
            out.push_str(&self.line(line.trim_end_matches('\n')));
            out.push('\n');
        }
        out
    }

    /// Renders what is held back (end of the answer).
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.in_code = false;
        if rest.is_empty() {
            String::new()
        } else {
            format!("{}\n", self.line(&rest))
        }
    }

    fn line(&mut self, line: &str) -> String {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            self.in_code = !self.in_code;
            return self.style.dim(line);
        }
        if self.in_code {
            return self.style.code(&format!("  {line}"));
        }
        if let Some(h) = trimmed
            .strip_prefix("### ")
            .or_else(|| trimmed.strip_prefix("## "))
            .or_else(|| trimmed.strip_prefix("# "))
        {
            return self.style.bold(h);
        }
        let (indent, rest) = line.split_at(line.len() - trimmed.len());
        if let Some(item) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("* ")) {
            return format!("{indent}• {}", self.inline(item));
        }
        self.inline(line)
    }

    /// `**bold**` and `` `code` `` spans.
    fn inline(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        loop {
            let next_bold = rest.find("**");
            let next_code = rest.find('`');
            let (at, marker) = match (next_bold, next_code) {
                (Some(b), Some(c)) if c < b => (c, "`"),
                (Some(b), _) => (b, "**"),
                (None, Some(c)) => (c, "`"),
                (None, None) => break,
            };
            let after = &rest[at + marker.len()..];
            let Some(end) = after.find(marker) else {
                break;
            };
            out.push_str(&rest[..at]);
            let inner = &after[..end];
            out.push_str(&if marker == "`" {
                self.style.code(inner)
            } else {
                self.style.bold(inner)
            });
            rest = &after[end + marker.len()..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Markdown {
        Markdown::new(Style::new(false))
    }

    #[test]
    fn lines_are_released_when_complete() {
        let mut md = plain();
        assert_eq!(md.push("Hello wo"), "");
        assert_eq!(md.push("rld\nnext"), "Hello world\n");
        assert_eq!(md.finish(), "next\n");
        assert_eq!(md.finish(), "");
    }

    #[test]
    fn headings_bullets_and_spans_are_styled() {
        let mut md = Markdown::new(Style::new(true));
        let out = md.push("# Title\n- item with `code` and **bold**\n");
        assert_eq!(
            out,
            "\x1b[1mTitle\x1b[0m\n• item with \x1b[36mcode\x1b[0m and \x1b[1mbold\x1b[0m\n"
        );
    }

    #[test]
    fn code_blocks_are_indented_and_not_interpreted() {
        let mut md = plain();
        let out = md.push("```rust\nlet x = **y**;\n```\n**done**\n");
        assert_eq!(out, "```rust\n  let x = **y**;\n```\ndone\n");
    }

    #[test]
    fn unbalanced_markers_are_left_alone() {
        let mut md = plain();
        assert_eq!(md.push("a ** b ` c\n"), "a ** b ` c\n");
    }
}
