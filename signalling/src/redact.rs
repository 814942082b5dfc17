//! What the logs may say about people. A room's name often names a patient or a
//! clinician, and a participant's identity is a display name: neither appears in a
//! log line at INFO or above. A room is logged as an opaque reference instead, a
//! keyed hash of its name, so that one meeting's lines can still be followed and an
//! operator who knows a room's name can find them (`GET /api/rooms/NAME` shows the
//! reference), while nobody can read names back out of the logs. With `--log-pii`,
//! names and identities are also logged, at DEBUG only, for troubleshooting.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub struct Redactor {
    key: [u8; 32],
    names_at_debug: bool,
}

impl Redactor {
    /// References keyed by a secret of the node's (its token secret, else its node
    /// secret): stable across restarts with the same secret, meaningless without it.
    /// A node with neither (dev mode; a public key and no --quic) keys them anew at
    /// each start.
    pub fn new(secret: &[u8], names_at_debug: bool) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"knudepunkt log references v1");
        Redactor {
            key: mac.finalize().into_bytes().into(),
            names_at_debug,
        }
    }

    /// The room's reference in logs: `r` and 12 hex digits (48 bits).
    pub fn room(&self, name: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("32-byte key");
        mac.update(name.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(13);
        out.push('r');
        for b in &digest[..6] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// A person, told apart from others in meeting records without a name: a keyed
    /// hash of the identity (kept in memory, never written), alike on every
    /// signalling node with the same secret.
    pub fn person(&self, identity: &str) -> u64 {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("32-byte key");
        mac.update(b"person\0");
        mac.update(identity.as_bytes());
        let digest = mac.finalize().into_bytes();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    /// Whether names and identities may be logged (at DEBUG, never above).
    pub fn names_at_debug(&self) -> bool {
        self.names_at_debug
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_stable_per_secret_and_reveal_nothing() {
        let a = Redactor::new(b"one secret", false);
        let b = Redactor::new(b"another secret", false);
        let r = a.room("jensen-consultation");
        assert_eq!(r, a.room("jensen-consultation"));
        assert_eq!(r.len(), 13);
        assert!(r.starts_with('r'));
        assert!(!r.contains("jensen"));
        assert_ne!(r, a.room("jensen-consultation2"));
        assert_ne!(r, b.room("jensen-consultation"));
    }
}
