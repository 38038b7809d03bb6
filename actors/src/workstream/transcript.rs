//! A workstream's conversation, shared with the model requests made from it: a request takes
//! a reference to the conversation, not a copy, however long it has grown. The conversation is
//! copied only if it changes while an older request still holds it.

use std::sync::Arc;

use crate::provider::{ChatMessage, Role};

/// The system message, then the conversation.
#[derive(Debug)]
pub struct Transcript {
    messages: Arc<Vec<ChatMessage>>,
}

impl Transcript {
    /// A transcript of `history` (its system message is set by [`Transcript::request`]).
    pub fn new(history: Vec<ChatMessage>) -> Self {
        let mut messages = Vec::with_capacity(history.len() + 1);
        messages.push(ChatMessage::system(String::new()));
        messages.extend(history);
        Self {
            messages: Arc::new(messages),
        }
    }

    /// The conversation, without the system message.
    pub fn history(&self) -> &[ChatMessage] {
        &self.messages[1..]
    }

    fn edit(&mut self) -> &mut Vec<ChatMessage> {
        Arc::make_mut(&mut self.messages)
    }

    /// Adds a message.
    pub fn push(&mut self, message: ChatMessage) {
        self.edit().push(message);
    }

    /// Removes the last message if `drop` says so.
    pub fn pop_if(&mut self, drop: impl FnOnce(&ChatMessage) -> bool) {
        if self.history().last().is_some_and(drop) {
            self.edit().pop();
        }
    }

    /// Keeps only the messages for which `keep` holds.
    pub fn retain(&mut self, keep: impl FnMut(&ChatMessage) -> bool) {
        let messages = self.edit();
        let system = messages.remove(0);
        messages.retain(keep);
        messages.insert(0, system);
    }

    /// Replaces the conversation.
    pub fn replace(&mut self, history: Vec<ChatMessage>) {
        let messages = self.edit();
        messages.truncate(1);
        messages.extend(history);
    }

    /// The system message `system`, then the conversation: what a model request sends.
    pub fn request(&mut self, system: String) -> Arc<Vec<ChatMessage>> {
        if self.messages[0].content.as_deref() != Some(system.as_str()) {
            self.edit()[0] = ChatMessage::system(system);
        }
        debug_assert_eq!(self.messages[0].role, Role::System);
        Arc::clone(&self.messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(messages: &[ChatMessage]) -> Vec<&str> {
        messages
            .iter()
            .map(|m| m.content.as_deref().unwrap_or(""))
            .collect()
    }

    #[test]
    fn a_request_shares_the_conversation_until_it_changes() {
        let mut transcript = Transcript::new(vec![ChatMessage::user("hi")]);
        let first = transcript.request("be brief".into());
        let again = transcript.request("be brief".into());
        assert!(
            Arc::ptr_eq(&first, &again),
            "an unchanged conversation is not copied"
        );
        assert_eq!(texts(&first), ["be brief", "hi"]);

        // A message added while a request holds the conversation leaves that request as it was.
        transcript.push(ChatMessage::assistant(Some("hello".into()), Vec::new()));
        assert_eq!(texts(&first), ["be brief", "hi"]);
        assert_eq!(texts(transcript.history()), ["hi", "hello"]);
        drop((first, again));

        // With no request left, the conversation is edited in place.
        let before = Arc::as_ptr(&transcript.request("be brief".into()));
        transcript.push(ChatMessage::user("more"));
        let after = transcript.request("be brief".into());
        assert_eq!(Arc::as_ptr(&after), before);
        assert_eq!(texts(&after), ["be brief", "hi", "hello", "more"]);

        // A new system prompt replaces the old one.
        drop(after);
        assert_eq!(
            texts(&transcript.request("be thorough".into())),
            ["be thorough", "hi", "hello", "more"]
        );
    }

    #[test]
    fn edits_never_touch_the_system_message() {
        let mut transcript = Transcript::new(vec![
            ChatMessage::user("a"),
            ChatMessage::assistant(Some("b".into()), Vec::new()),
        ]);
        transcript.request("system".into());
        transcript.retain(|m| m.role == Role::User);
        assert_eq!(texts(transcript.history()), ["a"]);
        transcript.pop_if(|m| m.role == Role::Assistant);
        assert_eq!(texts(transcript.history()), ["a"]);
        transcript.pop_if(|m| m.role == Role::User);
        assert!(transcript.history().is_empty());
        transcript.pop_if(|_| true);
        transcript.replace(vec![ChatMessage::user("c")]);
        assert_eq!(texts(&transcript.request("system".into())), ["system", "c"]);
    }
}
