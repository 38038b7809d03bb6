//! Sessions: creation, resume by alias, id or unique prefix, titles, listing, deletion,
//! retention pruning and per-session settings.

use std::collections::{BTreeMap, HashMap};

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, TryInsertResult,
};
use serde::Serialize;

use super::{Store, StoreError, conversation, now, session, session_config};

/// A session as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// Id.
    pub session_id: String,
    /// Alias.
    pub alias: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Created.
    pub created: String,
    /// Updated.
    pub updated: String,
    /// Conversation rows.
    pub message_count: u64,
    /// Node.
    pub node_id: Option<String>,
    /// Workstream.
    pub ws_id: Option<String>,
}

impl Store {
    /// Records a session (no-op if it exists).
    pub async fn create_session(
        &self,
        session_id: &str,
        ws_id: Option<&str>,
        node_id: Option<&str>,
    ) -> Result<(), StoreError> {
        create_session_on(&self.db, session_id, ws_id, node_id)
            .await
            .map(drop)
    }

    /// Finds a session by alias, id or unique id prefix.
    pub async fn resolve_session(&self, key: &str) -> Result<String, StoreError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(StoreError::NotFound(key.to_owned()));
        }
        if let Some(s) = session::Entity::find()
            .filter(session::Column::Alias.eq(key))
            .one(&self.db)
            .await?
        {
            return Ok(s.session_id);
        }
        if let Some(s) = session::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await?
        {
            return Ok(s.session_id);
        }
        let matches = session::Entity::find()
            .filter(session::Column::SessionId.starts_with(key))
            .limit(2)
            .all(&self.db)
            .await?;
        match matches.as_slice() {
            [one] => Ok(one.session_id.clone()),
            [] => Err(StoreError::NotFound(key.to_owned())),
            _ => Err(StoreError::Ambiguous {
                key: key.to_owned(),
                count: session::Entity::find()
                    .filter(session::Column::SessionId.starts_with(key))
                    .count(&self.db)
                    .await
                    .map_or(2, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            }),
        }
    }

    /// Names a session; aliases are unique.
    pub async fn set_alias(&self, session_id: &str, alias: &str) -> Result<(), StoreError> {
        if let Some(other) = session::Entity::find()
            .filter(session::Column::Alias.eq(alias))
            .one(&self.db)
            .await?
            && other.session_id != session_id
        {
            return Err(StoreError::AliasTaken(alias.to_owned()));
        }
        self.update_session(session_id, session::Column::Alias, alias)
            .await
    }

    /// Sets the generated title.
    pub async fn set_title(&self, session_id: &str, title: &str) -> Result<(), StoreError> {
        self.update_session(session_id, session::Column::Title, title)
            .await
    }

    async fn update_session(
        &self,
        session_id: &str,
        column: session::Column,
        value: &str,
    ) -> Result<(), StoreError> {
        let result = session::Entity::update_many()
            .col_expr(column, Expr::value(value.to_owned()))
            .filter(session::Column::SessionId.eq(session_id))
            .exec(&self.db)
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::NotFound(session_id.to_owned()));
        }
        Ok(())
    }

    /// One session's record.
    pub async fn session(&self, session_id: &str) -> Result<Option<session::Model>, StoreError> {
        Ok(session::Entity::find_by_id(session_id.to_owned())
            .one(&self.db)
            .await?)
    }

    /// The session a workstream records its conversation in (the latest, if several).
    pub async fn session_of_workstream(&self, ws_id: &str) -> Result<Option<String>, StoreError> {
        Ok(session::Entity::find()
            .filter(session::Column::WsId.eq(ws_id))
            .order_by_desc(session::Column::Updated)
            .one(&self.db)
            .await?
            .map(|s| s.session_id))
    }

    /// Sessions with messages, most recently updated first.
    pub async fn list_sessions(&self, limit: u64) -> Result<Vec<SessionInfo>, StoreError> {
        // Message counts of every session in one grouped query (not one query per session).
        let counts: HashMap<String, i64> = conversation::Entity::find()
            .select_only()
            .column(conversation::Column::SessionId)
            .column_as(conversation::Column::Id.count(), "n")
            .group_by(conversation::Column::SessionId)
            .into_tuple::<(String, i64)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let sessions = session::Entity::find()
            .order_by_desc(session::Column::Updated)
            .all(&self.db)
            .await?;
        Ok(sessions
            .into_iter()
            .filter_map(|s| {
                let count = counts.get(&s.session_id).copied().filter(|n| *n > 0)?;
                Some(SessionInfo {
                    message_count: u64::try_from(count).unwrap_or(0),
                    session_id: s.session_id,
                    alias: s.alias,
                    title: s.title,
                    created: s.created,
                    updated: s.updated,
                    node_id: s.node_id,
                    ws_id: s.ws_id,
                })
            })
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect())
    }

    /// Deletes a session with its conversation and settings.
    pub async fn delete_session(&self, session_id: &str) -> Result<(), StoreError> {
        conversation::Entity::delete_many()
            .filter(conversation::Column::SessionId.eq(session_id))
            .exec(&self.db)
            .await?;
        session_config::Entity::delete_many()
            .filter(session_config::Column::SessionId.eq(session_id))
            .exec(&self.db)
            .await?;
        let deleted = session::Entity::delete_by_id(session_id.to_owned())
            .exec(&self.db)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(StoreError::NotFound(session_id.to_owned()));
        }
        Ok(())
    }

    /// Start-up pruning: sessions without messages, and unnamed sessions not updated within
    /// `retention_days` (their conversation rows stay for history search). Returns how many.
    pub async fn prune(&self, retention_days: u32) -> Result<u64, StoreError> {
        let cutoff = (chrono::Utc::now() - chrono::Duration::days(i64::from(retention_days)))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        let sql = "DELETE FROM sessions WHERE session_id NOT IN (SELECT DISTINCT session_id FROM conversations) \
                   OR (alias IS NULL AND updated < $1)";
        let sql = if self.backend() == DbBackend::Sqlite {
            sql.replace("$1", "?")
        } else {
            sql.to_owned()
        };
        let result = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                self.backend(),
                sql,
                [cutoff.into()],
            ))
            .await?;
        Ok(result.rows_affected())
    }

    // ---- per-session settings ----

    /// Stores one setting.
    pub async fn set_session_config(
        &self,
        session_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        set_session_config_on(&self.db, session_id, key, value).await
    }

    /// All settings of a session.
    pub async fn session_config(
        &self,
        session_id: &str,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        session_config_on(&self.db, session_id).await
    }

    // ---- memories ----
}

