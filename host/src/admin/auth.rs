//! The admin API's bearer token: read from an environment variable named in config, or
//! generated at start (32 random bytes, hex) and shown once to the operator.
//!
//! The token is compared in constant time and never logged or returned: its `Debug` is
//! redacted and it has no `Display`.

use subtle::ConstantTimeEq;

use crate::config::Secret;

/// The bearer token every route but `/health` needs.
#[derive(Clone)]
pub struct AdminToken(Secret);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// A token with the given value (from the environment). Refuses tokens shorter than
    /// 16 characters, which are guessable.
    pub fn new(value: impl Into<String>) -> anyhow::Result<AdminToken> {
        let value = value.into();
        if value.trim().len() < 16 {
            anyhow::bail!("the admin token must be at least 16 characters long");
        }
        Ok(AdminToken(Secret::new(value.trim().to_owned())))
    }

    /// A fresh random token from the operating system's generator.
    pub fn generate() -> anyhow::Result<AdminToken> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|error| anyhow::anyhow!("no randomness for the admin token: {error}"))?;
        Ok(AdminToken(Secret::new(hex::encode(bytes))))
    }

    /// The value, for the one place that shows a generated token to the operator.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`; constant time
    /// in the token's content.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(given) = authorization.and_then(|header| header.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let expected = self.0.expose().as_bytes();
        bool::from(given.ct_eq(expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_bearer_token() {
        let token = AdminToken::new("0123456789abcdef0123").expect("long enough");
        assert!(token.accepts(Some(b"Bearer 0123456789abcdef0123")));
        assert!(!token.accepts(Some(b"Bearer 0123456789abcdef012")));
        assert!(!token.accepts(Some(b"Bearer 0123456789abcdef01234")));
        assert!(!token.accepts(Some(b"bearer 0123456789abcdef0123")));
        assert!(!token.accepts(Some(b"0123456789abcdef0123")));
        assert!(!token.accepts(None));
        assert!(AdminToken::new("short").is_err());
    }

    #[test]
    fn generated_tokens_differ_and_never_print() {
        let one = AdminToken::generate().expect("token");
        let two = AdminToken::generate().expect("token");
        assert_ne!(one.expose(), two.expose());
        assert_eq!(one.expose().len(), 64);
        assert!(!format!("{one:?}").contains(one.expose()));
    }
}
