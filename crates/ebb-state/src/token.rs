//! API tokens: random, shown once, stored only as a hash.
//!
//! A token is `ebb_` followed by 32 random bytes from the operating system in URL-safe
//! base64 (43 characters). The store keeps the hex SHA-256 of the whole string. A fast hash
//! is enough here (as for GitHub's or Stripe's keys): with 256 random bits there is nothing
//! to guess, and lookup by hash needs no per-token salt.

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::StateError;

pub(crate) const PREFIX: &str = "ebb_";

/// A fresh token's plaintext.
pub(crate) fn generate() -> Result<String, StateError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| StateError::Task(format!("the OS random source failed: {e}")))?;
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// What the store keeps of a token.
pub(crate) fn hash(plaintext: &str) -> String {
    let digest = Sha256::digest(plaintext.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn scopes_json(scopes: &[String]) -> String {
    serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("ebb_") && a.len() == 4 + 43, "{a}");
        assert_eq!(hash(&a), hash(&a));
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
    }
}
