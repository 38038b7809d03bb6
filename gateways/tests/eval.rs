#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `turnstone-eval` as its users run it: the binary against the scripted model endpoint (a
//! case that must pass, one that must fail, each match mode, pattern arguments, tools that
//! really run in each run's own directory, optimisation), against the real small model behind
//! llama.cpp, and with bad input.

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};
use turnstone_tests::llm::{ScriptedLlm, Turn};

async fn eval(dir: &Path, cases: &Value, args: &[&str]) -> Output {
    let file = dir.join("cases.json");
    std::fs::write(&file, cases.to_string()).unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstone-eval"))
        .arg(&file)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .env_remove("OPENAI_API_KEY")
        .output()
        .await
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn results(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("eval_results.json")).unwrap()).unwrap()
}

/// The scripted model: a bash `ls` for the listing, `cat` for the notes (not what that case
/// expects), a grep, two calls in one turn, and a closing answer after any tool result.
fn script(llm: &ScriptedLlm) {
    llm.route_latest(
        "ship on friday",
        Turn::text("The notes say ship on friday."),
    );
    llm.route_latest("\"role\":\"tool\"", Turn::text("Done."));
    llm.route_latest(
        "list the files here",
        Turn::new().tool_call("c1", "bash", &json!({"command": "ls"}).to_string()),
    );
    llm.route_latest(
        "what do the notes say",
        Turn::new().tool_call(
            "c2",
            "bash",
            &json!({"command": "cat notes.txt"}).to_string(),
        ),
    );
    llm.route_latest(
        "find the todo",
        Turn::new().tool_call(
            "c3",
            "bash",
            &json!({"command": "grep -rn todo ."}).to_string(),
        ),
    );
    llm.route_latest(
        "where am I and what is here",
        Turn::new()
            .tool_call("c4", "bash", &json!({"command": "ls"}).to_string())
            .tool_call("c5", "bash", &json!({"command": "pwd"}).to_string()),
    );
}

