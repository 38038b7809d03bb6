//! The gateway in the service registry (`services`, type `channel`): registered at start,
//! heartbeat every [`HEARTBEAT`] (registered again if its row went away), removed on exit —
//! so the nodes' `notify` tool finds the gateways that are alive.

use std::time::Duration;

use serde_json::json;
use turnstone_actors::storage::Store;
use turnstone_runtime::ractor::{Actor, ActorProcessingErr, ActorRef};

/// How often the registration is refreshed.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// The registry's service type.
pub const SERVICE_TYPE: &str = "channel";

/// One gateway's entry.
#[derive(Clone, Debug)]
pub struct Registration {
    /// The database.
    pub store: Store,
    /// `channel-{host}-{8 hex}`.
    pub service_id: String,
    /// Where notify is reached.
    pub url: String,
    /// The platforms served.
    pub platforms: Vec<String>,
    /// Between heartbeats.
    pub every: Duration,
}

impl Registration {
    /// An entry for this process: `url` is the advertised URL, else `http://{host}:{port}`.
    pub fn new(store: Store, host: &str, port: u16, advertise: Option<&str>) -> Self {
        let name = hostname();
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let host = if host == "0.0.0.0" || host == "::" {
            name.as_str()
        } else {
            host
        };
        Self {
            store,
            service_id: format!("channel-{name}-{suffix}"),
            url: advertise.map_or_else(|| format!("http://{host}:{port}"), str::to_owned),
            platforms: Vec::new(),
            every: HEARTBEAT,
        }
    }

    async fn register(&self) -> Result<(), turnstone_actors::storage::StoreError> {
        self.store
            .register_service(
                SERVICE_TYPE,
                &self.service_id,
                &self.url,
                &json!({"platforms": self.platforms}),
            )
            .await
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The actor keeping the entry fresh.
#[derive(Debug)]
pub struct Registrar;

/// Its one message: refresh now.
#[derive(Debug)]
pub struct Beat;

impl Actor for Registrar {
    type Msg = Beat;
    type State = Registration;
    type Arguments = Registration;

    async fn pre_start(
        &self,
        myself: ActorRef<Beat>,
        entry: Registration,
    ) -> Result<Registration, ActorProcessingErr> {
        entry.register().await?;
        tracing::info!(service_id = %entry.service_id, url = %entry.url, "registered");
        myself.send_interval(entry.every, || Beat);
        Ok(entry)
    }

    async fn handle(
        &self,
        _: ActorRef<Beat>,
        _: Beat,
        entry: &mut Registration,
    ) -> Result<(), ActorProcessingErr> {
        if !entry
            .store
            .heartbeat_service(SERVICE_TYPE, &entry.service_id)
            .await?
        {
            entry.register().await?;
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<Beat>,
        entry: &mut Registration,
    ) -> Result<(), ActorProcessingErr> {
        if let Err(e) = entry
            .store
            .deregister_service(SERVICE_TYPE, &entry.service_id)
            .await
        {
            tracing::warn!(error = %e, "cannot remove the registration");
        }
        Ok(())
    }
}
