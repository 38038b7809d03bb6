//! What a Matrix timeline event means to the gateway: a mention, a thread message, a command
//! or an answer to one of the bot's prompts (a reaction or `!approve` …). Pure, so it is
//! tested without a homeserver.

use std::collections::HashMap;

use serde_json::Value;

use crate::channel::adapter::{Command, Decision, Incoming};

/// What a prompt of the bot asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptKind {
    /// Tool calls to approve.
    Approval,
    /// A plan to review.
    Plan,
}

/// A prompt the bot posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// Its thread.
    pub channel_id: String,
    /// The workstream.
    pub ws_id: String,
    /// The request it answers.
    pub request_id: String,
    /// Approval or plan.
    pub kind: PromptKind,
}

/// What the reader knows: the bot's user id and its prompts.
pub struct Seen<'a> {
    /// The bot.
    pub me: &'a str,
    /// Prompt event id → prompt.
    pub prompts: &'a HashMap<String, Prompt>,
    /// Thread → its newest prompt's event id.
    pub pending: &'a HashMap<String, String>,
}

/// Reads one timeline event of `room`.
pub fn read_event(room: &str, event: &Value, seen: &Seen<'_>) -> Option<Incoming> {
    let sender = event["sender"].as_str()?;
    if sender == seen.me {
        return None;
    }
    let content = &event["content"];
    let relates = &content["m.relates_to"];
    match event["type"].as_str()? {
        "m.reaction" => {
            if relates["rel_type"].as_str() != Some("m.annotation") {
                return None;
            }
            let prompt = seen.prompts.get(relates["event_id"].as_str()?)?;
            let decision = reaction_decision(relates["key"].as_str()?, prompt.kind)?;
            Some(answer(sender, prompt, decision))
        }
        "m.room.message" => {
            if !content["m.new_content"].is_null()
                || relates["rel_type"].as_str() == Some("m.replace")
            {
                return None;
            }
            let body = content["body"].as_str()?.trim();
            if relates["rel_type"].as_str() == Some("m.thread") {
                let channel_id = format!("{room}/{}", relates["event_id"].as_str()?);
                if let Some(decision) = seen
                    .pending
                    .get(&channel_id)
                    .and_then(|id| seen.prompts.get(id))
                    .and_then(|prompt| text_decision(body, prompt.kind).map(|d| (prompt, d)))
                {
                    return Some(answer(sender, decision.0, decision.1));
                }
                return Some(command_or(sender, &channel_id, body, |text| {
                    Incoming::Message {
                        user: sender.to_owned(),
                        channel_id: channel_id.clone(),
                        text,
                    }
                }));
            }
            let mentioned = content["m.mentions"]["user_ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(seen.me)))
                || body.contains(seen.me);
            if mentioned {
                let text = without_mention(body, seen.me);
                let message_id = event["event_id"].as_str()?.to_owned();
                return Some(command_or(sender, room, &text, |text| Incoming::Mention {
                    user: sender.to_owned(),
                    channel_id: room.to_owned(),
                    message_id,
                    text,
                }));
            }
            match Command::parse(body)? {
                Ok(command) => Some(Incoming::Command {
                    user: sender.to_owned(),
                    channel_id: room.to_owned(),
                    command,
                }),
                Err(_) => None,
            }
        }
        _ => None,
    }
}

fn answer(user: &str, prompt: &Prompt, decision: Decision) -> Incoming {
    Incoming::Decision {
        user: user.to_owned(),
        channel_id: prompt.channel_id.clone(),
        ws_id: prompt.ws_id.clone(),
        request_id: prompt.request_id.clone(),
        decision,
    }
}

/// A command if `text` is one (a malformed one is passed on as text), else `otherwise`.
fn command_or(
    user: &str,
    channel_id: &str,
    text: &str,
    otherwise: impl FnOnce(String) -> Incoming,
) -> Incoming {
    match Command::parse(text) {
        Some(Ok(command)) => Incoming::Command {
            user: user.to_owned(),
            channel_id: channel_id.to_owned(),
            command,
        },
        _ => otherwise(text.to_owned()),
    }
}

fn reaction_decision(key: &str, kind: PromptKind) -> Option<Decision> {
    let key = key.trim_end_matches('\u{fe0f}');
    match (key, kind) {
        ("✅" | "👍", PromptKind::Approval) => Some(Decision::Approve),
        ("❌" | "👎", PromptKind::Approval) => Some(Decision::Reject),
        ("♾" | "🔁", PromptKind::Approval) => Some(Decision::Always),
        ("✅" | "👍", PromptKind::Plan) => Some(Decision::ApprovePlan),
        ("❌" | "👎", PromptKind::Plan) => Some(Decision::RequestChanges(String::new())),
        _ => None,
    }
}

fn text_decision(body: &str, kind: PromptKind) -> Option<Decision> {
    let body = body.strip_prefix('!')?;
    let (word, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
    match (word.to_ascii_lowercase().as_str(), kind) {
        ("approve", PromptKind::Approval) => Some(Decision::Approve),
        ("reject", PromptKind::Approval) => Some(Decision::Reject),
        ("always", PromptKind::Approval) => Some(Decision::Always),
        ("approve", PromptKind::Plan) => Some(Decision::ApprovePlan),
        ("changes" | "reject", PromptKind::Plan) => {
            Some(Decision::RequestChanges(rest.trim().to_owned()))
        }
        _ => None,
    }
}

/// The message without the bot's id (and a `:` after it, as clients write mentions).
fn without_mention(body: &str, me: &str) -> String {
    let text = body.replace(me, " ");
    let text = text.trim().trim_start_matches(':').trim();
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ME: &str = "@bot:test.local";

    fn read(
        event: Value,
        prompts: &HashMap<String, Prompt>,
        pending: &HashMap<String, String>,
    ) -> Option<Incoming> {
        read_event(
            "!room:test.local",
            &event,
            &Seen {
                me: ME,
                prompts,
                pending,
            },
        )
    }

    fn message(body: &str, extra: Value) -> Value {
        let mut content = json!({"msgtype": "m.text", "body": body});
        if let (Some(c), Some(e)) = (content.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        json!({"type": "m.room.message", "sender": "@alice:test.local", "event_id": "$m1", "content": content})
    }

    #[test]
    fn a_mention_in_a_room_opens_a_thread_from_its_message() {
        let got = read(
            message("@bot:test.local: what is 2+2?", json!({})),
            &HashMap::new(),
            &HashMap::new(),
        );
        assert_eq!(
            got,
            Some(Incoming::Mention {
                user: "@alice:test.local".into(),
                channel_id: "!room:test.local".into(),
                message_id: "$m1".into(),
                text: "what is 2+2?".into(),
            })
        );
        let by_mentions = read(
            message("Bot, hello", json!({"m.mentions": {"user_ids": [ME]}})),
            &HashMap::new(),
            &HashMap::new(),
        );
        assert!(matches!(by_mentions, Some(Incoming::Mention { .. })));
        // Not mentioned, not a command: nothing.
        assert_eq!(
            read(
                message("lunch?", json!({})),
                &HashMap::new(),
                &HashMap::new()
            ),
            None
        );
    }

    #[test]
    fn thread_messages_commands_and_own_or_edited_events() {
        let thread = json!({"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}});
        assert_eq!(
            read(
                message("and 3+3?", thread.clone()),
                &HashMap::new(),
                &HashMap::new()
            ),
            Some(Incoming::Message {
                user: "@alice:test.local".into(),
                channel_id: "!room:test.local/$root".into(),
                text: "and 3+3?".into(),
            })
        );
        assert_eq!(
            read(message("/status", thread), &HashMap::new(), &HashMap::new()),
            Some(Incoming::Command {
                user: "@alice:test.local".into(),
                channel_id: "!room:test.local/$root".into(),
                command: Command::Status,
            })
        );
        assert!(matches!(
            read(
                message("!link ts_1", json!({})),
                &HashMap::new(),
                &HashMap::new()
            ),
            Some(Incoming::Command {
                command: Command::Link(_),
                ..
            })
        ));
        let mut own = message("@bot:test.local hi", json!({}));
        own["sender"] = json!(ME);
        assert_eq!(read(own, &HashMap::new(), &HashMap::new()), None);
        let edit = message(
            "* x",
            json!({"m.new_content": {"body": "x"}, "m.relates_to": {"rel_type": "m.replace", "event_id": "$m0"}}),
        );
        assert_eq!(read(edit, &HashMap::new(), &HashMap::new()), None);
    }

    #[test]
    fn reactions_and_words_answer_the_prompts() {
        let prompt = Prompt {
            channel_id: "!room:test.local/$root".into(),
            ws_id: "ws1".into(),
            request_id: "r1".into(),
            kind: PromptKind::Approval,
        };
        let prompts = HashMap::from([("$p".to_owned(), prompt)]);
        let pending = HashMap::from([("!room:test.local/$root".to_owned(), "$p".to_owned())]);
        let reaction = |key: &str| json!({"type": "m.reaction", "sender": "@bob:test.local", "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$p", "key": key}}});
        assert_eq!(
            read(reaction("✅"), &prompts, &pending),
            Some(Incoming::Decision {
                user: "@bob:test.local".into(),
                channel_id: "!room:test.local/$root".into(),
                ws_id: "ws1".into(),
                request_id: "r1".into(),
                decision: Decision::Approve,
            })
        );
        assert!(matches!(
            read(reaction("♾️"), &prompts, &pending),
            Some(Incoming::Decision {
                decision: Decision::Always,
                ..
            })
        ));
        assert_eq!(read(reaction("🎉"), &prompts, &pending), None);
        let thread = json!({"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}});
        assert!(matches!(
            read(message("!reject", thread), &prompts, &pending),
            Some(Incoming::Decision {
                decision: Decision::Reject,
                ..
            })
        ));
        assert_eq!(
            text_decision("!changes use fewer steps", PromptKind::Plan),
            Some(Decision::RequestChanges("use fewer steps".into()))
        );
    }
}