fn cases() -> Value {
    json!({"defaults": {"n_runs": 2}, "cases": [
        {"id": "lists", "user_prompt": "list the files here",
         "setup": {"files": {"notes.txt": "ship on friday", "src/app.py": "print(1)"}},
         "expected_actions": [{"tool": "bash", "args_pattern": {"command": "^ls"}}]},
        {"id": "reads", "user_prompt": "what do the notes say",
         "setup": {"files": {"notes.txt": "ship on friday"}},
         "expected_actions": [{"tool": "read_file", "args": {"path": "notes.txt"}}],
         "match_mode": "exact"},
        {"id": "finds", "user_prompt": "find the todo",
         "expected_actions": [{"tool": "search"}, {"tool": "bash", "args_pattern": {"command": "grep"}}],
         "match_mode": "contains_any"},
        {"id": "both", "user_prompt": "where am I and what is here",
         "expected_actions": [{"tool": "bash", "args_pattern": {"command": "^pwd$"}},
                              {"tool": "bash", "args": {"command": "ls"}}],
         "match_mode": "subset"}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_are_scored_by_mode_with_tools_run_in_their_own_directory() {
    let llm = ScriptedLlm::start().await.unwrap();
    script(&llm);
    let dir = tempfile::tempdir().unwrap();
    let out = eval(
        dir.path(),
        &cases(),
        &[
            "--base-url",
            &llm.base_url(),
            "--model",
            "scripted-model",
            "--no-optimize",
            "--parallel",
            "3",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let seen = results(dir.path());
    let it = &seen["iterations"][0];
    let rate = |case: &str| it["cases"][case]["pass_rate"].as_f64().unwrap();
    assert_eq!(rate("lists"), 1.0, "{it:#}");
    assert_eq!(rate("reads"), 0.0, "bash is not the expected read_file");
    assert_eq!(rate("finds"), 1.0, "contains_any takes the grep");
    assert_eq!(rate("both"), 1.0, "subset takes pwd and ls in any order");
    assert_eq!(it["aggregate"]["overall_pass_rate"], 0.75);
    let (lo, hi) = (
        it["aggregate"]["overall_pass_interval"][0]
            .as_f64()
            .unwrap(),
        it["aggregate"]["overall_pass_interval"][1]
            .as_f64()
            .unwrap(),
    );
    assert!(lo < 0.75 && 0.75 < hi && lo > 0.3, "{lo} {hi}");
    // Each run: its own directory with the case's files, the tool really ran there.
    for run in it["cases"]["lists"]["runs"].as_array().unwrap() {
        assert_eq!(run["calls"][0]["tool"], "bash");
        assert_eq!(run["final_content"], "Done.");
        assert_eq!(run["error"], Value::Null);
    }
    let reads = &it["cases"]["reads"]["runs"][0];
    assert_eq!(
        reads["final_content"], "The notes say ship on friday.",
        "cat read the setup file"
    );
    assert_eq!(reads["score"]["detail"], "Exact: 0/1 matched");
    assert_eq!(
        it["cases"]["reads"]["runs"].as_array().unwrap().len(),
        2,
        "n_runs from the file"
    );
    let tool_outputs: Vec<String> = llm
        .chat_bodies()
        .iter()
        .flat_map(|b| b["messages"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        tool_outputs
            .iter()
            .any(|o| o.contains("notes.txt") && o.contains("src")),
        "ls listed the seeded files: {tool_outputs:?}"
    );
    assert!(
        tool_outputs.iter().all(|o| !o.contains("eval_results")),
        "no run saw the eval's own directory"
    );
    // The system prompt under test is the one sent; the temperature is the eval's.
    let body = &llm.chat_bodies()[0];
    assert!(
        body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You are Turnstone")
    );
    assert_eq!(body["temperature"], 0.7);
    // The table, the report and the best prompt.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for id in ["lists", "reads", "finds", "both", "overall"] {
        assert!(stdout.contains(id), "{stdout}");
    }
    assert!(stdout.contains("75% ["), "{stdout}");
    let report = std::fs::read_to_string(dir.path().join("eval_results.html")).unwrap();
    assert!(report.contains("<svg") && report.contains("Pass rate per case"));
    assert!(
        std::fs::read_to_string(dir.path().join("eval_results.best_prompt.txt"))
            .unwrap()
            .starts_with("You are Turnstone")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_optimiser_revises_the_prompt_and_the_better_one_is_kept() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route_latest(
        "ship on friday",
        Turn::text("The notes say ship on friday."),
    );
    llm.route(
        "You improve the system prompt",
        Turn::text("Here you go:\n```\nRead files with read_file, never with cat.\n```"),
    );
    llm.route(
        "Read files with read_file, never with cat",
        Turn::new().tool_call("r1", "read_file", &json!({"path": "notes.txt"}).to_string()),
    );
    llm.route_latest(
        "what do the notes say",
        Turn::new().tool_call(
            "c2",
            "bash",
            &json!({"command": "cat notes.txt"}).to_string(),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let cases = json!({"cases": [{"id": "reads", "user_prompt": "what do the notes say",
        "setup": {"files": {"notes.txt": "ship on friday"}},
        "expected_actions": [{"tool": "read_file", "args": {"path": "notes.txt"}}]}]});
    let out = eval(
        dir.path(),
        &cases,
        &[
            "--base-url",
            &llm.base_url(),
            "--model",
            "scripted-model",
            "--n-runs",
            "1",
            "--max-iter",
            "3",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let seen = results(dir.path());
    let its = seen["iterations"].as_array().unwrap();
    assert_eq!(its.len(), 2, "stopped once every case passed");
    assert_eq!(its[0]["aggregate"]["overall_pass_rate"], 0.0);
    assert_eq!(its[1]["aggregate"]["overall_pass_rate"], 1.0);
    assert_eq!(
        its[1]["prompt"],
        "Read files with read_file, never with cat."
    );
    assert!(
        its[1]["prompt_diff"]
            .as_str()
            .unwrap()
            .contains("+Read files with read_file")
    );
    assert_eq!(seen["best"]["iteration"], 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("eval_results.best_prompt.txt")).unwrap(),
        "Read files with read_file, never with cat."
    );
    let optimiser = llm
        .chat_bodies()
        .into_iter()
        .find(|b| b.to_string().contains("You improve the system prompt"))
        .unwrap();
    let asked = optimiser["messages"][1]["content"].as_str().unwrap();
    assert!(
        asked.contains("[FAIL] reads") && asked.contains("[\"bash\"]"),
        "{asked}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("iteration 1: pass rate 100%"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_case_files_and_unknown_tools_stop_before_any_run() {
    let llm = ScriptedLlm::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = llm.base_url();
    let flags = [
        "--base-url",
        base.as_str(),
        "--model",
        "scripted-model",
        "--no-optimize",
    ];
    let out = eval(
        dir.path(),
        &json!({"cases": [{"id": "ok", "user_prompt": "hi"}, {"id": "broken"}]}),
        &flags,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("error: case broken: user_prompt: missing"),
        "{}",
        text(&out)
    );
    let out = eval(
        dir.path(),
        &json!({"cases": [{"id": "x", "user_prompt": "hi", "match_mode": "sometimes"}]}),
        &flags,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("case x: match_mode"), "{}", text(&out));
    let out = eval(
        dir.path(),
        &json!({"cases": [{"id": "t", "user_prompt": "hi",
            "expected_actions": [{"tool": "bash"}, {"tool": "teleport"}]}]}),
        &flags,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("case t: expected_actions: unknown tool \"teleport\"")
            && text(&out).contains("known tools: ")
            && text(&out).contains("read_file"),
        "{}",
        text(&out)
    );
    assert!(llm.chat_bodies().is_empty(), "nothing ran");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstone-eval"))
        .arg("--help")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--n-runs",
        "--max-iter",
        "--no-optimize",
        "--temperature",
        "--output",
        "--parallel",
        "--base-url",
    ] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_is_down_fails_each_run_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = json!({"cases": [
        {"id": "a", "user_prompt": "hi", "expected_actions": [{"tool": "bash"}]},
        {"id": "b", "user_prompt": "hello"}]});
    let started = std::time::Instant::now();
    let out = eval(
        dir.path(),
        &cases,
        &[
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--no-optimize",
            "--n-runs",
            "1",
            "--parallel",
            "2",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "never a hang"
    );
    let seen = results(dir.path());
    for case in ["a", "b"] {
        let run = &seen["iterations"][0]["cases"][case]["runs"][0];
        assert_eq!(run["score"]["pass"], false, "{run:#}");
        assert!(
            run["error"].as_str().unwrap().contains("unreachable"),
            "the reason is kept: {run:#}"
        );
    }
    assert_eq!(seen["iterations"][0]["aggregate"]["failed_runs"], 2);
    assert!(
        text(&out).contains("2 runs failed before acting"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_case_runs_on_the_real_small_model() {
    let url = std::env::var("TURNSTONE_TEST_LLAMA_URL")
        .expect("TURNSTONE_TEST_LLAMA_URL (run scripts/test, which starts llama.cpp)");
    let dir = tempfile::tempdir().unwrap();
    let cases = json!({"cases": [{"id": "greets", "user_prompt": "Say hello in one word.",
        "max_turns": 2}]});
    let out = eval(
        dir.path(),
        &cases,
        &[
            "--base-url",
            &url,
            "--no-optimize",
            "--n-runs",
            "1",
            "--max-tokens",
            "32",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let seen = results(dir.path());
    assert!(
        !seen["meta"]["model"].as_str().unwrap().is_empty(),
        "detected: {seen:#}"
    );
    let run = &seen["iterations"][0]["cases"]["greets"]["runs"][0];
    assert_eq!(run["score"]["pass"], true, "{run:#}");
    assert!(run["turns"].as_u64().unwrap() >= 1, "{run:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_model_from_the_config_file_is_used() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.route_latest("hi there", Turn::text("Hello."));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"http://127.0.0.1:9/v1\"\n[model]\nname = \"unused\"\n\
             [models.fast]\nbase_url = \"{}\"\nmodel = \"fast-model\"\n",
            llm.base_url()
        ),
    )
    .unwrap();
    let cases = json!({"cases": [{"id": "hi", "user_prompt": "hi there"}]});
    let out = eval(
        dir.path(),
        &cases,
        &[
            "--config",
            config.to_str().unwrap(),
            "--model",
            "fast",
            "--no-optimize",
            "--n-runs",
            "1",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let bodies = llm.chat_bodies();
    assert_eq!(bodies[0]["model"], "fast-model");
    assert_eq!(results(dir.path())["meta"]["model"], "fast-model");
    assert_eq!(
        results(dir.path())["iterations"][0]["cases"]["hi"]["pass_rate"],
        1.0
    );
}
