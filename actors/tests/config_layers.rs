#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every configuration layer, in the documented order: defaults < file < environment < flags,
//! and clear errors for bad input. The process environment is never touched: each test passes
//! its own snapshot.

use std::io::Write;

use clap::Parser;
use turnstone_actors::config::{self, DatabaseBackend, EngineArgs, ReasoningEffort, TokenRole};
use turnstone_runtime::telemetry::LogFormat;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    engine: EngineArgs,
}

fn args(argv: &[&str]) -> EngineArgs {
    Cli::try_parse_from(std::iter::once("turnstone").chain(argv.iter().copied()))
        .unwrap()
        .engine
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

fn config_file(body: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(body.as_bytes()).unwrap();
    f
}

const FILE: &str = r#"
[api]
base_url = "http://file:9000/v1"
api_key = "file-key"

[model]
temperature = 0.9
reasoning_effort = "high"
fallback = ["small", "tiny"]

[redis]
host = "file-redis"
port = 7000

[database]
backend = "postgresql"
url = "postgresql://file/db"

[[auth.tokens]]
value = "reader"
role = "read"

[models.small]
model = "qwen-0.5b"
provider = "openai"
context_window = 32768
"#;

#[test]
fn built_in_defaults_match_turnstone() {
    let c = config::load(&args(&[]), env(&[])).unwrap();
    assert_eq!(c.api.base_url, "http://localhost:8000/v1");
    assert_eq!(c.model.temperature, 0.5);
    assert_eq!(c.model.max_tokens, 32_768);
    assert_eq!(c.model.context_window, 131_072);
    assert_eq!(c.model.reasoning_effort, ReasoningEffort::Medium);
    assert_eq!(c.session.auto_compact_pct, 0.8);
    assert_eq!(c.tools.timeout, 30);
    assert_eq!(c.tools.agent_max_turns, -1);
    assert_eq!((c.server.host.as_str(), c.server.port), ("0.0.0.0", 8080));
    assert_eq!(c.server.max_workstreams, 10);
    assert_eq!(c.server.workstream_idle_timeout, 120);
    assert_eq!(c.health.circuit_breaker_threshold, 5);
    assert_eq!(c.health.circuit_breaker_cooldown, 60.0);
    assert!(c.auth.enabled);
    assert!(!c.ratelimit.enabled);
    assert_eq!(c.database.backend, DatabaseBackend::Sqlite);
    assert_eq!(c.database.path, ".turnstone.db");
    assert_eq!(c.redis.port, 6379);
}

#[test]
fn the_file_beats_defaults() {
    let f = config_file(FILE);
    let c = config::load(&args(&["--config", f.path().to_str().unwrap()]), env(&[])).unwrap();
    assert_eq!(c.api.base_url, "http://file:9000/v1");
    assert_eq!(c.model.temperature, 0.9);
    assert_eq!(c.model.reasoning_effort, ReasoningEffort::High);
    assert_eq!(c.model.fallback, ["small", "tiny"]);
    assert_eq!(c.database.backend, DatabaseBackend::Postgresql);
    assert_eq!(c.auth.tokens[0].role, TokenRole::Read);
    assert_eq!(c.models["small"].context_window, Some(32_768));
    assert_eq!(
        c.model.max_tokens, 32_768,
        "keys absent from the file keep defaults"
    );
}

#[test]
fn the_default_file_is_found_under_home_or_xdg_config_home() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".config/turnstone");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), "[server]\nport = 9999\n").unwrap();
    let home_str = home.path().to_str().unwrap();
    let c = config::load(&args(&[]), env(&[("HOME", home_str)])).unwrap();
    assert_eq!(c.server.port, 9999);

    let xdg = tempfile::tempdir().unwrap();
    let c = config::load(
        &args(&[]),
        env(&[
            ("HOME", home_str),
            ("XDG_CONFIG_HOME", xdg.path().to_str().unwrap()),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.server.port, 8080,
        "XDG_CONFIG_HOME wins; no file there is fine"
    );
}

#[test]
fn the_environment_beats_the_file() {
    let f = config_file(FILE);
    let c = config::load(
        &args(&["--config", f.path().to_str().unwrap()]),
        env(&[
            ("OPENAI_API_KEY", "env-key"),
            ("REDIS_HOST", "env-redis"),
            ("REDIS_PORT", "7100"),
            ("TURNSTONE_DB_BACKEND", "sqlite"),
            ("TURNSTONE_AUTH_ENABLED", "false"),
            ("TURNSTONE_LOG_FORMAT", "json"),
            ("TURNSTONE__MODEL__TEMPERATURE", "0.1"),
            ("UNRELATED", "ignored"),
        ]),
    )
    .unwrap();
    assert_eq!(c.api.api_key.as_deref(), Some("env-key"));
    assert_eq!((c.redis.host.as_str(), c.redis.port), ("env-redis", 7100));
    assert_eq!(c.database.backend, DatabaseBackend::Sqlite);
    assert!(!c.auth.enabled);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(
        c.model.temperature, 0.1,
        "generic TURNSTONE__SECTION__KEY form"
    );
    assert_eq!(
        c.api.base_url, "http://file:9000/v1",
        "untouched keys keep the file's value"
    );
}

#[test]
fn an_empty_variable_is_an_unset_one() {
    // What `${VAR:-}` in a compose file gives: the file's (or the default) value stands.
    let f = config_file(FILE);
    let c = config::load(
        &args(&["--config", f.path().to_str().unwrap()]),
        env(&[
            ("TURNSTONE_AUTH_TOKEN", ""),
            ("REDIS_HOST", ""),
            ("TURNSTONE__MODEL__NAME", ""),
            ("TURNSTONE__API__BASE_URL", ""),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.auth.token, None,
        "no empty token that empty credentials would match"
    );
    assert_eq!(c.model.name, None, "the model is still detected");
    assert_eq!(c.api.base_url, "http://file:9000/v1");
    assert_ne!(c.redis.host, "");
}

#[test]
fn flags_beat_the_environment() {
    let f = config_file(FILE);
    let c = config::load(
        &args(&[
            "--config",
            f.path().to_str().unwrap(),
            "--api-key",
            "flag-key",
            "--temperature",
            "0.3",
            "--reasoning-effort",
            "low",
            "--agent-max-turns",
            "-1",
            "--skip-permissions",
            "--log-format",
            "text",
        ]),
        env(&[
            ("OPENAI_API_KEY", "env-key"),
            ("TURNSTONE__MODEL__TEMPERATURE", "0.1"),
            ("TURNSTONE_LOG_FORMAT", "json"),
        ]),
    )
    .unwrap();
    assert_eq!(c.api.api_key.as_deref(), Some("flag-key"));
    assert_eq!(c.model.temperature, 0.3);
    assert_eq!(c.model.reasoning_effort, ReasoningEffort::Low);
    assert!(c.tools.skip_permissions);
    assert_eq!(c.log.format, LogFormat::Text);
}

fn load_err(body: &str) -> (String, String) {
    let f = config_file(body);
    let path = f.path().to_str().unwrap().to_owned();
    let err = config::load(&args(&["--config", &path]), env(&[])).unwrap_err();
    (err.to_string(), path)
}

#[test]
fn malformed_toml_names_the_file() {
    let (err, path) = load_err("[model\ntemperature = ");
    assert!(err.contains(&path), "{err}");
}

#[test]
fn a_wrong_type_names_the_file_key_and_expected_type() {
    let (err, path) = load_err("[model]\ntemperature = \"hot\"\n");
    assert!(err.contains(&path), "{err}");
    assert!(err.contains("model.temperature"), "{err}");
    assert!(err.contains("a floating point"), "{err}");
}

#[test]
fn an_unknown_key_or_value_is_named() {
    let (err, path) = load_err("[model]\ntemprature = 0.2\n");
    assert!(err.contains("unknown field `temprature`"), "{err}");
    assert!(err.contains("for key `model`"), "{err}");
    assert!(err.contains(&path), "{err}");
    let (err, path) = load_err("[model]\nreasoning_effort = \"extreme\"\n");
    assert!(
        err.contains(r#"unknown value "extreme", expected one of: none, minimal, low, medium"#),
        "{err}"
    );
    assert!(
        err.contains("model.reasoning_effort") && err.contains(&path),
        "{err}"
    );
    let (err, _) = load_err("[modle]\nx = 1\n");
    assert!(err.contains("unknown field `modle`"), "{err}");
    let (err, _) = load_err("[log]\nformat = \"yaml\"\n");
    assert!(err.contains("expected auto, json or text"), "{err}");
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let err = config::load(&args(&[]), env(&[("REDIS_PORT", "six")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("REDIS_PORT"), "{err}");
    assert!(err.contains("redis.port"), "{err}");
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    let err = config::load(
        &args(&["--config", "/nonexistent/turnstone.toml"]),
        env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(err, "config file /nonexistent/turnstone.toml not found");
}

#[test]
fn bad_flag_values_are_refused_by_the_parser() {
    let cli = Cli::try_parse_from(["turnstone", "--reasoning-effort", "extreme"]);
    let err = cli.err().unwrap().to_string();
    assert!(err.contains("invalid value 'extreme'"), "{err}");
    assert!(err.contains("medium"), "{err}");
}
