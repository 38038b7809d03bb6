//! The console's way to the cluster's Redis, made when first needed and kept: the console
//! starts, serves and shows what it knows while Redis is down, and its actors that need Redis
//! fail — to be restarted by their supervisor with backoff — until it answers.

use std::sync::{Arc, Mutex, PoisonError};

use turnstone_runtime::remote::{RedisTransport, Transport, TransportError};

/// The console's transport, once it has one.
pub struct Link {
    url: String,
    prefix: String,
    current: Mutex<Option<Arc<dyn Transport>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("prefix", &self.prefix)
            .field("connected", &self.current().is_some())
            .finish()
    }
}

impl Link {
    /// A link to Redis at `url`, connected when first used.
    pub fn redis(url: impl Into<String>, prefix: &str) -> Self {
        Self {
            url: url.into(),
            prefix: prefix.trim_end_matches(':').to_owned(),
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The transport if connected (never waits).
    pub fn current(&self) -> Option<Arc<dyn Transport>> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The transport, connecting first if needed (one connection attempt at a time).
    pub async fn transport(&self) -> Result<Arc<dyn Transport>, TransportError> {
        if let Some(t) = self.current() {
            return Ok(t);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(t) = self.current() {
            return Ok(t);
        }
        let transport: Arc<dyn Transport> =
            Arc::new(RedisTransport::connect(&self.url, &self.prefix).await?);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(transport.clone());
        tracing::info!(prefix = %self.prefix, "connected to the cluster's Redis");
        Ok(transport)
    }
}
