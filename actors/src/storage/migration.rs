//! Schema migrations, tracked by sea-orm-migration in `seaql_migrations`.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

/// All migrations, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateTables),
            Box::new(CreateServices),
            Box::new(CreateUsers),
            Box::new(CreateAdmin),
        ]
    }
}

/// 001: the engine's tables and full-text search.
struct CreateTables;

impl MigrationName for CreateTables {
    fn name(&self) -> &str {
        "m001_create_tables"
    }
}

const COMMON: &[&str] = &[
    "CREATE TABLE memories (key TEXT PRIMARY KEY, value TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL)",
    "CREATE TABLE sessions (session_id TEXT PRIMARY KEY, alias TEXT UNIQUE, title TEXT, node_id TEXT, ws_id TEXT, user_id TEXT, created TEXT NOT NULL, updated TEXT NOT NULL)",
    "CREATE TABLE workstreams (ws_id TEXT PRIMARY KEY, node_id TEXT, user_id TEXT, name TEXT NOT NULL, state TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL)",
    "CREATE TABLE session_config (session_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT, PRIMARY KEY (session_id, key))",
];

const SQLITE: &[&str] = &[
    "CREATE TABLE conversations (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, timestamp TEXT NOT NULL, role TEXT NOT NULL, content TEXT, tool_name TEXT, tool_args TEXT, tool_call_id TEXT, provider_data TEXT)",
    "CREATE INDEX idx_conversations_session ON conversations (session_id, id)",
    "CREATE VIRTUAL TABLE conversations_fts USING fts5(content, content='conversations', content_rowid='id')",
    "CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations BEGIN INSERT INTO conversations_fts (rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations BEGIN INSERT INTO conversations_fts (conversations_fts, rowid, content) VALUES ('delete', old.id, old.content); END",
];

const POSTGRES: &[&str] = &[
    "CREATE TABLE conversations (id BIGSERIAL PRIMARY KEY, session_id TEXT NOT NULL, timestamp TEXT NOT NULL, role TEXT NOT NULL, content TEXT, tool_name TEXT, tool_args TEXT, tool_call_id TEXT, provider_data TEXT)",
    "CREATE INDEX idx_conversations_session ON conversations (session_id, id)",
    "CREATE INDEX idx_conversations_fts ON conversations USING GIN (to_tsvector('english', coalesce(content, '')))",
];

#[async_trait::async_trait]
impl MigrationTrait for CreateTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let specific = if backend == DbBackend::Postgres {
            POSTGRES
        } else {
            SQLITE
        };
        let db = manager.get_connection();
        for statement in COMMON.iter().chain(specific) {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}

/// 002: the registry of cluster services (channel gateways, consoles) with heartbeats.
struct CreateServices;

impl MigrationName for CreateServices {
    fn name(&self) -> &str {
        "m002_create_services"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateServices {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE services (service_type TEXT NOT NULL, service_id TEXT NOT NULL, \
                 url TEXT NOT NULL, metadata TEXT NOT NULL DEFAULT '{}', last_heartbeat TEXT NOT NULL, \
                 created TEXT NOT NULL, PRIMARY KEY (service_type, service_id))",
            )
            .await?;
        Ok(())
    }
}

/// 003: people and their API tokens.
struct CreateUsers;

impl MigrationName for CreateUsers {
    fn name(&self) -> &str {
        "m003_create_users"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateUsers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in [
            "CREATE TABLE users (user_id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, \
             display_name TEXT NOT NULL, password_hash TEXT NOT NULL, created TEXT NOT NULL)",
            "CREATE TABLE api_tokens (token_id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, \
             token_prefix TEXT NOT NULL, user_id TEXT NOT NULL, name TEXT NOT NULL DEFAULT '', \
             scopes TEXT NOT NULL, created TEXT NOT NULL, expires TEXT)",
            "CREATE INDEX idx_api_tokens_user ON api_tokens (user_id)",
        ] {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}

/// 004: chat accounts linked to users, chat routes, and scheduled work with its runs. A run's
/// key is derived from its schedule, its due time and its target, so one firing is recorded
/// once however often it is attempted.
struct CreateAdmin;

impl MigrationName for CreateAdmin {
    fn name(&self) -> &str {
        "m004_create_admin"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAdmin {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in [
            "CREATE TABLE channel_users (channel_type TEXT NOT NULL, channel_user_id TEXT NOT NULL, \
             user_id TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (channel_type, channel_user_id))",
            "CREATE INDEX idx_channel_users_user ON channel_users (user_id)",
            "CREATE TABLE channel_routes (channel_type TEXT NOT NULL, channel_id TEXT NOT NULL, \
             ws_id TEXT NOT NULL, node_id TEXT NOT NULL DEFAULT '', created TEXT NOT NULL, \
             PRIMARY KEY (channel_type, channel_id))",
            "CREATE TABLE scheduled_tasks (task_id TEXT PRIMARY KEY, name TEXT NOT NULL, \
             description TEXT NOT NULL DEFAULT '', schedule_type TEXT NOT NULL, \
             cron_expr TEXT NOT NULL DEFAULT '', at_time TEXT NOT NULL DEFAULT '', \
             target_mode TEXT NOT NULL DEFAULT 'auto', model TEXT NOT NULL DEFAULT '', \
             initial_message TEXT NOT NULL, auto_approve INTEGER NOT NULL DEFAULT 0, \
             auto_approve_tools TEXT NOT NULL DEFAULT '', enabled INTEGER NOT NULL DEFAULT 1, \
             created_by TEXT NOT NULL DEFAULT '', last_run TEXT, next_run TEXT, \
             created TEXT NOT NULL, updated TEXT NOT NULL, timezone TEXT NOT NULL DEFAULT '', \
             retry_window INTEGER NOT NULL DEFAULT 0)",
            "CREATE INDEX idx_scheduled_tasks_due ON scheduled_tasks (enabled, next_run)",
            "CREATE TABLE scheduled_task_runs (run_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, \
             node_id TEXT NOT NULL DEFAULT '', ws_id TEXT NOT NULL DEFAULT '', \
             correlation_id TEXT NOT NULL DEFAULT '', started TEXT NOT NULL, \
             status TEXT NOT NULL DEFAULT 'dispatched', error TEXT NOT NULL DEFAULT '', \
             scheduled_for TEXT NOT NULL DEFAULT '')",
            "CREATE INDEX idx_scheduled_task_runs_task ON scheduled_task_runs (task_id, started)",
            "CREATE INDEX idx_scheduled_task_runs_started ON scheduled_task_runs (started)",
        ] {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
