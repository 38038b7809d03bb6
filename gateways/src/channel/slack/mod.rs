//! Slack (as Turnstone 1.9): the bot connects over Socket Mode (slack-morphism: no public
//! URL, reconnects by itself) and talks to the Web API. An app mention starts a thread reply
//! with a workstream; messages in the thread go to it; `/turnstone link|unlink|ask …` is the
//! slash command (in a thread, `!status` and `!close`). Approvals and plan reviews are Block
//! Kit buttons whose value is `{ws}|{cid}`; changes to a plan are said in the thread
//! (`!changes …`). Replies to one person are ephemeral (`chat.postEphemeral`).
//!
//! `--slack-api-url` points the Web API (and so Socket Mode's `apps.connections.open`)
//! elsewhere: a proxy, or the loopback peer the tests run.

mod events;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use turnstone_runtime::ractor::{Actor, ActorProcessingErr, ActorRef};

use self::events::{Pending, read_action, read_command, read_event};
use super::adapter::{
    Adapter, AdapterError, ApprovalPrompt, Command, Incoming, Reply, split_thread,
};
use super::chunk::truncate;
use super::{Gateway, lock};

/// The platform's name.
pub const CHANNEL_TYPE: &str = "slack";

/// Characters per message: Slack takes 40,000 but advises at most 4,000 for reading.
pub const MESSAGE_LIMIT: usize = 4000;

/// Characters of a Block Kit section's text.
const SECTION_LIMIT: usize = 3000;

type Connector = SlackClientHyperConnector<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
>;
type Client = SlackClient<Connector>;

/// `--slack-*`.
#[derive(Clone, Debug, Default)]
pub struct SlackSettings {
    /// The bot token (`xoxb-…`).
    pub bot_token: String,
    /// The app-level token for Socket Mode (`xapp-…`).
    pub app_token: String,
    /// Web API base instead of https://slack.com/api.
    pub api_url: Option<String>,
}

/// The Slack adapter.
pub struct SlackAdapter {
    client: Arc<Client>,
    bot: SlackApiToken,
    settings: SlackSettings,
    me: Mutex<String>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for SlackAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackAdapter")
            .field("api_url", &self.settings.api_url)
            .finish_non_exhaustive()
    }
}

fn translate(error: SlackClientError) -> AdapterError {
    match error {
        SlackClientError::RateLimitError(limited) => {
            AdapterError::RateLimited(limited.retry_after.unwrap_or(Duration::from_secs(1)))
        }
        SlackClientError::HttpError(e) => AdapterError::Unreachable(e.to_string()),
        other => AdapterError::Platform(other.to_string()),
    }
}

impl SlackAdapter {
    /// An adapter for `settings` (connected by its [`SlackConnection`]).
    pub fn new(settings: SlackSettings) -> Result<Arc<Self>, AdapterError> {
        turnstone_actors::provider::install_crypto_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| AdapterError::Platform(format!("no system certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let mut connector = SlackClientHyperConnector::with_connector(https);
        if let Some(url) = settings.api_url.as_deref().filter(|u| !u.is_empty()) {
            connector = connector.with_slack_api_url(url.trim_end_matches('/'));
        }
        Ok(Arc::new(Self {
            client: Arc::new(SlackClient::new(connector)),
            bot: SlackApiToken::new(SlackApiTokenValue(settings.bot_token.clone())),
            settings,
            me: Mutex::new(String::new()),
            pending: Mutex::new(HashMap::new()),
        }))
    }

    /// A Web API call with the bot token.
    async fn call(&self, method: &str, body: &Value) -> Result<Value, AdapterError> {
        let session = self.client.open_session(&self.bot);
        session
            .http_session_api
            .http_post::<Value, Value>(method, body, None)
            .await
            .map_err(translate)
    }

    async fn post(&self, channel_id: &str, body: Value) -> Result<String, AdapterError> {
        let (channel, thread) = split_thread(channel_id);
        let mut body = body;
        body["channel"] = json!(channel);
        if let Some(thread) = thread {
            body["thread_ts"] = json!(thread);
        }
        let answer = self.call("chat.postMessage", &body).await?;
        answer["ts"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| AdapterError::Platform(format!("chat.postMessage gave no ts: {answer}")))
    }

    fn prompt_blocks(text: &str, value: &str, buttons: &[(&str, &str, Option<&str>)]) -> Value {
        let elements: Vec<Value> = buttons
            .iter()
            .map(|(id, label, style)| {
                let mut button = json!({"type": "button", "action_id": format!("{}{id}", events::PREFIX),
                    "text": {"type": "plain_text", "text": label}, "value": value});
                if let Some(style) = style {
                    button["style"] = json!(style);
                }
                button
            })
            .collect();
        json!([
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}},
            {"type": "actions", "elements": elements},
        ])
    }
}

