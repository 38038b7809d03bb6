//! `turnstone-channel` (SPEC §13): the chat gateway. People mention the bot on a platform and
//! get a thread with a workstream behind it; the answer is written into the thread as it
//! comes, tool calls are approved with buttons (or their platform's stand-in), and nodes reach
//! people through the notify endpoint.
//!
//! Shape: one adapter per platform ([`adapter::Adapter`], its connection a supervised actor
//! restarted with backoff), the [`router::Router`] (threads → workstreams, over the cluster's
//! queue), one [`relay::Relay`] actor per routed workstream, and the HTTP side
//! ([`notify`]: `POST /v1/api/notify`, `GET /health`) registered in `services`
//! ([`registration`]). [`Gateway`] holds them and decides what each platform event means.

pub mod adapter;
pub mod chunk;
pub mod cli;
pub mod discord;
pub mod matrix;
pub mod notify;
pub mod registration;
pub mod relay;
pub mod router;
pub mod slack;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use turnstone_actors::accounts;
use turnstone_actors::auth::{Audience, Authenticator};
use turnstone_actors::config::AuthConfig;
use turnstone_actors::mq::{ClientError, TurnstoneClient};
use turnstone_actors::storage::{Store, StoreError};
use turnstone_runtime::supervise::{
    ChildRef, ChildSpec, Observer, Restart, SupervisorHandle, SupervisorSpec,
};

use self::adapter::{Adapter, Command, Decision, Incoming, Reply, thread_name};
use self::relay::{From, Relay, RelayArgs, RelayMsg};
use self::router::{IfUnrouted, RouteSettings, Router};

