//! What every chat platform offers the gateway (SPEC §13's adapter), and what it tells the
//! gateway: messages, mentions, commands and button presses, as [`Incoming`].

use std::time::Duration;

use serde_json::Value;

/// A platform's failure.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The platform asks us to wait (Discord buckets, Slack `Retry-After`, Matrix
    /// `M_LIMIT_EXCEEDED`).
    #[error("rate limited: retry after {0:?}")]
    RateLimited(Duration),
    /// The platform refused or failed the request.
    #[error("{0}")]
    Platform(String),
    /// The platform could not be reached.
    #[error("cannot reach the platform: {0}")]
    Unreachable(String),
}

/// How many times a prompt or notice refused for a rate limit is tried again.
const PATIENCE: u32 = 5;

/// The longest wait a rate limit is given before trying again.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// `call`, tried again after the platform's wait while it answers "slow down" (a few times):
/// for what must arrive whole and once — prompts, notices, replies — unlike edits, which the
/// relay coalesces instead.
pub async fn patiently<T, F, Fut>(mut call: F) -> Result<T, AdapterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AdapterError>>,
{
    for _ in 0..PATIENCE {
        match call().await {
            Err(AdapterError::RateLimited(wait)) => {
                tracing::debug!(?wait, "rate limited; trying again after the wait");
                tokio::time::sleep(wait.min(LONGEST_WAIT)).await;
            }
            done => return done,
        }
    }
    call().await
}

/// A tool call awaiting a person, as shown in chat.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalPrompt {
    /// The workstream asking.
    pub ws_id: String,
    /// The request id to answer.
    pub request_id: String,
    /// The calls (`func_name`, `preview` / `header`, …) of the `approval_request`.
    pub items: Vec<Value>,
}

impl ApprovalPrompt {
    /// Each call as (tool name, what it would do), the latter cut to `chars` characters.
    pub fn calls(&self, chars: usize) -> Vec<(&str, String)> {
        self.items
            .iter()
            .map(|item| {
                let name = item["func_name"].as_str().unwrap_or("tool");
                let what = item["preview"]
                    .as_str()
                    .or_else(|| item["header"].as_str())
                    .unwrap_or("");
                (name, super::chunk::truncate(what, chars))
            })
            .collect()
    }
}

/// A thread's channel id split into its room or channel and its thread (`{room}/{thread}`, the
/// form the Matrix and Slack adapters give threads).
pub fn split_thread(channel_id: &str) -> (&str, Option<&str>) {
    match channel_id.split_once('/') {
        Some((room, thread)) => (room, Some(thread)),
        None => (channel_id, None),
    }
}

/// A platform connection's operations (one value per connected platform, shared).
#[async_trait::async_trait]
pub trait Adapter: Send + Sync {
    /// `discord`, `slack` or `matrix`.
    fn channel_type(&self) -> &'static str;

    /// The longest message the platform takes, in characters.
    fn message_limit(&self) -> usize;

    /// Posts a message; its id.
    async fn send(&self, channel_id: &str, content: &str) -> Result<String, AdapterError>;

    /// Replaces a message's text.
    async fn edit_message(
        &self,
        channel_id: &str,
        message_id: &str,
        content: &str,
    ) -> Result<(), AdapterError>;

    /// Asks for approval of tool calls (buttons or their stand-ins); the prompt's message id.
    async fn send_approval_request(
        &self,
        channel_id: &str,
        prompt: &ApprovalPrompt,
    ) -> Result<String, AdapterError>;

    /// Asks for review of a plan; the prompt's message id.
    async fn send_plan_review(
        &self,
        channel_id: &str,
        ws_id: &str,
        request_id: &str,
        plan: &str,
    ) -> Result<String, AdapterError>;

    /// Opens a thread under `parent_channel_id`, from the message `from_message` when the
    /// platform threads from messages; the thread's channel id.
    async fn create_thread(
        &self,
        parent_channel_id: &str,
        from_message: &str,
        name: &str,
    ) -> Result<String, AdapterError>;

    /// Ends a thread (archived where the platform can).
    async fn close_thread(&self, channel_id: &str) -> Result<(), AdapterError>;

    /// Tells `user` something about what they did in `channel_id`: privately where the
    /// platform can, else in the open addressed to them.
    async fn tell(&self, channel_id: &str, user: &str, text: &str) -> Result<(), AdapterError> {
        self.send(channel_id, &format!("{user}: {text}"))
            .await
            .map(drop)
    }

