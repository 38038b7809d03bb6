//! HS256 JWTs as Turnstone issues them: `sub`, `scopes` (sorted csv), `src`, `iss`
//! "turnstone", `iat`, `exp` (24 h) and an audience naming the service that accepts it.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Scope;

/// How long a minted token is valid.
pub const LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The service a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// A node's `turnstone-server`.
    Server,
    /// `turnstone-console`.
    Console,
    /// `turnstone-channel`.
    Channel,
}

impl Audience {
    /// The `aud` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Server => "turnstone-server",
            Audience::Console => "turnstone-console",
            Audience::Channel => "turnstone-channel",
        }
    }
}

/// The claims of a Turnstone JWT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id, or `system` for service tokens.
    pub sub: String,
    /// Sorted comma-separated scopes.
    pub scopes: String,
    /// How the token was obtained (`password`, `token`, `service`, …).
    #[serde(default)]
    pub src: String,
    /// Always "turnstone".
    #[serde(default)]
    pub iss: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires (seconds since the epoch).
    pub exp: u64,
    /// The accepting service.
    pub aud: String,
}

impl Claims {
    /// The token's scopes.
    pub fn scopes(&self) -> Vec<Scope> {
        Scope::parse_csv(&self.scopes)
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// No secret configured.
    #[error("no JWT secret is configured")]
    NoSecret,
    /// Bad signature, wrong audience, expired, malformed.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

fn epoch_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs a token for `sub` with `scopes`, valid for [`LIFETIME`].
pub fn mint(
    secret: &str,
    sub: &str,
    scopes: &[Scope],
    src: &str,
    audience: Audience,
) -> Result<String, JwtError> {
    if secret.is_empty() {
        return Err(JwtError::NoSecret);
    }
    let iat = epoch_now();
    let claims = Claims {
        sub: sub.to_owned(),
        scopes: Scope::csv(scopes),
        src: src.to_owned(),
        iss: "turnstone".into(),
        iat,
        exp: iat + LIFETIME.as_secs(),
        aud: audience.as_str().into(),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Checks signature (HS256 only), expiry and audience.
pub fn verify(secret: &str, token: &str, audience: Audience) -> Result<Claims, JwtError> {
    if secret.is_empty() {
        return Err(JwtError::NoSecret);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[audience.as_str()]);
    validation.leeway = 0;
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )?;
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_forgeries_are_refused() {
        let token = mint(
            "s3cret",
            "system",
            &[Scope::Write],
            "service",
            Audience::Channel,
        )
        .unwrap();
        let claims = verify("s3cret", &token, Audience::Channel).unwrap();
        assert_eq!(claims.sub, "system");
        assert_eq!(claims.scopes, "write");
        assert_eq!(claims.exp - claims.iat, 86_400);
        assert!(
            verify("other", &token, Audience::Channel).is_err(),
            "wrong secret"
        );
        assert!(
            verify("s3cret", &token, Audience::Server).is_err(),
            "wrong audience"
        );
        let mut forged = token.clone();
        forged.pop();
        assert!(verify("s3cret", &forged, Audience::Channel).is_err());
        assert!(matches!(
            mint("", "x", &[], "", Audience::Server),
            Err(JwtError::NoSecret)
        ));
    }

    #[test]
    fn expired_and_unsigned_tokens_are_refused() {
        let old = Claims {
            sub: "u".into(),
            scopes: "read".into(),
            src: String::new(),
            iss: "turnstone".into(),
            iat: 1,
            exp: 2,
            aud: "turnstone-server".into(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &old,
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(verify("k", &token, Audience::Server).is_err());
        // alg "none": header {"alg":"none"} with the same claims and no signature
        let none = format!("eyJhbGciOiJub25lIn0.{}.", token.split('.').nth(1).unwrap());
        assert!(verify("k", &none, Audience::Server).is_err());
    }
}