/// A lock, taken even if a holder panicked (what it guards stays consistent per call).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What can go wrong handling a chat event.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// Redis failed.
    #[error("queue: {0}")]
    Queue(#[from] ClientError),
    /// No node answered a workstream's creation in time.
    #[error("no node answered within 30 s; is a node running?")]
    NoNode,
    /// A node refused to make the workstream.
    #[error("the node refused: {0}")]
    Refused(String),
    /// A platform failed.
    #[error("{0}")]
    Adapter(#[from] adapter::AdapterError),
    /// The supervisor did not start a relay.
    #[error("cannot follow the workstream: {0}")]
    Relay(String),
}

/// What the gateway is started with.
pub struct GatewayOptions {
    /// The cluster's queue.
    pub client: TurnstoneClient,
    /// Users, links and routes.
    pub store: Store,
    /// How workstreams are made.
    pub route: RouteSettings,
    /// `[auth]`, for `/link` tokens and notify callers.
    pub auth: AuthConfig,
    /// The JWT secret (`TURNSTONE_JWT_SECRET`), if any.
    pub jwt_secret: Option<String>,
}

/// The gateway's shared core.
pub struct Gateway {
    client: TurnstoneClient,
    store: Store,
    router: Router,
    auth: Authenticator,
    adapters: RwLock<HashMap<&'static str, Arc<dyn Adapter>>>,
    /// Thread → the workstream its relay follows, and the relay.
    relays: Mutex<HashMap<String, (String, ChildRef<RelayMsg>)>>,
    /// Workstream → the user it was made for (known without the database).
    owners: Mutex<HashMap<String, String>>,
    relay_ids: AtomicU64,
    supervisor: SupervisorHandle,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Starts the core: its supervisor (relays, and the adapters' connections added later).
    pub async fn start(
        options: GatewayOptions,
        observer: Observer,
    ) -> Result<Arc<Self>, turnstone_runtime::ractor::SpawnErr> {
        let spec = SupervisorSpec::new("channel")
            .intensity(u32::MAX, Duration::from_secs(1))
            .backoff(turnstone_runtime::policy::Backoff::exponential(
                Duration::from_secs(1),
                Duration::from_secs(30),
            ));
        let (supervisor, _) = SupervisorHandle::start(spec, observer).await?;
        let mut auth_config = options.auth.clone();
        auth_config.enabled = true;
        let secret = options.jwt_secret.clone().unwrap_or_default();
        Ok(Arc::new(Self {
            router: Router::new(options.client.clone(), options.store.clone(), options.route),
            auth: Authenticator::new(
                auth_config,
                secret,
                Audience::Channel,
                Some(options.store.clone()),
            ),
            client: options.client,
            store: options.store,
            adapters: RwLock::new(HashMap::new()),
            relays: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            relay_ids: AtomicU64::new(0),
            supervisor,
        }))
    }

    /// The supervisor adapters run their connections under.
    pub fn supervisor(&self) -> &SupervisorHandle {
        &self.supervisor
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Token checks for `/link` and notify callers.
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// Makes a platform's adapter known (before its connection delivers events).
    pub fn add_adapter(&self, adapter: Arc<dyn Adapter>) {
        self.adapters
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(adapter.channel_type(), adapter);
    }

    /// The adapter of a platform, if it is connected.
    pub fn adapter(&self, channel_type: &str) -> Option<Arc<dyn Adapter>> {
        self.adapters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel_type)
            .cloned()
    }

    /// Stops the relays and the adapters' connections.
    pub async fn shutdown(&self) {
        if let Err(e) = self.supervisor.shutdown(Some(Duration::from_secs(5))).await {
            tracing::warn!(error = %e, "the gateway did not stop cleanly");
        }
    }

    /// Handles `incoming` in its own task, and tells its author the reply.
    pub fn spawn_handle(self: &Arc<Self>, adapter: Arc<dyn Adapter>, incoming: Incoming) {
        let gateway = self.clone();
        tokio::spawn(async move {
            let place = incoming.channel_id().to_owned();
            let user = incoming.user().to_owned();
            if let Reply::Say(text) = gateway.handle(adapter.channel_type(), incoming).await
                && let Err(e) = adapter::patiently(|| adapter.tell(&place, &user, &text)).await
            {
                tracing::warn!(channel_id = %place, error = %e, "cannot answer");
            }
        });
    }

    /// What an event of `channel_type` means, done; the reply for its author.
    pub async fn handle(&self, channel_type: &'static str, incoming: Incoming) -> Reply {
        match self.dispatch(channel_type, incoming).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(channel_type, error = %e, "a chat event failed");
                Reply::Say(format!(
                    "⚠️ {}",
                    chunk::truncate(&e.to_string(), relay::ERROR_CHARS)
                ))
            }
        }
    }

    async fn dispatch(
        &self,
        channel_type: &'static str,
        incoming: Incoming,
    ) -> Result<Reply, GatewayError> {
        let link = self
            .store
            .channel_user(channel_type, incoming.user())
            .await?;
        if let Incoming::Command {
            user,
            command: Command::Link(token),
            ..
        } = &incoming
        {
            return self.link(channel_type, user, token).await;
        }
        // Unlinked accounts are ignored (no reply: the bot does not answer strangers).
        let Some(link) = link else {
            tracing::debug!(channel_type, user = incoming.user(), "ignored: not linked");
            return Ok(Reply::Nothing);
        };
        let user_id = link.user_id;
        match incoming {
            Incoming::Mention {
                channel_id,
                message_id,
                text,
                ..
            } => {
                // A mention inside a routed thread is a message to its workstream.
                let routed = self
                    .converse(channel_type, &channel_id, &user_id, &text, IfUnrouted::Skip)
                    .await?;
                match routed {
                    Some(reply) => Ok(reply),
                    None => {
                        self.open_thread(channel_type, &channel_id, &message_id, &user_id, &text)
                            .await
                    }
                }
            }
            Incoming::Message {
                channel_id, text, ..
            } => {
                let reply = self
                    .converse(channel_type, &channel_id, &user_id, &text, IfUnrouted::Skip)
                    .await?;
                Ok(reply.unwrap_or(Reply::Nothing))
            }
            Incoming::Command {
                channel_id,
                command,
                user,
            } => {
                self.command(channel_type, &channel_id, &user, &user_id, command)
                    .await
            }
            Incoming::Decision {
                ws_id,
                request_id,
                decision,
                ..
            } => self.decide(&ws_id, &request_id, &user_id, decision).await,
        }
    }

    async fn link(
        &self,
        channel_type: &str,
        account: &str,
        token: &str,
    ) -> Result<Reply, GatewayError> {
        let Some(principal) = self.auth.authenticate(token).await else {
            return Ok(Reply::Say("That token is not valid.".into()));
        };
        let Some(user_id) = principal.user_id else {
            return Ok(Reply::Say(
                "That token belongs to no user; link with a user's API token.".into(),
            ));
        };
        match accounts::link_channel(&self.store, &user_id, channel_type, account).await {
            Ok(_) => {
                let name = self
                    .store
                    .user(&user_id)
                    .await?
                    .map_or(user_id.clone(), |u| u.username);
                Ok(Reply::Say(format!("Linked to {name}.")))
            }
            Err(e) => Ok(Reply::Say(e.to_string())),
        }
    }

    /// A mention: a thread from the message and a workstream answering it there.
    async fn open_thread(
        &self,
        channel_type: &'static str,
        parent: &str,
        message_id: &str,
        user_id: &str,
        text: &str,
    ) -> Result<Reply, GatewayError> {
        let adapter = self.require(channel_type)?;
        let name = thread_name(text);
        let thread = adapter.create_thread(parent, message_id, &name).await?;
        let reply = self
            .converse(channel_type, &thread, user_id, text, IfUnrouted::Create)
            .await?;
        Ok(reply.unwrap_or(Reply::Nothing))
    }

    /// A message for a thread's workstream, made (or made again) when needed; `None` for a
    /// thread without a route that `unrouted` says to leave.
    async fn converse(
        &self,
        channel_type: &'static str,
        channel_id: &str,
        user_id: &str,
        text: &str,
        unrouted: IfUnrouted,
    ) -> Result<Option<Reply>, GatewayError> {
        let adapter = self.require(channel_type)?;
        let Some(routed) = self
            .router
            .get_or_create(
                channel_type,
                channel_id,
                &thread_name(text),
                user_id,
                text,
                unrouted,
            )
            .await?
        else {
            return Ok(None);
        };
        // A workstream made now is read from its first event (a resumed one's first is its
        // `session_resumed`); one that lived already, from now.
        let from = if routed.created {
            From::Start
        } else {
            From::Now
        };
        if routed.created {
            lock(&self.owners).insert(routed.ws_id.clone(), user_id.to_owned());
        }
        self.follow(&routed.ws_id, channel_id, adapter, from)
            .await?;
        if !routed.sent {
            self.client
                .send(turnstone_actors::mq::protocol::SendMsg {
                    ws_id: routed.ws_id.clone(),
                    message: text.to_owned(),
                    ..Default::default()
                })
                .await?;
        }
        Ok(Some(Reply::Nothing))
    }

    async fn command(
        &self,
        channel_type: &'static str,
        channel_id: &str,
        account: &str,
        user_id: &str,
        command: Command,
    ) -> Result<Reply, GatewayError> {
        match command {
            Command::Link(_) => Ok(Reply::Nothing),
            Command::Unlink => {
                self.store.unlink_channel(channel_type, account).await?;
                Ok(Reply::Say("Unlinked.".into()))
            }
            Command::Ask(question) => {
                self.open_thread(channel_type, channel_id, "", user_id, &question)
                    .await
            }
            Command::Status => {
                let Some(route) = self.store.channel_route(channel_type, channel_id).await? else {
                    return Ok(Reply::Say("This thread has no workstream.".into()));
                };
                let owner = self.router.owner(&route.ws_id).await?;
                Ok(Reply::Say(match owner {
                    Some(node) => {
                        format!("Workstream {} on node {node}.", route.ws_id)
                    }
                    None => format!(
                        "Workstream {} is not running; the next message starts it again.",
                        route.ws_id
                    ),
                }))
            }
            Command::Close => {
                let Some(route) = self.store.channel_route(channel_type, channel_id).await? else {
                    return Ok(Reply::Say("This thread has no workstream.".into()));
                };
                if !self.may_act(&route.ws_id, user_id).await? {
                    return Ok(Reply::Say(
                        "Only the workstream's owner can close it.".into(),
                    ));
                }
                self.client.close_workstream(&route.ws_id).await?;
                self.router.forget(channel_type, channel_id).await?;
                self.stop_relay(channel_id);
                let adapter = self.require(channel_type)?;
                adapter.send(channel_id, "Closed.").await?;
                adapter.close_thread(channel_id).await?;
                Ok(Reply::Nothing)
            }
        }
    }

    async fn decide(
        &self,
        ws_id: &str,
        request_id: &str,
        user_id: &str,
        decision: Decision,
    ) -> Result<Reply, GatewayError> {
        if !self.may_act(ws_id, user_id).await? {
            return Ok(Reply::Say(
                "Only the workstream's owner can answer this.".into(),
            ));
        }
        let (what, done) = match decision {
            Decision::Approve => (
                self.client.approve(ws_id, request_id, true, None, false),
                "Approved.",
            ),
            Decision::Reject => (
                self.client.approve(
                    ws_id,
                    request_id,
                    false,
                    Some("Rejected in chat".into()),
                    false,
                ),
                "Rejected.",
            ),
            Decision::Always => (
                self.client.approve(ws_id, request_id, true, None, true),
                "Approved, and every later call of this workstream.",
            ),
            Decision::ApprovePlan => {
                self.client.plan_feedback(ws_id, request_id, "").await?;
                return Ok(Reply::Say("Plan approved.".into()));
            }
            Decision::RequestChanges(changes) => {
                let changes = if changes.trim().is_empty() {
                    "reject".to_owned()
                } else {
                    changes
                };
                self.client
                    .plan_feedback(ws_id, request_id, &changes)
                    .await?;
                return Ok(Reply::Say("Changes requested.".into()));
            }
        };
        what.await?;
        Ok(Reply::Say(done.into()))
    }

    /// Whether `user_id` may approve, reject or close `ws_id`: it is the workstream's owner.
    async fn may_act(&self, ws_id: &str, user_id: &str) -> Result<bool, GatewayError> {
        if let Some(owner) = self.owner_of(ws_id) {
            return Ok(owner == user_id);
        }
        Ok(self
            .store
            .workstream(ws_id)
            .await?
            .and_then(|w| w.user_id)
            .is_some_and(|owner| owner == user_id))
    }

    fn owner_of(&self, ws_id: &str) -> Option<String> {
        lock(&self.owners).get(ws_id).cloned()
    }

    fn require(&self, channel_type: &str) -> Result<Arc<dyn Adapter>, GatewayError> {
        self.adapter(channel_type).ok_or_else(|| {
            GatewayError::Adapter(adapter::AdapterError::Platform(format!(
                "no {channel_type} adapter"
            )))
        })
    }

    /// Starts a relay for `ws_id` into `channel_id` unless one follows it already; a relay
    /// following the thread's previous (gone) workstream is stopped.
    async fn follow(
        &self,
        ws_id: &str,
        channel_id: &str,
        adapter: Arc<dyn Adapter>,
        from: From,
    ) -> Result<(), GatewayError> {
        {
            let mut relays = lock(&self.relays);
            match relays.get(channel_id) {
                Some((following, relay)) if following == ws_id && relay.get().is_some() => {
                    return Ok(());
                }
                Some(_) => {
                    if let Some((_, old)) = relays.remove(channel_id)
                        && let Some(old) = old.get()
                    {
                        old.stop(Some("the thread has a new workstream".into()));
                    }
                }
                None => {}
            }
        }
        let settings = self.router.settings();
        let args = RelayArgs {
            ws_id: ws_id.to_owned(),
            channel_id: channel_id.to_owned(),
            adapter,
            client: self.client.clone(),
            from,
            auto_approve_tools: settings.auto_approve_tools.clone(),
            auto_approve: settings.auto_approve,
        };
        let restarted = AtomicBool::new(false);
        let id = self.relay_ids.fetch_add(1, Ordering::Relaxed);
        let (spec, child) =
            ChildSpec::actor(format!("relay-{id}"), Restart::Transient, move || {
                let mut args = args.clone();
                // A restarted relay reads on from now: what it showed is in the thread already.
                if restarted.swap(true, Ordering::Relaxed) {
                    args.from = From::Now;
                }
                (Relay, args)
            });
        self.supervisor
            .start_child(spec)
            .await
            .map_err(|e| GatewayError::Relay(e.to_string()))?;
        lock(&self.relays).insert(channel_id.to_owned(), (ws_id.to_owned(), child));
        Ok(())
    }

    /// Stops the relay of a thread.
    fn stop_relay(&self, channel_id: &str) {
        let removed = lock(&self.relays).remove(channel_id);
        if let Some((_, relay)) = removed
            && let Some(relay) = relay.get()
        {
            relay.stop(Some("workstream closed".into()));
        }
    }
}

