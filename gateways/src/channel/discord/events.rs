//! What a Discord gateway dispatch means to the gateway (the documented JSON of `READY`,
//! `MESSAGE_CREATE` and `INTERACTION_CREATE`): mentions, thread messages, slash commands,
//! button presses and the plan-changes modal. Pure, so it is tested without a connection.

use serde_json::Value;

use crate::channel::adapter::{Command, Decision, Incoming};

/// The custom id prefix of the bot's buttons.
pub const PREFIX: &str = "ts:";

/// A dispatch, read.
#[derive(Clone, Debug, PartialEq)]
pub enum Dispatch {
    /// The session is ready: the bot's user and application.
    Ready {
        /// The bot's user id.
        user_id: String,
        /// Its application id.
        application_id: String,
    },
    /// A message event for the gateway.
    Event(Incoming),
    /// An interaction: answered by the adapter (deferred, then updated), with what it asks of
    /// the gateway.
    Interaction {
        /// Its id.
        id: String,
        /// Its token (for the callback and the response edit).
        token: String,
        /// What it asks.
        ask: Ask,
    },
}

/// What an interaction asks.
#[derive(Clone, Debug, PartialEq)]
pub enum Ask {
    /// Something for the gateway.
    Gateway(Incoming),
    /// The plan-changes form, for this workstream and request.
    ChangesForm {
        /// The workstream.
        ws_id: String,
        /// The request.
        request_id: String,
    },
    /// Nothing the bot knows.
    Unknown(String),
}

/// Reads one dispatch (`op` 0) of type `kind`; `me` is the bot's user id once ready.
pub fn read_dispatch(kind: &str, data: &Value, me: &str) -> Option<Dispatch> {
    match kind {
        "READY" => Some(Dispatch::Ready {
            user_id: data["user"]["id"].as_str()?.to_owned(),
            application_id: data["application"]["id"].as_str()?.to_owned(),
        }),
        "MESSAGE_CREATE" => read_message(data, me).map(Dispatch::Event),
        "INTERACTION_CREATE" => Some(Dispatch::Interaction {
            id: data["id"].as_str()?.to_owned(),
            token: data["token"].as_str()?.to_owned(),
            ask: read_interaction(data),
        }),
        _ => None,
    }
}

fn read_message(data: &Value, me: &str) -> Option<Incoming> {
    let author = &data["author"];
    if author["bot"].as_bool() == Some(true) || author["id"].as_str() == Some(me) {
        return None;
    }
    let user = author["id"].as_str()?.to_owned();
    let channel_id = data["channel_id"].as_str()?.to_owned();
    let content = data["content"].as_str().unwrap_or("");
    let mentioned = !me.is_empty()
        && data["mentions"]
            .as_array()
            .is_some_and(|m| m.iter().any(|u| u["id"].as_str() == Some(me)));
    if mentioned {
        let text = content
            .replace(&format!("<@{me}>"), " ")
            .replace(&format!("<@!{me}>"), " ")
            .trim()
            .to_owned();
        return Some(Incoming::Mention {
            user,
            channel_id,
            message_id: data["id"].as_str()?.to_owned(),
            text,
        });
    }
    match Command::parse(content) {
        Some(Ok(command)) => Some(Incoming::Command {
            user,
            channel_id,
            command,
        }),
        _ => Some(Incoming::Message {
            user,
            channel_id,
            text: content.to_owned(),
        }),
    }
}

/// The acting user of an interaction (a guild member's user, or the user in a DM).
fn interaction_user(data: &Value) -> Option<String> {
    data["member"]["user"]["id"]
        .as_str()
        .or_else(|| data["user"]["id"].as_str())
        .map(str::to_owned)
}

fn interaction_channel(data: &Value) -> Option<String> {
    data["channel_id"]
        .as_str()
        .or_else(|| data["channel"]["id"].as_str())
        .map(str::to_owned)
}

