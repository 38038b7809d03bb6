#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shipped deployment, run for real: the image of `deploy/Dockerfile` (built by
//! `scripts/deploy-image` with podman) and `deploy/compose.yaml`'s profiles under
//! podman-compose, against a scripted model endpoint on this host and with 0.4.1's Python
//! client. The upstream Redis and PostgreSQL images are stood in for by local builds of the
//! same programs (`deploy/test/images/`); health checks do not run under podman here, so the
//! tests wait on ports and answers instead.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;
use turnstone_tests::llm::{ScriptedLlm, Turn};

const TOKEN: &str = "deploy-test-token";

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} (run scripts/test)"))
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

use turnstone_tests::services::free_port;

fn client() -> reqwest::Client {
    turnstone_actors::provider::install_crypto_provider();
    reqwest::Client::new()
}

/// `podman ARGS`: its success, its standard output, and both outputs (for messages; podman
/// here also logs that it cannot reach systemd for health checks).
async fn podman(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("podman")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout, all)
}

/// Waits until `url` answers 200 with a body `ok` accepts; returns the body.
async fn until(url: &str, what: &str, secs: u64, ok: impl Fn(&Value) -> bool) -> Value {
    let http = client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut last;
    loop {
        match http.get(url).bearer_auth(TOKEN).send().await {
            Ok(r) => {
                let status = r.status();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                if status == 200 && ok(&body) {
                    return body;
                }
                last = format!("{status} {body}");
            }
            Err(e) => last = e.to_string(),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never ({url}); last answer: {last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One compose project of `deploy/compose.yaml`: its own name, ports and env file.
struct Compose {
    project: String,
    env_file: tempfile::NamedTempFile,
    profile: &'static str,
    ports: Ports,
}

#[derive(Clone, Copy)]
struct Ports {
    node: u16,
    node_1: u16,
    node_2: u16,
    console: u16,
    channel: u16,
    redis: u16,
}

impl Compose {
    /// A project for `profile`, whose nodes talk to `llm` on this host.
    fn new(profile: &'static str, llm: &ScriptedLlm) -> Self {
        let ports = Ports {
            node: free_port(),
            node_1: free_port(),
            node_2: free_port(),
            console: free_port(),
            channel: free_port(),
            redis: free_port(),
        };
        // `.env.example` as a user copies it, then the test's own values (later lines win).
        let mut env = std::fs::read_to_string(deploy_dir().join(".env.example")).unwrap();
        // podman-compose adds --profile to COMPOSE_PROFILES; Docker Compose replaces it.
        env = env
            .lines()
            .filter(|l| !l.starts_with("COMPOSE_PROFILES="))
            .collect::<Vec<_>>()
            .join("\n");
        env.push_str(&format!(
            "\nTURNSTONE_IMAGE={}\nREDIS_IMAGE={}\nPOSTGRES_IMAGE={}\n\
             LLM_BASE_URL=http://host.containers.internal:{}/v1\nLLM_MODEL=scripted-model\n\
             TURNSTONE_AUTH_TOKEN={TOKEN}\nTURNSTONE_JWT_SECRET=deploy-test-secret-0123456789abcdef\n\
             POSTGRES_PASSWORD=deploy-test-pg\nNODE_PORT={}\nNODE_1_PORT={}\nNODE_2_PORT={}\n\
             CONSOLE_PORT={}\nCHANNEL_PORT={}\nREDIS_PORT={}\nSIM_NODES=40\nSIM_MPS=20\nSIM_DURATION=120\n",
            var("TURNSTONE_TEST_IMAGE"),
            var("TURNSTONE_TEST_REDIS_IMAGE"),
            var("TURNSTONE_TEST_POSTGRES_IMAGE"),
            llm.port(),
            ports.node,
            ports.node_1,
            ports.node_2,
            ports.console,
            ports.channel,
            ports.redis,
        ));
        let env_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(env_file.path(), env).unwrap();
        Self {
            project: format!("tsd{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            env_file,
            profile,
            ports,
        }
    }

    /// Runs podman-compose on the project: success, and its output (stdout then stderr).
    async fn run(&self, args: &[&str]) -> (bool, String) {
        let (ok, stdout, stderr) = self.run_split(args).await;
        (ok, format!("{stdout}{stderr}"))
    }

    /// podman-compose on this project, its env file and its profile.
    fn compose(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(var("TURNSTONE_TEST_COMPOSE"));
        cmd.current_dir(deploy_dir())
            .arg("--env-file")
            .arg(self.env_file.path())
            .args(["-p", &self.project, "--profile", self.profile])
            .stdin(Stdio::null());
        cmd
    }

    async fn run_split(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::from(self.compose())
            .args(args)
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn up(&self) {
        let (ok, out) = self.run(&["up", "-d"]).await;
        assert!(ok, "compose up ({}) failed:\n{out}", self.profile);
    }

    /// `up`, then waits for the console's /health; says how long that took (a figure the
    /// deploy docs quote).
    async fn up_until_console(&self) {
        let started = std::time::Instant::now();
        self.up().await;
        let url = format!("http://127.0.0.1:{}/health", self.ports.console);
        until(&url, "the console's health", 180, |b| b["status"] == "ok").await;
        eprintln!(
            "profile {}: console healthy {:.1} s after `up -d` was started",
            self.profile,
            started.elapsed().as_secs_f64()
        );
    }

    /// The services' logs, for a failure's message.
    async fn logs(&self) -> String {
        self.run(&["logs"]).await.1
    }

    /// `down` (keeping volumes unless `volumes`).
    async fn down(&self, volumes: bool) {
        let args: &[&str] = if volumes { &["down", "-v"] } else { &["down"] };
        let (ok, out) = self.run(args).await;
        assert!(ok, "compose down failed:\n{out}");
    }

    /// The services `config` resolves for this profile (read by podman-compose's own Python,
    /// which has PyYAML).
    async fn services(&self) -> Vec<String> {
        let (ok, out, err) = self.run_split(&["config"]).await;
        assert!(ok, "{out}{err}");
        let compose = PathBuf::from(var("TURNSTONE_TEST_COMPOSE"));
        let python = compose.with_file_name("python3");
        let mut child = Command::new(python)
            .args([
                "-c",
                "import sys, yaml, json; print(json.dumps(sorted(yaml.safe_load(sys.stdin)['services'])))",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(out.as_bytes()).await.unwrap();
        }
        let listed = child.wait_with_output().await.unwrap();
        serde_json::from_slice(&listed.stdout)
            .unwrap_or_else(|_| panic!("compose config is not YAML:\n{out}"))
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        // Whatever happened, leave no containers or volumes behind.
        let _ = self
            .compose()
            .args(["down", "-v"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A scripted model endpoint the containers reach at `host.containers.internal`.
async fn model_for_containers() -> ScriptedLlm {
    let llm = ScriptedLlm::start_on(std::net::Ipv4Addr::UNSPECIFIED)
        .await
        .unwrap();
    llm.route(
        turnstone_actors::workstream::TITLE_PROMPT,
        Turn::text("A title"),
    );
    llm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_has_every_binary_runs_as_non_root_and_answers_health() {
    let image = var("TURNSTONE_TEST_IMAGE");
    let (ok, inspect, said) = podman(&["image", "inspect", &image]).await;
    assert!(ok, "{said}");
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "10001:10001", "{config:#}");
    assert_eq!(config["Entrypoint"], json!(["/usr/bin/tini", "--"]));
    assert_eq!(
        inspect[0]["Healthcheck"]["Test"],
        json!(["CMD", "/usr/local/bin/turnstone-health"]),
        "{inspect:#}"
    );
    let (ok, id, said) = podman(&["run", "--rm", &image, "id", "-u"]).await;
    assert!(ok, "{said}");
    assert_eq!(id.trim(), "10001", "not root");
    for binary in [
        "turnstone",
        "turnstone-server",
        "turnstone-bridge",
        "turnstone-console",
        "turnstone-channel",
        "turnstone-sim",
        "turnstone-admin",
        "turnstone-eval",
    ] {
        let (ok, help, _) = podman(&["run", "--rm", &image, binary, "--help"]).await;
        assert!(
            ok && help.contains(&format!("Usage: {binary} ")),
            "{binary} --help:\n{help}"
        );
    }
    // One multi-call binary: what the image adds to its base stays small (eight binaries,
    // each linking the engine, added 300 MB).
    let base = var("TURNSTONE_TEST_BASE_IMAGE");
    let (ok, base_inspect, said) = podman(&["image", "inspect", &base]).await;
    assert!(ok, "{said}");
    let base_inspect: Value = serde_json::from_str(&base_inspect).unwrap();
    let added = inspect[0]["Size"].as_u64().unwrap() - base_inspect[0]["Size"].as_u64().unwrap();
    assert!(added < 80_000_000, "the image adds {added} bytes to {base}");

    let llm = model_for_containers().await;
    let port = free_port();
    let name = format!("tsimg{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let base_url = format!("http://host.containers.internal:{}/v1", llm.port());
    let published = format!("127.0.0.1:{port}:8080");
    let (ok, _, out) = podman(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        &published,
        &image,
        "turnstone-server",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
        "--base-url",
        &base_url,
        "--model",
        "scripted-model",
    ])
    .await;
    assert!(ok, "{out}");
    let health = until(
        &format!("http://127.0.0.1:{port}/health"),
        "the container's /health",
        60,
        |b| b["status"] == "ok",
    )
    .await;
    assert_eq!(health["model"], "scripted-model");
    // The image's own health check passes inside the container.
    let (healthy, _, out) = podman(&["exec", &name, "/usr/local/bin/turnstone-health"]).await;
    let (_, _, logs) = podman(&["logs", &name]).await;
    let _ = podman(&["rm", "-f", &name]).await;
    assert!(healthy, "turnstone-health failed: {out}\n{logs}");
    // The non-root user could open its SQLite file on the data volume and serve.
    assert!(logs.contains("turnstone-server listening"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_profile_brings_its_own_services() {
    let llm = model_for_containers().await;
    let expect = [
        ("default", vec!["console", "node", "redis"]),
        (
            "production",
            vec![
                "channel",
                "console-production",
                "node-1",
                "node-2",
                "postgres",
                "redis",
            ],
        ),
        ("sim", vec!["console", "redis", "sim"]),
        (
            "observability",
            vec!["otel-collector", "prometheus", "redis"],
        ),
    ];
    for (profile, services) in expect {
        let compose = Compose::new(profile, &llm);
        assert_eq!(compose.services().await, services, "profile {profile}");
    }
    // Docker's own compose validates the file against the compose schema.
    {
        let compose = Compose::new("default", &llm);
        let out = Command::new(var("TURNSTONE_TEST_DOCKER_COMPOSE"))
            .current_dir(deploy_dir())
            .arg("--env-file")
            .arg(compose.env_file.path())
            .args(["-f", "compose.yaml", "config", "-q"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "docker-compose config -q: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A required value missing stops start-up with its message.
    let compose = Compose::new("default", &llm);
    let mut env = std::fs::read_to_string(compose.env_file.path()).unwrap();
    env.push_str("\nLLM_BASE_URL=\n");
    std::fs::write(compose.env_file.path(), env).unwrap();
    let (ok, out) = compose.run(&["config"]).await;
    assert!(!ok && out.contains("LLM_BASE_URL"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_profile_runs_a_turn_on_its_node_and_the_console_shows_it() {
    let llm = model_for_containers().await;
    llm.route_latest(
        "hello from compose",
        Turn::text("Hello from the container."),
    );
    let compose = Compose::new("default", &llm);
    compose.up_until_console().await;
    let node = format!("http://127.0.0.1:{}", compose.ports.node);
    let health = until(&format!("{node}/health"), "the node's health", 120, |b| {
        b["status"] == "ok" && b["cluster"]["status"] == "connected"
    })
    .await;
    assert_eq!(health["node_id"], "node-1");
    let http = client();
    let list = until(
        &format!("{node}/v1/api/workstreams"),
        "workstreams",
        30,
        |b| b["workstreams"].as_array().is_some_and(|w| !w.is_empty()),
    )
    .await;
    let ws_id = list["workstreams"][0]["id"].as_str().unwrap().to_owned();
    let sent = http
        .post(format!("{node}/v1/api/send"))
        .bearer_auth(TOKEN)
        .json(&json!({"ws_id": ws_id, "message": "hello from compose"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    // The turn is stored on the node's SQLite volume: its session has both messages.
    until(
        &format!("{node}/v1/api/sessions"),
        "the turn stored",
        60,
        |b| {
            b["sessions"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["message_count"].as_u64() >= Some(2)))
        },
    )
    .await;
    assert!(
        llm.chat_bodies()
            .iter()
            .any(|b| b.to_string().contains("hello from compose")),
        "the model endpoint on the host was asked"
    );
    let console = format!("http://127.0.0.1:{}", compose.ports.console);
    let nodes = until(
        &format!("{console}/v1/api/cluster/nodes"),
        "the console lists the node",
        90,
        |b| b.to_string().contains("node-1") && b.to_string().contains("http://node:8080"),
    )
    .await;
    assert!(nodes.to_string().contains("node-1"), "{nodes}");
    let _ = compose.logs().await;
    compose.down(true).await;
}

/// 0.4.1's Python client sends one message through Redis to `node`.
async fn turn_041(redis_port: u16, node: &str, message: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mq_turn_041.py");
    let out = Command::new(var("TURNSTONE_TEST_TS041_PYTHON"))
        .args([
            script,
            "127.0.0.1",
            &redis_port.to_string(),
            "turnstone",
            node,
            message,
            "90",
        ])
        .output()
        .await
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "0.4.1's client: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_profile_runs_two_nodes_on_postgres_and_keeps_history_across_restarts() {
    let llm = model_for_containers().await;
    llm.route_latest("production turn", Turn::text("Stored in PostgreSQL."));
    let compose = Compose::new("production", &llm);
    compose.up_until_console().await;
    for (port, id) in [
        (compose.ports.node_1, "node-1"),
        (compose.ports.node_2, "node-2"),
    ] {
        let health = until(
            &format!("http://127.0.0.1:{port}/health"),
            "a production node",
            180,
            |b| b["status"] == "ok" && b["cluster"]["status"] == "connected",
        )
        .await;
        assert_eq!(health["node_id"], id);
    }
    let seen = turn_041(compose.ports.redis, "node-2", "production turn").await;
    assert_eq!(seen["ok"], true, "{seen}\n{}", compose.logs().await);
    assert_eq!(seen["content"], "Stored in PostgreSQL.");
    let ws_id = seen["ws_id"].as_str().unwrap().to_owned();
    let console = format!("http://127.0.0.1:{}", compose.ports.console);
    until(
        &format!("{console}/v1/api/cluster/nodes"),
        "the console lists both nodes",
        90,
        |b| b.to_string().contains("node-1") && b.to_string().contains("node-2"),
    )
    .await;
    // The chat gateway is up on the same database and Redis.
    let channel = until(
        &format!("http://127.0.0.1:{}/health", compose.ports.channel),
        "the chat gateway",
        120,
        |b| b["service"] == "channel",
    )
    .await;
    assert_eq!(channel["status"], "ok");
    // Both nodes share PostgreSQL: node-1 lists the session node-2 stored.
    let node_1 = format!("http://127.0.0.1:{}", compose.ports.node_1);
    let stored = |b: &Value| {
        b["sessions"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["ws_id"] == ws_id.as_str() && s["message_count"].as_u64() >= Some(2))
        })
    };
    until(
        &format!("{node_1}/v1/api/sessions"),
        "the shared session",
        30,
        stored,
    )
    .await;

    // Down (volumes kept) and up again: the history is still there.
    compose.down(false).await;
    compose.up().await;
    until(
        &format!("{node_1}/v1/api/sessions"),
        "the session after down and up",
        180,
        stored,
    )
    .await;
    compose.down(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_profile_s_nodes_appear_in_the_console() {
    let llm = model_for_containers().await;
    let compose = Compose::new("sim", &llm);
    compose.up_until_console().await;
    let console = format!("http://127.0.0.1:{}", compose.ports.console);
    let overview = until(
        &format!("{console}/v1/api/cluster/overview"),
        "the simulator's 40 nodes in the console",
        120,
        |b| b["nodes"].as_u64() >= Some(40),
    )
    .await;
    assert!(overview["nodes"].as_u64() >= Some(40), "{overview}");
    compose.down(true).await;
}

/// A root for `systemd-analyze --root`: the system's units, ours under etc/, stub
/// executables where ours start programs.
fn systemd_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let copy = |from: &Path, to: &Path| {
        let ok = std::process::Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cp {from:?}");
    };
    std::fs::create_dir_all(root.path().join("usr/lib/systemd")).unwrap();
    copy(
        Path::new("/usr/lib/systemd/system"),
        &root.path().join("usr/lib/systemd/"),
    );
    let units = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    for bin in ["usr/local/bin", "usr/bin"] {
        std::fs::create_dir_all(root.path().join(bin)).unwrap();
    }
    for entry in std::fs::read_dir(deploy_dir().join("systemd")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".service") || name.ends_with(".target") {
            std::fs::copy(&path, units.join(&name)).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let Some(command) = line
                    .strip_prefix("ExecStart=")
                    .or_else(|| line.strip_prefix("ExecStartPre="))
                else {
                    continue;
                };
                let program = command.trim_start_matches(['+', '-', '!', '@']);
                let program = program.split_whitespace().next().unwrap();
                let stub = root.path().join(program.trim_start_matches('/'));
                std::fs::write(&stub, "#!/bin/sh\n").unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
    }
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_units_verify_clean_and_are_hardened() {
    let root = systemd_root();
    let units = [
        "turnstone-server",
        "turnstone-bridge",
        "turnstone-console",
        "turnstone-channel",
    ];
    let mut paths: Vec<String> = units
        .iter()
        .map(|u| format!("etc/systemd/system/{u}.service"))
        .collect();
    paths.push("etc/systemd/system/turnstone.target".into());
    let out = Command::new("systemd-analyze")
        .current_dir(root.path())
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.path().display()))
        .args(&paths)
        .output()
        .await
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Unknown keys and bad values only warn: any output is a failure.
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    for unit in units {
        let text =
            std::fs::read_to_string(deploy_dir().join(format!("systemd/{unit}.service"))).unwrap();
        for key in [
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "EnvironmentFile=/etc/turnstone/turnstone.env",
            "PartOf=turnstone.target",
        ] {
            assert!(text.contains(key), "{unit} lacks {key}");
        }
        assert!(
            text.contains("DynamicUser=yes") || text.contains("User=turnstone"),
            "{unit} runs as root"
        );
        // systemd's own exposure score: 10 is unprotected, below 2 is "OK".
        let out = Command::new("systemd-analyze")
            .current_dir(root.path())
            .args(["security", "--offline=yes", "--threshold=20"])
            .arg(format!("--root={}", root.path().display()))
            .arg(format!("etc/systemd/system/{unit}.service"))
            .output()
            .await
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        let score: f64 = report
            .lines()
            .find_map(|l| l.split("exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no score for {unit}: {report}"));
        assert!(score < 2.0, "{unit} exposure {score}: {report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helm_chart_lints_renders_valid_objects_and_refuses_bad_values() {
    // Helm's Go library (helm-python-sdk) and kubernetes-validate's bundled schemas, offline.
    let out = Command::new(var("TURNSTONE_TEST_K8S_PYTHON"))
        .arg(deploy_dir().join("test/helm_check.py"))
        .output()
        .await
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("ok: lint clean"), "{said}");
    for refused in [
        "unknown provider",
        "zero nodes",
        "a misspelt key",
        "two SQLite nodes",
    ] {
        assert!(
            said.contains(&format!("refused as it should: {refused}")),
            "{said}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dockerfile_and_the_yaml_files_pass_their_linters() {
    let tools = PathBuf::from(var("TURNSTONE_TEST_K8S_PYTHON"));
    let run = |tool: &str| Command::new(tools.with_file_name(tool));
    let hadolint = run("hadolint")
        .arg(deploy_dir().join("Dockerfile"))
        .output()
        .await
        .unwrap();
    assert!(
        hadolint.status.success(),
        "hadolint: {}",
        String::from_utf8_lossy(&hadolint.stdout)
    );
    let yamllint = run("yamllint")
        .current_dir(deploy_dir())
        .args([
            "--strict",
            "-c",
            ".yamllint.yaml",
            "compose.yaml",
            "observability",
        ])
        .args([
            "helm/turnstone/values.yaml",
            "helm/turnstone/values-production.yaml",
        ])
        .arg("helm/turnstone/Chart.yaml")
        .args([
            "helm/turnstone/charts/redis/Chart.yaml",
            "helm/turnstone/charts/redis/values.yaml",
            "helm/turnstone/charts/postgresql/Chart.yaml",
            "helm/turnstone/charts/postgresql/values.yaml",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        yamllint.status.success(),
        "yamllint: {}",
        String::from_utf8_lossy(&yamllint.stdout)
    );
}
