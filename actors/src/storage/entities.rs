//! The tables of SPEC §9 that the engine uses, as sea-orm entities.

/// `memories`: key → value notes the model keeps.
pub mod memory {
    use sea_orm::entity::prelude::*;

    /// A memory.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "memories")]
    pub struct Model {
        /// Normalised key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// The note.
        pub value: String,
        /// Created (UTC, `YYYY-MM-DDTHH:MM:SS`).
        pub created: String,
        /// Updated.
        pub updated: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `conversations`: one row per message part.
pub mod conversation {
    use sea_orm::entity::prelude::*;

    /// A conversation row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conversations")]
    pub struct Model {
        /// Insertion order.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The session.
        pub session_id: String,
        /// When.
        pub timestamp: String,
        /// `user`, `assistant`, `tool_call` or `tool_result`.
        pub role: String,
        /// Text.
        pub content: Option<String>,
        /// Tool name (tool rows).
        pub tool_name: Option<String>,
        /// Tool arguments (tool_call rows).
        pub tool_args: Option<String>,
        /// Tool call id (tool rows).
        pub tool_call_id: Option<String>,
        /// Provider-specific blocks (JSON).
        pub provider_data: Option<String>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `sessions`.
pub mod session {
    use sea_orm::entity::prelude::*;

    /// A session.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        /// Id (32 hex).
        #[sea_orm(primary_key, auto_increment = false)]
        pub session_id: String,
        /// Unique name given by the user.
        pub alias: Option<String>,
        /// Generated title.
        pub title: Option<String>,
        /// Node that ran it.
        pub node_id: Option<String>,
        /// Workstream that ran it.
        pub ws_id: Option<String>,
        /// Owner.
        pub user_id: Option<String>,
        /// Created.
        pub created: String,
        /// Last message.
        pub updated: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `workstreams`.
pub mod workstream {
    use sea_orm::entity::prelude::*;

    /// A workstream's persisted state.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workstreams")]
    pub struct Model {
        /// Id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub ws_id: String,
        /// Node that owns it.
        pub node_id: Option<String>,
        /// Owner.
        pub user_id: Option<String>,
        /// Name.
        pub name: String,
        /// State (`closed` after close).
        pub state: String,
        /// Created.
        pub created: String,
        /// Updated.
        pub updated: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `session_config`: per-session settings restored on resume.
pub mod session_config {
    use sea_orm::entity::prelude::*;

    /// One setting.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "session_config")]
    pub struct Model {
        /// The session.
        #[sea_orm(primary_key, auto_increment = false)]
        pub session_id: String,
        /// Setting name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// Value.
        pub value: Option<String>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `services`: registered cluster services (channel gateways, consoles) and their heartbeats.
pub mod service {
    use sea_orm::entity::prelude::*;

    /// A registered service.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "services")]
    pub struct Model {
        /// `channel`, `console`, …
        #[sea_orm(primary_key, auto_increment = false)]
        pub service_type: String,
        /// Unique per type (`channel-{host}-{8hex}`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub service_id: String,
        /// Where it listens.
        pub url: String,
        /// JSON object.
        pub metadata: String,
        /// Last heartbeat (UTC, `YYYY-MM-DDTHH:MM:SS`).
        pub last_heartbeat: String,
        /// First registered.
        pub created: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `users`: people who log in.
pub mod user {
    use sea_orm::entity::prelude::*;

    /// A user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        /// 32 hex.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// Login name (unique).
        pub username: String,
        /// Shown name.
        pub display_name: String,
        /// bcrypt hash.
        pub password_hash: String,
        /// Created.
        pub created: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `api_tokens`: long-lived `ts_…` tokens, stored as SHA-256 hashes.
pub mod api_token {
    use sea_orm::entity::prelude::*;

