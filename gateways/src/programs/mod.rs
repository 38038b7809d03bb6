//! Every Turnstone program as a function, and the multi-call dispatch by program name.
//!
//! Each `src/bin/` target calls its program here. The `turnstone` binary is also a multi-call
//! binary: started under another program's name (a symlink `turnstone-server → turnstone`, as
//! the container image installs them), it runs that program. One binary links the engine once
//! instead of eight times.

use std::ffi::OsStr;
use std::fmt::Display;
use std::path::Path;
use std::process::ExitCode;

use turnstone_actors::config::{self, EngineArgs, TurnstoneConfig};
use turnstone_runtime::telemetry::{LogFormat, LogSettings, TelemetryGuard, init_logging};

pub mod admin;
pub mod bridge;
pub mod channel;
pub mod console;
pub mod eval;
pub mod repl;
pub mod server;

/// One program: the name it is installed under and its `main`.
#[derive(Debug)]
pub struct Program {
    pub name: &'static str,
    pub main: fn() -> ExitCode,
}

/// Every program; the first, the REPL, is the one a name not listed runs.
pub const PROGRAMS: [Program; 8] = [
    Program {
        name: "turnstone",
        main: repl::main,
    },
    Program {
        name: "turnstone-server",
        main: server::main,
    },
    Program {
        name: "turnstone-bridge",
        main: bridge::main,
    },
    Program {
        name: "turnstone-console",
        main: console::main,
    },
    Program {
        name: "turnstone-channel",
        main: channel::main,
    },
    Program {
        name: "turnstone-admin",
        main: admin::main,
    },
    Program {
        name: "turnstone-eval",
        main: eval::main,
    },
    Program {
        name: "turnstone-sim",
        main: turnstone_sim::program::main,
    },
];

/// The program a binary started as `argv0` runs: the one named like the file name of `argv0`
/// (a trailing `.exe` ignored), else the REPL.
pub fn by_name(argv0: Option<&OsStr>) -> &'static Program {
    let name = argv0
        .map(Path::new)
        .and_then(Path::file_stem)
        .and_then(OsStr::to_str)
        .unwrap_or("turnstone");
    PROGRAMS
        .iter()
        .find(|program| program.name == name)
        .unwrap_or(&PROGRAMS[0])
}

/// Says `error: {message}` and gives the exit code to end with (2: bad configuration).
fn fail(message: impl Display, code: u8) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// The configuration from the file, the environment and `engine`'s flags; exit code 2 when
/// it does not load.
fn load_config(engine: &EngineArgs) -> Result<TurnstoneConfig, ExitCode> {
    config::load(engine, std::env::vars()).map_err(|e| fail(e, 2))
}

/// Logs at `level` in `format`, and traces when `traces` says where (the configured OTLP
/// endpoint, as `instance` of `service`); exit code 2 when they cannot start.
fn start_logging(
    service: &str,
    level: String,
    format: LogFormat,
    traces: Option<(&TurnstoneConfig, Option<&str>)>,
) -> Result<TelemetryGuard, ExitCode> {
    let traces = match traces {
        Some((config, instance)) => {
            crate::telemetry::traces(config, instance).map_err(|e| fail(e, 2))?
        }
        None => Default::default(),
    };
    init_logging(&LogSettings {
        level,
        format,
        service: service.to_owned(),
        traces,
    })
    .map_err(|e| fail(e, 2))
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what systemd, Kubernetes and `docker stop` send):
/// the programs then stop cleanly.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlinked_name_picks_its_program_and_anything_else_is_the_repl() {
        let name = |argv0: &str| by_name(Some(OsStr::new(argv0))).name;
        assert_eq!(name("/usr/local/bin/turnstone-server"), "turnstone-server");
        assert_eq!(name("turnstone-sim"), "turnstone-sim");
        assert_eq!(name("/opt/bin/turnstone-console.exe"), "turnstone-console");
        assert_eq!(name("./target/release/turnstone"), "turnstone");
        assert_eq!(name("my-renamed-copy"), "turnstone");
        assert_eq!(by_name(None).name, "turnstone");
        let mut names: Vec<_> = PROGRAMS.iter().map(|p| p.name).collect();
        names.dedup();
        assert_eq!(names.len(), PROGRAMS.len(), "a name twice");
    }
}
