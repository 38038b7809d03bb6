//! Splitting an answer into platform-sized messages (Discord 2,000 characters, Slack and
//! Matrix more) at line ends, never leaving a ``` fence open: a code block cut in two is
//! closed at the end of one message and reopened, with its language, at the start of the next.

/// The fence that opens or closes a code block.
const FENCE: &str = "```";

/// `text` as messages of at most `limit` characters each (at least one, possibly empty).
pub fn chunks(text: &str, limit: usize) -> Vec<String> {
    // Room for the closing fence and a newline, and at least one character of content.
    let limit = limit.max(FENCE.len() * 2 + 16);
    let mut out = Vec::new();
    let mut current = String::new();
    let mut current_len = 0usize;
    // The opening line of the code block we are in, if any.
    let mut open: Option<String> = None;
    for line in text.split_inclusive('\n') {
        let mut rest = line;
        loop {
            let reserve = if open.is_some() { FENCE.len() + 1 } else { 0 };
            let room = limit.saturating_sub(current_len + reserve);
            let len = rest.chars().count();
            if len <= room {
                current.push_str(rest);
                current_len += len;
                break;
            }
            if current_len > reopen_len(&open) {
                // The line starts the next message.
                flush(&mut out, &mut current, &mut current_len, &open);
                continue;
            }
            // A line longer than a whole message: cut it at the room left.
            let cut = byte_at(rest, room);
            current.push_str(&rest[..cut]);
            current_len += room;
            rest = &rest[cut..];
            flush(&mut out, &mut current, &mut current_len, &open);
            if rest.is_empty() {
                break;
            }
        }
        if line.trim_start().starts_with(FENCE) {
            open = match open {
                Some(_) => None,
                None => Some(line.trim_end_matches('\n').to_owned()),
            };
        }
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

/// Ends the current message (closing an open fence) and starts the next (reopening it).
fn flush(out: &mut Vec<String>, current: &mut String, len: &mut usize, open: &Option<String>) {
    let mut done = std::mem::take(current);
    if open.is_some() {
        if !done.ends_with('\n') {
            done.push('\n');
        }
        done.push_str(FENCE);
    }
    out.push(done);
    *len = 0;
    if let Some(opener) = open {
        current.push_str(opener);
        current.push('\n');
        *len = opener.chars().count() + 1;
    }
}

/// Characters a reopened fence takes at the start of a message.
fn reopen_len(open: &Option<String>) -> usize {
    open.as_ref().map_or(0, |o| o.chars().count() + 1)
}

/// The byte index of character `n` of `s` (its length when shorter).
fn byte_at(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

/// `text` cut to `limit` characters, with an ellipsis when it was longer.
pub fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fences_balanced(chunk: &str) -> bool {
        chunk
            .lines()
            .filter(|l| l.trim_start().starts_with(FENCE))
            .count()
            % 2
            == 0
    }

    #[test]
    fn short_text_is_one_message() {
        assert_eq!(chunks("hello", 2000), vec!["hello".to_owned()]);
        assert_eq!(chunks("", 2000), vec![String::new()]);
    }

    #[test]
    fn long_text_splits_at_line_ends_within_the_limit() {
        let text: String = (0..300).map(|i| format!("line number {i}\n")).collect();
        let parts = chunks(&text, 2000);
        assert!(parts.len() > 1);
        for part in &parts {
            assert!(part.chars().count() <= 2000, "{}", part.len());
            assert!(part.ends_with('\n'), "cut inside a line");
        }
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn a_code_block_cut_in_two_is_closed_and_reopened_with_its_language() {
        let mut text = String::from("Here:\n```rust\n");
        for i in 0..400 {
            text.push_str(&format!("let x{i} = {i};\n"));
        }
        text.push_str("```\nDone.\n");
        let parts = chunks(&text, 2000);
        assert!(parts.len() > 2);
        for (i, part) in parts.iter().enumerate() {
            assert!(part.chars().count() <= 2000);
            assert!(
                fences_balanced(part),
                "part {i} leaves a fence open:\n{part}"
            );
            if i > 0 && i + 1 < parts.len() {
                assert!(part.starts_with("```rust\n"), "part {i} not reopened");
            }
        }
        assert!(parts.last().unwrap().ends_with("Done.\n"));
        // Nothing lost: without the added fences the text is the original.
        let joined = parts.join("");
        assert_eq!(joined.matches("let x").count(), 400);
    }

    #[test]
    fn a_line_longer_than_a_message_is_cut_by_characters() {
        let text = "é".repeat(4500);
        let parts = chunks(&text, 2000);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= 2000));
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn truncation_marks_what_was_cut() {
        assert_eq!(truncate("short", 500), "short");
        let cut = truncate(&"x".repeat(600), 500);
        assert_eq!(cut.chars().count(), 500);
        assert!(cut.ends_with('…'));
    }
}
