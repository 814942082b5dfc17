//! Ed25519 keys in the PEM forms that OpenSSL and JWT libraries use: the token
//! service's private key as PKCS#8 (`-----BEGIN PRIVATE KEY-----`), the node's public
//! key as SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`). `openssl genpkey
//! -algorithm ed25519` makes the same pair as [`generate`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): the algorithm (OID 1.3.101.112)
/// and a 32-byte bit string, after this fixed prefix.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A new key pair: (private key PEM, public key PEM).
pub fn generate() -> (String, String) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .expect("the system's random source works");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key pair just made");
    let private = pem("PRIVATE KEY", pkcs8.as_ref());
    let public = pem("PUBLIC KEY", &spki(pair.public_key().as_ref()));
    (private, public)
}

/// The 32-byte public key in a PEM public key (what `DecodingKey::from_ed_der` takes:
/// the raw key, despite its name).
pub fn public_key(text: &[u8]) -> Result<[u8; 32], String> {
    let der = unpem(text, "PUBLIC KEY")?;
    der.strip_prefix(&SPKI_PREFIX[..])
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| "the key is not an Ed25519 key".into())
}

/// The 32-byte public half of a private key (PKCS#8 PEM).
pub fn public_of_private(text: &[u8]) -> Result<Vec<u8>, String> {
    let der = unpem(text, "PRIVATE KEY")?;
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
        .map_err(|e| format!("the key is not an Ed25519 key: {e}"))?;
    Ok(pair.public_key().as_ref().to_vec())
}

fn spki(public: &[u8]) -> Vec<u8> {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(public);
    der
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside the one `label` block of a PEM text.
fn unpem(text: &[u8], label: &str) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not text".to_owned())?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| format!("no {begin} line"))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| format!("no {end} line"))?;
    let b64: String = text[start..start + stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(b64).map_err(|e| format!("bad base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_reads_back_and_other_keys_are_refused() {
        let (private, public) = generate();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let key = public_key(public.as_bytes()).unwrap();
        assert_eq!(public_of_private(private.as_bytes()).unwrap(), key.to_vec());
        // The public key OpenSSL prints for RFC 8410's example private key.
        let rfc8410 = "-----BEGIN PUBLIC KEY-----\n\
            MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
            -----END PUBLIC KEY-----\n";
        assert_eq!(public_key(rfc8410.as_bytes()).unwrap()[..2], [0x19, 0xbf]);
        // An EC P-256 public key is no Ed25519 key.
        let p256 = "-----BEGIN PUBLIC KEY-----\n\
            MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEkhyd2m0kEHg42VK0fHzFd+jIpiyv\n\
            KeDbjwlEgZdowMHp54YefNhiXaOhn3nSIKgxFBCYHla3WaTMz9YI3yNgdQ==\n\
            -----END PUBLIC KEY-----\n";
        assert!(public_key(p256.as_bytes()).is_err());
        assert!(public_key(b"").is_err());
        assert!(public_key(private.as_bytes()).is_err());
        assert!(public_of_private(public.as_bytes()).is_err());
        // A pair made by `openssl genpkey -algorithm ed25519` (PKCS#8 v1).
        let openssl_private = "-----BEGIN PRIVATE KEY-----\n\
            MC4CAQAwBQYDK2VwBCIEIHOSkoQ1e7eexLtksWv5Dzvb8zIepUbHFAjhWew06huO\n\
            -----END PRIVATE KEY-----\n";
        let openssl_public = "-----BEGIN PUBLIC KEY-----\n\
            MCowBQYDK2VwAyEArnXBJuIr+3PwpaXTNccf0a27hmVQbEzn1S/h2MKLNEI=\n\
            -----END PUBLIC KEY-----\n";
        assert_eq!(
            public_of_private(openssl_private.as_bytes()).unwrap(),
            public_key(openssl_public.as_bytes()).unwrap().to_vec()
        );
        assert!(public_key(b"-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----").is_err());
    }
}
