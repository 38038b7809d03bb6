//! Discord (SPEC §13): the bot holds a gateway session (twilight-gateway: hello, identify,
//! heartbeats, resume) and talks REST (twilight-http). An @mention opens a thread from the
//! message (name ≤ 100, archived after 1,440 minutes) with a workstream; messages in routed
//! threads go to it; `/link`, `/unlink`, `/ask`, `/status`, `/close` are slash commands
//! registered at start. Approvals are an embed whose footer is `{ws}|{cid}` with Approve /
//! Reject / Always buttons; a plan has Approve Plan / Request Changes (a modal form). Replies
//! to commands and buttons are ephemeral: only the person who acted sees them.
//!
//! `--discord-api-url` and `--discord-gateway-url` point both at another host (a proxy, or
//! the loopback peer the tests run).

mod events;
pub mod rest;

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde_json::{Value, json};
use turnstone_runtime::ractor::{Actor, ActorProcessingErr, ActorRef};
use twilight_gateway::{ConfigBuilder, Intents, Session, Shard, ShardId};
use twilight_http::routing::Route;

use self::events::{Ask, Dispatch, read_dispatch};
use self::rest::Rest;
use super::adapter::{Adapter, AdapterError, ApprovalPrompt, Reply};
use super::chunk::truncate;
use super::{Gateway, lock};

/// The platform's name.
pub const CHANNEL_TYPE: &str = "discord";

/// Characters per message.
pub const MESSAGE_LIMIT: usize = 2000;

/// Minutes of quiet before Discord archives a thread the bot opened.
pub const ARCHIVE_MINUTES: u64 = 1440;

/// `--discord-*`.
#[derive(Clone, Debug, Default)]
pub struct DiscordSettings {
    /// The bot token.
    pub token: String,
    /// Only this guild (0: any).
    pub guild: u64,
    /// Only mentions in these channels (empty: any).
    pub channels: Vec<String>,
    /// REST base instead of https://discord.com.
    pub api_url: Option<String>,
    /// Gateway base instead of wss://gateway.discord.gg.
    pub gateway_url: Option<String>,
}

/// The Discord adapter.
pub struct DiscordAdapter {
    rest: Rest,
    settings: DiscordSettings,
    me: Mutex<Identity>,
    /// The gateway session to resume after a restart, and where.
    session: Mutex<Option<(Session, Option<String>)>>,
}

#[derive(Clone, Debug, Default)]
struct Identity {
    user_id: String,
    application_id: String,
}

impl std::fmt::Debug for DiscordAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordAdapter")
            .field("guild", &self.settings.guild)
            .finish_non_exhaustive()
    }
}

fn snowflake(id: &str) -> Result<u64, AdapterError> {
    id.parse()
        .map_err(|_| AdapterError::Platform(format!("not a Discord id: {id:?}")))
}

