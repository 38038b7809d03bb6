//! `turnstone-admin`: users, API tokens and chat links in the configured database — by the
//! same rules as the console's admin API ([`turnstone_actors::accounts`]).

use std::io::BufRead;

use turnstone_actors::accounts::{self, AccountError};
use turnstone_actors::storage::Store;

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create a user (the password is read from stdin when not given)
    CreateUser {
        /// Login name (1–64 of letters, digits, `.`, `_`, `-`)
        #[arg(long)]
        username: String,
        /// Display name (default: the username)
        #[arg(long)]
        name: Option<String>,
        /// Password (at least 8 characters)
        #[arg(long)]
        password: Option<String>,
        /// Also create an API token for the user and print it
        #[arg(long)]
        token: bool,
        /// Scopes of that token (read, write, approve; comma-separated)
        #[arg(long, default_value = "approve,read,write")]
        scopes: String,
    },
    /// Delete a user with their tokens and chat links
    DeleteUser {
        /// The user (username or user id)
        #[arg(long)]
        user: String,
    },
    /// Create an API token for a user and print it (shown once)
    CreateToken {
        /// The user (username or user id)
        #[arg(long)]
        user: String,
        /// A label for the token
        #[arg(long, default_value = "")]
        name: String,
        /// Scopes (read, write, approve; comma-separated)
        #[arg(long, default_value = "read,write")]
        scopes: String,
        /// Days until it expires (default: never)
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List users
    ListUsers,
    /// List a user's tokens
    ListTokens {
        /// The user (username or user id)
        #[arg(long)]
        user: String,
    },
    /// Revoke a token
    RevokeToken {
        /// The token's id (from list-tokens)
        #[arg(long)]
        token_id: String,
    },
    /// Link a chat account (Discord, Slack, Matrix …) to a user
    LinkChannel {
        /// The user (username or user id)
        #[arg(long)]
        user: String,
        /// The platform: discord, slack, matrix …
        #[arg(long)]
        channel_type: String,
        /// The account's id on that platform
        #[arg(long)]
        channel_user_id: String,
    },
    /// Remove a chat account's link
    UnlinkChannel {
        /// The platform
        #[arg(long)]
        channel_type: String,
        /// The account's id on that platform
        #[arg(long)]
        channel_user_id: String,
    },
    /// List a user's chat links
    ListChannels {
        /// The user (username or user id)
        #[arg(long)]
        user: String,
    },
}

/// A failure, worded for the terminal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AdminError(pub String);

impl From<AccountError> for AdminError {
    fn from(e: AccountError) -> Self {
        AdminError(e.to_string())
    }
}

fn lines(rows: Vec<String>, empty: String) -> String {
    if rows.is_empty() {
        empty
    } else {
        rows.join("\n")
    }
}

/// Runs one command; returns what to print.
pub async fn run(
    store: &Store,
    command: AdminCommand,
    stdin: &mut dyn BufRead,
) -> Result<String, AdminError> {
    match command {
        AdminCommand::CreateUser {
            username,
            name,
            password,
            token,
            scopes,
        } => {
            // Checked before the password is read or hashed.
            accounts::parse_scopes(&scopes)?;
            let password = match password {
                Some(p) => p,
                None => {
                    let mut line = String::new();
                    stdin
                        .read_line(&mut line)
                        .map_err(|e| AdminError(e.to_string()))?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let display = name.unwrap_or_else(|| username.clone());
            let user = accounts::create_user(store, &username, &display, &password).await?;
            let mut out = format!("Created user {} ({})", user.username, user.user_id);
            if token {
                let made = accounts::create_token(store, &user.user_id, "", &scopes, None).await?;
                out.push_str(&format!("\nAPI token (shown once): {}", made.token));
            }
            Ok(out)
        }
        AdminCommand::DeleteUser { user } => {
            let user = accounts::find_user(store, &user).await?;
            accounts::delete_user(store, &user.user_id).await?;
            Ok(format!("Deleted user {} ({})", user.username, user.user_id))
        }
        AdminCommand::CreateToken {
            user,
            name,
            scopes,
            expires_days,
        } => {
            accounts::parse_scopes(&scopes)?;
            let user = accounts::find_user(store, &user).await?;
            let made =
                accounts::create_token(store, &user.user_id, &name, &scopes, expires_days).await?;
            Ok(made.token)
        }
        AdminCommand::ListUsers => {
            let rows = accounts::users(store)
                .await?
                .iter()
                .map(|u| {
                    format!(
                        "{}  {:<20} {:<24} {}",
                        u.user_id, u.username, u.display_name, u.created
                    )
                })
                .collect();
            Ok(lines(rows, "No users.".into()))
        }
        AdminCommand::ListTokens { user } => {
            let user = accounts::find_user(store, &user).await?;
            let rows = accounts::tokens(store, &user.user_id)
                .await?
                .iter()
                .map(|t| {
                    format!(
                        "{}  {}…  {:<16} {:<20} created {}  expires {}",
                        t.token_id,
                        t.token_prefix,
                        t.name,
                        t.scopes,
                        t.created,
                        t.expires.as_deref().unwrap_or("never")
                    )
                })
                .collect();
            Ok(lines(rows, format!("No tokens for {}.", user.username)))
        }
        AdminCommand::RevokeToken { token_id } => {
            accounts::revoke_token(store, &token_id).await?;
            Ok(format!("Revoked token {token_id}"))
        }
        AdminCommand::LinkChannel {
            user,
            channel_type,
            channel_user_id,
        } => {
            let user = accounts::find_user(store, &user).await?;
            let link =
                accounts::link_channel(store, &user.user_id, &channel_type, &channel_user_id)
                    .await?;
            Ok(format!(
                "Linked {} account {} to {}",
                link.channel_type, link.channel_user_id, user.username
            ))
        }
        AdminCommand::UnlinkChannel {
            channel_type,
            channel_user_id,
        } => {
            accounts::unlink_channel(store, &channel_type, &channel_user_id).await?;
            Ok(format!("Unlinked {channel_type} account {channel_user_id}"))
        }
        AdminCommand::ListChannels { user } => {
            let user = accounts::find_user(store, &user).await?;
            let rows = accounts::channels(store, &user.user_id)
                .await?
                .iter()
                .map(|c| {
                    format!(
                        "{:<10} {:<32} {}",
                        c.channel_type, c.channel_user_id, c.created
                    )
                })
                .collect();
            Ok(lines(rows, format!("No chat links for {}.", user.username)))
        }
    }
}
