//! The real Redis and PostgreSQL that `scripts/test` installs and starts.

/// A service the tests need is not configured.
#[derive(Debug, thiserror::Error)]
#[error("{var} is not set: run the tests with scripts/test, which installs and starts {service}")]
pub struct ServiceMissing {
    /// The variable.
    pub var: &'static str,
    /// The service.
    pub service: &'static str,
}

fn from_env(var: &'static str, service: &'static str) -> Result<String, ServiceMissing> {
    std::env::var(var).map_err(|_| ServiceMissing { var, service })
}

/// `redis://127.0.0.1:PORT/` of the test Redis.
pub fn redis_url() -> Result<String, ServiceMissing> {
    from_env("TURNSTONE_TEST_REDIS_URL", "Redis")
}

/// `postgresql://postgres@127.0.0.1:PORT/turnstone_test` of the test PostgreSQL.
pub fn database_url() -> Result<String, ServiceMissing> {
    from_env("TURNSTONE_TEST_DATABASE_URL", "PostgreSQL")
}

/// The `host:port` part of a URL like the ones above.
pub fn authority(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let after_user = after_scheme
        .split_once('@')
        .map_or(after_scheme, |(_, rest)| rest);
    after_user.split('/').next().unwrap_or(after_user)
}

/// A new, empty PostgreSQL database on the test server; returns its URL.
pub async fn fresh_postgres_database() -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    use sea_orm::ConnectionTrait;
    let admin = database_url()?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let db = sea_orm::Database::connect(admin.as_str()).await?;
    db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    db.close().await?;
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

/// A redis-server of the test's own (append-only file on), to kill and restart.
#[derive(Debug)]
pub struct PrivateRedis {
    server: turnstone_runtime::remote::RedisServer,
    _dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// Starts one on a free port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
        let server = turnstone_runtime::remote::RedisServer::start(dir.path())
            .unwrap_or_else(|e| panic!("{e} (run scripts/test, which installs redis-server)"));
        Self { server, _dir: dir }
    }

    /// Starts it (again), on the same port and data.
    pub fn up(&mut self) {
        self.server
            .up()
            .unwrap_or_else(|e| panic!("redis did not start again: {e}"));
    }

    /// Stops it the hard way (its append-only file keeps what was acknowledged by Redis).
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Its URL.
    pub fn url(&self) -> String {
        self.server.url()
    }
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn authority_strips_scheme_user_and_path() {
        assert_eq!(authority("redis://127.0.0.1:16399/"), "127.0.0.1:16399");
        assert_eq!(
            authority("postgresql://postgres@127.0.0.1:55439/turnstone_test"),
            "127.0.0.1:55439"
        );
    }
}
