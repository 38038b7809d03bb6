//! Matrix (beyond upstream Turnstone): the bot signs in to a homeserver, joins the rooms it is
//! invited to (or only those named), and long-polls `/sync`. A mention in a room starts an
//! `m.thread` from that message with a workstream behind it; the answer is one message edited
//! with `m.replace`; approvals are reactions (✅ approve, ❌ reject, ♾️ always) on the prompt
//! or `!approve` / `!reject` / `!always` in the thread; a plan is approved with ✅ or
//! `!approve` and sent back with `!changes …`. Commands (`!link TOKEN`, `/status` …) are
//! messages. Matrix has no private replies, so refusals are said in the thread.
//!
//! A thread's channel id is `{room_id}/{root_event_id}`; a room's is its room id.

pub mod api;
mod events;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use turnstone_runtime::ractor::{Actor, ActorProcessingErr, ActorRef};

use self::api::{Api, SYNC_WAIT};
use self::events::{Prompt, PromptKind, Seen, read_event};
use super::adapter::{Adapter, AdapterError, ApprovalPrompt, Incoming, split_thread};
use super::{Gateway, lock};

/// The platform's name.
pub const CHANNEL_TYPE: &str = "matrix";

/// Characters per message: Matrix events may be 64 KiB; long answers stay readable in parts.
pub const MESSAGE_LIMIT: usize = 16_000;

/// How the bot signs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    /// A password for `--matrix-user`.
    Password(String),
    /// An access token.
    Token(String),
}

/// `--matrix-*`.
#[derive(Clone, Debug)]
pub struct MatrixSettings {
    /// `http(s)://host:port`.
    pub homeserver: String,
    /// The bot's user (`@bot:server` or `bot`).
    pub user: String,
    /// How it signs in.
    pub login: Login,
    /// Rooms it acts in (empty: every room it is invited to).
    pub rooms: Vec<String>,
}

/// The Matrix adapter: the session and what the bot remembers of its prompts.
pub struct MatrixAdapter {
    api: Api,
    settings: MatrixSettings,
    me: Mutex<String>,
    since: Mutex<Option<String>>,
    prompts: Mutex<HashMap<String, Prompt>>,
    /// Thread → its newest prompt (what `!approve` answers).
    pending: Mutex<HashMap<String, String>>,
    direct: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for MatrixAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixAdapter")
            .field("homeserver", &self.settings.homeserver)
            .field("user", &self.settings.user)
            .finish_non_exhaustive()
    }
}

impl MatrixAdapter {
    /// An adapter for `settings` (signed in by its connection).
    pub fn new(settings: MatrixSettings) -> Result<Arc<Self>, AdapterError> {
        Ok(Arc::new(Self {
            api: Api::new(&settings.homeserver)?,
            settings,
            me: Mutex::new(String::new()),
            since: Mutex::new(None),
            prompts: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            direct: Mutex::new(HashMap::new()),
        }))
    }

    async fn sign_in(&self) -> Result<(), AdapterError> {
        if self.api.signed_in() {
            return Ok(());
        }
        let me = match &self.settings.login {
            Login::Password(password) => self.api.login(&self.settings.user, password).await?,
            Login::Token(token) => {
                self.api.set_token(token);
                self.api.whoami().await?
            }
        };
        tracing::info!(user = %me, homeserver = %self.settings.homeserver, "signed in to Matrix");
        *lock(&self.me) = me;
        Ok(())
    }

    fn allowed_room(&self, room: &str) -> bool {
        self.settings.rooms.is_empty() || self.settings.rooms.iter().any(|r| r == room)
    }

    fn text_content(channel_id: &str, text: &str) -> Value {
        let (_, root) = split_thread(channel_id);
        let mut content = json!({"msgtype": "m.text", "body": text});
        if let Some(root) = root {
            content["m.relates_to"] = json!({
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": true,
                "m.in_reply_to": {"event_id": root},
            });
        }
        content
    }

