//! Storage through sea-orm: an SQLite file by default (zero set-up), PostgreSQL by URL for
//! clusters. Sessions and their conversations, memories, workstreams and per-session settings;
//! resume by alias, id or unique prefix; history reconstruction; retention pruning; memory and
//! full-text history search (SQLite FTS5, PostgreSQL `to_tsvector`).

mod channels;
mod commit;
mod entities;
mod migration;
mod schedules;
mod services;
mod users;

pub use users::NewUser;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectOptions, ConnectionTrait, Database,
    DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, TransactionTrait, TryInsertResult,
};
use sea_orm_migration::MigratorTrait;
use serde::Serialize;
use tokio_util::task::TaskTracker;

pub use entities::{
    api_token, channel_route, channel_user, conversation, memory, scheduled_task,
    scheduled_task_run, service, session, session_config, user, workstream,
};
pub use schedules::{DUE_PER_TICK, ScheduleChange};

use crate::config::{DatabaseBackend, DatabaseConfig};
use crate::provider::{ChatMessage, Role, ToolCall};

/// Characters of a tool result kept in the database (SPEC §18).
pub const TOOL_RESULT_CHARS: usize = 2000;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// No session matches.
    #[error("no session matches {0:?}")]
    NotFound(String),
    /// More than one session starts with this prefix.
    #[error("{count} sessions match {key:?}; use more characters")]
    Ambiguous {
        /// What was looked up.
        key: String,
        /// How many matched.
        count: usize,
    },
    /// The alias belongs to another session.
    #[error("alias {0:?} is already used by another session")]
    AliasTaken(String),
    /// The store's committer stopped (its runtime is shutting down) before the writes landed.
    #[error("the database committer stopped before these writes landed")]
    CommitterStopped,
    /// `[database]` is incomplete.
    #[error("database configuration: {0}")]
    Config(String),
    /// The row conflicts with one that exists (a taken username, setup done twice).
    #[error("{0}")]
    Conflict(String),
    /// The database did not answer within `database.startup_wait`.
    #[error(
        "the database did not answer within {waited} s ({attempts} attempts; raise \
         database.startup_wait to wait longer): {last}"
    )]
    GaveUp {
        /// Seconds waited.
        waited: u64,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<StoreError>,
    },
}

/// How long one connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One attempt of [`Store::open_patiently`]: shorter, so each failed attempt is logged.
const PATIENT_ATTEMPT: Duration = Duration::from_secs(3);

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

/// The database. Cheap to clone (a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// Groups concurrent [`Store::commit`]s into one transaction; `None` in the committer's
    /// own copy (it commits each batch itself).
    committer: Option<commit::Committer>,
    /// The workstreams' writer tasks, which [`Store::settle`] waits for.
    writers: TaskTracker,
}