#[async_trait::async_trait]
impl Adapter for SlackAdapter {
    fn channel_type(&self) -> &'static str {
        CHANNEL_TYPE
    }

    fn message_limit(&self) -> usize {
        MESSAGE_LIMIT
    }

    async fn send(&self, channel_id: &str, content: &str) -> Result<String, AdapterError> {
        self.post(channel_id, json!({"text": content})).await
    }

    async fn edit_message(
        &self,
        channel_id: &str,
        message_id: &str,
        content: &str,
    ) -> Result<(), AdapterError> {
        let (channel, _) = split_thread(channel_id);
        self.call(
            "chat.update",
            &json!({"channel": channel, "ts": message_id, "text": content}),
        )
        .await
        .map(drop)
    }

    async fn send_approval_request(
        &self,
        channel_id: &str,
        prompt: &ApprovalPrompt,
    ) -> Result<String, AdapterError> {
        let mut text = String::from(
            "*Approval needed*
",
        );
        for (name, what) in prompt.calls(300) {
            text.push_str(&format!(
                "• *{name}* {what}
"
            ));
        }
        let value = format!("{}|{}", prompt.ws_id, prompt.request_id);
        let blocks = Self::prompt_blocks(
            &text,
            &value,
            &[
                ("approve", "Approve", Some("primary")),
                ("reject", "Reject", Some("danger")),
                ("always", "Always", None),
            ],
        );
        let ts = self
            .post(
                channel_id,
                json!({"text": "Approval needed", "blocks": blocks}),
            )
            .await?;
        lock(&self.pending).insert(
            channel_id.to_owned(),
            Pending {
                ws_id: prompt.ws_id.clone(),
                request_id: prompt.request_id.clone(),
                plan: false,
            },
        );
        Ok(ts)
    }

    async fn send_plan_review(
        &self,
        channel_id: &str,
        ws_id: &str,
        request_id: &str,
        plan: &str,
    ) -> Result<String, AdapterError> {
        let value = format!("{ws_id}|{request_id}");
        let text = format!(
            "*Plan for review*\n{plan}\n_To send it back, say_ `!changes <what to change>`"
        );
        let blocks = Self::prompt_blocks(
            &text,
            &value,
            &[
                ("plan_approve", "Approve Plan", Some("primary")),
                ("plan_changes", "Request Changes", None),
            ],
        );
        let ts = self
            .post(
                channel_id,
                json!({"text": "Plan for review", "blocks": blocks}),
            )
            .await?;
        lock(&self.pending).insert(
            channel_id.to_owned(),
            Pending {
                ws_id: ws_id.to_owned(),
                request_id: request_id.to_owned(),
                plan: true,
            },
        );
        Ok(ts)
    }

    async fn create_thread(
        &self,
        parent_channel_id: &str,
        from_message: &str,
        name: &str,
    ) -> Result<String, AdapterError> {
        let (channel, _) = split_thread(parent_channel_id);
        let root = if from_message.is_empty() {
            self.post(channel, json!({"text": format!(":thread: {name}")}))
                .await?
        } else {
            from_message.to_owned()
        };
        Ok(format!("{channel}/{root}"))
    }

    async fn close_thread(&self, channel_id: &str) -> Result<(), AdapterError> {
        lock(&self.pending).remove(channel_id);
        Ok(())
    }

    async fn tell(&self, channel_id: &str, user: &str, text: &str) -> Result<(), AdapterError> {
        let (channel, thread) = split_thread(channel_id);
        let mut body = json!({"channel": channel, "user": user, "text": text});
        if let Some(thread) = thread {
            body["thread_ts"] = json!(thread);
        }
        self.call("chat.postEphemeral", &body).await.map(drop)
    }

    async fn send_direct(
        &self,
        channel_user_id: &str,
        content: &str,
    ) -> Result<(String, String), AdapterError> {
        let opened = self
            .call("conversations.open", &json!({"users": channel_user_id}))
            .await?;
        let channel = opened["channel"]["id"]
            .as_str()
            .ok_or_else(|| {
                AdapterError::Platform(format!("conversations.open gave no channel: {opened}"))
            })?
            .to_owned();
        let ts = self.send(&channel, content).await?;
        Ok((channel, ts))
    }
}

/// What the Socket Mode callbacks reach (slack-morphism's callbacks are plain functions; they
/// find this in the listener's user state).
struct Shared {
    adapter: Arc<SlackAdapter>,
    gateway: Arc<Gateway>,
}

async fn shared(states: &SlackClientEventsUserState) -> Option<(Arc<SlackAdapter>, Arc<Gateway>)> {
    let storage = states.read().await;
    storage
        .get_user_state::<Shared>()
        .map(|s| (s.adapter.clone(), s.gateway.clone()))
}

async fn on_push(
    event: SlackPushEventCallback,
    _: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let Some((adapter, gateway)) = shared(&states).await else {
        return Ok(());
    };
    let value = serde_json::to_value(&event.event)?;
    let me = lock(&adapter.me).clone();
    let pending = |channel: &str| lock(&adapter.pending).get(channel).cloned();
    if let Some(incoming) = read_event(&value, &me, pending) {
        let adapter: Arc<dyn Adapter> = adapter;
        gateway.spawn_handle(adapter, incoming);
    }
    Ok(())
}