/// [`Store::create_session`] on `db`; whether the session is new.
pub(super) async fn create_session_on<C: ConnectionTrait>(
    db: &C,
    session_id: &str,
    ws_id: Option<&str>,
    node_id: Option<&str>,
) -> Result<bool, StoreError> {
    let now = now();
    let row = session::ActiveModel {
        session_id: Set(session_id.to_owned()),
        alias: Set(None),
        title: Set(None),
        node_id: Set(node_id.map(str::to_owned)),
        ws_id: Set(ws_id.map(str::to_owned)),
        user_id: Set(None),
        created: Set(now.clone()),
        updated: Set(now),
    };
    let inserted = session::Entity::insert(row)
        .on_conflict_do_nothing_on([session::Column::SessionId])
        .exec_without_returning(db)
        .await?;
    Ok(matches!(inserted, TryInsertResult::Inserted(n) if n > 0))
}

/// [`Store::session_config`] on `db`.
pub(super) async fn session_config_on<C: ConnectionTrait>(
    db: &C,
    session_id: &str,
) -> Result<BTreeMap<String, String>, StoreError> {
    Ok(session_config::Entity::find()
        .filter(session_config::Column::SessionId.eq(session_id))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|r| r.value.map(|v| (r.key, v)))
        .collect())
}

/// [`Store::set_session_config`] on `db`.
pub(super) async fn set_session_config_on<C: ConnectionTrait>(
    db: &C,
    session_id: &str,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    let row = session_config::ActiveModel {
        session_id: Set(session_id.to_owned()),
        key: Set(key.to_owned()),
        value: Set(Some(value.to_owned())),
    };
    session_config::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                session_config::Column::SessionId,
                session_config::Column::Key,
            ])
            .update_column(session_config::Column::Value)
            .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}
