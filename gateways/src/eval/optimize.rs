//! Prompt optimisation: the model reads the prompt, what each case expected and what the runs
//! did, and proposes a revised prompt, which the next iteration scores on the same cases.

use serde_json::json;
use turnstone_actors::config::ReasoningEffort;
use turnstone_actors::provider::{ChatMessage, ModelRequest, ModelRouter, collect};

use super::cases::Case;
use super::iteration::Iteration;

/// The optimiser's instructions.
pub const OPTIMIZER_SYSTEM: &str = "You improve the system prompt of a tool-using coding \
agent. You are shown the current prompt, test cases (the user's request and the tool calls \
the agent is expected to make) and what the agent actually called in each run. Revise the \
prompt so the agent makes the expected calls: keep what works, state the missing guidance \
plainly and generally (never name a test case), and keep it concise. Output only the new \
prompt text.";

/// Asks the model on `alias` for a revised prompt; `Err` says why there is none.
pub async fn propose(
    router: &ModelRouter,
    alias: &str,
    cases: &[Case],
    current: &Iteration,
    history: &[Iteration],
) -> Result<String, String> {
    let mut summary = Vec::new();
    for case in cases {
        let Some(result) = current.cases.get(&case.id) else {
            continue;
        };
        let status = match result.pass_rate {
            r if r >= 1.0 => "PASS",
            r if r >= 0.5 => "WEAK",
            _ => "FAIL",
        };
        let sequences: Vec<_> = result.runs.iter().map(|r| &r.tool_sequence).collect();
        summary.push(format!(
            "[{status}] {} (pass_rate={:.0}%)\n  User prompt: {}\n  Expected: {}\n  Actual \
             sequences: {}",
            case.id,
            result.pass_rate * 100.0,
            case.user_prompt,
            json!(case.expected_actions),
            json!(sequences),
        ));
    }
    let scores: Vec<String> = history
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|h| {
            format!(
                "Iteration {}: overall_pass_rate={:.0}%",
                h.iteration,
                h.aggregate.overall_pass_rate * 100.0
            )
        })
        .collect();
    let user = format!(
        "## Current Prompt\n```\n{}\n```\n\n## Test Results (iteration {})\n{}\n\n## Score \
         History\n{}\n\nPropose an improved prompt. Output ONLY the new prompt text.",
        current.prompt,
        current.iteration,
        summary.join("\n\n"),
        scores.join("\n"),
    );
    let request = ModelRequest {
        model: String::new(),
        messages: vec![
            ChatMessage::system(OPTIMIZER_SYSTEM),
            ChatMessage::user(user),
        ]
        .into(),
        tools: Vec::new().into(),
        temperature: Some(0.6),
        max_tokens: 16_384,
        reasoning_effort: Some(ReasoningEffort::Medium),
    };
    let opened = router
        .open(alias, &request, &mut |_| {})
        .await
        .map_err(|e| e.to_string())?;
    let done = collect(opened.stream, &mut |_| {})
        .await
        .map_err(|(e, _)| e.to_string())?;
    let proposed = clean(done.content.as_deref().unwrap_or_default());
    if proposed.is_empty() {
        return Err("the model proposed an empty prompt".into());
    }
    Ok(proposed)
}

/// The prompt inside a model's answer: reasoning tags dropped, a fenced block unwrapped.
pub fn clean(answer: &str) -> String {
    let mut text = answer.to_owned();
    for (open, close) in [("<think>", "</think>"), ("<reasoning>", "</reasoning>")] {
        while let Some(start) = text.find(open) {
            let Some(len) = text[start..].find(close) else {
                break;
            };
            text.replace_range(start..start + len + close.len(), "");
        }
    }
    let text = text.trim();
    if let Some(start) = text.find("```") {
        let after = &text[start + 3..];
        let body = after.split_once('\n').map_or("", |(_, rest)| rest);
        return match body.find("```") {
            Some(end) => body[..end].trim().to_owned(),
            None => body.trim().to_owned(),
        };
    }
    text.to_owned()
}

/// A unified diff of two prompts (empty when equal).
pub fn diff(old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(1)
        .header("prompt", "proposed")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_taken_out_of_fences_and_reasoning() {
        assert_eq!(clean("<think>hmm</think>\nBe direct."), "Be direct.");
        assert_eq!(
            clean("Here it is:\n```text\nUse tools.\nRead first.\n```\nThat should help."),
            "Use tools.\nRead first."
        );
        assert_eq!(clean("```\nUnclosed"), "Unclosed");
        assert_eq!(clean("  Plain.  "), "Plain.");
    }

    #[test]
    fn the_diff_shows_changed_lines() {
        let d = diff("a\nb\n", "a\nc\n");
        assert!(d.contains("-b") && d.contains("+c"), "{d}");
        assert_eq!(diff("same\n", "same\n"), "");
    }
}