async fn on_command(
    event: SlackCommandEvent,
    _: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let answer = |text: String| {
        SlackCommandEventResponse::new(SlackMessageContent::new().with_text(text))
            .with_response_type(SlackMessageResponseType::Ephemeral)
    };
    let Some((adapter, gateway)) = shared(&states).await else {
        return Ok(answer("The gateway is starting; try again.".into()));
    };
    let command = match read_command(event.text.as_deref().unwrap_or("")) {
        Ok(command) => command,
        Err(usage) => return Ok(answer(usage)),
    };
    let incoming = Incoming::Command {
        user: event.user_id.to_string(),
        channel_id: event.channel_id.to_string(),
        command: command.clone(),
    };
    match command {
        // Slack waits three seconds for the answer; a workstream may take longer to make.
        Command::Ask(_) => {
            let adapter: Arc<dyn Adapter> = adapter;
            gateway.spawn_handle(adapter, incoming);
            Ok(answer("Asking in a new thread…".into()))
        }
        Command::Status | Command::Close => Ok(answer(
            "Say !status or !close in the workstream's thread.".into(),
        )),
        _ => Ok(answer(match gateway.handle(CHANNEL_TYPE, incoming).await {
            Reply::Say(text) => text,
            Reply::Nothing => "Done.".into(),
        })),
    }
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let Some((adapter, gateway)) = shared(&states).await else {
        return Ok(());
    };
    let SlackInteractionEvent::BlockActions(actions) = event else {
        return Ok(());
    };
    let payload = serde_json::to_value(&actions)?;
    match read_action(&payload) {
        Some((incoming, _)) => {
            let adapter: Arc<dyn Adapter> = adapter;
            gateway.spawn_handle(adapter, incoming);
        }
        None => {
            // Request Changes: what to change is said in the thread.
            if let (Some(user), Some(channel), Some(thread)) = (
                payload["user"]["id"].as_str(),
                payload["channel"]["id"].as_str(),
                payload["container"]["thread_ts"]
                    .as_str()
                    .or_else(|| payload["message"]["thread_ts"].as_str()),
            ) {
                let place = format!("{channel}/{thread}");
                let said = adapter
                    .tell(
                        &place,
                        user,
                        "Say `!changes <what to change>` in this thread.",
                    )
                    .await;
                if let Err(e) = said {
                    tracing::warn!(error = %e, "cannot answer the button");
                }
            }
        }
    }
    Ok(())
}

/// The connection actor: a Socket Mode listener (one connection; slack-morphism reconnects
/// it). It connects in its first message, not at start, so the gateway starts while Slack is
/// unreachable; when Slack refuses the connection the actor fails and its supervisor tries
/// again with backoff. Stopped, it shuts the listener down.
#[derive(Debug)]
pub struct SlackConnection;

/// Its one message: connect.
#[derive(Debug)]
pub struct Connect;

/// Its state: the adapter, the gateway, and the listener once connected.
pub struct SlackState {
    adapter: Arc<SlackAdapter>,
    gateway: Arc<Gateway>,
    listener: Option<SlackClientSocketModeListener<Connector>>,
}

impl Actor for SlackConnection {
    type Msg = Connect;
    type State = SlackState;
    type Arguments = (Arc<SlackAdapter>, Arc<Gateway>);

    async fn pre_start(
        &self,
        myself: ActorRef<Connect>,
        (adapter, gateway): (Arc<SlackAdapter>, Arc<Gateway>),
    ) -> Result<SlackState, ActorProcessingErr> {
        myself.cast(Connect)?;
        Ok(SlackState {
            adapter,
            gateway,
            listener: None,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<Connect>,
        _: Connect,
        state: &mut SlackState,
    ) -> Result<(), ActorProcessingErr> {
        if state.listener.is_some() {
            return Ok(());
        }
        let adapter = &state.adapter;
        let me = adapter.call("auth.test", &json!({})).await?;
        if let Some(user) = me["user_id"].as_str() {
            *lock(&adapter.me) = user.to_owned();
        }
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_push_events(on_push)
            .with_command_events(on_command)
            .with_interaction_events(on_interaction);
        let environment = Arc::new(
            SlackClientEventsListenerEnvironment::new(adapter.client.clone()).with_user_state(
                Shared {
                    adapter: adapter.clone(),
                    gateway: state.gateway.clone(),
                },
            ),
        );
        let config = SlackClientSocketModeConfig::new()
            .with_max_connections_count(1)
            .with_initial_backoff_in_seconds(1);
        let listener = SlackClientSocketModeListener::new(&config, environment, callbacks);
        let app = SlackApiToken::new(SlackApiTokenValue(adapter.settings.app_token.clone()));
        listener.listen_for(&app).await?;
        listener.start().await;
        tracing::info!("Slack Socket Mode connected");
        state.listener = Some(listener);
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<Connect>,
        state: &mut SlackState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(listener) = state.listener.take() {
            listener.shutdown().await;
        }
        Ok(())
    }
}

impl Drop for SlackState {
    /// A killed actor runs no `post_stop`: its listener is shut down here, so a restarted
    /// actor is the only one connected.
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { listener.shutdown().await });
        }
    }
}
