//! `turnstone-admin`: users and API tokens in the configured database.

use std::io::BufRead;

use turnstone_actors::auth::{
    Scope, check_username, hash_password, new_api_token, token_hash, token_prefix,
};
use turnstone_actors::storage::{NewUser, Store, api_token, now};

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create a user (the password is read from stdin when not given)
    CreateUser {
        /// Login name
        #[arg(long)]
        username: String,
        /// Display name
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
}

/// A failure, worded for the terminal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AdminError(pub String);

fn err(e: impl std::fmt::Display) -> AdminError {
    AdminError(e.to_string())
}

fn scopes(csv: &str) -> Result<Vec<Scope>, AdminError> {
    let parsed = Scope::parse_csv(csv);
    let named = csv.split(',').filter(|s| !s.trim().is_empty()).count();
    if parsed.is_empty() || parsed.len() != named {
        return Err(AdminError(format!(
            "invalid scopes {csv:?}: use read, write and approve, comma-separated"
        )));
    }
    // Stored with what they imply: `write` is `read,write`.
    Ok(parsed
        .iter()
        .max()
        .map(|top| top.expand())
        .unwrap_or_default())
}

async fn find_user(
    store: &Store,
    key: &str,
) -> Result<turnstone_actors::storage::user::Model, AdminError> {
    if let Some(user) = store.user_by_name(key).await.map_err(err)? {
        return Ok(user);
    }
    store
        .user(key)
        .await
        .map_err(err)?
        .ok_or_else(|| AdminError(format!("no user {key:?}")))
}

async fn mint_token(
    store: &Store,
    user_id: &str,
    name: &str,
    scopes: &[Scope],
    expires_days: Option<u32>,
) -> Result<String, AdminError> {
    let token = new_api_token();
    let expires = expires_days.map(|days| {
        (chrono::Utc::now() + chrono::Duration::days(i64::from(days)))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    });
    store
        .insert_token(api_token::Model {
            token_id: uuid::Uuid::new_v4().simple().to_string(),
            token_hash: token_hash(&token),
            token_prefix: token_prefix(&token),
            user_id: user_id.to_owned(),
            name: name.to_owned(),
            scopes: Scope::csv(scopes),
            created: now(),
            expires,
        })
        .await
        .map_err(err)?;
    Ok(token)
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
            scopes: token_scopes,
        } => {
            check_username(&username).map_err(err)?;
            let scopes = scopes(&token_scopes)?;
            let password = match password {
                Some(p) => p,
                None => {
                    let mut line = String::new();
                    stdin.read_line(&mut line).map_err(err)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let hash = hash_password(&password).map_err(err)?;
            let user = store
                .create_user(NewUser {
                    username: &username,
                    display_name: name.as_deref().unwrap_or(&username),
                    password_hash: &hash,
                })
                .await
                .map_err(err)?;
            let mut out = format!("Created user {} ({})", user.username, user.user_id);
            if token {
                let token = mint_token(store, &user.user_id, "", &scopes, None).await?;
                out.push_str(&format!("\nAPI token (shown once): {token}"));
            }
            Ok(out)
        }
        AdminCommand::CreateToken {
            user,
            name,
            scopes: csv,
            expires_days,
        } => {
            let scopes = scopes(&csv)?;
            let user = find_user(store, &user).await?;
            mint_token(store, &user.user_id, &name, &scopes, expires_days).await
        }
        AdminCommand::ListUsers => {
            let users = store.list_users().await.map_err(err)?;
            if users.is_empty() {
                return Ok("No users.".into());
            }
            Ok(users
                .iter()
                .map(|u| {
                    format!(
                        "{}  {:<20} {:<24} {}",
                        u.user_id, u.username, u.display_name, u.created
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        AdminCommand::ListTokens { user } => {
            let user = find_user(store, &user).await?;
            let tokens = store.list_tokens(&user.user_id).await.map_err(err)?;
            if tokens.is_empty() {
                return Ok(format!("No tokens for {}.", user.username));
            }
            Ok(tokens
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
                .collect::<Vec<_>>()
                .join("\n"))
        }
        AdminCommand::RevokeToken { token_id } => {
            if store.revoke_token(&token_id).await.map_err(err)? {
                Ok(format!("Revoked token {token_id}"))
            } else {
                Err(AdminError(format!("no token {token_id:?}")))
            }
        }
    }
}