    fn remember_prompt(&self, event_id: &str, prompt: Prompt) {
        lock(&self.pending).insert(prompt.channel_id.clone(), event_id.to_owned());
        lock(&self.prompts).insert(event_id.to_owned(), prompt);
    }

    /// One sync's events, as the gateway's.
    async fn take_sync(&self, answer: &Value) -> Vec<(String, Incoming)> {
        let me = lock(&self.me).clone();
        let mut out = Vec::new();
        if let Some(invites) = answer["rooms"]["invite"].as_object() {
            for room in invites.keys() {
                if !self.allowed_room(room) {
                    continue;
                }
                match self.api.join(room).await {
                    Ok(()) => tracing::info!(room = %room, "joined"),
                    Err(e) => tracing::warn!(room = %room, error = %e, "cannot join"),
                }
            }
        }
        let Some(joined) = answer["rooms"]["join"].as_object() else {
            return out;
        };
        for (room, data) in joined {
            if !self.allowed_room(room) {
                continue;
            }
            let Some(events) = data["timeline"]["events"].as_array() else {
                continue;
            };
            for event in events {
                let seen = Seen {
                    me: &me,
                    prompts: &lock(&self.prompts),
                    pending: &lock(&self.pending),
                };
                if let Some(incoming) = read_event(room, event, &seen) {
                    out.push((room.clone(), incoming));
                }
            }
        }
        out
    }
}

#[async_trait::async_trait]
impl Adapter for MatrixAdapter {
    fn channel_type(&self) -> &'static str {
        CHANNEL_TYPE
    }

    fn message_limit(&self) -> usize {
        MESSAGE_LIMIT
    }

    async fn send(&self, channel_id: &str, content: &str) -> Result<String, AdapterError> {
        let (room, _) = split_thread(channel_id);
        self.api
            .send(
                room,
                "m.room.message",
                Self::text_content(channel_id, content),
            )
            .await
    }

    async fn edit_message(
        &self,
        channel_id: &str,
        message_id: &str,
        content: &str,
    ) -> Result<(), AdapterError> {
        let (room, _) = split_thread(channel_id);
        let edit = json!({
            "msgtype": "m.text",
            "body": format!("* {content}"),
            "m.new_content": {"msgtype": "m.text", "body": content},
            "m.relates_to": {"rel_type": "m.replace", "event_id": message_id},
        });
        self.api.send(room, "m.room.message", edit).await.map(drop)
    }

    async fn send_approval_request(
        &self,
        channel_id: &str,
        prompt: &ApprovalPrompt,
    ) -> Result<String, AdapterError> {
        let mut text = String::from(
            "🔐 Approval needed:
",
        );
        for (name, what) in prompt.calls(300) {
            text.push_str(&format!(
                "• {name} {what}
"
            ));
        }
        text.push_str("React ✅ to approve, ❌ to reject, ♾️ to always approve — or say !approve, !reject, !always.");
        let event_id = self.send(channel_id, &text).await?;
        self.remember_prompt(
            &event_id,
            Prompt {
                channel_id: channel_id.to_owned(),
                ws_id: prompt.ws_id.clone(),
                request_id: prompt.request_id.clone(),
                kind: PromptKind::Approval,
            },
        );
        Ok(event_id)
    }

    async fn send_plan_review(
        &self,
        channel_id: &str,
        ws_id: &str,
        request_id: &str,
        plan: &str,
    ) -> Result<String, AdapterError> {
        let text = format!(
            "📋 Plan for review:\n{}\nReact ✅ or say !approve to approve it; say !changes <what to change> to send it back.",
            super::chunk::truncate(plan, MESSAGE_LIMIT - 200)
        );
        let event_id = self.send(channel_id, &text).await?;
        self.remember_prompt(
            &event_id,
            Prompt {
                channel_id: channel_id.to_owned(),
                ws_id: ws_id.to_owned(),
                request_id: request_id.to_owned(),
                kind: PromptKind::Plan,
            },
        );
        Ok(event_id)
    }

    async fn create_thread(
        &self,
        parent_channel_id: &str,
        from_message: &str,
        name: &str,
    ) -> Result<String, AdapterError> {
        let (room, _) = split_thread(parent_channel_id);
        let root = if from_message.is_empty() {
            self.api
                .send(
                    room,
                    "m.room.message",
                    json!({"msgtype": "m.text", "body": format!("🧵 {name}")}),
                )
                .await?
        } else {
            from_message.to_owned()
        };
        Ok(format!("{room}/{root}"))
    }

    async fn close_thread(&self, channel_id: &str) -> Result<(), AdapterError> {
        lock(&self.pending).remove(channel_id);
        Ok(())
    }

    async fn send_direct(
        &self,
        channel_user_id: &str,
        content: &str,
    ) -> Result<(String, String), AdapterError> {
        let known = lock(&self.direct).get(channel_user_id).cloned();
        let room = match known {
            Some(room) => room,
            None => {
                let room = self.api.create_direct(channel_user_id).await?;
                lock(&self.direct).insert(channel_user_id.to_owned(), room.clone());
                room
            }
        };
        let event_id = self.send(&room, content).await?;
        Ok((room, event_id))
    }
}

