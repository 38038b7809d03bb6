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
