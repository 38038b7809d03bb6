//! `math`: Python in a separate, restricted process (SPEC §6.1).

use std::process::Stdio;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::provider::ToolSpec;
use crate::tools::{Tool, ToolContext, ToolOutput};

/// The sandbox runner, run with `python3 -I` (isolated: no site, no user paths, no env).
const RUNNER: &str = include_str!("math_runner.py");

/// The math tool.
#[derive(Debug)]
pub struct Math;

fn code_arg(args: &Value) -> Result<String, String> {
    match &args["code"] {
        Value::String(s) => Ok(s.clone()),
        Value::Array(lines) => Ok(lines
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n")),
        _ => Err("missing required argument 'code'".into()),
    }
}

#[async_trait]
impl Tool for Math {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "math".into(),
            description: "Evaluate Python for calculations (math, fractions, statistics; sympy and numpy when installed). \
                          The last bare expression is printed."
                .into(),
            parameters: json!({"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        true
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("code")
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        code_arg(args).map(|_| ())
    }
    async fn run(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, String> {
        let code = code_arg(&args)?;
        let mut child = tokio::process::Command::new("python3")
            .args(["-I", "-c", RUNNER])
            .current_dir(&ctx.workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "math needs python3, which is not installed".to_owned()
                }
                _ => format!("could not start python3: {e}"),
            })?;
        let _group = super::process::GroupGuard::new(child.id());
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(code.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
        }
        // Both pipes drained at once: a full stderr pipe must not stall stdout, or vice versa.
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (out, err) = tokio::join!(super::capture::drain(stdout), super::capture::drain(stderr));
        let (out, err) = (out.into_text(), err.into_text());
        let _ = child.wait().await;
        let text = match (out.trim(), err.trim()) {
            ("", "") => "No output. Add print() to see results.".to_owned(),
            ("", e) => format!("Error:\n{e}"),
            (o, _) => o.to_owned(),
        };
        Ok(ToolOutput::text(text))
    }
}
