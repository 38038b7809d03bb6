//! The terminal REPL: one or more workstreams of a local node, driven from the keyboard.

pub mod cluster;
pub(crate) mod commands;
mod render;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, mpsc};
use turnstone_actors::config::ReasoningEffort;
use turnstone_actors::node::Node;
use turnstone_actors::workstream::{
    ManagerError, Setting, WorkstreamHandle, WorkstreamOptions, WsEvent,
};

pub use commands::{Command, HELP, WsCommand, parse, reason_level};
pub use render::{Markdown, Style};

/// The REPL failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    /// A workstream operation failed fatally.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The terminal could not be written.
    #[error("terminal: {0}")]
    Io(#[from] std::io::Error),
}

/// How the REPL looks, and the console `/cluster` asks.
#[derive(Clone, Debug)]
pub struct ReplOptions {
    /// ANSI colours (off with NO_COLOR or when not a terminal).
    pub color: bool,
    /// A spinner while the model thinks (terminals only).
    pub spinner: bool,
    /// The cluster console (`[console] url` / `--console-url`).
    pub console: Option<cluster::ConsoleClient>,
}

/// What the next input line answers.
enum Awaiting {
    Message,
    Approval,
    Plan,
}

struct Repl<'a> {
    node: &'a Node,
    style: Style,
    spinner_on: bool,
    console: Option<cluster::ConsoleClient>,
    workstreams: Vec<WorkstreamHandle>,
    current: usize,
    events: broadcast::Receiver<Arc<WsEvent>>,
    md: Markdown,
    awaiting: Awaiting,
    turn_running: bool,
    show_reasoning: bool,
    debug: bool,
    spinner: Option<ProgressBar>,
    out: std::io::Stdout,
}

/// Runs the REPL on the terminal until `/exit` or end of input.
pub async fn run(
    node: &Node,
    first: WorkstreamHandle,
    options: ReplOptions,
) -> Result<(), ReplError> {
    let style = Style::new(options.color);
    let mut repl = Repl {
        node,
        style,
        spinner_on: options.spinner,
        console: options.console,
        events: first.subscribe(),
        workstreams: vec![first],
        current: 0,
        md: Markdown::new(style),
        awaiting: Awaiting::Message,
        turn_running: false,
        show_reasoning: true,
        debug: false,
        spinner: None,
        out: std::io::stdout(),
    };
    repl.banner().await?;
    let (lines_tx, mut lines) = mpsc::channel::<String>(16);
    tokio::spawn(async move {
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = stdin.next_line().await {
            if lines_tx.send(line).await.is_err() {
                break;
            }
        }
    });
    repl.prompt()?;
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => {
                    if !repl.on_line(line).await? {
                        break;
                    }
                }
                None => break,
            },
            event = repl.events.recv() => match event {
                Ok(event) => repl.on_event(Arc::unwrap_or_clone(event)).await?,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    repl.say(&repl.style.error(&format!("(missed {n} events)")))?;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::signal::ctrl_c() => repl.on_interrupt()?,
        }
    }
    repl.stop_spinner();
    writeln!(repl.out)?;
    Ok(())
}

