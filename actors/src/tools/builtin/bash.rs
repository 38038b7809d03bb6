//! `bash`: runs a command in its own process group (and pids cgroup where available), streams
//! stdout lines, and kills the whole group when the call ends, times out or is cancelled.

use std::process::Stdio;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::provider::ToolSpec;
use crate::tools::{Tool, ToolContext, ToolOutput};

/// Commands refused outright (substring match, as Turnstone).
const BLOCKED: [&str; 13] = [
    "rm -rf /",
    "rm -rf /*",
    "mkfs",
    "shutdown",
    "reboot",
    "halt",
    "poweroff",
    "dd if=",
    ":(){ :|:& };:",
    "> /dev/sda",
    "mv / ",
    "chmod -R 777 /",
    "chown -R ",
];

/// The bash tool.
#[derive(Debug)]
pub struct Bash;

/// Curly quotes and dashes that models emit, as ASCII.
fn ascii_punctuation(command: &str) -> String {
    command
        .chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' => '\'',
            '\u{201C}' | '\u{201D}' => '"',
            '\u{2013}' | '\u{2014}' => '-',
            other => other,
        })
        .collect()
}

#[async_trait]
impl Tool for Bash {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "bash".into(),
            description: "Run a bash command in the working directory; returns stdout, stderr and the exit code.".into(),
            parameters: json!({"type": "object", "properties": {"command": {"type": "string"}},
                "required": ["command"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        true
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("command")
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        let command = args["command"]
            .as_str()
            .ok_or("missing required argument 'command'")?;
        let command = ascii_punctuation(command);
        if command.trim().is_empty() {
            return Err("empty command".into());
        }
        match BLOCKED.iter().find(|b| command.contains(*b)) {
            Some(b) => Err(format!("Blocked: the command contains '{b}'")),
            None => Ok(()),
        }
    }
    async fn run(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, String> {
        self.validate(&args)?;
        let command = ascii_punctuation(args["command"].as_str().unwrap_or_default());
        let script = tempfile::Builder::new()
            .prefix("turnstone-")
            .suffix(".sh")
            .tempfile()
            .map_err(|e| format!("could not write the script: {e}"))?;
        std::fs::write(script.path(), &command)
            .map_err(|e| format!("could not write the script: {e}"))?;
        // Inside a pids cage where the host has one: the wrapper enters it before `exec`, so
        // every descendant is counted and a fork bomb stops at the limit.
        let cage = super::process::PidCage::create(super::process::MAX_TASKS);
        let mut command = tokio::process::Command::new("bash");
        match &cage {
            Some(cage) => command
                .args([
                    "-c",
                    "echo $$ > \"$1\" || exit 126; exec bash \"$2\"",
                    "turnstone-bash",
                ])
                .arg(cage.procs_file())
                .arg(script.path()),
            None => command.arg(script.path()),
        };
        let mut child = command
            .current_dir(&ctx.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start bash: {e}"))?;
        // Dropped in reverse order: the group is killed first, then the cage is emptied.
        let _cage = cage;
        let _group = super::process::GroupGuard::new(child.id());
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let err_task = tokio::spawn(super::capture::drain(stderr));
        let capture = super::capture::drain_lines(stdout, |line| ctx.emit(line)).await;
        let status = child.wait().await.map_err(|e| format!("bash: {e}"))?;
        let mut out = capture.into_text();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        let err = err_task.await.map(|c| c.into_text()).unwrap_or_default();
        if !err.is_empty() {
            out.push_str(&err);
        }
        if out.trim().is_empty() {
            out = "(no output)\n".into();
        }
        match status.code() {
            Some(0) => {}
            Some(code) => out.push_str(&format!("[exit code: {code}]")),
            None => out.push_str("[killed by a signal]"),
        }
        Ok(ToolOutput::text(out.trim_end().to_owned()))
    }
}
