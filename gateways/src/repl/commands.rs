//! Slash commands.

/// A `/ws` sub-command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsCommand {
    /// List workstreams.
    List,
    /// Create one (optionally named) and switch to it.
    New(Option<String>),
    /// Switch to the N-th (1-based).
    Switch(usize),
    /// Close the N-th (default: the current one).
    Close(Option<usize>),
    /// Rename the current one.
    Rename(String),
}

/// A parsed slash command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `/help`
    Help,
    /// `/exit`, `/quit`, `/q`
    Exit,
    /// `/instructions [text]`
    Instructions(Option<String>),
    /// `/clear`
    Clear,
    /// `/new`
    New,
    /// `/sessions`
    Sessions,
    /// `/resume <alias|id|prefix>`
    Resume(String),
    /// `/name [alias]`
    Name(Option<String>),
    /// `/delete <session>`
    Delete(String),
    /// `/history [query]`
    History(Option<String>),
    /// `/model [alias]`
    Model(Option<String>),
    /// `/raw`
    Raw,
    /// `/reason [level]`
    Reason(Option<String>),
    /// `/compact`
    Compact,
    /// `/creative`
    Creative,
    /// `/debug`
    Debug,
    /// `/mcp`
    Mcp,
    /// `/ws …`
    Ws(WsCommand),
    /// `/cluster …` with its arguments.
    Cluster(String),
    /// Not a command we know, or missing an argument: the message to show.
    Invalid(String),
}

/// The help text.
pub const HELP: &str = "\
/instructions [text]   show or set extra instructions (saved with the session)
/clear                 forget the conversation in memory
/new                   start a new session
/sessions              list saved sessions
/resume <name|id>      continue a saved session (alias, id or unique prefix)
/name [alias]          show the session id, or name the session
/delete <name|id>      delete a saved session (not the active one)
/history [query]       search past conversations, or show recent messages
/model [alias]         show models, or switch this workstream's model
/raw                   show or hide the model's reasoning
/reason [level]        show or set reasoning effort (low, medium, high, …)
/compact               summarise the conversation to free context
/creative              toggle creative mode (no tools)
/debug                 toggle debug details (token usage after each reply)
/mcp                   list MCP servers and tools
/ws [list|new [name]|N|close [N]|rename name]   manage parallel workstreams
/cluster [status|nodes|ws [filters]|node id]     the cluster, from the console (--console-url)
/help                  this help
/exit, /quit, /q       leave (Ctrl-D too); Ctrl-C cancels a running turn";

fn arg(rest: &str) -> Option<String> {
    let rest = rest.trim();
    (!rest.is_empty()).then(|| rest.to_owned())
}

/// Parses a line starting with `/`.
pub fn parse(line: &str) -> Command {
    let line = line.trim();
    let (name, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let required = |what: &str, f: fn(String) -> Command| match arg(rest) {
        Some(a) => f(a),
        None => Command::Invalid(format!("usage: {name} <{what}>")),
    };
    match name {
        "/help" | "/?" => Command::Help,
        "/exit" | "/quit" | "/q" => Command::Exit,
        "/instructions" => Command::Instructions(arg(rest)),
        "/clear" => Command::Clear,
        "/new" => Command::New,
        "/sessions" => Command::Sessions,
        "/resume" => required("alias|id|prefix", Command::Resume),
        "/name" => Command::Name(arg(rest)),
        "/delete" => required("alias|id|prefix", Command::Delete),
        "/history" => Command::History(arg(rest)),
        "/model" => Command::Model(arg(rest)),
        "/raw" => Command::Raw,
        "/reason" => Command::Reason(arg(rest)),
        "/compact" => Command::Compact,
        "/creative" => Command::Creative,
        "/debug" => Command::Debug,
        "/mcp" => Command::Mcp,
        "/cluster" => Command::Cluster(rest.trim().to_owned()),
        "/ws" => parse_ws(rest),
        other => Command::Invalid(format!("unknown command {other}; /help lists them")),
    }
}

fn parse_ws(rest: &str) -> Command {
    let mut words = rest.split_whitespace();
    let ws = match (words.next(), words.next()) {
        (None | Some("list"), _) => WsCommand::List,
        (Some("new"), name) => WsCommand::New(name.map(|n| {
            std::iter::once(n)
                .chain(words)
                .collect::<Vec<_>>()
                .join(" ")
        })),
        (Some("rename"), None) => return Command::Invalid("usage: /ws rename <name>".into()),
        (Some("rename"), Some(first)) => WsCommand::Rename(
            std::iter::once(first)
                .chain(words)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        (Some("close"), None) => WsCommand::Close(None),
        (Some("close"), Some(n)) => match n.parse() {
            Ok(n) => WsCommand::Close(Some(n)),
            Err(_) => return Command::Invalid(format!("/ws close: {n:?} is not a number")),
        },
        (Some(n), _) => match n.parse() {
            Ok(n) => WsCommand::Switch(n),
            Err(_) => return Command::Invalid(format!("unknown /ws sub-command {n:?}")),
        },
    };
    Command::Ws(ws)
}

/// `/reason` levels, with Turnstone's short forms.
pub fn reason_level(level: &str) -> Option<&'static str> {
    match level.to_ascii_lowercase().as_str() {
        "none" | "off" => Some("none"),
        "minimal" | "min" => Some("minimal"),
        "low" | "lo" => Some("low"),
        "medium" | "med" => Some("medium"),
        "high" | "hi" => Some("high"),
        "xhigh" => Some("xhigh"),
        "max" => Some("max"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_their_arguments() {
        assert_eq!(parse("/quit"), Command::Exit);
        assert_eq!(parse("/resume  bugfix "), Command::Resume("bugfix".into()));
        assert_eq!(parse("/name"), Command::Name(None));
        assert_eq!(
            parse("/instructions be terse"),
            Command::Instructions(Some("be terse".into()))
        );
        assert_eq!(parse("/ws"), Command::Ws(WsCommand::List));
        assert_eq!(
            parse("/ws new my task"),
            Command::Ws(WsCommand::New(Some("my task".into())))
        );
        assert_eq!(parse("/ws 2"), Command::Ws(WsCommand::Switch(2)));
        assert_eq!(parse("/ws close 3"), Command::Ws(WsCommand::Close(Some(3))));
        assert_eq!(
            parse("/ws rename bug hunt"),
            Command::Ws(WsCommand::Rename("bug hunt".into()))
        );
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        assert_eq!(
            parse("/resume"),
            Command::Invalid("usage: /resume <alias|id|prefix>".into())
        );
        assert_eq!(
            parse("/frobnicate"),
            Command::Invalid("unknown command /frobnicate; /help lists them".into())
        );
        assert_eq!(
            parse("/ws close x"),
            Command::Invalid("/ws close: \"x\" is not a number".into())
        );
    }

    #[test]
    fn reason_levels_accept_short_forms() {
        assert_eq!(reason_level("hi"), Some("high"));
        assert_eq!(reason_level("MED"), Some("medium"));
        assert_eq!(reason_level("ultra"), None);
    }
}
