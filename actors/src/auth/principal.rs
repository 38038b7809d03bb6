//! Who a bearer token belongs to (SPEC §14): an HS256 JWT (when a secret is set), an API
//! token `ts_…` (looked up by hash in storage, expiry checked), or a static token from the
//! configuration (compared in constant time; `read` or `full`).

use super::credentials::{same_secret, token_hash};
use super::{Audience, Scope, verify};
use crate::config::{AuthConfig, TokenRole};
use crate::storage::Store;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Granted scopes, expanded (approve brings write and read).
    pub scopes: Vec<Scope>,
    /// The user, for user tokens.
    pub user_id: Option<String>,
    /// How: `jwt`, `api_token`, `config`.
    pub source: &'static str,
}

impl Principal {
    /// Whether the caller may do what `scope` allows.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| *s >= scope)
    }

    /// `full` when the caller may write, else `read`.
    pub fn role(&self) -> &'static str {
        if self.allows(Scope::Write) {
            "full"
        } else {
            "read"
        }
    }
}

fn expand(scopes: &[Scope]) -> Vec<Scope> {
    let top = scopes.iter().max().copied();
    top.map(Scope::expand).unwrap_or_default()
}

/// Checks tokens for one service.
#[derive(Clone, Debug)]
pub struct Authenticator {
    config: AuthConfig,
    secret: String,
    audience: Audience,
    store: Option<Store>,
}

impl Authenticator {
    /// For the service `audience`, signing with `secret` (from `[auth].jwt_secret`, or random
    /// per process).
    pub fn new(
        config: AuthConfig,
        secret: String,
        audience: Audience,
        store: Option<Store>,
    ) -> Self {
        Self {
            config,
            secret,
            audience,
            store,
        }
    }

    /// Whether requests must carry a token.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The JWT secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The audience this service accepts.
    pub fn audience(&self) -> Audience {
        self.audience
    }

    /// The database (users, API tokens), if any.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// The caller behind `token`, if it is valid.
    pub async fn authenticate(&self, token: &str) -> Option<Principal> {
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        if token.contains('.')
            && let Ok(claims) = verify(&self.secret, token, self.audience)
        {
            return Some(Principal {
                scopes: expand(&claims.scopes()),
                user_id: Some(claims.sub).filter(|s| s != "system"),
                source: "jwt",
            });
        }
        if token.starts_with("ts_")
            && let Some(store) = &self.store
            && let Ok(Some(row)) = store.token_by_hash(&token_hash(token)).await
        {
            let expired = row
                .expires
                .as_deref()
                .is_some_and(|e| e <= crate::storage::now().as_str());
            if !expired {
                return Some(Principal {
                    scopes: expand(&Scope::parse_csv(&row.scopes)),
                    user_id: Some(row.user_id),
                    source: "api_token",
                });
            }
            return None;
        }
        let mut role = None;
        if let Some(full) = self.config.token.as_deref().filter(|t| !t.is_empty())
            && same_secret(token, full)
        {
            role = Some("full");
        }
        for configured in &self.config.tokens {
            if same_secret(token, &configured.value) && role.is_none() {
                role = Some(match configured.role {
                    TokenRole::Read => "read",
                    TokenRole::Full => "full",
                });
            }
        }
        role.map(|role| Principal {
            scopes: if role == "read" {
                vec![Scope::Read]
            } else {
                Scope::Approve.expand()
            },
            user_id: None,
            source: "config",
        })
    }
}