/// A started gateway: its core, platforms, registration and HTTP side.
pub struct Running {
    /// The core.
    pub gateway: Arc<Gateway>,
    /// Where notify listens.
    pub local: std::net::SocketAddr,
    /// The registry entry's id.
    pub service_id: String,
    /// The Matrix connection actor (following its restarts), when Matrix is configured.
    pub matrix: ChildRef<matrix::SyncAgain>,
    /// The Discord connection actor, when Discord is configured.
    pub discord: ChildRef<discord::Next>,
    /// The Slack connection actor, when Slack is configured.
    pub slack: ChildRef<slack::Connect>,
    server: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("local", &self.local)
            .field("service_id", &self.service_id)
            .finish_non_exhaustive()
    }
}

/// What [`run`] starts.
pub struct RunOptions {
    /// The core's options.
    pub gateway: GatewayOptions,
    /// Matrix, if configured.
    pub matrix: Option<matrix::MatrixSettings>,
    /// Discord, if configured.
    pub discord: Option<discord::DiscordSettings>,
    /// Slack, if configured.
    pub slack: Option<slack::SlackSettings>,
    /// Who may call notify.
    pub notify: notify::NotifyAuth,
    /// The notify endpoint's listener.
    pub listener: tokio::net::TcpListener,
    /// `--http-host`, for the registered URL.
    pub http_host: String,
    /// `--advertise-url`.
    pub advertise_url: Option<String>,
}