/// UTC now as `YYYY-MM-DDTHH:MM:SS`.
pub fn now() -> String {
    use chrono::{Datelike, Timelike};
    // Written out rather than through a format string, which is parsed on every call (this
    // runs for every row a turn writes).
    let t = chrono::Utc::now();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl Store {
    /// Opens the configured database and applies pending migrations.
    pub async fn open(config: &DatabaseConfig) -> Result<Self, StoreError> {
        Self::open_within(config, CONNECT_TIMEOUT).await
    }

    async fn open_within(config: &DatabaseConfig, connect: Duration) -> Result<Self, StoreError> {
        let url = match config.backend {
            DatabaseBackend::Sqlite => format!("sqlite://{}?mode=rwc", config.path),
            DatabaseBackend::Postgresql => config.url.clone().ok_or_else(|| {
                StoreError::Config("backend postgresql needs database.url".into())
            })?,
        };
        Self::connect(&url, config.pool_size, connect).await
    }

    /// [`Store::open`], retried with `backoff` while the database does not answer (a
    /// PostgreSQL that is still starting), one log line per failed attempt, for at most
    /// `wait`; then [`StoreError::GaveUp`]. A configuration error fails at once.
    pub async fn open_patiently(
        config: &DatabaseConfig,
        wait: Duration,
        backoff: turnstone_runtime::policy::Backoff,
    ) -> Result<Self, StoreError> {
        let started = tokio::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            let error = match Self::open_within(config, PATIENT_ATTEMPT).await {
                Ok(store) => {
                    if attempt > 0 {
                        tracing::info!(attempts = attempt + 1, "the database answers");
                    }
                    return Ok(store);
                }
                Err(e @ StoreError::Config(_)) => return Err(e),
                Err(e) => e,
            };
            let delay = backoff.delay(attempt);
            attempt += 1;
            if started.elapsed() + delay > wait {
                return Err(StoreError::GaveUp {
                    waited: started.elapsed().as_secs(),
                    attempts: attempt,
                    last: Box::new(error),
                });
            }
            tracing::warn!(
                attempt,
                "the database does not answer yet ({error}); trying again in {delay:.0?}"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Opens a database by URL (`sqlite://file?mode=rwc`, `sqlite::memory:`,
    /// `postgresql://…`) and applies pending migrations.
    pub async fn open_url(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        Self::connect(url, pool_size, CONNECT_TIMEOUT).await
    }

    async fn connect(url: &str, pool_size: u32, timeout: Duration) -> Result<Self, StoreError> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(pool_size.max(1))
            .connect_timeout(timeout)
            .sqlx_logging(false);
        if url.starts_with("sqlite::memory:") {
            // One connection: every handle must see the same in-memory database.
            options.max_connections(1);
        } else if url.starts_with("sqlite:") {
            // Write-ahead log, synced at checkpoints: a commit no longer waits for its own
            // fsync (several per turn), and a crash of the process loses nothing committed.
            options.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
            });
        }
        let db = Database::connect(options).await?;
        migration::Migrator::up(&db, None).await?;
        let store = Self {
            db,
            committer: None,
            writers: TaskTracker::new(),
        };
        Ok(Self {
            committer: Some(commit::Committer::start(store.clone())),
            ..store
        })
    }

    /// Runs a workstream's writer: a task that hands the workstream's writes to
    /// [`Store::commit`] until its queue closes. [`Store::settle`] waits for it.
    pub fn spawn_writer<F>(&self, writer: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.writers.spawn(writer);
    }

    /// Waits (at most `timeout`) until every writer has landed what its workstream queued and
    /// ended — for a node that stops: its workstreams have stopped, so their queues are closed,
    /// and the process may end when this returns without losing the last turn's writes.
    /// Returns whether all ended in time.
    pub async fn settle(&self, timeout: Duration) -> bool {
        self.writers.close();
        let settled = tokio::time::timeout(timeout, self.writers.wait())
            .await
            .is_ok();
        self.writers.reopen();
        settled
    }

    /// The connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    // ---- sessions ----

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

    /// Appends one message as Turnstone's rows: user/assistant text, one `tool_call` row per
    /// call, a `tool_result` row (first 2000 characters). System messages are not stored.
    pub async fn append(&self, session_id: &str, message: &ChatMessage) -> Result<(), StoreError> {
        append_on(&self.db, session_id, message).await
    }

    /// Applies `writes` in one transaction: one commit (one write-ahead-log sync point, one
    /// round trip for PostgreSQL's COMMIT) for what a workstream queued meanwhile. A single
    /// write needs no transaction.
    ///
    /// Within the transaction, consecutive messages of a session are one insert (and one
    /// touch of the session), and a workstream row is written once, as the last write for it
    /// leaves it: nobody sees the states in between, so writing them would only cost
    /// statements (and, in SQLite, a flush of the full-text index for each).
    pub async fn write_all(&self, writes: &[Write]) -> Result<(), StoreError> {
        if let [write] = writes {
            return write_on(&self.db, write).await;
        }
        self.write_steps(steps(writes)).await
    }

    /// Runs `steps` in one transaction.
    async fn write_steps(&self, steps: Vec<Step<'_>>) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        for step in steps {
            match step {
                Step::Messages(session_id, messages) => {
                    append_many_on(&txn, session_id, &messages).await?;
                }
                Step::One(write) => write_on(&txn, write).await?,
            }
        }
        txn.commit().await?;
        Ok(())
    }

    /// Lands `writes` in order, together with what other workstreams commit meanwhile: the
    /// store's group committer puts every batch that arrives within [`commit::WINDOW`] into
    /// one transaction (one commit, one write-ahead-log append and one full-text-index flush
    /// in SQLite; one COMMIT round trip in PostgreSQL). Returns the errors of the writes that
    /// did not land, each reported on its own: empty when all landed.
    pub async fn commit(&self, writes: Vec<Write>) -> Vec<StoreError> {
        match &self.committer {
            Some(committer) => committer.commit(self, writes).await,
            None => commit::land(self, &writes).await,
        }
    }

    /// The conversation of a session, rebuilt as messages that form a valid history: calls are
    /// merged into the assistant message before them, results are matched by id (else by
    /// position), orphans are skipped and unanswered calls removed.
    pub async fn load_history(&self, session_id: &str) -> Result<Vec<ChatMessage>, StoreError> {
        load_history_on(&self.db, session_id).await
    }

    /// Opens a workstream on its session in one transaction: records the session (if new)
    /// and the workstream, and reads back what the session already holds. A session this
    /// call created holds nothing, so a new workstream costs two inserts and no reads; a
    /// resumed or restarted one gets its settings and conversation.
    pub async fn open_workstream(
        &self,
        session_id: &str,
        ws_id: &str,
        node_id: Option<&str>,
        name: &str,
        state: &str,
    ) -> Result<Opened, StoreError> {
        let txn = self.db.begin().await?;
        let created = create_session_on(&txn, session_id, Some(ws_id), node_id).await?;
        save_workstream_on(&txn, ws_id, node_id, name, state).await?;
        let opened = if created {
            Opened::default()
        } else {
            Opened {
                config: session_config_on(&txn, session_id).await?,
                history: load_history_on(&txn, session_id).await?,
            }
        };
        txn.commit().await?;
        Ok(opened)
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

    /// Records a workstream and its state.
    pub async fn save_workstream(
        &self,
        ws_id: &str,
        node_id: Option<&str>,
        name: &str,
        state: &str,
    ) -> Result<(), StoreError> {
        save_workstream_on(&self.db, ws_id, node_id, name, state).await
    }

    /// A workstream's stored state.
    pub async fn workstream(&self, ws_id: &str) -> Result<Option<workstream::Model>, StoreError> {
        Ok(workstream::Entity::find_by_id(ws_id.to_owned())
            .one(&self.db)
            .await?)
    }
}

/// One write of [`Store::write_all`] on `db` (the pool or a transaction).
async fn write_on<C: ConnectionTrait>(db: &C, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::Message {
            session_id,
            message,
        } => append_on(db, session_id, message).await,
        Write::Workstream {
            ws_id,
            node_id,
            name,
            state,
        } => save_workstream_on(db, ws_id, node_id.as_deref(), name, state).await,
        Write::SessionConfig {
            session_id,
            key,
            value,
        } => set_session_config_on(db, session_id, key, value).await,
    }
}

