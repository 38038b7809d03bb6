//! Slash commands sent with `POST /v1/api/command`: parsed as the REPL parses them, answered
//! as `info` events on the workstream's stream (errors as "Command error: …").

use std::sync::Arc;

use serde_json::json;
use turnstone_actors::config::ReasoningEffort;
use turnstone_actors::workstream::{Setting, WorkstreamHandle};

use super::ServerState;
use super::hub::{WsLog, info};
use crate::repl::commands::{self, Command, WsCommand};

/// Runs `line` against `ws`, publishing what it says on `log`.
pub async fn run(state: &Arc<ServerState>, ws: &WorkstreamHandle, log: &WsLog, line: &str) {
    let line = if line.starts_with('/') {
        line.to_owned()
    } else {
        format!("/{line}")
    };
    match execute(state, ws, log, commands::parse(&line)).await {
        Ok(Some(text)) => {
            log.publish(info(&text));
        }
        Ok(None) => {}
        Err(e) => {
            log.publish(
                json!({"type": "error", "message": format!("Command error: {e}")}).to_string(),
            );
        }
    }
}

async fn execute(
    state: &Arc<ServerState>,
    ws: &WorkstreamHandle,
    log: &WsLog,
    command: Command,
) -> Result<Option<String>, String> {
    let store = state.node.store.as_ref();
    let e = |e: &dyn std::fmt::Display| e.to_string();
    Ok(Some(match command {
        Command::Help => commands::HELP.to_owned(),
        Command::Invalid(message) => return Err(message),
        Command::Exit => "Close the tab or the workstream to end it.".to_owned(),
        Command::Clear | Command::New => {
            ws.configure(Setting::Clear).await.map_err(|x| e(&x))?;
            log.publish(json!({"type": "clear_ui"}).to_string());
            return Ok(None);
        }
        Command::Instructions(None) => ws
            .settings()
            .await
            .map_err(|x| e(&x))?
            .instructions
            .unwrap_or_else(|| "(none)".into()),
        Command::Instructions(Some(text)) => {
            ws.configure(Setting::Instructions(Some(text)))
                .await
                .map_err(|x| e(&x))?;
            "Instructions set.".into()
        }
        Command::Name(None) => format!("session {}", ws.session_id()),
        Command::Name(Some(alias)) => {
            let store = store.ok_or("no database")?;
            store
                .set_alias(ws.session_id(), &alias)
                .await
                .map_err(|x| e(&x))?;
            state
                .node
                .manager
                .rename(ws.ws_id(), &alias)
                .map_err(|x| e(&x))?;
            format!("Session named {alias}")
        }
        Command::Ws(WsCommand::Rename(name)) => {
            state
                .node
                .manager
                .rename(ws.ws_id(), &name)
                .map_err(|x| e(&x))?;
            format!("Workstream renamed to {name}")
        }
        Command::Model(None) => {
            let current = ws.status().await.map_err(|x| e(&x))?.model_alias;
            state
                .node
                .router
                .lanes()
                .map(|l| {
                    let mark = if l.alias == current { "*" } else { " " };
                    format!(
                        "{mark} {} — {} (context {})",
                        l.alias, l.model, l.context_window
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        Command::Model(Some(alias)) => {
            ws.set_model(&alias).await.map_err(|x| e(&x))?;
            format!("Model switched to {alias}")
        }
        Command::Reason(None) => {
            let settings = ws.settings().await.map_err(|x| e(&x))?;
            format!("Reasoning effort: {:?}", settings.reasoning_effort).to_lowercase()
        }
        Command::Reason(Some(level)) => {
            let name = commands::reason_level(&level)
                .ok_or_else(|| format!("unknown reasoning level {level:?}"))?;
            let effort = ReasoningEffort::try_from(name.to_owned()).map_err(|x| e(&x))?;
            ws.configure(Setting::ReasoningEffort(effort))
                .await
                .map_err(|x| e(&x))?;
            format!("Reasoning effort set to {name}")
        }
        Command::Creative => {
            let on = !ws.settings().await.map_err(|x| e(&x))?.creative;
            ws.configure(Setting::Creative(on))
                .await
                .map_err(|x| e(&x))?;
            if on {
                "Creative mode on (no tools).".into()
            } else {
                "Creative mode off.".into()
            }
        }
        Command::Compact => {
            ws.compact().await.map_err(|x| e(&x))?;
            "Conversation compacted.".into()
        }
        Command::Mcp => {
            if state.node.mcp.is_empty() {
                "No MCP servers configured.".into()
            } else {
                state
                    .node
                    .mcp
                    .iter()
                    .map(|s| match &s.tools {
                        Ok(tools) => {
                            format!("{}: {} tools ({})", s.name, tools.len(), tools.join(", "))
                        }
                        Err(why) => format!("{}: unavailable — {why}", s.name),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Command::Sessions => {
            let store = store.ok_or("no database")?;
            let sessions = store.list_sessions(20).await.map_err(|x| e(&x))?;
            if sessions.is_empty() {
                "No saved sessions.".into()
            } else {
                sessions
                    .into_iter()
                    .map(|s| {
                        let name = s.alias.or(s.title).unwrap_or_default();
                        format!(
                            "{}  {:>4} msgs  {}  {name}",
                            crate::server::short(&s.session_id, 12),
                            s.message_count,
                            s.updated
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Command::History(query) => {
            let store = store.ok_or("no database")?;
            let query = query.ok_or("usage: /history <query>")?;
            let hits = store.search_history(&query, 20).await.map_err(|x| e(&x))?;
            if hits.is_empty() {
                "No matches.".into()
            } else {
                hits.into_iter()
                    .map(|h| {
                        format!(
                            "[{} {}] {}: {}",
                            crate::server::short(&h.session_id, 8),
                            h.timestamp,
                            h.role,
                            h.content.lines().next().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Command::Resume(_) => {
            return Err(
                "open the session from the sessions list (it starts a new workstream)".into(),
            );
        }
        Command::Delete(key) => {
            let store = store.ok_or("no database")?;
            let id = store.resolve_session(&key).await.map_err(|x| e(&x))?;
            if id == ws.session_id() {
                return Err("cannot delete the active session".into());
            }
            store.delete_session(&id).await.map_err(|x| e(&x))?;
            format!("Deleted session {id}")
        }
        Command::Raw | Command::Debug => {
            "This is a terminal setting; the browser shows reasoning in its own panel.".into()
        }
        Command::Ws(_) | Command::Cluster(_) => {
            return Err("manage workstreams with the tabs".into());
        }
    }))
}
