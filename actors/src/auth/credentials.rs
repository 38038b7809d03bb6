//! Passwords (bcrypt, as 0.4.1 stores them) and API tokens (`ts_` + 64 hex, stored as their
//! SHA-256).

use sha2::{Digest, Sha256};

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;
/// Longest username accepted.
pub const MAX_USERNAME: usize = 64;

/// Why credentials were refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Too short.
    #[error("Password must be at least {MIN_PASSWORD} characters")]
    ShortPassword,
    /// Empty, too long or with characters outside letters, digits, `.`, `_` and `-`.
    #[error("Invalid username (1-{MAX_USERNAME} chars: letters, digits, . _ -)")]
    BadUsername,
    /// bcrypt failed.
    #[error("password hashing failed: {0}")]
    Hash(#[from] bcrypt::BcryptError),
}

/// Checks a username: `[A-Za-z0-9._-]{1,64}`, as 0.4.1.
pub fn check_username(username: &str) -> Result<(), CredentialError> {
    let ok = !username.is_empty()
        && username.len() <= MAX_USERNAME
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(()).ok_or(CredentialError::BadUsername)
}

/// A bcrypt hash of `password` (cost 12).
pub fn hash_password(password: &str) -> Result<String, CredentialError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(CredentialError::ShortPassword);
    }
    Ok(bcrypt::hash(password, bcrypt::DEFAULT_COST)?)
}

/// Whether `password` matches `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// A fresh API token: `ts_` and 64 hex digits of randomness.
pub fn new_api_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("ts_{}", hex::encode(bytes))
}

/// How a token is stored: SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The part of a token kept in clear to recognise it.
pub fn token_prefix(token: &str) -> String {
    crate::text::prefix(token, 8).to_owned()
}

/// Compares secrets in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    // Hash first so that the length of the expected secret does not leak either.
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.ct_eq(&hb).into()
}

/// A random secret for signing JWTs (64 hex).
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hashes_and_secrets() {
        let token = new_api_token();
        assert!(token.starts_with("ts_") && token.len() == 67);
        assert!(token[3..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(token, new_api_token());
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(token_prefix(&token).len(), 8);
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3cre"));
        assert!(check_username("ada").is_ok());
        assert!(check_username("ada.l_ove-1").is_ok());
        for bad in ["a b", "", "ünï", "a/b", "a@b", &"x".repeat(65)] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_are_bcrypt_and_checked() {
        assert!(matches!(
            hash_password("short"),
            Err(CredentialError::ShortPassword)
        ));
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$2b$12$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("x", "not-a-hash"));
        // A hash made by Python's bcrypt 5 (as 0.4.1 stores users) verifies too.
        let python = "$2b$04$0IX9a45aer6rzA/f9PDV.ul1OUL3.k4ZA4Cyn3IwgbGJTJa8BZog2";
        assert!(verify_password("python-pass", python));
        assert!(!verify_password("other", python));
    }
}