/// What [`Store::write_all`] runs in its transaction.
#[derive(Debug)]
enum Step<'a> {
    /// Consecutive messages of one session.
    Messages(&'a str, Vec<&'a ChatMessage>),
    /// Any other write.
    One(&'a Write),
}

/// `writes` as statements: consecutive messages of a session together, and only the last
/// write of each workstream.
fn steps<'a, I>(writes: I) -> Vec<Step<'a>>
where
    I: IntoIterator<Item = &'a Write>,
{
    let writes: Vec<&'a Write> = writes.into_iter().collect();
    let replaced = |i: usize, ws: &str| {
        writes[i + 1..]
            .iter()
            .any(|later| matches!(later, Write::Workstream { ws_id, .. } if ws_id == ws))
    };
    let mut out: Vec<Step<'a>> = Vec::with_capacity(writes.len());
    for (i, &write) in writes.iter().enumerate() {
        match write {
            Write::Message {
                session_id,
                message,
            } => match out.last_mut() {
                Some(Step::Messages(session, batch)) if *session == session_id.as_str() => {
                    batch.push(message);
                }
                _ => out.push(Step::Messages(session_id, vec![message])),
            },
            Write::Workstream { ws_id, .. } if replaced(i, ws_id) => {}
            other => out.push(Step::One(other)),
        }
    }
    out
}

