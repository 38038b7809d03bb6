//! What a Slack event means to the gateway, read from the documented JSON (Events API
//! `app_mention` and `message`, slash commands, `block_actions`). Pure, so it is tested
//! without a connection. Channel ids are `{channel}/{thread_ts}` for threads.

use serde_json::Value;

use crate::channel::adapter::{Command, Decision, Incoming};

/// The action id prefix of the bot's buttons.
pub const PREFIX: &str = "ts:";

/// A prompt the bot is waiting on in a thread (what `!approve` and `!changes …` answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The workstream.
    pub ws_id: String,
    /// The request.
    pub request_id: String,
    /// A plan (else tool calls).
    pub plan: bool,
}

/// Reads an Events API event (`event` of an `event_callback`); `me` is the bot's user id.
pub fn read_event(
    event: &Value,
    me: &str,
    pending: impl Fn(&str) -> Option<Pending>,
) -> Option<Incoming> {
    let kind = event["type"].as_str()?;
    if event["bot_id"].is_string() || event["subtype"].is_string() {
        return None;
    }
    let user = event["user"].as_str()?.to_owned();
    if user == me {
        return None;
    }
    let channel = event["channel"].as_str()?;
    let ts = event["ts"].as_str()?;
    let text = event["text"].as_str().unwrap_or("");
    let thread = event["thread_ts"].as_str().filter(|t| *t != ts);
    let mention = format!("<@{me}>");
    let bare = text.replace(&mention, " ").trim().to_owned();
    match (kind, thread) {
        // A mention outside a thread opens one; inside one it is a message to it.
        ("app_mention", None) => Some(command_or(&user, channel, &bare, |text| {
            Incoming::Mention {
                user: user.clone(),
                channel_id: channel.to_owned(),
                message_id: ts.to_owned(),
                text,
            }
        })),
        ("app_mention", Some(root)) => Some(in_thread(
            &user,
            &format!("{channel}/{root}"),
            &bare,
            &pending,
        )),
        // Messages mentioning the bot come again as `app_mention`: taken once, there.
        ("message", Some(root)) if !text.contains(&mention) => Some(in_thread(
            &user,
            &format!("{channel}/{root}"),
            text.trim(),
            &pending,
        )),
        _ => None,
    }
}

fn in_thread(
    user: &str,
    channel_id: &str,
    text: &str,
    pending: &impl Fn(&str) -> Option<Pending>,
) -> Incoming {
    if let Some(waiting) = pending(channel_id)
        && let Some(decision) = text_decision(text, waiting.plan)
    {
        return Incoming::Decision {
            user: user.to_owned(),
            channel_id: channel_id.to_owned(),
            ws_id: waiting.ws_id,
            request_id: waiting.request_id,
            decision,
        };
    }
    command_or(user, channel_id, text, |text| Incoming::Message {
        user: user.to_owned(),
        channel_id: channel_id.to_owned(),
        text,
    })
}

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