fn read_interaction(data: &Value) -> Ask {
    let (Some(user), Some(channel_id)) = (interaction_user(data), interaction_channel(data)) else {
        return Ask::Unknown("no user or channel".into());
    };
    let body = &data["data"];
    match data["type"].as_u64() {
        // APPLICATION_COMMAND
        Some(2) => {
            let name = body["name"].as_str().unwrap_or("");
            let option = body["options"][0]["value"].as_str().unwrap_or("");
            let text = format!("/{name} {option}");
            match Command::parse(&text) {
                Some(Ok(command)) => Ask::Gateway(Incoming::Command {
                    user,
                    channel_id,
                    command,
                }),
                Some(Err(usage)) => Ask::Unknown(usage),
                None => Ask::Unknown(format!("unknown command /{name}")),
            }
        }
        // MESSAGE_COMPONENT: the prompt's footer names the workstream and request.
        Some(3) => {
            let custom = body["custom_id"].as_str().unwrap_or("");
            let footer = data["message"]["embeds"][0]["footer"]["text"]
                .as_str()
                .unwrap_or("");
            let Some((ws_id, request_id)) = footer.split_once('|') else {
                return Ask::Unknown("a button without its prompt".into());
            };
            let decision = match custom.strip_prefix(PREFIX) {
                Some("approve") => Decision::Approve,
                Some("reject") => Decision::Reject,
                Some("always") => Decision::Always,
                Some("plan_approve") => Decision::ApprovePlan,
                Some("plan_changes") => {
                    return Ask::ChangesForm {
                        ws_id: ws_id.to_owned(),
                        request_id: request_id.to_owned(),
                    };
                }
                _ => return Ask::Unknown(format!("unknown button {custom}")),
            };
            Ask::Gateway(Incoming::Decision {
                user,
                channel_id,
                ws_id: ws_id.to_owned(),
                request_id: request_id.to_owned(),
                decision,
            })
        }
        // MODAL_SUBMIT: `ts:changes:{ws}|{cid}` with one text input.
        Some(5) => {
            let custom = body["custom_id"].as_str().unwrap_or("");
            let Some((ws_id, request_id)) = custom
                .strip_prefix("ts:changes:")
                .and_then(|rest| rest.split_once('|'))
            else {
                return Ask::Unknown(format!("unknown form {custom}"));
            };
            let changes = body["components"][0]["components"][0]["value"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            Ask::Gateway(Incoming::Decision {
                user,
                channel_id,
                ws_id: ws_id.to_owned(),
                request_id: request_id.to_owned(),
                decision: Decision::RequestChanges(changes),
            })
        }
        other => Ask::Unknown(format!("interaction type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ME: &str = "900";

    #[test]
    fn mentions_messages_and_the_bots_own() {
        let mention = json!({"id": "5", "channel_id": "10", "author": {"id": "1", "username": "alice"},
            "content": "<@900> why?", "mentions": [{"id": ME}]});
        assert_eq!(
            read_dispatch("MESSAGE_CREATE", &mention, ME),
            Some(Dispatch::Event(Incoming::Mention {
                user: "1".into(),
                channel_id: "10".into(),
                message_id: "5".into(),
                text: "why?".into(),
            }))
        );
        let plain = json!({"id": "6", "channel_id": "11", "author": {"id": "1"}, "content": "more", "mentions": []});
        assert!(matches!(
            read_dispatch("MESSAGE_CREATE", &plain, ME),
            Some(Dispatch::Event(Incoming::Message { .. }))
        ));
        let own = json!({"id": "7", "channel_id": "11", "author": {"id": ME, "bot": true}, "content": "x"});
        assert_eq!(read_dispatch("MESSAGE_CREATE", &own, ME), None);
    }

    #[test]
    fn commands_buttons_and_the_changes_form() {
        let command = json!({"id": "i1", "token": "t1", "type": 2, "channel_id": "11",
            "member": {"user": {"id": "1"}}, "data": {"name": "link", "options": [{"name": "token", "type": 3, "value": "ts_x"}]}});
        assert_eq!(
            read_dispatch("INTERACTION_CREATE", &command, ME),
            Some(Dispatch::Interaction {
                id: "i1".into(),
                token: "t1".into(),
                ask: Ask::Gateway(Incoming::Command {
                    user: "1".into(),
                    channel_id: "11".into(),
                    command: Command::Link("ts_x".into()),
                }),
            })
        );
        let button = |id: &str| {
            json!({"id": "i2", "token": "t2", "type": 3, "channel": {"id": "11"}, "user": {"id": "2"},
                "message": {"embeds": [{"footer": {"text": "ws1|r1"}}]}, "data": {"custom_id": id, "component_type": 2}})
        };
        let Some(Dispatch::Interaction { ask, .. }) =
            read_dispatch("INTERACTION_CREATE", &button("ts:always"), ME)
        else {
            panic!()
        };
        assert!(
            matches!(ask, Ask::Gateway(Incoming::Decision { decision: Decision::Always, ref ws_id, .. }) if ws_id == "ws1")
        );
        let Some(Dispatch::Interaction { ask, .. }) =
            read_dispatch("INTERACTION_CREATE", &button("ts:plan_changes"), ME)
        else {
            panic!()
        };
        assert_eq!(
            ask,
            Ask::ChangesForm {
                ws_id: "ws1".into(),
                request_id: "r1".into()
            }
        );
        let modal = json!({"id": "i3", "token": "t3", "type": 5, "channel_id": "11", "member": {"user": {"id": "1"}},
            "data": {"custom_id": "ts:changes:ws1|r1", "components": [{"type": 1, "components": [{"type": 4, "custom_id": "changes", "value": "less"}]}]}});
        let Some(Dispatch::Interaction { ask, .. }) =
            read_dispatch("INTERACTION_CREATE", &modal, ME)
        else {
            panic!()
        };
        assert!(
            matches!(ask, Ask::Gateway(Incoming::Decision { decision: Decision::RequestChanges(ref c), .. }) if c == "less")
        );
    }
}