impl Repl<'_> {
    fn ws(&self) -> &WorkstreamHandle {
        &self.workstreams[self.current]
    }

    fn say(&mut self, text: &str) -> std::io::Result<()> {
        self.stop_spinner();
        writeln!(self.out, "{text}")?;
        self.out.flush()
    }

    fn prompt(&mut self) -> std::io::Result<()> {
        let text = match self.awaiting {
            Awaiting::Message => format!("{}> ", self.ws().name()),
            Awaiting::Approval => {
                "Approve? [y]es / [n]o / [a]lways, or type feedback to deny: ".into()
            }
            Awaiting::Plan => "Plan: [Enter] accept, n to reject, or type feedback: ".into(),
        };
        write!(self.out, "{}", self.style.bold(&text))?;
        self.out.flush()
    }

    fn stop_spinner(&mut self) {
        if let Some(s) = self.spinner.take() {
            s.finish_and_clear();
        }
    }

    async fn banner(&mut self) -> std::io::Result<()> {
        let lanes: Vec<String> = self
            .node
            .router
            .lanes()
            .map(|l| format!("{} ({})", l.alias, l.model))
            .collect();
        let line = format!(
            "turnstone — model {} · session {} · /help for commands",
            lanes.join(", "),
            self.ws().session_id()
        );
        let line = self.style.dim(&line);
        self.say(&line)
    }

    async fn switch_to(&mut self, index: usize) {
        self.current = index;
        self.events = self.ws().subscribe();
        self.awaiting = Awaiting::Message;
        self.turn_running = false;
    }

    fn on_interrupt(&mut self) -> std::io::Result<()> {
        if self.turn_running {
            let _ = self.ws().cancel();
            self.say(&self.style.notice("^C cancelling the turn…"))
        } else {
            writeln!(self.out)?;
            self.say(&self.style.dim("(Ctrl-D or /exit to quit)"))?;
            self.prompt()
        }
    }

    /// Handles one input line; false means quit.
    async fn on_line(&mut self, line: String) -> Result<bool, ReplError> {
        match self.awaiting {
            Awaiting::Approval => {
                self.awaiting = Awaiting::Message;
                let answer = line.trim();
                let (approved, always, feedback) = match answer.to_ascii_lowercase().as_str() {
                    "y" | "yes" | "" => (true, false, None),
                    "a" | "always" => (true, true, None),
                    "n" | "no" => (false, false, None),
                    _ => (false, false, Some(answer.to_owned())),
                };
                if let Err(e) = self.ws().approve(approved, feedback, always).await {
                    self.say(&self.style.error(&e.to_string()))?;
                }
                return Ok(true);
            }
            Awaiting::Plan => {
                self.awaiting = Awaiting::Message;
                if let Err(e) = self.ws().plan_feedback(line.trim()).await {
                    self.say(&self.style.error(&e.to_string()))?;
                }
                return Ok(true);
            }
            Awaiting::Message => {}
        }
        let text = line.trim();
        if text.is_empty() {
            self.prompt()?;
            return Ok(true);
        }
        if text.starts_with('/') {
            let keep_going = self.on_command(commands::parse(text)).await?;
            if keep_going && !self.turn_running {
                self.prompt()?;
            }
            return Ok(keep_going);
        }
        match self.ws().send(text).await {
            Ok(()) => self.turn_running = true,
            Err(e) => {
                self.say(&self.style.error(&e.to_string()))?;
                self.prompt()?;
            }
        }
        Ok(true)
    }

    async fn on_event(&mut self, event: WsEvent) -> Result<(), ReplError> {
        let style = self.style;
        match event {
            WsEvent::ThinkingStart => {
                if self.spinner_on {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(ProgressStyle::default_spinner());
                    bar.set_message("thinking…");
                    bar.enable_steady_tick(Duration::from_millis(100));
                    self.spinner = Some(bar);
                }
            }
            WsEvent::ThinkingStop => {
                self.stop_spinner();
                let rest = self.md.finish();
                write!(self.out, "{rest}")?;
            }
            WsEvent::Content { text } => {
                self.stop_spinner();
                let rendered = self.md.push(&text);
                write!(self.out, "{rendered}")?;
                self.out.flush()?;
            }
            WsEvent::Reasoning { text } => {
                if self.show_reasoning {
                    self.stop_spinner();
                    write!(self.out, "{}", style.dim(&text))?;
                    self.out.flush()?;
                }
            }
            WsEvent::ToolInfo { items } => {
                for item in items {
                    let line = match &item.error {
                        Some(e) => style.error(&format!("⚙ {} — {e}", item.header)),
                        None => style.notice(&format!("⚙ {}", item.header)),
                    };
                    self.say(&line)?;
                }
            }
            WsEvent::ApproveRequest { items } => {
                for item in items {
                    let mark = if item.needs_approval { "⚠" } else { "⚙" };
                    self.say(&style.notice(&format!("{mark} {}", item.header)))?;
                }
                self.awaiting = Awaiting::Approval;
                self.prompt()?;
            }
            WsEvent::ToolOutputChunk { chunk, .. } => {
                self.say(&style.dim(&format!("  │ {chunk}")))?;
            }
            WsEvent::ToolResult { name, output, .. } => {
                let first = output.lines().next().unwrap_or("");
                let lines = output.lines().count();
                let more = if lines > 1 {
                    format!(" (+{} lines)", lines - 1)
                } else {
                    String::new()
                };
                self.say(&style.ok(&format!("✓ {name}: {first}{more}")))?;
            }
            WsEvent::PlanReview { content } => {
                self.say(&style.bold("Proposed plan:"))?;
                let plan = Markdown::new(style).push(&format!("{content}\n"));
                write!(self.out, "{plan}")?;
                self.awaiting = Awaiting::Plan;
                self.prompt()?;
            }
            WsEvent::Status {
                prompt_tokens,
                context_window,
                pct,
                ..
            } => {
                if self.debug {
                    self.say(&style.dim(&format!(
                        "[context {prompt_tokens}/{context_window} tokens, {pct}%]"
                    )))?;
                }
            }
            WsEvent::Info { message } => self.say(&style.notice(&message))?,
            WsEvent::Error { message } | WsEvent::BusyError { message } => {
                self.say(&style.error(&message))?;
            }
            WsEvent::StreamEnd => {
                let rest = self.md.finish();
                write!(self.out, "{rest}")?;
                self.turn_running = false;
                self.awaiting = Awaiting::Message;
                writeln!(self.out)?;
                self.prompt()?;
            }
        }
        Ok(())
    }

    async fn new_workstream(
        &mut self,
        name: Option<&str>,
        resume: Option<&str>,
    ) -> Result<Option<usize>, ReplError> {
        match self
            .node
            .manager
            .create(name, WorkstreamOptions::default(), resume)
            .await
        {
            Ok(ws) => {
                self.workstreams.push(ws);
                Ok(Some(self.workstreams.len() - 1))
            }
            Err(e) => {
                self.say(&self.style.error(&e.to_string()))?;
                Ok(None)
            }
        }
    }

    /// Replaces the current workstream with `index` (used by /new and /resume).
    async fn replace_current(&mut self, index: usize) -> Result<(), ReplError> {
        let old = self.current;
        let old_id = self.ws().ws_id().to_owned();
        self.switch_to(index).await;
        let _ = self.node.manager.close(&old_id).await;
        self.workstreams.remove(old);
        self.current = self.workstreams.len() - 1;
        Ok(())
    }

    /// Runs a command; false means quit.
    async fn on_command(&mut self, command: Command) -> Result<bool, ReplError> {
        let style = self.style;
        let store = self.node.store.clone();
        match command {
            Command::Exit => return Ok(false),
            Command::Help => self.say(commands::HELP)?,
            Command::Invalid(message) => self.say(&style.error(&message))?,
            Command::Clear => match self.ws().configure(Setting::Clear).await {
                Ok(()) => self.say("Conversation cleared.")?,
                Err(e) => self.say(&style.error(&e.to_string()))?,
            },
            Command::Instructions(None) => {
                let settings = self.ws().settings().await?;
                let text = settings.instructions.unwrap_or_else(|| "(none)".into());
                self.say(&text)?;
            }
            Command::Instructions(Some(text)) => {
                self.ws()
                    .configure(Setting::Instructions(Some(text)))
                    .await?;
                self.say("Instructions set.")?;
            }
            Command::New => {
                if let Some(i) = self.new_workstream(None, None).await? {
                    self.replace_current(i).await?;
                    let line = format!("New session {}", self.ws().session_id());
                    self.say(&line)?;
                }
            }
            Command::Resume(key) => {
                if let Some(i) = self.new_workstream(None, Some(&key)).await? {
                    self.replace_current(i).await?;
                    let count = self.ws().history().await?.len();
                    let line = format!("Resumed {} ({count} messages)", self.ws().name());
                    self.say(&line)?;
                }
            }
            Command::Sessions => match &store {
                None => self.say(&style.error("no database"))?,
                Some(store) => match store.list_sessions(20).await {
                    Ok(sessions) if sessions.is_empty() => self.say("No saved sessions.")?,
                    Ok(sessions) => {
                        for s in sessions {
                            let name = s.alias.or(s.title).unwrap_or_default();
                            let line = format!(
                                "{}  {:>4} msgs  {}  {name}",
                                &s.session_id[..12.min(s.session_id.len())],
                                s.message_count,
                                s.updated
                            );
                            self.say(&line)?;
                        }
                    }
                    Err(e) => self.say(&style.error(&e.to_string()))?,
                },
            },
            Command::Name(alias) => {
                let session = self.ws().session_id().to_owned();
                match (alias, &store) {
                    (None, _) => self.say(&format!("session {session}"))?,
                    (Some(_), None) => self.say(&style.error("no database"))?,
                    (Some(alias), Some(store)) => match store.set_alias(&session, &alias).await {
                        Ok(()) => self.say(&format!("Session named {alias}"))?,
                        Err(e) => self.say(&style.error(&e.to_string()))?,
                    },
                }
            }
            Command::Delete(key) => match &store {
                None => self.say(&style.error("no database"))?,
                Some(store) => match store.resolve_session(&key).await {
                    Ok(id) if id == self.ws().session_id() => {
                        self.say(&style.error("cannot delete the active session"))?;
                    }
                    Ok(id) => match store.delete_session(&id).await {
                        Ok(()) => self.say(&format!("Deleted session {id}"))?,
                        Err(e) => self.say(&style.error(&e.to_string()))?,
                    },
                    Err(e) => self.say(&style.error(&e.to_string()))?,
                },
            },
            Command::History(query) => match (query, &store) {
                (Some(q), Some(store)) => match store.search_history(&q, 20).await {
                    Ok(hits) if hits.is_empty() => self.say("No matches.")?,
                    Ok(hits) => {
                        for h in hits {
                            let line = format!(
                                "[{} {}] {}: {}",
                                &h.session_id[..8.min(h.session_id.len())],
                                h.timestamp,
                                h.role,
                                h.content.lines().next().unwrap_or("")
                            );
                            self.say(&line)?;
                        }
                    }
                    Err(e) => self.say(&style.error(&e.to_string()))?,
                },
                (Some(_), None) => self.say(&style.error("no database"))?,
                (None, _) => {
                    let history = self.ws().history().await?;
                    let skip = history.len().saturating_sub(20);
                    for m in history.into_iter().skip(skip) {
                        let text = m.content.unwrap_or_else(|| {
                            m.tool_calls
                                .iter()
                                .map(|c| format!("[Called: {}({})]", c.name, c.arguments))
                                .collect::<Vec<_>>()
                                .join(" ")
                        });
                        let line = format!("{:?}: {}", m.role, text.lines().next().unwrap_or(""));
                        self.say(&line)?;
                    }
                }
            },
            Command::Model(None) => {
                let router = &self.node.router;
                let current = self.ws().status().await?.model_alias;
                let lines: Vec<String> = router
                    .lanes()
                    .map(|l| {
                        let mark = if l.alias == current { "*" } else { " " };
                        format!(
                            "{mark} {:<12} {} (context {})",
                            l.alias, l.model, l.context_window
                        )
                    })
                    .collect();
                for l in lines {
                    self.say(&l)?;
                }
                let fallback = router.fallback().join(", ");
                let summary = format!(
                    "default {} · fallback [{fallback}] · agent {}",
                    router.default_alias(),
                    router.agent_alias()
                );
                self.say(&style.dim(&summary))?;
            }
            Command::Model(Some(alias)) => match self.ws().set_model(&alias).await {
                Ok(()) => self.say(&format!("Model switched to {alias}"))?,
                Err(e) => self.say(&style.error(&e.to_string()))?,
            },
            Command::Raw => {
                self.show_reasoning = !self.show_reasoning;
                let state = if self.show_reasoning {
                    "shown"
                } else {
                    "hidden"
                };
                self.say(&format!("Reasoning {state}."))?;
            }
            Command::Reason(None) => {
                let settings = self.ws().settings().await?;
                let level = format!("{:?}", settings.reasoning_effort).to_lowercase();
                self.say(&format!("Reasoning effort: {level}"))?;
            }
            Command::Reason(Some(level)) => match commands::reason_level(&level)
                .map(|l| ReasoningEffort::try_from(l.to_owned()))
            {
                Some(Ok(effort)) => {
                    self.ws()
                        .configure(Setting::ReasoningEffort(effort))
                        .await?;
                    self.say(&format!(
                        "Reasoning effort set to {}",
                        commands::reason_level(&level).unwrap_or("")
                    ))?;
                }
                Some(Err(_)) | None => {
                    self.say(&style.error("usage: /reason none|minimal|low|medium|high|xhigh|max"))?
                }
            },
            Command::Creative => {
                let on = !self.ws().settings().await?.creative;
                self.ws().configure(Setting::Creative(on)).await?;
                self.say(if on {
                    "Creative mode on (no tools)."
                } else {
                    "Creative mode off."
                })?;
            }
            Command::Debug => {
                self.debug = !self.debug;
                self.say(if self.debug {
                    "Debug on."
                } else {
                    "Debug off."
                })?;
            }
            Command::Compact => {
                self.say(&style.dim("Compacting…"))?;
                match self.ws().compact().await {
                    Ok(()) => {}
                    Err(e) => self.say(&style.error(&e.to_string()))?,
                }
            }
            Command::Mcp => {
                if self.node.mcp.is_empty() {
                    self.say("No MCP servers configured.")?;
                }
                let lines: Vec<String> = self
                    .node
                    .mcp
                    .iter()
                    .map(|s| match &s.tools {
                        Ok(tools) => {
                            format!("{}: {} tools — {}", s.name, tools.len(), tools.join(", "))
                        }
                        Err(e) => style.error(&format!("{}: unavailable — {e}", s.name)),
                    })
                    .collect();
                for line in lines {
                    self.say(&line)?;
                }
            }
            Command::Cluster(args) => match self.console.clone() {
                None => self.say(&style.error(
                    "/cluster needs the cluster console: pass --console-url or set [console] url",
                ))?,
                Some(console) => match console.run(&args).await {
                    Ok(lines) => {
                        for line in lines {
                            self.say(&line)?;
                        }
                    }
                    Err(e) => self.say(&style.error(&e))?,
                },
            },
            Command::Ws(ws) => self.on_ws(ws).await?,
        }
        Ok(true)
    }

    async fn on_ws(&mut self, command: WsCommand) -> Result<(), ReplError> {
        let style = self.style;
        match command {
            WsCommand::List => {
                let mut lines = Vec::new();
                for (i, ws) in self.workstreams.iter().enumerate() {
                    let state = ws
                        .status()
                        .await
                        .map(|s| s.state.as_str())
                        .unwrap_or("gone");
                    let mark = if i == self.current { "*" } else { " " };
                    lines.push(format!("{mark} {} {:<16} {state}", i + 1, ws.name()));
                }
                for l in lines {
                    self.say(&l)?;
                }
            }
            WsCommand::New(name) => {
                if let Some(i) = self.new_workstream(name.as_deref(), None).await? {
                    self.switch_to(i).await;
                    let line = format!("Switched to {}", self.ws().name());
                    self.say(&line)?;
                }
            }
            WsCommand::Switch(n) if (1..=self.workstreams.len()).contains(&n) => {
                self.switch_to(n - 1).await;
                let line = format!("Switched to {}", self.ws().name());
                self.say(&line)?;
            }
            WsCommand::Switch(n) | WsCommand::Close(Some(n))
                if n == 0 || n > self.workstreams.len() =>
            {
                self.say(&style.error(&format!("no workstream {n}")))?;
            }
            WsCommand::Switch(_) => {}
            WsCommand::Rename(name) => {
                let id = self.ws().ws_id().to_owned();
                match self.node.manager.rename(&id, &name) {
                    Ok(handle) => {
                        self.workstreams[self.current] = handle;
                        self.say(&format!("Renamed to {name}"))?;
                    }
                    Err(e) => self.say(&style.error(&e.to_string()))?,
                }
            }
            WsCommand::Close(n) => {
                let index = n.map_or(self.current, |n| n - 1);
                let id = self.workstreams[index].ws_id().to_owned();
                match self.node.manager.close(&id).await {
                    Ok(()) => {
                        self.workstreams.remove(index);
                        let next = self.current.min(self.workstreams.len() - 1);
                        self.switch_to(next).await;
                        let line = format!("Closed; now on {}", self.ws().name());
                        self.say(&line)?;
                    }
                    Err(e) => self.say(&style.error(&e.to_string()))?,
                }
            }
        }
        Ok(())
    }
}
