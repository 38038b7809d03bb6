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
        tools: builtin_tools(Some(store), Default::default(), None, Vec::new()),
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
            turn: 1,
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
async fn bash_output_of_any_size_is_bounded_and_never_stalls_the_command() {
    let b = bench().await;
    // 200 MiB on stdout, one 8 MiB line without a newline, and 5 MiB on stderr.
    let command = "head -c 209715200 /dev/zero | tr '\\0' 'x' | fold -w 100; \
                   head -c 8388608 /dev/zero | tr '\\0' 'y'; echo; \
                   head -c 5242880 /dev/zero | tr '\\0' 'e' >&2; echo done";
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        b.call("bash", json!({"command": command})),
    )
    .await
    .expect("a command with huge output still finishes")
    .unwrap();
    // at most 4 MiB head + 1 MiB tail per stream, of 213 MiB written
    assert!(
        out.len() <= 10 * 1024 * 1024 + 200,
        "kept output is bounded: {} bytes",
        out.len()
    );
    assert!(out.starts_with("xxxx"), "the head is kept");
    assert!(out.contains("bytes of output dropped"));
    assert!(out.contains("\ndone\n"), "the tail of stdout is kept");
    assert!(out.ends_with("eee"), "stderr follows, bounded too");
    eprintln!("200 MiB of output handled in {:?}", started.elapsed());
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

