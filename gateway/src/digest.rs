//! Digest authentication of a trunk or SBC (RFC 3261 §22 with RFC 2617's `qop=auth`,
//! MD5 or SHA-256 as the caller answers; rsipstack computes the digests): the other
//! way to trust a caller besides `--sip-trust`'s networks. A caller whose From user
//! is the trunk's name (`--sip-auth-user`) is challenged (401) and must answer with
//! the trunk's password; one that does is trusted (no room PIN), one that answers
//! wrong gets 403. Other callers are not asked: room systems dial in with a PIN.
//!
//! Nonces are stateless: the time they were made and an HMAC of it under a key of
//! this process, good for [`NONCE_LIFETIME`]. Over UDP or TCP a captured INVITE's
//! answer could be replayed within that time: a trunk that can, should use TLS.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rsipstack::dialog::authenticate::{compute_digest, extract_digest_uri_raw};
use rsipstack::sip::headers::auth::Algorithm;
use rsipstack::sip::typed::Authorization;
use rsipstack::sip::{Header, Method, Request};
use sha2::Sha256;

/// The realm of every challenge.
pub const REALM: &str = "knudepunkt";
/// How long a challenge's nonce is good for.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// The shortest password taken: a trunk's password is a machine's secret.
pub const MIN_PASSWORD: usize = 16;

/// What a request's credentials come to.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Not the trunk (its From user is another's, and it sent no credentials of
    /// ours): the PIN path.
    NotTrunk,
    /// The trunk, with the right password: trusted.
    Valid,
    /// The trunk without (current) credentials: challenge it; `stale` when its nonce
    /// only expired (it may answer again without asking its user).
    Challenge { stale: bool },
    /// Credentials that do not hold: 403.
    Wrong,
}

/// The trunk's name and password, and the key nonces are made with.
pub struct Digest {
    user: String,
    password: String,
    key: [u8; 32],
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest").field("user", &self.user).finish()
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Digest {
    /// The trunk `user` with `password`: refused when the name is not a SIP user
    /// part or the password is shorter than [`MIN_PASSWORD`].
    pub fn new(user: &str, password: &str) -> Result<Digest, String> {
        let fits = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(c);
        if user.is_empty() || user.len() > 64 || !user.chars().all(fits) {
            return Err(format!("--sip-auth-user {user:?} is not a SIP user name"));
        }
        if password.chars().count() < MIN_PASSWORD {
            return Err(format!(
                "the SIP trunk password must have at least {MIN_PASSWORD} characters \
                 (make one with `signalling secret`)"
            ));
        }
        Ok(Digest {
            user: user.to_owned(),
            password: password.to_owned(),
            key: rand::random(),
        })
    }

    fn mac(&self, secs: u64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(&secs.to_be_bytes());
        let tag = mac.finalize().into_bytes();
        tag[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A nonce made at `now`.
    pub fn nonce(&self, now: SystemTime) -> String {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        format!("{secs:x}.{}", self.mac(secs))
    }

    /// Whether `nonce` is one of ours, and whether it is still good at `now`.
    fn nonce_state(&self, nonce: &str, now: SystemTime) -> Option<bool> {
        let (secs, tag) = nonce.split_once('.')?;
        let secs = u64::from_str_radix(secs, 16).ok()?;
        if !same(self.mac(secs).as_bytes(), tag.as_bytes()) {
            return None;
        }
        let made = UNIX_EPOCH + Duration::from_secs(secs);
        let age = now.duration_since(made).unwrap_or(Duration::MAX);
        Some(age <= NONCE_LIFETIME)
    }

    /// The challenge for a 401 (`stale`: only the nonce expired).
    pub fn challenge(&self, now: SystemTime, stale: bool) -> Header {
        let stale = if stale { ", stale=true" } else { "" };
        Header::WwwAuthenticate(
            format!(
                "Digest realm=\"{REALM}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"{stale}",
                self.nonce(now)
            )
            .into(),
        )
    }

    /// What `req`'s credentials (or their absence) come to at `now`.
    pub fn check(&self, req: &Request, now: SystemTime) -> Check {
        let raw = req.headers.iter().find_map(|h| match h {
            Header::Authorization(a) => Some(a.value().to_owned()),
            _ => None,
        });
        let auth = raw
            .as_deref()
            .and_then(|r| Authorization::parse(r).ok())
            .filter(|a| a.realm == REALM);
        let (Some(raw), Some(auth)) = (raw, auth) else {
            return if from_user(req).as_deref() == Some(self.user.as_str()) {
                Check::Challenge { stale: false }
            } else {
                Check::NotTrunk
            };
        };
        if !same(auth.username.as_bytes(), self.user.as_bytes()) {
            return Check::Wrong;
        }
        match self.nonce_state(&auth.nonce, now) {
            None => return Check::Challenge { stale: false },
            Some(false) => return Check::Challenge { stale: true },
            Some(true) => {}
        }
        let uri = extract_digest_uri_raw(&raw).unwrap_or_else(|| auth.uri.to_string());
        // RFC 2617: no algorithm named is MD5.
        let algorithm = auth.algorithm.unwrap_or(Algorithm::Md5);
        let expected = compute_digest(
            &auth.username,
            &self.password,
            REALM,
            &auth.nonce,
            &Method::Invite,
            &uri,
            algorithm,
            auth.qop.as_ref(),
        );
        let answered = auth.response.to_ascii_lowercase();
        if same(expected.as_bytes(), answered.as_bytes()) {
            Check::Valid
        } else {
            Check::Wrong
        }
    }
}

/// The user part of the request's From URI.
fn from_user(req: &Request) -> Option<String> {
    use rsipstack::sip::prelude::HeadersExt;
    let from = req.from_header().ok()?;
    let from = rsipstack::sip::typed::From::parse(from.value()).ok()?;
    Some(from.uri.auth?.user)
}

#[cfg(test)]
mod tests;
