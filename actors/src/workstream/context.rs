//! Context management: which messages a compaction summarises and which it keeps, how they are
//! rendered for the summary, and the summary and title requests.

use std::sync::Arc;

use crate::config::ReasoningEffort;
use crate::provider::{ChatMessage, ModelRequest, Role};
use crate::text::prefix;

/// Characters per token, for estimates before the backend reports usage.
pub const CHARS_PER_TOKEN: usize = 4;

/// The marker that starts a session title request (test servers route on it).
pub const TITLE_PROMPT: &str = "Write a short title for this conversation";

const SUMMARY_PROMPT: &str = "Summarize the conversation below so that it can continue without \
it: the goal, what was found and decided, what was done (files, commands, results), open \
questions and the next steps. Be specific and concise.";

/// Splits the history for compaction: the older part to summarise and the newest part to keep
/// verbatim (about `keep_tokens`, starting at a user message so tool calls stay with their
/// results). None when there is too little to summarise.
pub fn split_for_compaction(messages: &[ChatMessage], keep_tokens: usize) -> Option<usize> {
    let budget = keep_tokens * CHARS_PER_TOKEN;
    let mut kept = 0usize;
    let mut cut = messages.len();
    for (i, m) in messages.iter().enumerate().rev() {
        kept += m.chars();
        if kept > budget {
            break;
        }
        if m.role == Role::User {
            cut = i;
        }
    }
    // Keep at least the last user message and what followed it; and when everything would fit
    // (the estimate misses the system prompt and tool schemas, the backend said the context is
    // full), keep only that last exchange.
    if cut == messages.len() || cut < 2 {
        cut = messages.iter().rposition(|m| m.role == Role::User)?;
    }
    (cut >= 2).then_some(cut)
}

fn clip_long(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 2000 {
        return text.to_owned();
    }
    let head: String = chars[..1000].iter().collect();
    let tail: String = chars[chars.len() - 500..].iter().collect();
    format!("{head}…[truncated]…{tail}")
}

/// Renders messages as Turnstone does for a summary: `ROLE: text`, `[Called: f(args)]`,
/// `TOOL[name]: output`, long texts clipped to their first 1000 and last 500 characters.
pub fn render(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        let line = match m.role {
            Role::System => continue,
            Role::User => format!("USER: {}", clip_long(m.content.as_deref().unwrap_or(""))),
            Role::Assistant => {
                let mut parts = Vec::new();
                if let Some(c) = &m.content {
                    parts.push(clip_long(c));
                }
                for call in &m.tool_calls {
                    parts.push(format!(
                        "[Called: {}({})]",
                        call.name,
                        clip_long(&call.arguments)
                    ));
                }
                format!("ASSISTANT: {}", parts.join(" "))
            }
            Role::Tool => format!(
                "TOOL[{}]: {}",
                m.name.as_deref().unwrap_or("tool"),
                clip_long(m.content.as_deref().unwrap_or(""))
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The summary request: temperature 0.3, low effort, `compact_max_tokens` tokens, no tools.
pub fn summary_request(head: &[ChatMessage], max_tokens: u32) -> ModelRequest {
    ModelRequest {
        model: String::new(),
        messages: Arc::new(vec![
            ChatMessage::system(SUMMARY_PROMPT),
            ChatMessage::user(render(head)),
        ]),
        tools: Arc::default(),
        temperature: Some(0.3),
        max_tokens,
        reasoning_effort: Some(ReasoningEffort::Low),
    }
}

/// The history after compaction: the summary exchange, then the kept messages.
pub fn compacted(summary: &str, tail: &[ChatMessage]) -> Vec<ChatMessage> {
    let mut out = vec![
        ChatMessage::user("[Conversation summary]"),
        ChatMessage::assistant(Some(summary.trim().to_owned()), Vec::new()),
    ];
    out.extend(tail.iter().cloned());
    out
}

/// The title request for a first exchange.
pub fn title_request(user: &str, assistant: &str) -> ModelRequest {
    ModelRequest {
        model: String::new(),
        messages: Arc::new(vec![
            ChatMessage::system(format!("{TITLE_PROMPT}. Reply with the title only.")),
            ChatMessage::user(format!(
                "User: {}\nAssistant: {}",
                prefix(user, 300),
                prefix(assistant, 200)
            )),
        ]),
        tools: Arc::default(),
        temperature: Some(0.3),
        max_tokens: 200,
        reasoning_effort: Some(ReasoningEffort::Low),
    }
}

/// First line, unquoted, at most 80 characters.
pub fn clean_title(raw: &str) -> Option<String> {
    let line = raw.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line
        .trim_matches(|c| c == '"' || c == '\'' || c == '`' || c == '#' || c == '*')
        .trim();
    (!line.is_empty()).then(|| prefix(line, 80).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ToolCall;

    fn history() -> Vec<ChatMessage> {
        let call = ToolCall {
            id: "c".into(),
            name: "bash".into(),
            arguments: "{\"command\":\"ls\"}".into(),
        };
        vec![
            ChatMessage::user("first question ".repeat(50)),
            ChatMessage::assistant(Some("first answer ".repeat(50)), Vec::new()),
            ChatMessage::user("second question"),
            ChatMessage::assistant(None, vec![call.clone()]),
            ChatMessage::tool(&call, "a.txt"),
            ChatMessage::assistant(Some("there is a.txt".into()), Vec::new()),
            ChatMessage::user("third question"),
            ChatMessage::assistant(Some("third answer".into()), Vec::new()),
        ]
    }

    #[test]
    fn compaction_keeps_the_newest_messages_and_cuts_at_a_user_message() {
        let h = history();
        // room for the last two exchanges, not the long first one
        let cut = split_for_compaction(&h, 40).unwrap();
        assert_eq!(
            cut, 2,
            "keeps from the second question on, tool call with its result"
        );
        let cut = split_for_compaction(&h, 1).unwrap();
        assert_eq!(cut, 6, "always keeps the last user message");
        assert_eq!(
            split_for_compaction(&h[..2], 1),
            None,
            "too little to summarise"
        );
        assert_eq!(
            split_for_compaction(&h, 100_000),
            Some(6),
            "all fits: keep the last exchange"
        );
    }

    #[test]
    fn rendering_follows_turnstone() {
        let h = history();
        let text = render(&h[2..5]);
        assert_eq!(
            text,
            "USER: second question\nASSISTANT: [Called: bash({\"command\":\"ls\"})]\nTOOL[bash]: a.txt\n"
        );
        let long = render(&[ChatMessage::user("x".repeat(3000))]);
        assert!(long.contains("…[truncated]…"));
        assert_eq!(
            long.chars().count(),
            "USER: ".len() + 1000 + "…[truncated]…".chars().count() + 500 + 1
        );
    }

    #[test]
    fn titles_are_one_clean_short_line() {
        assert_eq!(
            clean_title("\n\"Fixing the build\"\nmore").as_deref(),
            Some("Fixing the build")
        );
        assert_eq!(clean_title(&"t".repeat(200)).map(|t| t.len()), Some(80));
        assert_eq!(clean_title("  \n "), None);
    }
}
