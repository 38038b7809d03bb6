//! One node's supervision tree, assembled from the configuration:
//!
//! ```text
//! node (one-for-one)
//! ├── providers ── ProviderActor per model alias
//! └── workstreams ── WorkstreamActor per conversation ── ToolCallActor per call
//! ```
//! plus the database and the node-wide event stream. The REPL and the server start the same node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::broadcast;
use turnstone_runtime::supervise::{Observer, SupervisorHandle, SupervisorSpec};

use crate::config::TurnstoneConfig;
use crate::provider::{ModelRouter, PoolError, PoolOptions, start_providers_with};
use crate::storage::{Store, StoreError};
use crate::tools::ToolRegistry;
use crate::workstream::{GlobalEvent, ManagerError, WorkstreamDeps, WorkstreamManager};

/// Starting a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The database could not be opened.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// The model backends could not be set up.
    #[error(transparent)]
    Providers(#[from] PoolError),
    /// The workstream manager failed to start.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The MCP configuration is invalid.
    #[error(transparent)]
    Mcp(#[from] crate::mcp::McpError),
    /// The node supervisor failed to start.
    #[error("node supervisor failed to start: {0}")]
    Supervisor(String),
}

/// Knobs that are not configuration keys.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Provider timeouts, retries and probes.
    pub pool: PoolOptions,
    /// Where tools run.
    pub workdir: PathBuf,
    /// This node's id.
    pub node_id: String,
    /// Open the configured database (false: conversations in memory only).
    pub storage: bool,
    /// Serves the default model lane instead of the configured backend (the simulator's
    /// model); `None` for the configured one.
    pub model_backend: Option<crate::provider::Backend>,
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    /// The configuration it runs with.
    pub config: Arc<TurnstoneConfig>,
    /// Workstreams.
    pub manager: WorkstreamManager,
    /// Model lanes.
    pub router: ModelRouter,
    /// The database.
    pub store: Option<Store>,
    /// Supervision decisions.
    pub observer: Observer,
    /// Node-wide events.
    pub global: broadcast::Sender<GlobalEvent>,
    /// Metrics.
    pub registry: Registry,
    /// The root supervisor.
    pub supervisor: SupervisorHandle,
    /// This node's id.
    pub node_id: String,
    /// MCP servers and their tools (or why they are unavailable).
    pub mcp: Vec<crate::mcp::McpServerStatus>,
}

impl Node {
    /// Opens storage (pruning old sessions), starts the providers and the workstream manager
    /// under one node supervisor. `tools` builds the tool set once the database, the model
    /// lanes and the MCP servers (whose tools it receives) are up, e.g. with
    /// [`builtin_tools`](crate::tools::builtin::builtin_tools).
    pub async fn start(
        config: TurnstoneConfig,
        tools: impl FnOnce(
            Option<Store>,
            &ModelRouter,
            &Arc<TurnstoneConfig>,
            Vec<Arc<dyn crate::tools::Tool>>,
        ) -> ToolRegistry,
        options: NodeOptions,
    ) -> Result<Self, NodeError> {
        let mut registry = Registry::default();
        let observer = Observer::new(&mut registry);
        let store = if options.storage {
            let store = Store::open_patiently(
                &config.database,
                Duration::from_secs(config.database.startup_wait),
                turnstone_runtime::policy::Backoff::exponential(
                    Duration::from_secs(1),
                    Duration::from_secs(10),
                ),
            )
            .await?;
            let pruned = store.prune(config.session.retention_days).await?;
            if pruned > 0 {
                tracing::info!(pruned, "pruned old sessions");
            }
            Some(store)
        } else {
            None
        };
        let (supervisor, _) =
            SupervisorHandle::start(SupervisorSpec::new("node"), observer.clone())
                .await
                .map_err(|e| NodeError::Supervisor(e.to_string()))?;
        let parent = supervisor.actor().get_cell();
        let (_, router) = start_providers_with(
            &config,
            options.pool,
            observer.clone(),
            Some(parent.clone()),
            options.model_backend.clone(),
        )
        .await?;
        let crate::mcp::McpServers {
            tools: mcp_tools,
            status: mcp,
            ..
        } = crate::mcp::start_servers(
            &config.mcp,
            Duration::from_secs(config.tools.timeout.max(1)),
            observer.clone(),
            Some(parent.clone()),
        )
        .await?;
        let (global, _) = broadcast::channel(500);
        let config = Arc::new(config);
        let node_id = options.node_id.clone();
        let deps = WorkstreamDeps {
            router: router.clone(),
            tools: tools(store.clone(), &router, &config, mcp_tools),
            config: Arc::clone(&config),
            global: global.clone(),
            workdir: options.workdir,
            store: store.clone(),
            node_id: options.node_id,
        };
        let idle = Duration::from_secs(config.server.workstream_idle_timeout.max(1) * 60);
        let manager = WorkstreamManager::start(
            deps,
            config.server.max_workstreams,
            idle,
            observer.clone(),
            Some(parent),
        )
        .await?;
        Ok(Self {
            config,
            manager,
            router,
            store,
            observer,
            global,
            registry,
            supervisor,
            node_id,
            mcp,
        })
    }

    /// Starts a node with the built-in tools, the sub-agents and the MCP servers' tools — what
    /// the `turnstone` and `turnstone-server` binaries run.
    pub async fn start_with_builtin_tools(
        config: TurnstoneConfig,
        options: NodeOptions,
    ) -> Result<Self, NodeError> {
        Self::start(
            config,
            |store, router, config, mcp| {
                crate::tools::builtin::builtin_tools(
                    store,
                    Arc::clone(config),
                    Some(router.clone()),
                    mcp,
                )
            },
            options,
        )
        .await
    }

    /// Stops every workstream and provider, then waits until what the workstreams queued
    /// for the database has landed: the process may end when this returns.
    pub async fn shutdown(&self) {
        let _ = self
            .supervisor
            .shutdown(Some(Duration::from_secs(10)))
            .await;
        if let Some(store) = &self.store
            && !store.settle(Duration::from_secs(10)).await
        {
            tracing::warn!("the database writers did not finish within 10 s");
        }
    }
}
