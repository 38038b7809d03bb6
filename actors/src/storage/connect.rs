//! Opening the store: the backend by URL, migrations, patience with a database that is still
//! starting, and the workstreams' writers that a stopping node waits for.

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;
use tokio_util::task::TaskTracker;

use super::{Store, StoreError, commit, migration};
use crate::config::{DatabaseBackend, DatabaseConfig};

/// How long one connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One attempt of [`Store::open_patiently`]: shorter, so each failed attempt is logged.
const PATIENT_ATTEMPT: Duration = Duration::from_secs(3);

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

    pub(super) async fn connect(
        url: &str,
        pool_size: u32,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
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

    pub(super) fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    // ---- sessions ----
}
