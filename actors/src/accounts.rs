//! Users, API tokens and chat links: the rules `turnstone-admin` and the console's admin API
//! (SPEC §3.3) share, so both refuse the same input with the same words.

use serde::Serialize;

use crate::auth::{
    CredentialError, Scope, check_username, hash_password, new_api_token, token_hash, token_prefix,
};
use crate::storage::{NewUser, Store, StoreError, api_token, channel_user, now, user};

/// Longest chat platform name.
pub const MAX_CHANNEL_TYPE: usize = 64;
/// Longest chat account id.
pub const MAX_CHANNEL_USER_ID: usize = 256;
/// Scopes a token gets when none are named.
pub const DEFAULT_SCOPES: &str = "read,write,approve";

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The input breaks a rule (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// It clashes with what exists (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// What it names does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => AccountError::Conflict(message),
            other => AccountError::Store(other),
        }
    }
}

impl From<CredentialError> for AccountError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::Hash(_) => AccountError::Store(StoreError::Config(e.to_string())),
            other => AccountError::Invalid(other.to_string()),
        }
    }
}

/// A user as listed (never the password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// Id (32 hex).
    pub user_id: String,
    /// Login name.
    pub username: String,
    /// Shown name.
    pub display_name: String,
    /// Created.
    pub created: String,
}

impl From<user::Model> for UserInfo {
    fn from(u: user::Model) -> Self {
        Self {
            user_id: u.user_id,
            username: u.username,
            display_name: u.display_name,
            created: u.created,
        }
    }
}

/// A token as listed (never the secret nor its hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Id.
    pub token_id: String,
    /// The first characters, to recognise it.
    pub token_prefix: String,
    /// Owner.
    pub user_id: String,
    /// Label.
    pub name: String,
    /// Comma-separated scopes.
    pub scopes: String,
    /// Created.
    pub created: String,
    /// Expiry, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl From<api_token::Model> for TokenInfo {
    fn from(t: api_token::Model) -> Self {
        Self {
            token_id: t.token_id,
            token_prefix: t.token_prefix,
            user_id: t.user_id,
            name: t.name,
            scopes: t.scopes,
            created: t.created,
            expires: t.expires,
        }
    }
}

/// A token just made: the only time its secret is shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewToken {
    /// The secret (`ts_` + 64 hex).
    pub token: String,
    /// Id.
    pub token_id: String,
    /// The first characters.
    pub token_prefix: String,
    /// Comma-separated scopes, as stored.
    pub scopes: String,
}

/// Creates a user; the password is hashed off the async threads (bcrypt is slow on purpose).
pub async fn create_user(
    store: &Store,
    username: &str,
    display_name: &str,
    password: &str,
) -> Result<UserInfo, AccountError> {
    let username = username.trim();
    check_username(username)?;
    let display_name = display_name.trim();
    if display_name.is_empty() {
        return Err(AccountError::Invalid("display_name is required".into()));
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AccountError::Store(StoreError::Config(e.to_string())))??;
    if store.user_by_name(username).await?.is_some() {
        return Err(AccountError::Conflict("Username already taken".into()));
    }
    let user = store
        .create_user(NewUser {
            username,
            display_name,
            password_hash: &hash,
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => AccountError::Conflict("Username already taken".into()),
            other => AccountError::Store(other),
        })?;
    Ok(user.into())
}

/// Every user.
pub async fn users(store: &Store) -> Result<Vec<UserInfo>, AccountError> {
    Ok(store
        .list_users()
        .await?
        .into_iter()
        .map(UserInfo::from)
        .collect())
}

/// A user by login name or id.
pub async fn find_user(store: &Store, key: &str) -> Result<UserInfo, AccountError> {
    if let Some(user) = store.user_by_name(key).await? {
        return Ok(user.into());
    }
    store
        .user(key)
        .await?
        .map(UserInfo::from)
        .ok_or_else(|| AccountError::NotFound(format!("User not found: {key}")))
}

async fn existing_user(store: &Store, user_id: &str) -> Result<UserInfo, AccountError> {
    store
        .user(user_id)
        .await?
        .map(UserInfo::from)
        .ok_or_else(|| AccountError::NotFound("User not found".into()))
}

/// Deletes a user with their tokens and chat links.
pub async fn delete_user(store: &Store, user_id: &str) -> Result<(), AccountError> {
    if store.delete_user(user_id).await? {
        Ok(())
    } else {
        Err(AccountError::NotFound("User not found".into()))
    }
}

