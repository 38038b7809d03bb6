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

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
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

/// A PostgreSQL server of the test's own (its own data directory and port), to start late
/// or stop: the binaries are the ones `scripts/test` installed (`$TURNSTONE_TEST_PG_BIN`).
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
    running: bool,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// Makes its data directory (`initdb`) on a free port; not started yet.
    pub fn create() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let bin = std::path::PathBuf::from(
            from_env("TURNSTONE_TEST_PG_BIN", "PostgreSQL").unwrap_or_else(|e| panic!("{e}")),
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
        // The postgres user must reach its data directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap_or_else(|e| panic!("{e}"));
        if as_root() {
            run(std::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(&data));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        run(as_postgres(&bin.join("initdb")).arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]));
        Self {
            bin,
            data,
            port,
            running: false,
            _dir: dir,
        }
    }

    /// Starts it and waits until it accepts connections.
    pub fn up(&mut self) {
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off",
            self.port,
            self.data.display()
        );
        run(as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.join("server.log"))
            .args(["-w", "start", "-o", &options]));
        self.running = true;
    }

    /// Stops it at once.
    pub fn down(&mut self) {
        if self.running {
            run(as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"]));
            self.running = false;
        }
    }

    /// `postgresql://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "stop"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn as_postgres(program: &std::path::Path) -> std::process::Command {
    if as_root() {
        let mut cmd = std::process::Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        std::process::Command::new(program)
    }
}

fn run(cmd: &mut std::process::Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
