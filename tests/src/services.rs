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
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Starts one on a free port.
    pub fn start() -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap_or_else(|e| panic!("no free port: {e}"));
            l.local_addr().map(|a| a.port()).unwrap_or(0)
        };
        let mut r = Self {
            port,
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}")),
            child: None,
        };
        r.up();
        r
    }

    /// Starts it (again), on the same port and data.
    pub fn up(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            // Every write on disk before it is answered: a hard kill loses nothing acknowledged.
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server (run scripts/test): {e}"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Stops it the hard way (its append-only file keeps what was acknowledged by Redis).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
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
