//! Authentication shared by every Turnstone service (SPEC §14): scopes and HS256 JWTs.

mod credentials;
mod jwt;
mod principal;

pub use credentials::{
    CredentialError, MAX_USERNAME, MIN_PASSWORD, check_username, hash_password, new_api_token,
    random_secret, same_secret, token_hash, token_prefix, verify_password,
};
pub use jwt::{Audience, Claims, JwtError, LIFETIME, mint, verify};
pub use principal::{Authenticator, Principal};

/// A permission level. Each includes the ones below it: approve ⊃ write ⊃ read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// See workstreams and events.
    Read,
    /// Send messages, create and close workstreams.
    Write,
    /// Approve tool calls; administration.
    Approve,
}

impl Scope {
    /// The scope's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Approve => "approve",
        }
    }

    /// Parses one scope name.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "approve" => Some(Scope::Approve),
            _ => None,
        }
    }

    /// A scope with everything it implies (`write` → read, write), sorted.
    pub fn expand(self) -> Vec<Scope> {
        [Scope::Read, Scope::Write, Scope::Approve]
            .into_iter()
            .filter(|s| *s <= self)
            .collect()
    }

    /// Scopes as the sorted comma-separated list JWTs carry (`approve,read,write`).
    pub fn csv(scopes: &[Scope]) -> String {
        let mut names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.join(",")
    }

    /// Parses a comma-separated list; unknown names are ignored.
    pub fn parse_csv(csv: &str) -> Vec<Scope> {
        let mut scopes: Vec<Scope> = csv.split(',').filter_map(Scope::parse).collect();
        scopes.sort_unstable();
        scopes.dedup();
        scopes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_serialise_sorted() {
        assert_eq!(Scope::Write.expand(), vec![Scope::Read, Scope::Write]);
        assert_eq!(Scope::csv(&Scope::Approve.expand()), "approve,read,write");
        assert_eq!(
            Scope::parse_csv("write, read,bogus,write"),
            vec![Scope::Read, Scope::Write]
        );
    }
}
