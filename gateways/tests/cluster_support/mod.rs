//! Real `turnstone-server` processes joined into one cluster on the test Redis, the scripted
//! LLM behind them, and the Rust queue client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use turnstone_actors::mq::TurnstoneClient;
use turnstone_runtime::remote::{RedisTransport, Transport};
use turnstone_tests::llm::{ScriptedLlm, Turn};
use turnstone_tests::services::{authority, redis_url};

/// One node process.
pub struct NodeProc {
    pub id: String,
    pub url: String,
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    _work: tempfile::TempDir,
}

impl NodeProc {
    /// SIGKILL: no goodbye, no cleanup.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// Where the nodes keep their conversations.
#[derive(Clone, Debug)]
pub enum Db {
    /// Each node its own SQLite file.
    Sqlite,
    /// All nodes one PostgreSQL database.
    Postgres(String),
}

pub struct Cluster {
    pub llm: ScriptedLlm,
    pub prefix: String,
    pub transport: Arc<dyn Transport>,
    pub client: TurnstoneClient,
    pub nodes: Vec<NodeProc>,
    pub db: Db,
    pub heartbeat_ttl: u64,
    pub extra: Vec<String>,
    pub redis: String,
    /// Environment of nodes added from now on.
    pub env: Vec<(String, String)>,
}

impl Cluster {
    pub async fn start(nodes: &[&str], db: Db) -> Self {
        Self::start_with(nodes, db, 60, &[]).await
    }

    pub async fn start_with(nodes: &[&str], db: Db, heartbeat_ttl: u64, extra: &[&str]) -> Self {
        Self::start_on(&redis_url().unwrap(), nodes, db, heartbeat_ttl, extra).await
    }

    pub async fn start_on(
        redis: &str,
        nodes: &[&str],
        db: Db,
        heartbeat_ttl: u64,
        extra: &[&str],
    ) -> Self {
        let llm = ScriptedLlm::start().await.unwrap();
        llm.route(
            turnstone_actors::workstream::TITLE_PROMPT,
            Turn::text("A title"),
        );
        let prefix = format!("c{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let transport: Arc<dyn Transport> =
            Arc::new(RedisTransport::connect(redis, &prefix).await.unwrap());
        let client = TurnstoneClient::new(transport.clone());
        let mut cluster = Self {
            llm,
            prefix,
            transport,
            client,
            nodes: Vec::new(),
            db,
            heartbeat_ttl,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            redis: redis.to_owned(),
            env: Vec::new(),
        };
        for id in nodes {
            cluster.add_node(id).await;
        }
        cluster
    }

    pub async fn add_node(&mut self, id: &str) -> &NodeProc {
        let llm = self.llm.base_url();
        self.add_node_with(id, &llm, &[]).await
    }

    /// A node with its own model backend and flags.
    pub async fn add_node_with(&mut self, id: &str, llm: &str, flags: &[&str]) -> &NodeProc {
        let work = tempfile::tempdir().unwrap();
        let (host, port) = authority(&self.redis).split_once(':').unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnstone-server"));
        cmd.args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--base-url", llm, "--model", "scripted-model"])
            .args(["--redis-host", host, "--redis-port", port])
            .args(["--redis-prefix", &self.prefix, "--node-id", id])
            .args(["--heartbeat-ttl", &self.heartbeat_ttl.to_string()])
            .arg("--workdir")
            .arg(work.path())
            .args(&self.extra)
            .args(flags)
            .env("HOME", work.path())
            .env("TURNSTONE_AUTH_ENABLED", "false")
            .env("TURNSTONE_LOG_FORMAT", "text")
            .env("TURNSTONE_LOG_LEVEL", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("REDIS_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match &self.db {
            Db::Sqlite => {
                cmd.env("TURNSTONE_DB_PATH", work.path().join("node.db"));
            }
            Db::Postgres(url) => {
                cmd.env("TURNSTONE_DB_BACKEND", "postgresql")
                    .env("TURNSTONE_DB_URL", url);
            }
        }
        let (child, url, log) = spawn_until(cmd, "Turnstone server on ", id).await;
        self.wait_for_nodes(&[id]).await;
        self.nodes.push(NodeProc {
            id: id.to_owned(),
            url: url.trim_end_matches('/').to_owned(),
            child,
            log,
            _work: work,
        });
        self.nodes.last().unwrap()
    }

    /// Waits until every node in `ids` heartbeats.
    pub async fn wait_for_nodes(&self, ids: &[&str]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let live: Vec<String> = self
                .client
                .list_nodes()
                .await
                .unwrap()
                .iter()
                .map(|n| n["node_id"].as_str().unwrap_or("").to_owned())
                .collect();
            if ids.iter().all(|id| live.iter().any(|l| l == id)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nodes {ids:?} not live; live: {live:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn node(&mut self, id: &str) -> &mut NodeProc {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    /// The node serving a workstream, by its owner key.
    pub async fn owner(&self, ws_id: &str) -> Option<String> {
        self.transport
            .get(&format!("{}:ws:{ws_id}", self.prefix))
            .await
            .unwrap()
    }

    /// Waits until the scripted model was sent a request containing `text` (20 s at most).
    pub async fn wait_for_model_request(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !self
            .llm
            .chat_bodies()
            .iter()
            .any(|b| b.to_string().contains(text))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the model never saw {text:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.id, n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Spawns `cmd` (stderr piped) and waits for the stderr line starting with `ready`; returns
/// the process, the rest of that line, and the log it keeps collecting.
pub async fn spawn_until(
    cmd: Command,
    ready: &str,
    name: &str,
) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let (mut child, log) = spawn_logged(cmd);
    let rest = tokio::time::timeout(Duration::from_secs(60), async {
        let mut seen = 0;
        loop {
            let found = {
                let lines = log.lock().unwrap();
                let found = lines[seen..]
                    .iter()
                    .find_map(|l| l.strip_prefix(ready).map(str::to_owned));
                seen = lines.len();
                found
            };
            if let Some(rest) = found {
                return rest;
            }
            if let Ok(Some(_)) = child.try_wait() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!("{name} exited:\n{}", log.lock().unwrap().join("\n"))
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} did not start:\n{}", log.lock().unwrap().join("\n")));
    (child, rest, log)
}

/// Spawns `cmd` (stderr piped), collecting its stderr lines.
pub fn spawn_logged(mut cmd: Command) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    (child, log)
}

/// A node server on its own (no Redis), as 0.4.1 runs one behind `turnstone-bridge`.
pub async fn plain_server(llm: &str, work: &std::path::Path) -> (Child, String) {
    let mut cmd = server_command(work, 0);
    cmd.args(["--base-url", llm, "--model", "scripted-model"]);
    let (child, url, _) = spawn_until(cmd, "Turnstone server on ", "turnstone-server").await;
    (child, url.trim_end_matches('/').to_owned())
}

/// `turnstone-server` on loopback `port` (0: any) with its tools and SQLite file in `work`,
/// auth off, no Redis from the environment, stderr piped (for [`spawn_until`] and
/// [`spawn_logged`]); the caller adds the model and the rest.
pub fn server_command(work: &std::path::Path, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnstone-server"));
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--workdir")
        .arg(work)
        .env("HOME", work)
        .env("TURNSTONE_AUTH_ENABLED", "false")
        .env("TURNSTONE_DB_PATH", work.join("node.db"))
        .env_remove("REDIS_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}
