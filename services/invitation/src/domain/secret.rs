//! The invitation secret: 256 random bits, base64url without padding, minted by the mailer
//! when it sends the e-mail. Only its SHA-256 (hex) is stored; the secret itself lives only in
//! the e-mail link.
//!
//! Timing: a presented token is hashed first and the hash is the lookup key, so how long the
//! database index takes depends on the hash, which a guesser cannot steer without breaking
//! SHA-256. The row found is then confirmed with [`hash_matches`], a constant-time comparison,
//! so no code path compares secret material byte by byte with an early exit.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Bytes of randomness in a secret.
pub const SECRET_BYTES: usize = 32;
/// Longest token worth hashing; anything longer cannot be a secret of ours.
pub const MAX_TOKEN_LEN: usize = 512;

/// A freshly minted secret. Its `Debug` hides the token so it cannot reach a log by accident.
pub struct Secret {
    token: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// 256 bits from the thread-local CSPRNG (ChaCha, seeded from the operating system).
    pub fn mint() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self {
            token: URL_SAFE_NO_PAD.encode(bytes),
        }
    }

    /// The token for the e-mail link.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// What is stored: SHA-256 hex of the token.
    pub fn hash(&self) -> String {
        hash_token(&self.token)
    }
}

/// SHA-256 hex of a token, the lookup key in the `invitations` table.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `presented` (the SHA-256 hex of a presented token) equals `stored`, in time that
/// depends only on the lengths (`subtle`), never on where the first difference is.
pub fn hash_matches(stored: &str, presented: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(stored.as_bytes(), presented.as_bytes()).into()
}

/// Whether a token is worth looking up: non-empty (checked by the caller) and not absurdly
/// long. Malformed tokens are simply unknown (NOT_FOUND), so this only bounds the work.
pub fn plausible_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_LEN
}

/// The accept link for `token` under `public_url`.
pub fn accept_link(public_url: &str, token: &str) -> String {
    format!(
        "{}/invitations/accept?token={token}",
        public_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_256_bit_base64url_and_distinct() {
        let a = Secret::mint();
        let b = Secret::mint();
        assert_ne!(a.token(), b.token());
        assert_eq!(a.token().len(), 43);
        assert!(
            a.token()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(a.token()).unwrap().len(), 32);
        assert_eq!(format!("{a:?}"), "Secret(***)");
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let secret = Secret::mint();
        assert_eq!(secret.hash(), hash_token(secret.token()));
        assert!(!secret.hash().contains(secret.token()));
    }

    #[test]
    fn hashes_are_compared_whole() {
        let secret = Secret::mint();
        assert!(hash_matches(&secret.hash(), &hash_token(secret.token())));
        let mut other = secret.hash().into_bytes();
        let last = other.len() - 1;
        other[last] = if other[last] == b'0' { b'1' } else { b'0' };
        let other = String::from_utf8(other).unwrap();
        assert!(!hash_matches(&secret.hash(), &other));
        assert!(!hash_matches(&secret.hash(), &secret.hash()[..63]));
        assert!(!hash_matches(&secret.hash(), ""));
    }

    #[test]
    fn links_and_plausibility() {
        assert_eq!(
            accept_link("https://app.example.com/", "t0k"),
            "https://app.example.com/invitations/accept?token=t0k"
        );
        assert!(plausible_token("x"));
        assert!(!plausible_token(""));
        assert!(!plausible_token(&"x".repeat(513)));
    }
}