fn processes_matching(pattern: &str) -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn host_processes() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bombs_are_bounded_by_the_pids_cage_and_killed_with_the_call() {
    use turnstone_actors::tools::builtin::{MAX_TASKS, PidCage};
    if !PidCage::available() {
        eprintln!("skipped: no writable cgroup pids controller on this host");
        return;
    }
    let b = bench().await;
    let baseline = host_processes();

    // A wide bomb that asks for 3x the limit, plus a child that leaves the process group.
    let command =
        "for i in $(seq 3000); do sleep 7731 & done 2>/dev/null; setsid sleep 7732 & wait";
    let run = b.call("bash", json!({"command": command}));
    let sampler = tokio::task::spawn_blocking(|| {
        let until = Instant::now() + Duration::from_millis(3500);
        let mut most = 0;
        while Instant::now() < until {
            most = most.max(processes_matching("sleep 773[12]"));
            std::thread::sleep(Duration::from_millis(100));
        }
        most
    });
    let cut = tokio::time::timeout(Duration::from_secs(4), run).await;
    assert!(cut.is_err(), "the bomb ran until the call was cut");
    let running = sampler.await.unwrap();
    assert!(running > 100, "the bomb did run ({running} processes)");
    assert!(
        running <= MAX_TASKS as usize,
        "at most the cage's limit ran: {running}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_matching("sleep 773[12]") > 0 {
        assert!(
            Instant::now() < deadline,
            "bomb processes outlived the call"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The classic recursive bomb (renamed past the blocked list): bounded, then gone.
    let run = b.call("bash", json!({"command": "b(){ b | b & }; b; sleep 30"}));
    assert!(
        tokio::time::timeout(Duration::from_secs(3), run)
            .await
            .is_err()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while host_processes() > baseline + 64 {
        assert!(
            Instant::now() < deadline,
            "{} processes remain (baseline {baseline})",
            host_processes()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the host still forks.
    assert_eq!(
        b.call("bash", json!({"command": "echo alive"}))
            .await
            .unwrap(),
        "alive"
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

mod web_fetch {
    use std::net::SocketAddr;

    use serde_json::json;
    use turnstone_actors::tools::Tool;
    use turnstone_actors::tools::builtin::WebFetch;
    use warp::{Filter, Reply};

    async fn serve<F>(routes: F) -> SocketAddr
    where
        F: Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
            + Clone
            + Send
            + Sync
            + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        addr
    }

    fn redirect(to: String) -> warp::reply::Response {
        let uri: warp::http::Uri = to.parse().unwrap();
        warp::redirect::found(uri).into_response()
    }

    async fn fetch(tool: &WebFetch, url: &str) -> Result<String, String> {
        let args = json!({"url": url, "question": "what is it?"});
        tool.validate(&args)?;
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let ctx = turnstone_actors::tools::ToolContext {
            workdir: std::env::temp_dir(),
            session_id: "s".into(),
            call_id: "c".into(),
            turn: 1,
            output: tx,
            approver: None,
        };
        tool.run(args, ctx).await.map(|o| o.text)
    }

    #[tokio::test]
    async fn pages_are_fetched_as_text_and_private_hops_refused() {
        let other =
            serve(warp::get().map(|| warp::reply::html("internal secret").into_response())).await;
        let big = "x".repeat(12 * 1024 * 1024);
        let routes = warp::path("page")
            .map(|| {
                warp::reply::html(
                    "<h1>Hello &amp; welcome</h1><script>evil()</script><p>Body text.</p>",
                )
                .into_response()
            })
            .or(warp::path("in").map(|| redirect("/page".into())))
            .unify()
            .or(warp::path("out").map(move || redirect(format!("http://{other}/"))))
            .unify()
            .or(warp::path("big").map(move || warp::reply::Response::new(big.clone().into())))
            .unify();
        let addr = serve(routes).await;
        let tool = WebFetch::new(None).allowing(vec![addr]);

        let page = fetch(&tool, &format!("http://{addr}/page")).await.unwrap();
        assert_eq!(
            page,
            format!("Content of http://{addr}/page:\nHello & welcome\n\nBody text.")
        );
        let followed = fetch(&tool, &format!("http://{addr}/in")).await.unwrap();
        assert!(
            followed.contains("Hello & welcome"),
            "redirects to allowed hops are followed"
        );
        let out = fetch(&tool, &format!("http://{addr}/out"))
            .await
            .unwrap_err();
        assert!(
            out.contains("not a public address"),
            "a redirect into another local service is refused: {out}"
        );
        let big = fetch(&tool, &format!("http://{addr}/big")).await.unwrap();
        assert!(
            big.len() < 60_000 && big.contains("chars truncated"),
            "bounded: {} bytes",
            big.len()
        );
    }

    #[tokio::test]
    async fn private_and_odd_targets_are_refused_before_connecting() {
        let tool = WebFetch::new(None);
        for url in [
            "http://127.0.0.1:1/",
            "http://localhost:1/",
            "http://[::1]:1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]:1/",
            "http://10.0.0.1/",
            "http://0.0.0.0:1/",
        ] {
            let err = fetch(&tool, url).await.unwrap_err();
            assert!(err.contains("not a public address"), "{url}: {err}");
        }
        assert_eq!(
            fetch(&tool, "file:///etc/passwd").await.unwrap_err(),
            "only http and https URLs can be fetched, not file"
        );
        assert!(
            fetch(&tool, "not a url")
                .await
                .unwrap_err()
                .starts_with("invalid URL")
        );
    }

    /// Answers the allowed server first, then (rebinding) an internal one.
    #[derive(Debug)]
    struct Rebinding {
        first: SocketAddr,
        then: SocketAddr,
        asked: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl turnstone_actors::tools::builtin::Resolve for Rebinding {
        async fn resolve(&self, _host: &str, _port: u16) -> std::io::Result<Vec<SocketAddr>> {
            let n = self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(vec![if n == 0 { self.first } else { self.then }])
        }
    }

    #[tokio::test]
    async fn dns_rebinding_cannot_redirect_the_pinned_connection() {
        let internal_hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hits = internal_hits.clone();
        let internal = serve(warp::get().map(move || {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            warp::reply::html("internal secret").into_response()
        }))
        .await;
        let public =
            serve(warp::get().map(|| warp::reply::html("<p>public page</p>").into_response()))
                .await;
        let resolver = std::sync::Arc::new(Rebinding {
            first: public,
            then: internal,
            asked: Default::default(),
        });
        let tool = WebFetch::new(None)
            .allowing(vec![public])
            .resolving_with(resolver.clone());
        let url = format!("http://rebind.example:{}/", public.port());
        let page = fetch(&tool, &url).await.unwrap();
        assert!(page.contains("public page"), "{page}");
        assert_eq!(
            internal_hits.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the connection went to the checked address, not a later answer"
        );
        // A second fetch sees the rebound (internal) answer at check time and is refused.
        let err = fetch(&tool, &url).await.unwrap_err();
        assert!(err.contains("not a public address"), "{err}");
        assert_eq!(internal_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