/// Parses scopes (`read`, `write`, `approve`, comma-separated; at least one, nothing else).
pub fn parse_scopes(csv: &str) -> Result<Vec<Scope>, AccountError> {
    let named: Vec<&str> = csv
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let parsed: Option<Vec<Scope>> = named.iter().map(|s| Scope::parse(s)).collect();
    match parsed {
        Some(scopes) if !scopes.is_empty() => {
            let mut scopes = scopes;
            scopes.sort_unstable();
            scopes.dedup();
            Ok(scopes)
        }
        _ => Err(AccountError::Invalid(
            "Invalid scopes (allowed: read, write, approve)".into(),
        )),
    }
}

/// Makes an API token for a user; its secret is returned once and stored only as a hash.
pub async fn create_token(
    store: &Store,
    user_id: &str,
    name: &str,
    scopes: &str,
    expires_days: Option<u32>,
) -> Result<NewToken, AccountError> {
    let parsed = parse_scopes(scopes)?;
    let user = existing_user(store, user_id).await?;
    let token = new_api_token();
    let expires = expires_days.map(|days| {
        (chrono::Utc::now() + chrono::Duration::days(i64::from(days)))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    });
    let row = api_token::Model {
        token_id: uuid::Uuid::new_v4().simple().to_string(),
        token_hash: token_hash(&token),
        token_prefix: token_prefix(&token),
        user_id: user.user_id,
        name: name.trim().to_owned(),
        // Stored with what they imply: `write` is `read,write`.
        scopes: Scope::csv(
            &parsed
                .iter()
                .max()
                .map(|top| top.expand())
                .unwrap_or_default(),
        ),
        created: now(),
        expires,
    };
    let made = NewToken {
        token,
        token_id: row.token_id.clone(),
        token_prefix: row.token_prefix.clone(),
        scopes: row.scopes.clone(),
    };
    store.insert_token(row).await?;
    Ok(made)
}

/// A user's tokens.
pub async fn tokens(store: &Store, user_id: &str) -> Result<Vec<TokenInfo>, AccountError> {
    Ok(store
        .list_tokens(user_id)
        .await?
        .into_iter()
        .map(TokenInfo::from)
        .collect())
}

/// Revokes a token: the next request that carries it is refused.
pub async fn revoke_token(store: &Store, token_id: &str) -> Result<(), AccountError> {
    if store.revoke_token(token_id).await? {
        Ok(())
    } else {
        Err(AccountError::NotFound("Token not found".into()))
    }
}

/// Links a chat account (`channel_type` is stored lower-case) to a user.
pub async fn link_channel(
    store: &Store,
    user_id: &str,
    channel_type: &str,
    channel_user_id: &str,
) -> Result<channel_user::Model, AccountError> {
    let channel_type = channel_type.trim().to_lowercase();
    let channel_user_id = channel_user_id.trim();
    if channel_type.is_empty() {
        return Err(AccountError::Invalid("channel_type is required".into()));
    }
    if channel_user_id.is_empty() {
        return Err(AccountError::Invalid("channel_user_id is required".into()));
    }
    if channel_type.chars().count() > MAX_CHANNEL_TYPE
        || channel_user_id.chars().count() > MAX_CHANNEL_USER_ID
    {
        return Err(AccountError::Invalid("Value too long".into()));
    }
    existing_user(store, user_id).await?;
    Ok(store
        .link_channel(&channel_type, channel_user_id, user_id)
        .await?)
}

/// A user's chat links.
pub async fn channels(
    store: &Store,
    user_id: &str,
) -> Result<Vec<channel_user::Model>, AccountError> {
    Ok(store.channels_of(user_id).await?)
}

/// Removes a chat link.
pub async fn unlink_channel(
    store: &Store,
    channel_type: &str,
    channel_user_id: &str,
) -> Result<(), AccountError> {
    if store
        .unlink_channel(&channel_type.to_lowercase(), channel_user_id)
        .await?
    {
        Ok(())
    } else {
        Err(AccountError::NotFound("Channel link not found".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_must_all_be_known() {
        assert_eq!(
            parse_scopes("write, read").unwrap(),
            vec![Scope::Read, Scope::Write]
        );
        for bad in ["", " , ", "read,admin", "everything"] {
            assert!(
                matches!(parse_scopes(bad), Err(AccountError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
