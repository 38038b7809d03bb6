//! Memories (remember, forget, list) and full-text search of the stored history (SQLite FTS5,
//! PostgreSQL `to_tsvector`, a LIKE fallback).

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use serde::Serialize;

use super::{Store, StoreError, conversation, memory, now};

/// A history search hit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryHit {
    /// Session.
    pub session_id: String,
    /// Row role.
    pub role: String,
    /// Text.
    pub content: String,
    /// When.
    pub timestamp: String,
}

impl Store {
    /// Stores a memory under a normalised key (lower case, `-` and spaces → `_`).
    pub async fn remember(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let key = normalise_key(key);
        let now = now();
        let row = memory::ActiveModel {
            key: Set(key.clone()),
            value: Set(value.to_owned()),
            created: Set(now.clone()),
            updated: Set(now),
        };
        memory::Entity::insert(row)
            .on_conflict(
                OnConflict::column(memory::Column::Key)
                    .update_columns([memory::Column::Value, memory::Column::Updated])
                    .to_owned(),
            )
            .exec(&self.db)
            .await?;
        Ok(key)
    }

    /// Deletes a memory; false when there was none.
    pub async fn forget(&self, key: &str) -> Result<bool, StoreError> {
        let deleted = memory::Entity::delete_by_id(normalise_key(key))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected > 0)
    }

    /// Memories matching every term (in key or value), or all when `query` is empty.
    pub async fn memories(
        &self,
        query: &str,
        limit: u64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut find = memory::Entity::find().order_by_asc(memory::Column::Key);
        for term in query.split_whitespace() {
            find = find.filter(
                Condition::any()
                    .add(memory::Column::Key.contains(term))
                    .add(memory::Column::Value.contains(term)),
            );
        }
        Ok(find
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| (m.key, m.value))
            .collect())
    }

    // ---- history search ----

    /// Full-text search over conversation text, best first (SQLite FTS5; PostgreSQL
    /// `plainto_tsquery`), falling back to a substring match, newest first.
    pub async fn search_history(
        &self,
        query: &str,
        limit: u64,
    ) -> Result<Vec<HistoryHit>, StoreError> {
        let terms: Vec<&str> = query.split_whitespace().collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let limit = limit.min(100);
        let (sql, values): (&str, Vec<sea_orm::Value>) = match self.backend() {
            DbBackend::Postgres => (
                "SELECT session_id, role, content, timestamp FROM conversations \
                 WHERE to_tsvector('english', coalesce(content, '')) @@ plainto_tsquery('english', $1) \
                 ORDER BY ts_rank(to_tsvector('english', coalesce(content, '')), plainto_tsquery('english', $1)) DESC, id DESC \
                 LIMIT $2",
                vec![query.into(), (limit as i64).into()],
            ),
            _ => {
                // Each term quoted: FTS5 syntax in the user's words is taken literally.
                let fts: Vec<String> = terms
                    .iter()
                    .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
                    .collect();
                (
                    "SELECT c.session_id, c.role, c.content, c.timestamp FROM conversations_fts f \
                     JOIN conversations c ON c.id = f.rowid WHERE conversations_fts MATCH ? \
                     ORDER BY f.rank, c.id DESC LIMIT ?",
                    vec![fts.join(" ").into(), (limit as i64).into()],
                )
            }
        };
        let found = self
            .db
            .query_all_raw(Statement::from_sql_and_values(self.backend(), sql, values))
            .await;
        let rows = match found {
            Ok(rows) if !rows.is_empty() => rows,
            Ok(_) | Err(_) => return self.search_history_like(&terms, limit).await,
        };
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(HistoryHit {
                    session_id: r.try_get("", "session_id").ok()?,
                    role: r.try_get("", "role").ok()?,
                    content: r.try_get::<Option<String>>("", "content").ok()??,
                    timestamp: r.try_get("", "timestamp").ok()?,
                })
            })
            .collect())
    }

    async fn search_history_like(
        &self,
        terms: &[&str],
        limit: u64,
    ) -> Result<Vec<HistoryHit>, StoreError> {
        let mut find = conversation::Entity::find().order_by_desc(conversation::Column::Id);
        for term in terms {
            find = find.filter(conversation::Column::Content.contains(*term));
        }
        Ok(find
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(|r| {
                Some(HistoryHit {
                    session_id: r.session_id,
                    role: r.role,
                    content: r.content?,
                    timestamp: r.timestamp,
                })
            })
            .collect())
    }

    // ---- workstreams ----
}

/// Lower case; `-` and spaces become `_`.
pub fn normalise_key(key: &str) -> String {
    key.trim().to_lowercase().replace(['-', ' '], "_")
}