fn id_of(answer: &Value) -> Result<String, AdapterError> {
    answer["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| AdapterError::Platform(format!("Discord gave no id: {answer}")))
}

/// The slash commands, as Discord's bulk overwrite takes them.
fn commands() -> Value {
    let text = |name: &str, description: &str| json!([{"type": 3, "name": name, "description": description, "required": true}]);
    json!([
        {"type": 1, "name": "link", "description": "Link your Discord account to Turnstone with an API token",
         "options": text("token", "Your Turnstone API token")},
        {"type": 1, "name": "unlink", "description": "Unlink your Discord account"},
        {"type": 1, "name": "ask", "description": "Ask Turnstone in a new thread",
         "options": text("question", "What to ask")},
        {"type": 1, "name": "status", "description": "What this thread's workstream is doing"},
        {"type": 1, "name": "close", "description": "Close this thread's workstream"},
    ])
}

fn buttons(items: &[(&str, &str, u8)]) -> Value {
    let buttons: Vec<Value> = items
        .iter()
        .map(|(id, label, style)| {
            json!({"type": 2, "style": style, "label": label, "custom_id": format!("{}{id}", events::PREFIX)})
        })
        .collect();
    json!([{"type": 1, "components": buttons}])
}

impl DiscordAdapter {
    /// An adapter for `settings` (connected by its [`DiscordConnection`]).
    pub fn new(settings: DiscordSettings) -> Arc<Self> {
        Arc::new(Self {
            rest: Rest::new(&settings.token, settings.api_url.as_deref()),
            settings,
            me: Mutex::new(Identity::default()),
            session: Mutex::new(None),
        })
    }

    fn shard(&self) -> Shard {
        let intents = Intents::GUILDS
            | Intents::GUILD_MESSAGES
            | Intents::MESSAGE_CONTENT
            | Intents::DIRECT_MESSAGES;
        let mut config = ConfigBuilder::new(self.settings.token.clone(), intents);
        if let Some(url) = self.settings.gateway_url.clone().filter(|u| !u.is_empty()) {
            config = config.proxy_url(url.trim_end_matches('/').to_owned());
        }
        if let Some((session, resume_url)) = lock(&self.session).clone() {
            config = config.session(session);
            if let Some(url) = resume_url {
                config = config.resume_url(url);
            }
        }
        Shard::with_config(ShardId::ONE, config.build())
    }

    async fn ready(&self, user_id: String, application_id: String) {
        *lock(&self.me) = Identity {
            user_id,
            application_id: application_id.clone(),
        };
        let Ok(app) = application_id.parse::<u64>() else {
            return;
        };
        let route = if self.settings.guild == 0 {
            Route::SetGlobalCommands {
                application_id: app,
            }
        } else {
            Route::SetGuildCommands {
                application_id: app,
                guild_id: self.settings.guild,
            }
        };
        match self.rest.call(&route, &commands()).await {
            Ok(_) => tracing::info!("Discord slash commands registered"),
            Err(e) => tracing::warn!(error = %e, "cannot register the slash commands"),
        }
    }

    /// Whether a mention is for this bot to take: in its guild (if one is set) and in one of
    /// its channels (if some are set).
    fn wanted(&self, data: &Value) -> bool {
        let guild_ok = self.settings.guild == 0
            || data["guild_id"]
                .as_str()
                .is_some_and(|g| g == self.settings.guild.to_string());
        let channels = &self.settings.channels;
        guild_ok
            && (channels.is_empty()
                || data["channel_id"]
                    .as_str()
                    .is_some_and(|c| channels.iter().any(|w| w == c)))
    }

    async fn callback(&self, id: &str, token: &str, body: &Value) -> Result<(), AdapterError> {
        self.rest
            .call_empty(
                &Route::InteractionCallback {
                    interaction_id: snowflake(id)?,
                    interaction_token: token,
                    with_response: false,
                },
                body,
            )
            .await
    }

    async fn update_response(&self, token: &str, content: &str) -> Result<(), AdapterError> {
        let app = lock(&self.me).application_id.clone();
        self.rest
            .call(
                &Route::UpdateInteractionOriginal {
                    application_id: snowflake(&app)?,
                    interaction_token: token,
                },
                &json!({"content": truncate(content, MESSAGE_LIMIT)}),
            )
            .await
            .map(drop)
    }

    /// Answers an interaction: deferred at once (Discord waits 3 s at most), then the
    /// gateway's reply, seen only by who acted.
    async fn interact(self: Arc<Self>, gateway: Arc<Gateway>, id: String, token: String, ask: Ask) {
        let result = async {
            match ask {
                Ask::ChangesForm { ws_id, request_id } => {
                    let form = json!({"type": 9, "data": {
                        "custom_id": format!("ts:changes:{ws_id}|{request_id}"),
                        "title": "Request changes",
                        "components": [{"type": 1, "components": [{"type": 4, "custom_id": "changes",
                            "style": 2, "label": "What should change?", "required": true}]}],
                    }});
                    self.callback(&id, &token, &form).await
                }
                Ask::Unknown(why) => {
                    let answer = json!({"type": 4, "data": {"content": why, "flags": 64}});
                    self.callback(&id, &token, &answer).await
                }
                Ask::Gateway(incoming) => {
                    self.callback(&id, &token, &json!({"type": 5, "data": {"flags": 64}}))
                        .await?;
                    let text = match gateway.handle(CHANNEL_TYPE, incoming).await {
                        Reply::Say(text) => text,
                        Reply::Nothing => "Done.".to_owned(),
                    };
                    self.update_response(&token, &text).await
                }
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot answer the interaction");
        }
    }
}

#[async_trait::async_trait]
impl Adapter for DiscordAdapter {
    fn channel_type(&self) -> &'static str {
        CHANNEL_TYPE
    }

    fn message_limit(&self) -> usize {
        MESSAGE_LIMIT
    }

    async fn send(&self, channel_id: &str, content: &str) -> Result<String, AdapterError> {
        let answer = self
            .rest
            .call(
                &Route::CreateMessage {
                    channel_id: snowflake(channel_id)?,
                },
                &json!({"content": content, "allowed_mentions": {"parse": []}}),
            )
            .await?;
        id_of(&answer)
    }

    async fn edit_message(
        &self,
        channel_id: &str,
        message_id: &str,
        content: &str,
    ) -> Result<(), AdapterError> {
        self.rest
            .call(
                &Route::UpdateMessage {
                    channel_id: snowflake(channel_id)?,
                    message_id: snowflake(message_id)?,
                },
                &json!({"content": content}),
            )
            .await
            .map(drop)
    }

    async fn send_approval_request(
        &self,
        channel_id: &str,
        prompt: &ApprovalPrompt,
    ) -> Result<String, AdapterError> {
        let mut description = String::new();
        for (name, what) in prompt.calls(500) {
            description.push_str(&format!(
                "**{name}** {what}
"
            ));
        }
        let body = json!({
            "embeds": [{"title": "Approval needed", "description": truncate(&description, 4096),
                "color": 0xF1C40F, "footer": {"text": format!("{}|{}", prompt.ws_id, prompt.request_id)}}],
            "components": buttons(&[("approve", "Approve", 3), ("reject", "Reject", 4), ("always", "Always", 2)]),
        });
        let answer = self
            .rest
            .call(
                &Route::CreateMessage {
                    channel_id: snowflake(channel_id)?,
                },
                &body,
            )
            .await?;
        id_of(&answer)
    }

    async fn send_plan_review(
        &self,
        channel_id: &str,
        ws_id: &str,
        request_id: &str,
        plan: &str,
    ) -> Result<String, AdapterError> {
        let body = json!({
            "embeds": [{"title": "Plan review", "description": truncate(plan, 4096),
                "color": 0x3498DB, "footer": {"text": format!("{ws_id}|{request_id}")}}],
            "components": buttons(&[("plan_approve", "Approve Plan", 3), ("plan_changes", "Request Changes", 2)]),
        });
        let answer = self
            .rest
            .call(
                &Route::CreateMessage {
                    channel_id: snowflake(channel_id)?,
                },
                &body,
            )
            .await?;
        id_of(&answer)
    }

    async fn create_thread(
        &self,
        parent_channel_id: &str,
        from_message: &str,
        name: &str,
    ) -> Result<String, AdapterError> {
        let channel_id = snowflake(parent_channel_id)?;
        let answer = if from_message.is_empty() {
            self.rest
                .call(
                    &Route::CreateThread { channel_id },
                    &json!({"name": name, "auto_archive_duration": ARCHIVE_MINUTES, "type": 11}),
                )
                .await?
        } else {
            self.rest
                .call(
                    &Route::CreateThreadFromMessage {
                        channel_id,
                        message_id: snowflake(from_message)?,
                    },
                    &json!({"name": name, "auto_archive_duration": ARCHIVE_MINUTES}),
                )
                .await?
        };
        id_of(&answer)
    }

    async fn close_thread(&self, channel_id: &str) -> Result<(), AdapterError> {
        self.rest
            .call(
                &Route::UpdateChannel {
                    channel_id: snowflake(channel_id)?,
                },
                &json!({"archived": true}),
            )
            .await
            .map(drop)
    }

    async fn tell(&self, channel_id: &str, user: &str, text: &str) -> Result<(), AdapterError> {
        self.send(channel_id, &format!("<@{user}> {text}"))
            .await
            .map(drop)
    }

    async fn send_direct(
        &self,
        channel_user_id: &str,
        content: &str,
    ) -> Result<(String, String), AdapterError> {
        let channel = self
            .rest
            .call(
                &Route::CreatePrivateChannel,
                &json!({"recipient_id": channel_user_id}),
            )
            .await?;
        let channel = id_of(&channel)?;
        let message = self.send(&channel, content).await?;
        Ok((channel, message))
    }
}

/// The connection actor: one gateway session. twilight's shard heartbeats and reconnects
/// (resuming) by itself; when the stream ends or fails for good the actor fails, and its
/// supervisor starts it again after a backoff, resuming the session it had.
#[derive(Debug)]
pub struct DiscordConnection;

/// Its one message: read the next gateway message.
#[derive(Debug)]
pub struct Next;

/// Its state.
pub struct DiscordState {
    adapter: Arc<DiscordAdapter>,
    gateway: Arc<Gateway>,
    shard: Shard,
}

impl Actor for DiscordConnection {
    type Msg = Next;
    type State = DiscordState;
    type Arguments = (Arc<DiscordAdapter>, Arc<Gateway>);

    async fn pre_start(
        &self,
        myself: ActorRef<Next>,
        (adapter, gateway): (Arc<DiscordAdapter>, Arc<Gateway>),
    ) -> Result<DiscordState, ActorProcessingErr> {
        let shard = adapter.shard();
        myself.cast(Next)?;
        Ok(DiscordState {
            adapter,
            gateway,
            shard,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Next>,
        _: Next,
        state: &mut DiscordState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(item) = state.shard.next().await else {
            return Err("the Discord gateway connection ended".into());
        };
        match item {
            Ok(twilight_gateway::Message::Text(text)) => {
                if let Some(session) = state.shard.session() {
                    let url = state.shard.resume_url().map(str::to_owned);
                    *lock(&state.adapter.session) = Some((session.clone(), url));
                }
                state.on_text(&text).await;
            }
            Ok(twilight_gateway::Message::Close(frame)) => {
                tracing::info!(
                    ?frame,
                    "the Discord gateway closed the connection; reconnecting"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "Discord gateway");
            }
        }
        myself.cast(Next)?;
        Ok(())
    }
}

impl DiscordState {
    async fn on_text(&mut self, text: &str) {
        let Ok(payload) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if payload["op"].as_u64() != Some(0) {
            return;
        }
        let kind = payload["t"].as_str().unwrap_or("");
        let data = &payload["d"];
        let me = lock(&self.adapter.me).user_id.clone();
        match read_dispatch(kind, data, &me) {
            Some(Dispatch::Ready {
                user_id,
                application_id,
            }) => {
                tracing::info!(user_id, "Discord session ready");
                self.adapter.ready(user_id, application_id).await;
            }
            Some(Dispatch::Event(incoming)) => {
                if matches!(incoming, super::adapter::Incoming::Mention { .. })
                    && !self.adapter.wanted(data)
                {
                    return;
                }
                let adapter: Arc<dyn Adapter> = self.adapter.clone();
                self.gateway.spawn_handle(adapter, incoming);
            }
            Some(Dispatch::Interaction { id, token, ask }) => {
                let (adapter, gateway) = (self.adapter.clone(), self.gateway.clone());
                tokio::spawn(adapter.interact(gateway, id, token, ask));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // twilight's client starts its rate limiter on the runtime.
    #[tokio::test]
    async fn mentions_are_taken_only_in_the_guild_and_channels_given() {
        let open = DiscordAdapter::new(DiscordSettings::default());
        let mention =
            |guild: &str, channel: &str| json!({"guild_id": guild, "channel_id": channel});
        assert!(open.wanted(&mention("1", "10")));
        let narrow = DiscordAdapter::new(DiscordSettings {
            guild: 1,
            channels: vec!["10".into(), "11".into()],
            ..DiscordSettings::default()
        });
        assert!(narrow.wanted(&mention("1", "11")));
        assert!(!narrow.wanted(&mention("2", "11")), "another guild");
        assert!(!narrow.wanted(&mention("1", "12")), "another channel");
        assert!(
            !narrow.wanted(&json!({"channel_id": "10"})),
            "a DM has no guild"
        );
    }
}