/// Starts the gateway: core, adapters (their connections supervised), registration, notify.
pub async fn run(options: RunOptions, observer: Observer) -> Result<Running, GatewayError> {
    let store = options.gateway.store.clone();
    let gateway = Gateway::start(options.gateway, observer)
        .await
        .map_err(|e| GatewayError::Relay(e.to_string()))?;
    let mut platforms = Vec::new();
    let mut matrix_ref = ChildRef::new();
    if let Some(settings) = options.matrix {
        let adapter = matrix::MatrixAdapter::new(settings)?;
        gateway.add_adapter(adapter.clone());
        let g = gateway.clone();
        let (spec, connection) = ChildSpec::actor("matrix", Restart::Permanent, move || {
            (matrix::MatrixConnection, (adapter.clone(), g.clone()))
        });
        matrix_ref = connection;
        gateway
            .supervisor()
            .start_child(spec)
            .await
            .map_err(|e| GatewayError::Relay(e.to_string()))?;
        platforms.push(matrix::CHANNEL_TYPE.to_owned());
    }
    let mut discord_ref = ChildRef::new();
    if let Some(settings) = options.discord {
        let adapter = discord::DiscordAdapter::new(settings);
        gateway.add_adapter(adapter.clone());
        let g = gateway.clone();
        let (spec, connection) = ChildSpec::actor("discord", Restart::Permanent, move || {
            (discord::DiscordConnection, (adapter.clone(), g.clone()))
        });
        discord_ref = connection;
        gateway
            .supervisor()
            .start_child(spec)
            .await
            .map_err(|e| GatewayError::Relay(e.to_string()))?;
        platforms.push(discord::CHANNEL_TYPE.to_owned());
    }
    let mut slack_ref = ChildRef::new();
    if let Some(settings) = options.slack {
        let adapter = slack::SlackAdapter::new(settings)?;
        gateway.add_adapter(adapter.clone());
        let g = gateway.clone();
        let (spec, connection) = ChildSpec::actor("slack", Restart::Permanent, move || {
            (slack::SlackConnection, (adapter.clone(), g.clone()))
        });
        slack_ref = connection;
        gateway
            .supervisor()
            .start_child(spec)
            .await
            .map_err(|e| GatewayError::Relay(e.to_string()))?;
        platforms.push(slack::CHANNEL_TYPE.to_owned());
    }
    let local = options
        .listener
        .local_addr()
        .map_err(|e| GatewayError::Relay(format!("the listener has no address: {e}")))?;
    let mut entry = registration::Registration::new(
        store,
        &options.http_host,
        local.port(),
        options.advertise_url.as_deref(),
    );
    entry.platforms = platforms;
    let service_id = entry.service_id.clone();
    let (spec, _) = ChildSpec::actor("registration", Restart::Permanent, move || {
        (registration::Registrar, entry.clone())
    });
    gateway
        .supervisor()
        .start_child(spec)
        .await
        .map_err(|e| GatewayError::Relay(e.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let routes = notify::routes(gateway.clone(), options.notify);
    let server = tokio::spawn(crate::web::serve(routes, options.listener, async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        gateway,
        local,
        service_id,
        matrix: matrix_ref,
        discord: discord_ref,
        slack: slack_ref,
        server,
        stop: Some(stop),
    })
}

impl Running {
    /// Stops everything (the registration is removed).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        self.gateway.shutdown().await;
    }
}
