//! Mutual proof of a shared secret, bound to the QUIC connection.

use hmac::{Hmac, Mac};
use sha2::Sha256;

const EXPORTER_LABEL: &[u8] = b"knudepunkt control v1";

/// Keying material both ends of one QUIC connection (and only they) compute alike.
pub fn channel_binding(conn: &quinn::Connection) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, EXPORTER_LABEL, b"")
        .map_err(|_| "TLS keying material unavailable".to_owned())?;
    Ok(out)
}

/// HMAC-SHA256(secret, role || nonce || binding), hex.
pub fn proof(secret: &[u8], role: &str, nonce: &str, binding: &[u8; 32]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(role.as_bytes());
    mac.update(b"\0");
    mac.update(nonce.as_bytes());
    mac.update(binding);
    hex(&mac.finalize().into_bytes())
}

/// Constant-time check of a proof.
pub fn verify(secret: &[u8], role: &str, nonce: &str, binding: &[u8; 32], claimed: &str) -> bool {
    let expected = proof(secret, role, nonce, binding);
    expected.len() == claimed.len()
        && expected
            .bytes()
            .zip(claimed.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A fresh random nonce, hex.
pub fn nonce() -> String {
    hex(&rand::random::<[u8; 16]>())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_depend_on_every_input() {
        let b = [7u8; 32];
        let p = proof(b"s", "node", "n1", &b);
        assert!(verify(b"s", "node", "n1", &b, &p));
        assert!(!verify(b"other", "node", "n1", &b, &p));
        assert!(!verify(b"s", "signalling", "n1", &b, &p));
        assert!(!verify(b"s", "node", "n2", &b, &p));
        assert!(!verify(b"s", "node", "n1", &[8u8; 32], &p));
        assert!(!verify(b"s", "node", "n1", &b, "00"));
        assert_ne!(nonce(), nonce());
    }
}