/// The connection actor: signs in and syncs, one long poll per message. A failed sign-in or
/// sync fails the actor; its supervisor restarts it with backoff and it goes on from the last
/// batch it took (`since`), so nothing said meanwhile is missed.
#[derive(Debug)]
pub struct MatrixConnection;

/// Its one message: sync again.
#[derive(Debug)]
pub struct SyncAgain;

/// Its state.
pub struct ConnectionState {
    adapter: Arc<MatrixAdapter>,
    gateway: Arc<Gateway>,
}

impl Actor for MatrixConnection {
    type Msg = SyncAgain;
    type State = ConnectionState;
    type Arguments = (Arc<MatrixAdapter>, Arc<Gateway>);

    async fn pre_start(
        &self,
        myself: ActorRef<SyncAgain>,
        (adapter, gateway): (Arc<MatrixAdapter>, Arc<Gateway>),
    ) -> Result<ConnectionState, ActorProcessingErr> {
        // Signing in and the first sync happen in the first message, so the gateway starts
        // while the homeserver is unreachable (the actor fails, and is restarted, meanwhile).
        myself.cast(SyncAgain)?;
        Ok(ConnectionState { adapter, gateway })
    }

    async fn handle(
        &self,
        myself: ActorRef<SyncAgain>,
        _: SyncAgain,
        state: &mut ConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        let adapter = &state.adapter;
        adapter.sign_in().await?;
        if lock(&adapter.since).is_none() {
            let first = adapter.api.sync(None, std::time::Duration::ZERO).await?;
            let since = first["next_batch"].as_str().map(str::to_owned);
            // Invitations waiting from before the start are taken now; history is not.
            adapter.take_sync(&first).await;
            *lock(&adapter.since) = since;
        }
        let since = lock(&state.adapter.since).clone();
        let answer = state.adapter.api.sync(since.as_deref(), SYNC_WAIT).await?;
        let events = state.adapter.take_sync(&answer).await;
        if let Some(next) = answer["next_batch"].as_str() {
            *lock(&state.adapter.since) = Some(next.to_owned());
        }
        for (_, incoming) in events {
            let adapter: Arc<dyn Adapter> = state.adapter.clone();
            state.gateway.spawn_handle(adapter, incoming);
        }
        myself.cast(SyncAgain)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_rooms_given_are_joined_and_read() {
        let settings = |rooms: Vec<String>| MatrixSettings {
            homeserver: "http://127.0.0.1:1".into(),
            user: "bot".into(),
            login: Login::Password("x".into()),
            rooms,
        };
        let any = MatrixAdapter::new(settings(Vec::new())).unwrap();
        assert!(any.allowed_room("!a:example.org"));
        let some = MatrixAdapter::new(settings(vec!["!a:example.org".into()])).unwrap();
        assert!(some.allowed_room("!a:example.org"));
        assert!(!some.allowed_room("!b:example.org"));
    }
}