/// [`Store::create_session`] on `db`; whether the session is new.
async fn create_session_on<C: ConnectionTrait>(
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
async fn session_config_on<C: ConnectionTrait>(
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

/// [`Store::load_history`] on `db`.
async fn load_history_on<C: ConnectionTrait>(
    db: &C,
    session_id: &str,
) -> Result<Vec<ChatMessage>, StoreError> {
    let rows = conversation::Entity::find()
        .filter(conversation::Column::SessionId.eq(session_id))
        .order_by_asc(conversation::Column::Id)
        .all(db)
        .await?;
    Ok(rebuild(rows))
}

/// [`Store::append`] on `db` (the pool or a transaction).
async fn append_on<C: ConnectionTrait>(
    db: &C,
    session_id: &str,
    message: &ChatMessage,
) -> Result<(), StoreError> {
    append_many_on(db, session_id, &[message]).await
}

/// Appends `messages` to a session in one insert, and touches the session once.
async fn append_many_on<C: ConnectionTrait>(
    db: &C,
    session_id: &str,
    messages: &[&ChatMessage],
) -> Result<(), StoreError> {
    let now = now();
    let row = |role: &str| conversation::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        session_id: Set(session_id.to_owned()),
        timestamp: Set(now.clone()),
        role: Set(role.to_owned()),
        content: Set(None),
        tool_name: Set(None),
        tool_args: Set(None),
        tool_call_id: Set(None),
        provider_data: Set(None),
    };
    let mut rows = Vec::new();
    for message in messages {
        match message.role {
            Role::System => {}
            Role::User => {
                let mut r = row("user");
                r.content = Set(message.content.clone());
                rows.push(r);
            }
            Role::Assistant => {
                if message.content.is_some() || message.tool_calls.is_empty() {
                    let mut r = row("assistant");
                    r.content = Set(message.content.clone());
                    rows.push(r);
                }
                for call in &message.tool_calls {
                    let mut r = row("tool_call");
                    r.tool_name = Set(Some(call.name.clone()));
                    r.tool_args = Set(Some(call.arguments.clone()));
                    r.tool_call_id = Set(Some(call.id.clone()));
                    rows.push(r);
                }
            }
            Role::Tool => {
                let mut r = row("tool_result");
                r.content = Set(message
                    .content
                    .as_deref()
                    .map(|c| crate::text::prefix(c, TOOL_RESULT_CHARS).to_owned()));
                r.tool_name = Set(message.name.clone());
                r.tool_call_id = Set(message.tool_call_id.clone());
                rows.push(r);
            }
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    // Without RETURNING: nobody needs the new ids, and reading them back costs a query.
    conversation::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    session::Entity::update_many()
        .col_expr(session::Column::Updated, Expr::value(now))
        .filter(session::Column::SessionId.eq(session_id))
        .exec(db)
        .await?;
    Ok(())
}

/// [`Store::save_workstream`] on `db`.
async fn save_workstream_on<C: ConnectionTrait>(
    db: &C,
    ws_id: &str,
    node_id: Option<&str>,
    name: &str,
    state: &str,
) -> Result<(), StoreError> {
    let now = now();
    let row = workstream::ActiveModel {
        ws_id: Set(ws_id.to_owned()),
        node_id: Set(node_id.map(str::to_owned)),
        user_id: Set(None),
        name: Set(name.to_owned()),
        state: Set(state.to_owned()),
        created: Set(now.clone()),
        updated: Set(now),
    };
    workstream::Entity::insert(row)
        .on_conflict(
            OnConflict::column(workstream::Column::WsId)
                .update_columns([
                    workstream::Column::Name,
                    workstream::Column::State,
                    workstream::Column::NodeId,
                    workstream::Column::Updated,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// [`Store::set_session_config`] on `db`.
async fn set_session_config_on<C: ConnectionTrait>(
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

/// What a workstream finds in its session when it opens ([`Store::open_workstream`]).
#[derive(Clone, Debug, Default)]
pub struct Opened {
    /// The session's settings.
    pub config: BTreeMap<String, String>,
    /// Its conversation.
    pub history: Vec<ChatMessage>,
}

/// One write of [`Store::write_all`] and [`Store::commit`], owned so that the group
/// committer can hold it until it lands.
#[derive(Clone, Debug)]
pub enum Write {
    /// [`Store::append`].
    Message {
        /// The session.
        session_id: String,
        /// The message.
        message: ChatMessage,
    },
    /// [`Store::save_workstream`].
    Workstream {
        /// The workstream.
        ws_id: String,
        /// Its node.
        node_id: Option<String>,
        /// Its name.
        name: String,
        /// Its state.
        state: &'static str,
    },
    /// [`Store::set_session_config`].
    SessionConfig {
        /// The session.
        session_id: String,
        /// The setting.
        key: String,
        /// Its value.
        value: String,
    },
}

/// Lower case; `-` and spaces become `_`.
pub fn normalise_key(key: &str) -> String {
    key.trim().to_lowercase().replace(['-', ' '], "_")
}

/// Rebuilds messages from rows (see [`Store::load_history`]).
fn rebuild(rows: Vec<conversation::Model>) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::new();
    let mut previous_role = String::new();
    for row in rows {
        match row.role.as_str() {
            "user" => out.push(ChatMessage::user(row.content.unwrap_or_default())),
            "assistant" => out.push(ChatMessage::assistant(row.content, Vec::new())),
            "tool_call" => {
                let call = ToolCall {
                    id: row.tool_call_id.unwrap_or_default(),
                    name: row.tool_name.unwrap_or_default(),
                    arguments: row.tool_args.unwrap_or_default(),
                };
                let joins_previous = matches!(previous_role.as_str(), "assistant" | "tool_call")
                    && out.last().is_some_and(|m| m.role == Role::Assistant);
                match out.last_mut() {
                    Some(last) if joins_previous => last.tool_calls.push(call),
                    _ => out.push(ChatMessage::assistant(None, vec![call])),
                }
            }
            "tool_result" => {
                // The call this answers: the latest assistant message with calls, by id or
                // else the first call not yet answered.
                let Some(pos) = out.iter().rposition(|m| !m.tool_calls.is_empty()) else {
                    previous_role = row.role;
                    continue; // orphan
                };
                let answered: Vec<&str> = out[pos + 1..]
                    .iter()
                    .filter_map(|m| m.tool_call_id.as_deref())
                    .collect();
                let calls = &out[pos].tool_calls;
                let call = row
                    .tool_call_id
                    .as_deref()
                    .and_then(|id| calls.iter().find(|c| c.id == id && !answered.contains(&id)))
                    .or_else(|| calls.iter().find(|c| !answered.contains(&c.id.as_str())))
                    .cloned();
                if let Some(call) = call {
                    out.push(ChatMessage::tool(&call, row.content.unwrap_or_default()));
                }
            }
            _ => {}
        }
        previous_role = row.role;
    }
    drop_unanswered_calls(out)
}

/// Removes calls without a result; an assistant message left empty goes too.
fn drop_unanswered_calls(messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let answered: std::collections::HashSet<String> = messages
        .iter()
        .filter_map(|m| m.tool_call_id.clone())
        .collect();
    messages
        .into_iter()
        .filter_map(|mut m| {
            if m.role == Role::Assistant && !m.tool_calls.is_empty() {
                m.tool_calls.retain(|c| answered.contains(&c.id));
                if m.tool_calls.is_empty() && m.content.is_none() {
                    return None;
                }
            }
            Some(m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(state: &'static str) -> Write {
        Write::Workstream {
            ws_id: "w".into(),
            node_id: Some("n".into()),
            name: "main".into(),
            state,
        }
    }

    #[test]
    fn a_batch_is_one_insert_per_run_of_messages_and_the_last_workstream_state() {
        let (q, a, other) = (
            ChatMessage::user("q"),
            ChatMessage::assistant(Some("a".into()), vec![]),
            ChatMessage::user("elsewhere"),
        );
        let message = |session_id: &str, message: &ChatMessage| Write::Message {
            session_id: session_id.into(),
            message: message.clone(),
        };
        let writes = [
            ws("thinking"),
            message("s", &q),
            ws("running"),
            message("s", &a),
            message("t", &other),
            ws("idle"),
        ];
        let steps = steps(&writes);
        let shape: Vec<String> = steps
            .iter()
            .map(|step| match step {
                Step::Messages(session, batch) => format!("{session}×{}", batch.len()),
                Step::One(Write::Workstream { state, .. }) => (*state).to_owned(),
                Step::One(other) => format!("{other:?}"),
            })
            .collect();
        assert_eq!(shape, ["s×2", "t×1", "idle"]);
    }
}
