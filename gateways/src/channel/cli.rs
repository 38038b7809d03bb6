//! `turnstone-channel`'s flags (SPEC §15: the Redis flags, `--http-host`, `--http-port`,
//! `--auth-token`, `--model`, `--auto-approve`, `--discord-token`, `--discord-guild`,
//! `--discord-channels`), Slack's (`--slack-bot-token`, `--slack-app-token`,
//! `--slack-api-url`), the Discord base URLs (`--discord-api-url`, `--discord-gateway-url`)
//! and the Matrix adapter's (`--matrix-*`, each also `$TURNSTONE_MATRIX_*`).

use std::path::PathBuf;

use super::discord::DiscordSettings;
use super::matrix::{Login, MatrixSettings};
use super::router::RouteSettings;
use super::slack::SlackSettings;
use crate::server::cli::RedisArgs;

/// Turnstone's chat gateway: mention the bot on a chat platform and get a thread with a
/// workstream behind it, its answer written as it comes and its tool calls approved in chat;
/// nodes reach people through its notify endpoint.
#[derive(Debug, clap::Parser)]
#[command(name = "turnstone-channel", version)]
pub struct ChannelArgs {
    /// Config file (default: ~/.config/turnstone/config.toml)
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Redis flags.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Address of the notify endpoint
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub http_host: String,
    /// Port of the notify endpoint
    #[arg(long, value_name = "PORT", default_value_t = 8091)]
    pub http_port: u16,
    /// The URL nodes reach the notify endpoint at [default: http://{http-host}:{http-port}]
    #[arg(long, value_name = "URL")]
    pub advertise_url: Option<String>,
    /// Token notify callers must present (also $TURNSTONE_CHANNEL_AUTH_TOKEN); without it,
    /// JWTs for turnstone-channel signed with [auth] jwt_secret are accepted
    #[arg(
        long,
        env = "TURNSTONE_CHANNEL_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,
    /// Model alias of the workstreams made [default: the node's]
    #[arg(long, value_name = "ALIAS")]
    pub model: Option<String>,
    /// Approve every tool call without asking
    #[arg(long)]
    pub auto_approve: bool,
    /// Tools approved without asking (csv)
    #[arg(long, value_name = "CSV", value_delimiter = ',')]
    pub auto_approve_tools: Vec<String>,
    /// Discord bot token (also $DISCORD_TOKEN)
    #[arg(
        long,
        env = "DISCORD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub discord_token: Option<String>,
    /// Only this Discord guild (0: any)
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub discord_guild: u64,
    /// Only mentions in these Discord channels (csv of ids) [default: any]
    #[arg(long, value_name = "CSV", value_delimiter = ',')]
    pub discord_channels: Vec<String>,
    /// Discord REST base URL instead of https://discord.com (a proxy)
    #[arg(long, value_name = "URL")]
    pub discord_api_url: Option<String>,
    /// Discord gateway URL instead of wss://gateway.discord.gg
    #[arg(long, value_name = "URL")]
    pub discord_gateway_url: Option<String>,
    /// Slack bot token, xoxb-… (also $SLACK_BOT_TOKEN)
    #[arg(
        long,
        env = "SLACK_BOT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub slack_bot_token: Option<String>,
    /// Slack app-level token for Socket Mode, xapp-… (also $SLACK_APP_TOKEN)
    #[arg(
        long,
        env = "SLACK_APP_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub slack_app_token: Option<String>,
    /// Slack Web API base URL instead of https://slack.com/api (a proxy)
    #[arg(long, value_name = "URL")]
    pub slack_api_url: Option<String>,
    /// Matrix homeserver URL, e.g. https://matrix.example.org
    #[arg(long, env = "TURNSTONE_MATRIX_HOMESERVER", value_name = "URL")]
    pub matrix_homeserver: Option<String>,
    /// The bot's Matrix user (@bot:example.org or bot)
    #[arg(long, env = "TURNSTONE_MATRIX_USER", value_name = "USER")]
    pub matrix_user: Option<String>,
    /// The bot's password
    #[arg(
        long,
        env = "TURNSTONE_MATRIX_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub matrix_password: Option<String>,
    /// An access token instead of a password
    #[arg(
        long,
        env = "TURNSTONE_MATRIX_ACCESS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub matrix_access_token: Option<String>,
    /// Rooms the bot acts in (csv of room ids) [default: every room it is invited to]
    #[arg(
        long,
        env = "TURNSTONE_MATRIX_ROOMS",
        value_name = "CSV",
        value_delimiter = ','
    )]
    pub matrix_rooms: Vec<String>,
    /// Log level (error, warn, info, debug, trace)
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log format: auto, json or text
    #[arg(long)]
    pub log_format: Option<String>,
}

impl ChannelArgs {
    /// How workstreams are made.
    pub fn route(&self) -> RouteSettings {
        RouteSettings {
            model: self.model.clone().unwrap_or_default(),
            auto_approve: self.auto_approve,
            auto_approve_tools: self
                .auto_approve_tools
                .iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
        }
    }

    /// The Discord adapter's settings, if a token is given.
    pub fn discord(&self) -> Option<DiscordSettings> {
        let token = self
            .discord_token
            .clone()
            .filter(|t| !t.trim().is_empty())?;
        Some(DiscordSettings {
            token: token.trim().to_owned(),
            guild: self.discord_guild,
            channels: self
                .discord_channels
                .iter()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect(),
            api_url: self.discord_api_url.clone(),
            gateway_url: self.discord_gateway_url.clone(),
        })
    }

    /// The Slack adapter's settings, if both tokens are given; one without the other is an
    /// error.
    pub fn slack(&self) -> Result<Option<SlackSettings>, String> {
        let given = |t: &Option<String>| t.clone().filter(|t| !t.trim().is_empty());
        match (given(&self.slack_bot_token), given(&self.slack_app_token)) {
            (None, None) => Ok(None),
            (Some(bot), Some(app)) => Ok(Some(SlackSettings {
                bot_token: bot.trim().to_owned(),
                app_token: app.trim().to_owned(),
                api_url: self.slack_api_url.clone(),
            })),
            _ => Err(
                "Slack needs both --slack-bot-token (xoxb-…) and --slack-app-token (xapp-…)".into(),
            ),
        }
    }

    /// The Matrix adapter's settings, if a homeserver is given; an error names what is
    /// missing.
    pub fn matrix(&self) -> Result<Option<MatrixSettings>, String> {
        let Some(homeserver) = self.matrix_homeserver.clone().filter(|h| !h.is_empty()) else {
            return Ok(None);
        };
        if !homeserver.starts_with("http://") && !homeserver.starts_with("https://") {
            return Err(format!(
                "--matrix-homeserver must be an http(s) URL, not {homeserver:?}"
            ));
        }
        let login = match (&self.matrix_access_token, &self.matrix_password) {
            (Some(token), _) if !token.is_empty() => Login::Token(token.clone()),
            (_, Some(password)) if !password.is_empty() => Login::Password(password.clone()),
            _ => {
                return Err("Matrix needs --matrix-password or --matrix-access-token".into());
            }
        };
        let user = self.matrix_user.clone().unwrap_or_default();
        if user.is_empty() && matches!(login, Login::Password(_)) {
            return Err("Matrix password login needs --matrix-user".into());
        }
        Ok(Some(MatrixSettings {
            homeserver,
            user,
            login,
            rooms: self
                .matrix_rooms
                .iter()
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect(),
        }))
    }
}
