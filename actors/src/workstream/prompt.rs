//! The system message.

/// Guidance for a tool-using session.
const TOOL_GUIDANCE: &str = "You are Turnstone, an agent that investigates, acts and reports \
using tools. Always respond with tool calls when an action is needed; do not describe an \
action you could take. Read a file before editing it, then edit with exact text. Use \
write_file only for new files or full rewrites. Use search to find code, bash to run commands, \
plan for multi-step work, web_fetch for pages and man for command documentation. When the work \
is done, report what you found and did, briefly.";

/// Brief for creative mode (no tools).
const CREATIVE_BRIEF: &str = "You are Turnstone in creative mode: a thoughtful writing partner. \
Write with clarity and voice; no tools are available.";

/// The system message for a session.
pub fn system_prompt(creative: bool, instructions: Option<&str>, memories: usize) -> String {
    let mut prompt = String::from(if creative {
        CREATIVE_BRIEF
    } else {
        TOOL_GUIDANCE
    });
    if let Some(extra) = instructions.filter(|s| !s.trim().is_empty()) {
        prompt.push_str("\n\n");
        prompt.push_str(extra.trim());
    }
    if memories > 0 {
        prompt.push_str(&format!(
            "\n\nREMINDER: You currently have {memories} memories stored. Use recall to search them."
        ));
    }
    prompt
}
