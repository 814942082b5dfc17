//! Shared secrets (the join-token secret, the node secret): what is strong enough, and
//! a fresh one. Whoever holds one valid token can test guesses of the token secret
//! offline at billions a second, so a secret must carry at least 32 bytes of key
//! material and must not be a placeholder copied from an example.
//!
//! The secret is used as written (its bytes are the HMAC key, as for every JWT
//! library's `from_secret`); only its strength is judged by what it encodes: a hex
//! string carries half its length in bytes, a base64 string three quarters.

use std::fmt;

/// Least key material a secret must carry.
pub const MIN_KEY_BYTES: usize = 32;

/// Words of example secrets and guesses that no deployment should run with.
const PLACEHOLDERS: &[&str] = &[
    "change",
    "replace",
    "example",
    "placeholder",
    "secret",
    "password",
    "passw0rd",
    "default",
    "knudepunkt",
    "test",
    "dummy",
    "sample",
];

/// Why a secret was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeakSecret {
    /// Less key material than [`MIN_KEY_BYTES`].
    Short { bytes: usize },
    /// Few distinct characters: a pattern, not randomness.
    Repetitive { distinct: usize },
    /// Contains a word of example secrets.
    Placeholder(&'static str),
}

impl fmt::Display for WeakSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeakSecret::Short { bytes } => write!(
                f,
                "it carries {bytes} bytes of key material; at least {MIN_KEY_BYTES} are needed"
            ),
            WeakSecret::Repetitive { distinct } => write!(
                f,
                "it has only {distinct} distinct characters: a pattern, not a random key"
            ),
            WeakSecret::Placeholder(word) => {
                write!(f, "it contains {word:?}, a word of example secrets")
            }
        }
    }
}

/// How to make a good one, for error messages.
pub const HOW_TO_MAKE_ONE: &str = "make one with `signalling secret` (or `openssl rand -hex 32`)";

/// Bytes of key material the secret encodes.
pub fn key_bytes(secret: &str) -> usize {
    let s = secret.trim_end_matches('=');
    let hex = !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let base64 = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'));
    if hex {
        s.len() / 2
    } else if base64 {
        s.len() * 6 / 8
    } else {
        secret.len()
    }
}

/// Accept a secret strong enough to sign tokens or prove a node.
pub fn check(secret: &str) -> Result<(), WeakSecret> {
    let bytes = key_bytes(secret);
    if bytes < MIN_KEY_BYTES {
        return Err(WeakSecret::Short { bytes });
    }
    let lower = secret.to_ascii_lowercase();
    if let Some(word) = PLACEHOLDERS.iter().find(|w| lower.contains(*w)) {
        return Err(WeakSecret::Placeholder(word));
    }
    let mut seen = [false; 256];
    secret.bytes().for_each(|b| seen[b as usize] = true);
    let distinct = seen.iter().filter(|s| **s).count();
    // 64 random hex digits show about 16 distinct ones; fewer than 10 is a pattern.
    if distinct < 10 {
        return Err(WeakSecret::Repetitive { distinct });
    }
    Ok(())
}

/// A fresh secret: 32 random bytes from the OS, as 64 hex digits.
pub fn generate() -> String {
    rand::random::<[u8; MIN_KEY_BYTES]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_pass_and_weak_ones_say_why() {
        for _ in 0..100 {
            let s = generate();
            assert_eq!(key_bytes(&s), 32);
            assert_eq!(check(&s), Ok(()), "{s}");
        }
        // Six characters of the base64 alphabet encode four bytes.
        assert_eq!(check("s3cret"), Err(WeakSecret::Short { bytes: 4 }));
        // 40 hex digits are only 20 bytes, however long they look.
        assert_eq!(
            check(&"0123456789abcdef0123456789abcdef01234567"[..40]),
            Err(WeakSecret::Short { bytes: 20 })
        );
        assert!(matches!(
            check("CHANGE-ME-join-token-secret-with-padding-to-be-long"),
            Err(WeakSecret::Placeholder(_))
        ));
        assert!(matches!(
            check(&"change-me-".repeat(5)),
            Err(WeakSecret::Placeholder("change"))
        ));
        assert_eq!(
            check(&"ab".repeat(40)),
            Err(WeakSecret::Repetitive { distinct: 2 })
        );
        // base64 of 33 random bytes, and a long passphrase of many characters, pass.
        assert_eq!(
            check("q0Z8v1yN4kPj2sW9xR7tB3mC6hL5dF0gU1aE8iO2YzXc"),
            Ok(())
        );
        assert_eq!(
            check("Correct horse battery staple, quietly grazing on the fjord!"),
            Ok(())
        );
        assert!(WeakSecret::Short { bytes: 6 }.to_string().contains("32"));
    }
}
