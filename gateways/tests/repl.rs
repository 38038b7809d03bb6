#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The real `turnstone` binary in a real pseudo-terminal (tmux), against the scripted LLM
//! server: streaming markdown, slash commands, Ctrl-C cancelling a turn, resume, /exit.

mod console_support;

use std::process::Command;
use std::time::{Duration, Instant};

use turnstone_tests::llm::{Reply, ScriptedLlm, Turn};

struct Terminal {
    session: String,
}

impl Terminal {
    fn start(args: &[&str], env: &[(&str, String)]) -> Self {
        Self::start_in(&std::env::temp_dir(), args, env)
    }

    fn start_in(dir: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> Self {
        let session = format!("ts-{}", uuid_like());
        let mut cmd = Command::new("tmux");
        cmd.args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "150",
            "-y",
            "50",
            "-c",
        ]);
        cmd.arg(dir);
        for (k, v) in env {
            cmd.args(["-e", &format!("{k}={v}")]);
        }
        let program = std::iter::once(env!("CARGO_BIN_EXE_turnstone").to_owned())
            .chain(args.iter().map(|a| format!("'{a}'")))
            .collect::<Vec<_>>()
            .join(" ");
        // Keep the pane after exit so the final screen can be read.
        cmd.arg(format!("{program}; echo '[exited '$?']'; sleep 30"));
        assert!(cmd.status().unwrap().success(), "tmux new-session");
        Self { session }
    }

    fn send(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn line(&self, text: &str) {
        self.send(&["-l", text]);
        self.send(&["Enter"]);
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args([
                "capture-pane",
                "-p",
                "-J",
                "-S",
                "-200",
                "-t",
                &self.session,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {text:?}; screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", std::process::id(), nanos)
}

fn env(llm: &ScriptedLlm, home: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOME", home.display().to_string()),
        (
            "XDG_CONFIG_HOME",
            home.join(".config").display().to_string(),
        ),
        (
            "TURNSTONE_DB_PATH",
            home.join("turnstone.db").display().to_string(),
        ),
        ("NO_COLOR", "1".into()),
        ("OPENAI_API_KEY", "sk-test".into()),
        ("TERM", "xterm".into()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("IGNORED_BASE", llm.base_url()),
    ]
}

#[tokio::test]
async fn a_conversation_in_the_terminal() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route(
        turnstone_actors::workstream::TITLE_PROMPT,
        Turn::text("A title"),
    );
    let home = tempfile::tempdir().unwrap();
    llm.push_turn(
        Turn::new()
            .content("# Files\n- one `a.txt`\n- two **b.txt**\n")
            .usage(50, 10),
    );
    let term = Terminal::start(
        &["--base-url", &llm.base_url(), "--model", "scripted-model"],
        &env(&llm, home.path()),
    );
    term.wait_for("/help for commands").await;
    term.line("what files are here?");
    let screen = term.wait_for("two b.txt").await;
    assert!(screen.contains("Files"), "{screen}");
    assert!(
        screen.contains("• one a.txt"),
        "markdown rendered: {screen}"
    );
    assert_eq!(llm.requests()[0].auth.as_deref(), Some("Bearer sk-test"));

    term.line("/name files-chat");
    term.wait_for("Session named files-chat").await;
    term.line("/sessions");
    term.wait_for("files-chat").await;
    term.line("/model");
    term.wait_for("default      scripted-model").await;
    term.line("/frobnicate");
    term.wait_for("unknown command /frobnicate; /help lists them")
        .await;
    term.line("/reason hi");
    term.wait_for("Reasoning effort set to high").await;
    term.line("/ws rename listing");
    term.wait_for("Renamed to listing").await;
    term.line("/ws new side");
    term.wait_for("Switched to side").await;
    term.line("/ws");
    term.wait_for("* 2 side").await;
    term.line("/ws 1");
    term.wait_for("Switched to listing").await;

    // Ctrl-C cancels a slow turn, not the program.
    llm.push([Reply::Stream {
        turn: Turn::new()
            .content("slow ")
            .content("answer ")
            .content("never finished"),
        delay: Duration::from_millis(800),
        cut_after: None,
    }]);
    term.line("take your time");
    tokio::time::sleep(Duration::from_millis(300)).await;
    term.send(&["C-c"]);
    term.wait_for("Cancelled").await;
    term.line("/help");
    term.wait_for("/resume <name|id>").await;
    let body = llm.chat_bodies().last().unwrap().clone();
    assert_eq!(
        body["chat_template_kwargs"]["reasoning_effort"], "high",
        "/reason applied"
    );

    term.line("/exit");
    term.wait_for("[exited 0]").await;

    // The session is saved: resume it by name in a new process.
    let term = Terminal::start(
        &[
            "--base-url",
            &llm.base_url(),
            "--model",
            "scripted-model",
            "--resume",
            "files-chat",
        ],
        &env(&llm, home.path()),
    );
    term.wait_for("/help for commands").await;
    term.line("/history");
    term.wait_for("User: what files are here?").await;
    term.line("/reason");
    term.wait_for("Reasoning effort: high").await;
    term.send(&["C-d"]);
    term.wait_for("[exited 0]").await;
}

#[tokio::test]
async fn a_tool_call_is_approved_at_the_prompt_and_runs() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route(
        turnstone_actors::workstream::TITLE_PROMPT,
        Turn::text("A title"),
    );
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("notes.txt"), "alpha\nbeta\n").unwrap();
    llm.push_turn(Turn::new().content("Counting.").tool_call(
        "c1",
        "bash",
        r#"{"command": "wc -l notes.txt"}"#,
    ));
    llm.push_turn(Turn::text("There are 2 lines."));
    llm.push_turn(Turn::new().tool_call("c2", "bash", r#"{"command": "rm notes.txt"}"#));
    llm.push_turn(Turn::text("Understood, not deleting."));
    let mut env = env(&llm, home.path());
    env.push(("TURNSTONE_TEST_WORKDIR", work.path().display().to_string()));
    let term = Terminal::start_in(
        work.path(),
        &["--base-url", &llm.base_url(), "--model", "scripted-model"],
        &env,
    );
    term.wait_for("/help for commands").await;
    term.line("how many lines in notes.txt?");
    term.wait_for("⚠ bash(wc -l notes.txt)").await;
    term.wait_for("Approve? [y]es / [n]o / [a]lways").await;
    term.line("y");
    let screen = term.wait_for("There are 2 lines.").await;
    assert!(
        screen.contains("│ 2 notes.txt"),
        "streamed output: {screen}"
    );
    assert!(screen.contains("✓ bash: 2 notes.txt"), "{screen}");

    term.line("now delete it");
    term.wait_for("⚠ bash(rm notes.txt)").await;
    term.line("keep it please");
    term.wait_for("Understood, not deleting.").await;
    assert!(
        work.path().join("notes.txt").exists(),
        "denied: the file stays"
    );
    let denied = llm.chat_bodies().last().unwrap().to_string();
    assert!(
        denied.contains("Denied by user: keep it please"),
        "{denied}"
    );
    term.line("/exit");
    term.wait_for("[exited 0]").await;
}

#[tokio::test]
async fn bad_flags_and_unreachable_backends_are_clear_errors() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route(
        turnstone_actors::workstream::TITLE_PROMPT,
        Turn::text("A title"),
    );
    let home = tempfile::tempdir().unwrap();
    let term = Terminal::start(&["--reasoning-effort", "extreme"], &env(&llm, home.path()));
    let screen = term.wait_for("[exited 2]").await;
    assert!(screen.contains("invalid value 'extreme'"), "{screen}");

    let term = Terminal::start(
        &["--base-url", "http://127.0.0.1:9/v1"],
        &env(&llm, home.path()),
    );
    let screen = term.wait_for("[exited 1]").await;
    assert!(
        screen.contains("could not detect a model at http://127.0.0.1:9/v1"),
        "{screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_shows_what_the_console_sees() {
    use serde_json::json;
    let redis = turnstone_tests::services::redis_url().unwrap();
    let prefix = format!("cr{}", uuid_like());
    let transport: std::sync::Arc<dyn turnstone_runtime::remote::Transport> = std::sync::Arc::new(
        turnstone_runtime::remote::RedisTransport::connect(&redis, &prefix)
            .await
            .unwrap(),
    );
    let console = console_support::TestConsole::start(&redis, &prefix).await;
    console_support::sim_heartbeat(&transport, "sim-0042", Duration::from_secs(60)).await;
    console
        .until("/v1/api/cluster/nodes", "the node", |b| b["total"] == 1)
        .await;
    console_support::cluster_event(
        &transport,
        &prefix,
        json!({"type": "cluster_state", "ws_id": "w42", "node_id": "sim-0042",
            "state": "attention", "tokens": 777, "activity": "Awaiting approval"}),
    )
    .await;
    console
        .until("/v1/api/cluster/workstreams", "the workstream", |b| {
            b["total"] == 1
        })
        .await;
    let llm = ScriptedLlm::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let term = Terminal::start(
        &[
            "--base-url",
            &llm.base_url(),
            "--model",
            "scripted-model",
            "--console-url",
            &console.url(""),
        ],
        &env(&llm, home.path()),
    );
    term.wait_for("/help for commands").await;
    term.line("/cluster");
    term.wait_for("1 nodes · 1 workstreams · 0 running, 0 thinking, 1 attention")
        .await;
    term.line("/cluster nodes");
    let screen = term.wait_for("sim-0042").await;
    assert!(screen.contains("1/10"), "{screen}");
    term.line("/cluster ws attention");
    term.wait_for("Awaiting approval").await;
    term.line("/cluster node nope");
    term.wait_for("the console answered 404: Node not found")
        .await;
    term.line("/cluster bogus");
    term.wait_for("usage: /cluster").await;
    term.line("/exit");
    console.stop().await;
}
