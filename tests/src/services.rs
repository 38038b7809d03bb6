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
