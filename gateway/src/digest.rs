//! Digest authentication of a trunk or SBC (RFC 3261 §22 with RFC 2617's `qop=auth`,
//! MD5 or SHA-256 as the caller answers; rsipstack computes the digests): the other
//! way to trust a caller besides `--sip-trust`'s networks. A caller whose From user
//! is the trunk's name (`--sip-auth-user`) is challenged (401) and must answer with
//! the trunk's password; one that does is trusted (no room PIN), one that answers
//! wrong gets 403. Other callers are not asked: room systems dial in with a PIN.
//!
//! Nonces are stateless: the time they were made and an HMAC of it and the caller's
//! address under a key of this process, good for [`NONCE_LIFETIME`] and used once
//! (`nc` 1). An answer holds for its Request-URI only, so one captured on the way is
//! no use for another room; it could still be replayed from the same address within
//! that time: a trunk that can, should use TLS. Another process (a restart, a second
//! gateway) does not know the nonces: its callers are simply challenged again.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rsipstack::dialog::authenticate::{compute_digest, extract_digest_uri_raw};
use rsipstack::sip::headers::auth::{Algorithm, AuthQop, Scheme};
use rsipstack::sip::typed::Authorization;
use rsipstack::sip::{Header, Method, Request, Uri};
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

    fn mac(&self, secs: u64, source: Option<IpAddr>) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(&secs.to_be_bytes());
        // Made for one address: an answer captured on the way is no use from another.
        mac.update(
            source
                .map(|ip| ip.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        let tag = mac.finalize().into_bytes();
        tag[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A nonce made at `now` for a caller at `source`.
    pub fn nonce(&self, now: SystemTime, source: Option<IpAddr>) -> String {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        format!("{secs:x}.{}", self.mac(secs, source))
    }

    /// Whether `nonce` is one of ours made for `source`, and whether it is still good
    /// at `now`.
    fn nonce_state(&self, nonce: &str, source: Option<IpAddr>, now: SystemTime) -> Option<bool> {
        let (secs, tag) = nonce.split_once('.')?;
        let secs = u64::from_str_radix(secs, 16).ok()?;
        if !same(self.mac(secs, source).as_bytes(), tag.as_bytes()) {
            return None;
        }
        let made = UNIX_EPOCH + Duration::from_secs(secs);
        let age = now.duration_since(made).unwrap_or(Duration::MAX);
        Some(age <= NONCE_LIFETIME)
    }

    /// The challenge for a 401 to a caller at `source` (`stale`: only the nonce
    /// expired).
    pub fn challenge(&self, now: SystemTime, source: Option<IpAddr>, stale: bool) -> Header {
        let stale = if stale { ", stale=true" } else { "" };
        Header::WwwAuthenticate(
            format!(
                "Digest realm=\"{REALM}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"{stale}",
                self.nonce(now, source)
            )
            .into(),
        )
    }

    /// What `req`'s credentials (or their absence) come to at `now`, for a request
    /// from `source`. An answer is held to what the challenge offered (Digest, MD5,
    /// `qop=auth`, a nonce of ours made for this address), to this request (its
    /// digest URI is the Request-URI: an answer for one room is not one for
    /// another), and to its first use of the nonce (`nc` 1: a trunk that counts on
    /// is challenged afresh).
    pub fn check(&self, req: &Request, source: Option<IpAddr>, now: SystemTime) -> Check {
        // Ours: the Authorization header for our realm (others may be upstream's).
        let ours = req.headers.iter().find_map(|h| match h {
            Header::Authorization(a) => {
                let raw = a.value().to_owned();
                let auth = Authorization::parse(&raw).ok()?;
                (auth.realm == REALM).then_some((raw, auth))
            }
            _ => None,
        });
        let Some((raw, auth)) = ours else {
            return if from_user(req).as_deref() == Some(self.user.as_str()) {
                Check::Challenge { stale: false }
            } else {
                Check::NotTrunk
            };
        };
        let offered = auth.scheme == Scheme::Digest
            && matches!(auth.algorithm, None | Some(Algorithm::Md5))
            && matches!(auth.qop, Some(AuthQop::Auth { nc: 1, .. }));
        let Some(fresh) = self.nonce_state(&auth.nonce, source, now) else {
            return Check::Challenge { stale: false };
        };
        if !offered {
            return Check::Challenge { stale: false };
        }
        let uri = extract_digest_uri_raw(&raw).unwrap_or_else(|| auth.uri.to_string());
        let same_target = Uri::try_from(uri.as_str()).is_ok_and(|u| {
            u.auth.map(|a| a.user) == req.uri.auth.as_ref().map(|a| a.user.clone())
                && u.host_with_port == req.uri.host_with_port
        });
        let expected = compute_digest(
            &auth.username,
            &self.password,
            REALM,
            &auth.nonce,
            &Method::Invite,
            &uri,
            Algorithm::Md5,
            auth.qop.as_ref(),
        );
        let answered = auth.response.to_ascii_lowercase();
        let right = same(auth.username.as_bytes(), self.user.as_bytes())
            && same(expected.as_bytes(), answered.as_bytes());
        match (right && same_target, fresh) {
            (true, true) => Check::Valid,
            // The right password on an old nonce: asked again, `stale` (RFC 2617).
            (true, false) => Check::Challenge { stale: true },
            (false, _) => Check::Wrong,
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