    /// A token.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_tokens")]
    pub struct Model {
        /// 32 hex.
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_id: String,
        /// SHA-256 of the token, hex.
        pub token_hash: String,
        /// The token's first 8 characters, to recognise it.
        pub token_prefix: String,
        /// Owner.
        pub user_id: String,
        /// Label.
        pub name: String,
        /// Comma-separated scopes.
        pub scopes: String,
        /// Created.
        pub created: String,
        /// Expiry, if any.
        pub expires: Option<String>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `channel_users`: a chat account (Discord, Slack, Matrix …) linked to a user.
pub mod channel_user {
    use sea_orm::entity::prelude::*;

    /// A link.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "channel_users")]
    pub struct Model {
        /// `discord`, `slack`, `matrix` … (lower case).
        #[sea_orm(primary_key, auto_increment = false)]
        pub channel_type: String,
        /// The account on that platform.
        #[sea_orm(primary_key, auto_increment = false)]
        pub channel_user_id: String,
        /// The user it acts as.
        pub user_id: String,
        /// Created.
        pub created: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `channel_routes`: which workstream a chat thread or room talks to.
pub mod channel_route {
    use sea_orm::entity::prelude::*;

    /// A route.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "channel_routes")]
    pub struct Model {
        /// `discord`, `slack`, `matrix` … (lower case).
        #[sea_orm(primary_key, auto_increment = false)]
        pub channel_type: String,
        /// The thread or room on that platform.
        #[sea_orm(primary_key, auto_increment = false)]
        pub channel_id: String,
        /// The workstream it talks to.
        pub ws_id: String,
        /// The node that created it ("" when not known).
        pub node_id: String,
        /// Created.
        pub created: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `scheduled_tasks`: work the console's scheduler dispatches on a cron expression or once.
pub mod scheduled_task {
    use sea_orm::entity::prelude::*;

    /// A schedule.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scheduled_tasks")]
    pub struct Model {
        /// 32 hex.
        #[sea_orm(primary_key, auto_increment = false)]
        pub task_id: String,
        /// Name (also the workstream's).
        pub name: String,
        /// What it is for.
        pub description: String,
        /// `cron` or `at`.
        pub schedule_type: String,
        /// Five-field cron expression (`cron`).
        pub cron_expr: String,
        /// ISO-8601 time with an offset (`at`), as given.
        pub at_time: String,
        /// `auto`, `pool`, `all` or a node id.
        pub target_mode: String,
        /// Model alias ("" = the node's default).
        pub model: String,
        /// The workstream's first message.
        pub initial_message: String,
        /// 1: approve every tool call.
        pub auto_approve: i32,
        /// Tools approved without asking, comma-separated.
        pub auto_approve_tools: String,
        /// 1: fires.
        pub enabled: i32,
        /// The user who made it.
        pub created_by: String,
        /// When it last fired (UTC).
        pub last_run: Option<String>,
        /// When it fires next (UTC, `YYYY-MM-DDTHH:MM:SS`; "" = never).
        pub next_run: Option<String>,
        /// Created.
        pub created: String,
        /// Updated.
        pub updated: String,
        /// IANA time zone the cron expression is read in ("" = UTC).
        pub timezone: String,
        /// Seconds a firing that found no node is retried for (0: recorded failed at once).
        pub retry_window: i32,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `scheduled_task_runs`: each firing of a schedule (one per node for `all`).
pub mod scheduled_task_run {
    use sea_orm::entity::prelude::*;

    /// A run.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "scheduled_task_runs")]
    pub struct Model {
        /// Derived from the schedule, the firing's due time and the target.
        #[sea_orm(primary_key, auto_increment = false)]
        pub run_id: String,
        /// The schedule.
        pub task_id: String,
        /// Where it went (`pool` for the shared queue, "" when no node was found).
        pub node_id: String,
        /// The workstream, once known.
        pub ws_id: String,
        /// The `create_workstream` message's correlation id.
        pub correlation_id: String,
        /// When it was dispatched (UTC).
        pub started: String,
        /// `dispatched` or `failed`.
        pub status: String,
        /// Why it failed.
        pub error: String,
        /// The firing's due time (UTC).
        pub scheduled_for: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
