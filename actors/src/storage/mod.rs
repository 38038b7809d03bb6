//! Storage through sea-orm: an SQLite file by default (zero set-up), PostgreSQL by URL for
//! clusters. Sessions and their conversations, memories, workstreams and per-session settings;
//! resume by alias, id or unique prefix; history reconstruction; retention pruning; memory and
//! full-text history search (SQLite FTS5, PostgreSQL `to_tsvector`).

mod channels;
mod commit;
mod connect;
mod entities;
mod history;
mod migration;
mod schedules;
mod search;
mod services;
mod sessions;
mod users;
mod writes;

pub use users::NewUser;

use sea_orm::DatabaseConnection;
use tokio_util::task::TaskTracker;

pub use entities::{
    api_token, channel_route, channel_user, conversation, memory, scheduled_task,
    scheduled_task_run, service, session, session_config, user, workstream,
};
pub use schedules::{DUE_PER_TICK, ScheduleChange};

pub use self::history::Opened;
pub use self::search::{HistoryHit, normalise_key};
pub use self::sessions::SessionInfo;
pub use self::writes::Write;

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
