#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The built-in tools, run through the registry as the engine runs them: success paths and
//! failure paths (confinement, binary and missing files, ambiguous edits, blocked commands,
//! timeouts that must kill the whole process group).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use turnstone_actors::storage::Store;
use turnstone_actors::tools::builtin::builtin_tools;
use turnstone_actors::tools::{ToolContext, ToolRegistry};

struct Bench {
    tools: ToolRegistry,
    dir: tempfile::TempDir,
    chunks: mpsc::UnboundedReceiver<(String, String)>,
    tx: mpsc::UnboundedSender<(String, String)>,
}

async fn bench() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join(".ts.db").display());
    let store = Store::open_url(&url, 1).await.unwrap();
    let (tx, chunks) = mpsc::unbounded_channel();
    Bench {
        tools: builtin_tools(Some(store), None),
        dir,
        chunks,
        tx,
    }
}

impl Bench {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    async fn call(&self, name: &str, args: Value) -> Result<String, String> {
        let tool = self.tools.get(name).unwrap();
        tool.validate(&args)?;
        let ctx = ToolContext {
            workdir: self.root().to_path_buf(),
            session_id: "s1".into(),
            call_id: "c1".into(),
            output: self.tx.clone(),
            approver: None,
        };
        tool.run(args, ctx).await.map(|o| o.text)
    }
}

#[tokio::test]
async fn read_file_numbers_lines_and_honours_offset_and_limit() {
    let b = bench().await;
    std::fs::write(b.root().join("a.txt"), "one\ntwo\nthree\nfour\n").unwrap();
    assert_eq!(
        b.call("read_file", json!({"path": "a.txt"})).await.unwrap(),
        "   1\tone\n   2\ttwo\n   3\tthree\n   4\tfour\n"
    );
    assert_eq!(
        b.call(
            "read_file",
            json!({"path": "a.txt", "offset": 2, "limit": 2})
        )
        .await
        .unwrap(),
        "   2\ttwo\n   3\tthree\n"
    );
}

