//! Every Turnstone program as a function, and the multi-call dispatch by program name.
//!
//! Each `src/bin/` target calls its program here. The `turnstone` binary is also a multi-call
//! binary: started under another program's name (a symlink `turnstone-server → turnstone`, as
//! the container image installs them), it runs that program. One binary links the engine once
//! instead of eight times.

use std::ffi::OsStr;
use std::path::Path;
use std::process::ExitCode;

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