fn text_decision(text: &str, plan: bool) -> Option<Decision> {
    let body = text.strip_prefix('!')?;
    let (word, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
    match (word.to_ascii_lowercase().as_str(), plan) {
        ("approve", false) => Some(Decision::Approve),
        ("reject", false) => Some(Decision::Reject),
        ("always", false) => Some(Decision::Always),
        ("approve", true) => Some(Decision::ApprovePlan),
        ("changes" | "reject", true) => Some(Decision::RequestChanges(rest.trim().to_owned())),
        _ => None,
    }
}

/// A `/turnstone …` slash command: what it asks, or the usage to show.
pub fn read_command(text: &str) -> Result<Command, String> {
    const USAGE: &str = "Usage: /turnstone link <api token> | unlink | ask <question> (in a thread: !status, !close)";
    match Command::parse(&format!("/{}", text.trim())) {
        Some(Ok(command)) => Ok(command),
        Some(Err(usage)) => Err(usage.replace("Usage: /", "Usage: /turnstone ")),
        None => Err(USAGE.to_owned()),
    }
}

/// A `block_actions` payload: a press of one of the bot's buttons.
pub fn read_action(payload: &Value) -> Option<(Incoming, String)> {
    let user = payload["user"]["id"].as_str()?.to_owned();
    let channel = payload["channel"]["id"]
        .as_str()
        .or_else(|| payload["container"]["channel_id"].as_str())?;
    let thread = payload["container"]["thread_ts"]
        .as_str()
        .or_else(|| payload["message"]["thread_ts"].as_str())?;
    let action = &payload["actions"][0];
    let (ws_id, request_id) = action["value"].as_str()?.split_once('|')?;
    let id = action["action_id"].as_str()?.strip_prefix(PREFIX)?;
    let decision = match id {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        "always" => Decision::Always,
        "plan_approve" => Decision::ApprovePlan,
        // Slack's buttons carry no text: changes are said in the thread.
        "plan_changes" => return None,
        _ => return None,
    };
    let channel_id = format!("{channel}/{thread}");
    Some((
        Incoming::Decision {
            user,
            channel_id: channel_id.clone(),
            ws_id: ws_id.to_owned(),
            request_id: request_id.to_owned(),
            decision,
        },
        channel_id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ME: &str = "UBOT";

    fn none(_: &str) -> Option<Pending> {
        None
    }

    #[test]
    fn mentions_thread_messages_and_what_is_skipped() {
        let mention = json!({"type": "app_mention", "user": "U1", "channel": "C1", "ts": "1.1", "text": "<@UBOT> why?"});
        assert_eq!(
            read_event(&mention, ME, none),
            Some(Incoming::Mention {
                user: "U1".into(),
                channel_id: "C1".into(),
                message_id: "1.1".into(),
                text: "why?".into(),
            })
        );
        let reply = json!({"type": "message", "user": "U1", "channel": "C1", "ts": "1.2", "thread_ts": "1.1", "text": "more"});
        assert_eq!(
            read_event(&reply, ME, none),
            Some(Incoming::Message {
                user: "U1".into(),
                channel_id: "C1/1.1".into(),
                text: "more".into()
            })
        );
        let twice = json!({"type": "message", "user": "U1", "channel": "C1", "ts": "1.3", "thread_ts": "1.1", "text": "<@UBOT> hi"});
        assert_eq!(
            read_event(&twice, ME, none),
            None,
            "taken as its app_mention"
        );
        let bot = json!({"type": "message", "bot_id": "B1", "user": "UBOT", "channel": "C1", "ts": "1.4", "thread_ts": "1.1", "text": "x"});
        assert_eq!(read_event(&bot, ME, none), None);
        let top = json!({"type": "message", "user": "U1", "channel": "C1", "ts": "1.5", "text": "lunch?"});
        assert_eq!(read_event(&top, ME, none), None);
    }

    #[test]
    fn words_answer_a_pending_prompt_and_commands_are_read() {
        let waiting = |c: &str| {
            (c == "C1/1.1").then(|| Pending {
                ws_id: "ws1".into(),
                request_id: "r1".into(),
                plan: true,
            })
        };
        let changes = json!({"type": "message", "user": "U1", "channel": "C1", "ts": "1.2", "thread_ts": "1.1", "text": "!changes fewer steps"});
        assert!(matches!(
            read_event(&changes, ME, waiting),
            Some(Incoming::Decision { decision: Decision::RequestChanges(ref c), .. }) if c == "fewer steps"
        ));
        assert_eq!(read_command("link ts_1"), Ok(Command::Link("ts_1".into())));
        assert!(
            read_command("dance")
                .unwrap_err()
                .starts_with("Usage: /turnstone")
        );
        let press = json!({"type": "block_actions", "user": {"id": "U2"}, "channel": {"id": "C1"},
            "container": {"type": "message", "message_ts": "1.9", "channel_id": "C1", "thread_ts": "1.1"},
            "actions": [{"action_id": "ts:always", "value": "ws1|r1", "type": "button"}]});
        let (incoming, place) = read_action(&press).unwrap();
        assert_eq!(place, "C1/1.1");
        assert!(
            matches!(incoming, Incoming::Decision { decision: Decision::Always, ref user, .. } if user == "U2")
        );
    }
}