    /// Sends a message to a person directly (notify by username); the channel used and the
    /// message id.
    async fn send_direct(
        &self,
        channel_user_id: &str,
        content: &str,
    ) -> Result<(String, String), AdapterError>;
}

/// A person's answer to an approval or plan prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Approve the calls.
    Approve,
    /// Reject them.
    Reject,
    /// Approve, and every later call of this workstream.
    Always,
    /// Approve the plan.
    ApprovePlan,
    /// Send the plan back with these changes.
    RequestChanges(String),
}

/// A chat command (`/link`, `/unlink`, `/ask`, `/status`, `/close`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Link this chat account to the user of an API token.
    Link(String),
    /// Remove this account's link.
    Unlink,
    /// Ask in a new thread.
    Ask(String),
    /// What this thread's workstream is doing.
    Status,
    /// Close this thread's workstream.
    Close,
}

impl Command {
    /// Reads `/link TOKEN`, `!status` … from a message; `None` when it is not a command.
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let text = text.trim();
        let body = text.strip_prefix('/').or_else(|| text.strip_prefix('!'))?;
        let (word, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        let rest = rest.trim();
        Some(match word.to_ascii_lowercase().as_str() {
            "link" if rest.is_empty() => Err("Usage: /link <api token>".into()),
            "link" => Ok(Self::Link(rest.to_owned())),
            "unlink" => Ok(Self::Unlink),
            "ask" if rest.is_empty() => Err("Usage: /ask <question>".into()),
            "ask" => Ok(Self::Ask(rest.to_owned())),
            "status" => Ok(Self::Status),
            "close" => Ok(Self::Close),
            _ => return None,
        })
    }
}

/// What a platform tells the gateway.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// The bot was mentioned outside a thread: open a thread and a workstream.
    Mention {
        /// The account that wrote.
        user: String,
        /// The room or channel.
        channel_id: String,
        /// The message (threads start from it where the platform does so).
        message_id: String,
        /// The text, without the mention.
        text: String,
    },
    /// A message in a thread (routed or not).
    Message {
        /// The account that wrote.
        user: String,
        /// The thread.
        channel_id: String,
        /// The text.
        text: String,
    },
    /// A command; `channel_id` is where it was given.
    Command {
        /// The account.
        user: String,
        /// Where.
        channel_id: String,
        /// Which.
        command: Command,
    },
    /// An answer to a prompt.
    Decision {
        /// The account that answered.
        user: String,
        /// The thread of the prompt.
        channel_id: String,
        /// The workstream.
        ws_id: String,
        /// The request answered.
        request_id: String,
        /// The answer.
        decision: Decision,
    },
}

impl Incoming {
    /// Where it happened (a room, channel or thread).
    pub fn channel_id(&self) -> &str {
        match self {
            Self::Mention { channel_id, .. }
            | Self::Message { channel_id, .. }
            | Self::Command { channel_id, .. }
            | Self::Decision { channel_id, .. } => channel_id,
        }
    }

    /// The account that acted.
    pub fn user(&self) -> &str {
        match self {
            Self::Mention { user, .. }
            | Self::Message { user, .. }
            | Self::Command { user, .. }
            | Self::Decision { user, .. } => user,
        }
    }
}

/// The reply to an [`Incoming`] that only its author should see (ephemeral where the platform
/// has it), or a visible one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Say nothing.
    Nothing,
    /// Tell the author.
    Say(String),
}

/// A thread name from a message: its first line, at most 100 characters.
pub fn thread_name(text: &str) -> String {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let name = super::chunk::truncate(first.trim(), 100);
    if name.is_empty() {
        "Turnstone".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_with_slash_or_bang() {
        assert_eq!(
            Command::parse("/link ts_abc"),
            Some(Ok(Command::Link("ts_abc".into())))
        );
        assert_eq!(Command::parse("!STATUS"), Some(Ok(Command::Status)));
        assert_eq!(
            Command::parse("/ask  why is the sky blue? "),
            Some(Ok(Command::Ask("why is the sky blue?".into())))
        );
        assert!(matches!(Command::parse("/link"), Some(Err(_))));
        assert_eq!(Command::parse("hello /close"), None);
        assert_eq!(Command::parse("/shrug"), None);
    }

    #[test]
    fn thread_names_are_the_first_line_within_100_characters() {
        assert_eq!(thread_name("\n  fix the build  \nplease"), "fix the build");
        assert_eq!(thread_name(&"a".repeat(150)).chars().count(), 100);
        assert_eq!(thread_name(""), "Turnstone");
    }
}
