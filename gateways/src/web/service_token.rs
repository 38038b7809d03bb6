//! The bearer a service sends to the nodes it calls (SPEC §14 "service JWTs"): a static token
//! (`--auth-token`), or JWTs it mints with the shared secret for one subject, scope set and
//! audience, renewed once 80 % of their lifetime has passed (0.4.1's console minted its
//! collector token once, and it expired).

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use turnstone_actors::auth::{Audience, LIFETIME, Scope, mint};

/// How a service authenticates to the nodes.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// No auth (the nodes run open).
    None,
    /// A static token.
    Token(String),
    /// JWTs minted with this shared secret.
    Jwt(String),
}

impl Credentials {
    /// `--auth-token` (or `[auth] token`) if set, else the JWT secret if set, else none.
    pub fn from_config(token: Option<String>, jwt_secret: Option<String>) -> Self {
        match token.filter(|t| !t.is_empty()) {
            Some(token) => Self::Token(token),
            None => match jwt_secret.filter(|s| !s.is_empty()) {
                Some(secret) => Self::Jwt(secret),
                None => Self::None,
            },
        }
    }
}

struct Minted {
    token: String,
    at: Instant,
}

/// A service's bearer for one role.
pub struct ServiceToken {
    credentials: Credentials,
    subject: &'static str,
    scopes: Vec<Scope>,
    audience: Audience,
    minted: Mutex<Option<Minted>>,
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceToken")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl ServiceToken {
    /// Tokens for `subject` with `scopes`, for `audience`.
    pub fn new(
        credentials: Credentials,
        subject: &'static str,
        scopes: &[Scope],
        audience: Audience,
    ) -> Self {
        Self {
            credentials,
            subject,
            scopes: scopes.to_vec(),
            audience,
            minted: Mutex::new(None),
        }
    }

    /// The bearer to send now, if any.
    pub fn bearer(&self) -> Option<String> {
        match &self.credentials {
            Credentials::None => None,
            Credentials::Token(t) => Some(t.clone()),
            Credentials::Jwt(secret) => {
                let mut minted = self.minted.lock().unwrap_or_else(PoisonError::into_inner);
                let fresh = minted
                    .as_ref()
                    .is_some_and(|m| m.at.elapsed() < LIFETIME.mul_f64(0.8));
                if !fresh {
                    match mint(
                        secret,
                        self.subject,
                        &self.scopes,
                        self.subject,
                        self.audience,
                    ) {
                        Ok(token) => {
                            *minted = Some(Minted {
                                token,
                                at: Instant::now(),
                            });
                        }
                        Err(e) => {
                            tracing::error!(subject = self.subject, error = %e, "cannot mint a service token");
                        }
                    }
                }
                minted.as_ref().map(|m| m.token.clone())
            }
        }
    }

    /// `builder` with the bearer, if any.
    pub fn authorize(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let builder = propagate(builder);
        match self.bearer() {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }
}

/// Adds the current span's W3C trace context (`traceparent`, `tracestate`), if any, so the
/// service asked continues the trace (the console's proxy hops, the bridge's calls to its
/// server, the channel gateway's notify).
pub fn propagate(builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    builder.headers(turnstone_actors::provider::trace_headers(
        turnstone_runtime::remote::TraceContext::current().as_ref(),
    ))
}
