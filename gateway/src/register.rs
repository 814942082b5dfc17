//! Registration with a SIP trunk or registrar (`--sip-register sip:NUMBER@REGISTRAR`),
//! so that calls to the trunk's number reach the gateway: INVITEs the trunk sends to
//! the registered contact carry the number, and reach the room whose numeric alias it
//! is (`POST /api/rooms {"alias"}`). rsipstack's `Registration` keeps the binding:
//! REGISTER at once, digest challenges answered with the trunk's password, refreshed
//! at 75% of the expiry the registrar granted, retried with backoff when it fails.
//! At stop the binding is removed (Expires: 0).

use std::time::Duration;

use prometheus::IntGauge;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::registration::{RefreshOutcome, Registration};
use rsipstack::sip::Uri;
use rsipstack::transaction::endpoint::EndpointInnerRef;
use tokio_util::sync::CancellationToken;

/// What the gateway registers, and with whom.
#[derive(Clone)]
pub struct Register {
    /// The registrar (the REGISTER's request URI: `sip:host[:port]`).
    registrar: Uri,
    /// The number (the address-of-record's user part).
    user: String,
    password: String,
    /// The expiry asked for, seconds (the registrar may grant less).
    expires: u32,
}

impl std::fmt::Debug for Register {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Register")
            .field("registrar", &self.registrar.to_string())
            .field("expires", &self.expires)
            .finish()
    }
}

/// The expiry asked for when none is given, and the range taken.
pub const DEFAULT_EXPIRES: u32 = 600;
const EXPIRES: std::ops::RangeInclusive<u32> = 60..=86_400;

impl Register {
    /// `sip:USER@HOST[:PORT]` registered with `password` (empty: the registrar asks
    /// none) for `expires` seconds.
    pub fn new(aor: &str, password: Option<String>, expires: u32) -> Result<Register, String> {
        let uri = Uri::try_from(aor).map_err(|e| format!("--sip-register {aor:?}: {e}"))?;
        if uri.scheme != Some(rsipstack::sip::Scheme::Sip) {
            return Err(format!("--sip-register {aor:?}: a sip: URI is needed"));
        }
        let user = uri
            .auth
            .as_ref()
            .map(|a| a.user.clone())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| format!("--sip-register {aor:?}: the number (user part) is missing"))?;
        if !EXPIRES.contains(&expires) {
            return Err(format!(
                "--sip-register-expires {expires}: between {} and {} seconds",
                EXPIRES.start(),
                EXPIRES.end()
            ));
        }
        let registrar = Uri { auth: None, ..uri };
        Ok(Register {
            registrar,
            user,
            password: password.unwrap_or_default(),
            expires,
        })
    }
}

/// Keep the binding until `stop`, then remove it. `registered` is 1 while it holds.
pub async fn keep(
    endpoint: EndpointInnerRef,
    register: Register,
    registered: IntGauge,
    stop: CancellationToken,
) {
    let credential = Credential {
        username: register.user.clone(),
        password: register.password.clone(),
        realm: None,
        auth_username: None,
    };
    let mut registration = Registration::new(endpoint, Some(credential));
    let mut held = false;
    let outcome = |o: RefreshOutcome<'_>| {
        let now = match o {
            RefreshOutcome::Registered(_) => true,
            RefreshOutcome::Rejected(r) => {
                tracing::warn!(
                    status = r.status_code.code(),
                    "the SIP registrar refused the registration"
                );
                false
            }
            RefreshOutcome::Failed(e) => {
                tracing::warn!("SIP registration failed: {e}");
                false
            }
        };
        if now != held {
            if now {
                tracing::info!("registered with the SIP registrar");
            }
            held = now;
            registered.set(i64::from(now));
        }
    };
    let registrar = register.registrar.clone();
    registration
        .keep_alive(registrar.clone(), register.expires, stop, outcome)
        .await;
    // Stopping: the binding goes, so that the trunk sends no calls to a gateway that
    // is gone (best effort, briefly).
    let remove = registration.register(registrar, Some(0));
    let _ = tokio::time::timeout(Duration::from_secs(2), remove).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registration_is_read_from_its_uri() {
        let r = Register::new("sip:4711@127.0.0.1:5070", Some("pw".into()), 600).unwrap();
        assert_eq!(r.user, "4711");
        assert_eq!(r.registrar.to_string(), "sip:127.0.0.1:5070");
        // The password is never shown.
        assert!(!format!("{r:?}").contains("pw"));
        assert!(
            Register::new("sip:127.0.0.1", None, 600).is_err(),
            "no number"
        );
        assert!(Register::new("tel:4711", None, 600).is_err());
        assert!(Register::new("sip:4711@127.0.0.1", None, 5).is_err());
        assert!(Register::new("not a uri", None, 600).is_err());
    }
}