#[tokio::test]
async fn read_file_refuses_escapes_binaries_directories_and_missing_files() {
    let b = bench().await;
    std::fs::write(b.root().join("bin.dat"), [0u8, 1, 2, 3]).unwrap();
    std::fs::create_dir(b.root().join("d")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", b.root().join("passwd")).unwrap();
    let err = |args| async { b.call("read_file", args).await.unwrap_err() };
    assert!(
        err(json!({"path": "../../etc/passwd"}))
            .await
            .contains("outside the working directory")
    );
    assert!(
        err(json!({"path": "passwd"}))
            .await
            .contains("outside the working directory"),
        "symlink trick"
    );
    assert_eq!(
        err(json!({"path": "bin.dat"})).await,
        "bin.dat is a binary file"
    );
    assert_eq!(err(json!({"path": "d"})).await, "d is a directory");
    assert!(
        err(json!({"path": "nope.txt"}))
            .await
            .starts_with("nope.txt:")
    );
    assert_eq!(
        err(json!({"path": "a", "offset": 0})).await,
        "'offset' must be an integer ≥ 1"
    );
    assert_eq!(err(json!({})).await, "missing required argument 'path'");
}

#[tokio::test]
async fn write_then_edit_with_exact_matches_and_near_line() {
    let b = bench().await;
    assert_eq!(
        b.call(
            "write_file",
            json!({"path": "src/lib.rs", "content": "fn a() {}\nfn b() {}\nfn a() {}\n"})
        )
        .await
        .unwrap(),
        "Wrote src/lib.rs (3 lines)"
    );
    let ambiguous = b
        .call(
            "edit_file",
            json!({"path": "src/lib.rs", "old_string": "fn a() {}", "new_string": "fn c() {}"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        ambiguous,
        "old_string occurs 2 times in src/lib.rs (lines 1, 3); give near_line to choose one"
    );
    assert_eq!(
        b.call("edit_file", json!({"path": "src/lib.rs", "old_string": "fn a() {}", "new_string": "fn c() {}", "near_line": 3})).await.unwrap(),
        "Edited src/lib.rs at line 3"
    );
    assert_eq!(
        std::fs::read_to_string(b.root().join("src/lib.rs")).unwrap(),
        "fn a() {}\nfn b() {}\nfn c() {}\n"
    );
    let missing = b
        .call(
            "edit_file",
            json!({"path": "src/lib.rs", "old_string": "fn z", "new_string": ""}),
        )
        .await
        .unwrap_err();
    assert_eq!(missing, "old_string not found in src/lib.rs");
    assert!(
        b.call("write_file", json!({"path": "../x", "content": "no"}))
            .await
            .unwrap_err()
            .contains("outside")
    );
}

#[tokio::test]
async fn edit_requires_a_prior_read() {
    let b = bench().await;
    std::fs::write(b.root().join("notes.md"), "hello world\n").unwrap();
    let err = b
        .call(
            "edit_file",
            json!({"path": "notes.md", "old_string": "world", "new_string": "there"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err, "read notes.md with read_file before editing it");
    b.call("read_file", json!({"path": "notes.md"}))
        .await
        .unwrap();
    b.call(
        "edit_file",
        json!({"path": "notes.md", "old_string": "world", "new_string": "there"}),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(b.root().join("notes.md")).unwrap(),
        "hello there\n"
    );
}

#[tokio::test]
async fn bash_streams_stdout_reports_stderr_and_exit_codes() {
    let mut b = bench().await;
    let out = b
        .call(
            "bash",
            json!({"command": "echo one; echo two; echo oops >&2; exit 3"}),
        )
        .await
        .unwrap();
    assert_eq!(out, "one\ntwo\noops\n[exit code: 3]");
    let streamed: Vec<String> = std::iter::from_fn(|| b.chunks.try_recv().ok())
        .map(|(_, c)| c)
        .collect();
    assert_eq!(streamed, ["one", "two"]);
    assert_eq!(
        b.call("bash", json!({"command": "true"})).await.unwrap(),
        "(no output)"
    );
    assert_eq!(
        b.call("bash", json!({"command": "echo \u{201C}quoted\u{201D}"}))
            .await
            .unwrap(),
        "quoted",
        "curly quotes become ASCII"
    );
    assert_eq!(
        b.call("bash", json!({"command": "pwd"})).await.unwrap(),
        b.root().canonicalize().unwrap().display().to_string()
    );
}

#[tokio::test]
async fn bash_refuses_dangerous_commands() {
    let b = bench().await;
    for command in [
        "rm -rf /",
        "sudo reboot",
        ":(){ :|:& };:",
        "dd if=/dev/zero of=/dev/sda",
    ] {
        let err = b
            .call("bash", json!({"command": command}))
            .await
            .unwrap_err();
        assert!(
            err.starts_with("Blocked: the command contains"),
            "{command}: {err}"
        );
    }
}

#[tokio::test]
async fn a_cancelled_bash_call_kills_its_whole_process_group() {
    let b = bench().await;
    let marker = b.root().join("still-running");
    let command = format!("(sleep 2; touch {}) & sleep 30", marker.display());
    let started = Instant::now();
    let run = b.call("bash", json!({"command": command}));
    // The ToolCallActor's timeout drops the run: the same as cancelling it.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), run)
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !marker.exists(),
        "the background child was killed with the group"
    );
}

#[tokio::test]
async fn search_finds_lines_skips_binaries_and_rejects_bad_patterns() {
    let b = bench().await;
    std::fs::create_dir_all(b.root().join("src")).unwrap();
    std::fs::write(
        b.root().join("src/main.rs"),
        "fn main() {\n    println!(\"hi\");\n}\n",
    )
    .unwrap();
    std::fs::write(b.root().join("src/blob.bin"), b"main\0\x01").unwrap();
    assert_eq!(
        b.call("search", json!({"query": "fn ma+in"}))
            .await
            .unwrap(),
        "src/main.rs:1:fn main() {"
    );
    assert_eq!(
        b.call("search", json!({"query": "nothing-here"}))
            .await
            .unwrap(),
        "(no matches)"
    );
    assert!(
        b.call("search", json!({"query": "(unclosed"}))
            .await
            .unwrap_err()
            .starts_with("invalid pattern")
    );
    assert!(
        b.call("search", json!({"query": "x", "path": "/etc"}))
            .await
            .unwrap_err()
            .contains("outside")
    );
}

#[tokio::test]
async fn memories_are_remembered_recalled_and_forgotten() {
    let b = bench().await;
    assert_eq!(
        b.call(
            "remember",
            json!({"key": "Build Command", "value": "cargo build --release"})
        )
        .await
        .unwrap(),
        "Remembered build_command"
    );
    assert_eq!(
        b.call("recall", json!({"query": "cargo"})).await.unwrap(),
        "build_command: cargo build --release"
    );
    assert_eq!(
        b.call("recall", json!({})).await.unwrap(),
        "build_command: cargo build --release"
    );
    assert_eq!(
        b.call("forget", json!({"key": "build-command"}))
            .await
            .unwrap(),
        "Forgot build-command"
    );
    assert_eq!(
        b.call("forget", json!({"key": "build-command"}))
            .await
            .unwrap_err(),
        "no note named build-command"
    );
    assert_eq!(
        b.call("recall", json!({"query": "cargo"})).await.unwrap(),
        "(nothing found)"
    );
    assert_eq!(
        b.call("remember", json!({"key": "k"})).await.unwrap_err(),
        "missing required argument 'value'"
    );
}

#[tokio::test]
async fn approval_defaults_follow_turnstone() {
    let b = bench().await;
    let needs: Vec<(&str, bool)> = [
        "bash",
        "edit_file",
        "forget",
        "read_file",
        "recall",
        "remember",
        "search",
        "write_file",
    ]
    .into_iter()
    .map(|n| (n, b.tools.get(n).unwrap().needs_approval()))
    .collect();
    assert_eq!(
        needs,
        [
            ("bash", true),
            ("edit_file", true),
            ("forget", false),
            ("read_file", false),
            ("recall", false),
            ("remember", false),
            ("search", false),
            ("write_file", true)
        ]
    );
}

#[tokio::test]
async fn math_evaluates_in_a_restricted_python() {
    let b = bench().await;
    let m = |code: &str| b.call("math", json!({"code": code}));
    assert_eq!(m("2**100 % 7").await.unwrap(), "2");
    assert_eq!(m("x = 3\nresult = x * 7").await.unwrap(), "result = 21");
    assert_eq!(
        m("from fractions import Fraction\nFraction(1, 3) + Fraction(1, 6)")
            .await
            .unwrap(),
        "1/2"
    );
    assert_eq!(m("print(sqrt(16))").await.unwrap(), "4.0");
    assert_eq!(
        b.call("math", json!({"code": ["a = 2", "a ** 3"]}))
            .await
            .unwrap(),
        "8",
        "code as a list of lines"
    );
    assert_eq!(
        m("x = 1").await.unwrap(),
        "No output. Add print() to see results."
    );
    assert!(m("1/0").await.unwrap().starts_with("Error:\n"));
    assert!(m("1/0").await.unwrap().contains("ZeroDivisionError"));
    assert!(
        m("def f(:").await.unwrap().starts_with("Error:\n"),
        "syntax errors are reported"
    );
}

#[tokio::test]
async fn math_refuses_escapes_from_the_sandbox() {
    let b = bench().await;
    let m = |code: &str| b.call("math", json!({"code": code}));
    assert_eq!(
        m("import os").await.unwrap(),
        "Error:\nimport of os is not allowed"
    );
    assert_eq!(
        m("from subprocess import run").await.unwrap(),
        "Error:\nimport of subprocess is not allowed"
    );
    assert_eq!(
        m("open('/etc/passwd').read()").await.unwrap(),
        "Error:\ncalling open() is not allowed"
    );
    assert_eq!(
        m("().__class__.__bases__").await.unwrap(),
        "Error:\naccess to __bases__ is not allowed"
    );
    assert_eq!(
        m("__import__('os')").await.unwrap(),
        "Error:\ncalling __import__() is not allowed"
    );
    let sneaky = m("m = __builtins__").await.unwrap();
    assert!(sneaky.starts_with("Error:"), "{sneaky}");
    let bomb = m("x = bytearray(4 * 1024 ** 3)").await.unwrap();
    assert!(bomb.contains("MemoryError"), "memory is bounded: {bomb}");
}

#[tokio::test]
async fn math_that_never_ends_is_stopped_by_the_timeout() {
    let b = bench().await;
    let run = b.call("math", json!({"code": "while True:\n    pass"}));
    assert!(
        tokio::time::timeout(Duration::from_millis(800), run)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn man_pages_are_plain_text_and_names_are_checked() {
    let b = bench().await;
    let page = b.call("man", json!({"page": "ls"})).await.unwrap();
    assert!(
        page.contains("NAME") && page.contains("list directory contents"),
        "{}",
        &page[..200.min(page.len())]
    );
    assert!(
        !page.contains('\u{8}') && !page.contains('\u{1b}'),
        "no overstrike or escapes"
    );
    assert!(
        b.call("man", json!({"page": "ls; rm -rf ~"}))
            .await
            .unwrap_err()
            .starts_with("invalid page name")
    );
    assert!(
        b.call("man", json!({"page": "ls", "section": "12"}))
            .await
            .unwrap_err()
            .starts_with("invalid section")
    );
    assert_eq!(
        b.call("man", json!({"page": "no-such-page-xyz"}))
            .await
            .unwrap_err(),
        "no manual entry for no-such-page-xyz"
    );
}
