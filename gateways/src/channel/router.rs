//! The router (SPEC §13): which workstream a thread talks to. A route is reused while its
//! workstream lives (its owner key is in Redis); a route whose workstream was evicted is
//! replaced by a new workstream that resumes the old one's session. One lock per thread, so
//! two messages arriving at once cannot create two workstreams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use turnstone_actors::mq::protocol::CreateMsg;
use turnstone_actors::mq::{Inbound, TurnstoneClient};
use turnstone_actors::storage::Store;

use super::GatewayError;

/// How long a workstream's creation is waited for.
pub const CREATE_WAIT: Duration = Duration::from_secs(30);

/// What the router creates workstreams with.
#[derive(Clone, Debug, Default)]
pub struct RouteSettings {
    /// Model alias ("" for the node's default).
    pub model: String,
    /// Approve every tool call.
    pub auto_approve: bool,
    /// Tools approved without asking.
    pub auto_approve_tools: Vec<String>,
}

/// What to do with a thread that never had a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfUnrouted {
    /// Make its workstream (a thread the bot just opened).
    Create,
    /// Leave it (a thread of somebody else's).
    Skip,
}

/// A thread's workstream, as the router found or made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    /// The workstream.
    pub ws_id: String,
    /// Made now (false: an existing route was reused).
    pub created: bool,
    /// Made now to continue an evicted workstream's session.
    pub resumed: bool,
    /// The message given was sent as the new workstream's first message.
    pub sent: bool,
}

/// A thread: its platform and channel id.
type ThreadKey = (String, String);

/// Held while a thread's route is looked up or made.
type ThreadLock = Arc<tokio::sync::Mutex<()>>;

/// The router.
pub struct Router {
    client: TurnstoneClient,
    store: Store,
    settings: RouteSettings,
    locks: Mutex<HashMap<ThreadKey, ThreadLock>>,
    create_wait: Duration,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router creating workstreams through `client`, keeping routes in `store`.
    pub fn new(client: TurnstoneClient, store: Store, settings: RouteSettings) -> Self {
        Self {
            client,
            store,
            settings,
            locks: Mutex::new(HashMap::new()),
            create_wait: CREATE_WAIT,
        }
    }

    /// The settings workstreams are created with.
    pub fn settings(&self) -> &RouteSettings {
        &self.settings
    }

    /// The thread's workstream: reused while it lives, else created for `user_id` with
    /// `message` as its first message (a resumed one gets `message` sent separately by the
    /// caller, as [`Routed::sent`] says). A thread that never had a route gets one only when
    /// `unrouted` says so; else `None`.
    pub async fn get_or_create(
        &self,
        channel_type: &str,
        channel_id: &str,
        name: &str,
        user_id: &str,
        message: &str,
        unrouted: IfUnrouted,
    ) -> Result<Option<Routed>, GatewayError> {
        let lock = self.lock_of(channel_type, channel_id);
        let _held = lock.lock().await;
        let mut resume_session = String::new();
        if let Some(route) = self.store.channel_route(channel_type, channel_id).await? {
            if self.alive(&route.ws_id).await? {
                return Ok(Some(Routed {
                    ws_id: route.ws_id,
                    created: false,
                    resumed: false,
                    sent: false,
                }));
            }
            self.store
                .delete_channel_route(channel_type, channel_id)
                .await?;
            if let Some(session) = self.store.session_of_workstream(&route.ws_id).await? {
                resume_session = session;
            }
            tracing::info!(
                channel_type,
                channel_id,
                old_ws = %route.ws_id,
                resume_session,
                "the thread's workstream is gone; making a new one"
            );
        } else if unrouted == IfUnrouted::Skip {
            return Ok(None);
        }
        let resumed = !resume_session.is_empty();
        let create = CreateMsg {
            name: name.to_owned(),
            auto_approve: self.settings.auto_approve,
            auto_approve_tools: self.settings.auto_approve_tools.clone(),
            model: self.settings.model.clone(),
            initial_message: if resumed {
                String::new()
            } else {
                message.to_owned()
            },
            resume_session,
            user_id: user_id.to_owned(),
            reads_stream: true,
            ..CreateMsg::default()
        };
        let answer = self
            .client
            .ask(Inbound::CreateWorkstream(create), self.create_wait)
            .await
            .map_err(|e| match e {
                turnstone_actors::mq::ClientError::Timeout(_) => GatewayError::NoNode,
                other => GatewayError::Queue(other),
            })?;
        if answer.kind != "ws_created" || answer.ws_id.is_empty() {
            let why = answer.str("detail");
            let why = if why.is_empty() {
                answer.str("error")
            } else {
                why
            };
            return Err(GatewayError::Refused(if why.is_empty() {
                format!("the node answered {}", answer.kind)
            } else {
                why.to_owned()
            }));
        }
        self.store
            .set_channel_route(
                channel_type,
                channel_id,
                &answer.ws_id,
                answer.str("node_id"),
            )
            .await?;
        tracing::info!(channel_type, channel_id, ws_id = %answer.ws_id, resumed, "routed");
        Ok(Some(Routed {
            ws_id: answer.ws_id,
            created: true,
            resumed,
            sent: !resumed,
        }))
    }

    /// Forgets a thread's route.
    pub async fn forget(&self, channel_type: &str, channel_id: &str) -> Result<bool, GatewayError> {
        Ok(self
            .store
            .delete_channel_route(channel_type, channel_id)
            .await?)
    }

    /// The node that owns a workstream, if any.
    pub async fn owner(&self, ws_id: &str) -> Result<Option<String>, GatewayError> {
        let owner = self
            .client
            .transport()
            .get(&self.client.keys().owner(ws_id))
            .await
            .map_err(|e| GatewayError::Queue(e.into()))?;
        Ok(owner.filter(|o| !o.is_empty()))
    }

    /// Whether a workstream lives: a node owns it.
    async fn alive(&self, ws_id: &str) -> Result<bool, GatewayError> {
        Ok(self.owner(ws_id).await?.is_some())
    }

    fn lock_of(&self, channel_type: &str, channel_id: &str) -> ThreadLock {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        // Locks nobody holds or waits for are dropped now and then, so the map stays small.
        if locks.len() > 1024 {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks
            .entry((channel_type.to_owned(), channel_id.to_owned()))
            .or_default()
            .clone()
    }
}
