//! Who may call, and into which room: the room and PIN a caller dialled and the name
//! the room shows ([`Target`]); where a request really came from ([`SourceNote`]:
//! the transport's source, never a header a caller writes); and the limit on PIN
//! attempts per address ([`PinAttempts`]). Trusted networks (`--sip-trust`) need no
//! PIN; the signalling node checks the PIN itself (and counts per room and caller).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::Header;
use rsipstack::transaction::transaction::Transaction;

/// PIN attempts one address may have going or failed in [`PIN_FAILURE_WINDOW`];
/// beyond, its INVITEs get 403 until the oldest failure ages out (the node limits
/// each room, and each room and address, too).
pub(crate) const PIN_FAILURES_PER_ADDRESS: usize = 5;
pub(crate) const PIN_FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Untrusted callers' PIN attempts by source address: failures lately, and those
/// still going (counted too, so that parallel INVITEs cannot all try at once).
#[derive(Default)]
pub(crate) struct PinAttempts(std::sync::Mutex<AttemptBook>);

#[derive(Default)]
pub(crate) struct AttemptBook {
    failures: HashMap<IpAddr, std::collections::VecDeque<Instant>>,
    going: HashMap<IpAddr, usize>,
}

impl PinAttempts {
    pub(crate) fn book(&self) -> std::sync::MutexGuard<'_, AttemptBook> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An attempt from `ip` may start now: it counts until it is dropped.
    pub(crate) fn begin(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Option<Attempt> {
        let mut b = self.book();
        b.failures.retain(|_, q| {
            while q
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= PIN_FAILURE_WINDOW)
            {
                q.pop_front();
            }
            !q.is_empty()
        });
        let failed = b.failures.get(&ip).map_or(0, |q| q.len());
        let going = b.going.get(&ip).copied().unwrap_or(0);
        if failed + going >= PIN_FAILURES_PER_ADDRESS {
            return None;
        }
        *b.going.entry(ip).or_default() += 1;
        Some(Attempt {
            book: self.clone(),
            ip,
        })
    }
}

/// One caller's PIN attempts under way; while it lives it counts as going, and each
/// wrong PIN counts as a failure of its address.
pub(crate) struct Attempt {
    book: Arc<PinAttempts>,
    ip: IpAddr,
}

impl Attempt {
    pub(crate) fn failed(&self) {
        let mut b = self.book.book();
        b.failures
            .entry(self.ip)
            .or_default()
            .push_back(Instant::now());
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let mut b = self.book.book();
        if let Some(n) = b.going.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                b.going.remove(&self.ip);
            }
        }
    }
}

/// The header in which the gateway notes where a request really came from: set on
/// every received request by [`SourceNote`] (any copy the sender put there removed
/// first), so that no header a caller writes can make it look trusted.
pub(crate) const SOURCE_HEADER: &str = "X-Knudepunkt-Source";

/// Notes each received request's transport source (see [`SOURCE_HEADER`]).
pub(crate) struct SourceNote;

impl rsipstack::transaction::endpoint::MessageInspector for SourceNote {
    fn before_send(
        &self,
        msg: rsipstack::sip::SipMessage,
        _dest: Option<&rsipstack::transport::SipAddr>,
    ) -> rsipstack::sip::SipMessage {
        msg
    }

    fn after_received(
        &self,
        msg: rsipstack::sip::SipMessage,
        from: Option<&rsipstack::transport::SipAddr>,
    ) -> rsipstack::sip::SipMessage {
        let rsipstack::sip::SipMessage::Request(mut req) = msg else {
            return msg;
        };
        req.headers.retain(
            |h| !matches!(h, Header::Other(name, _) if name.eq_ignore_ascii_case(SOURCE_HEADER)),
        );
        if let Some(ip) = from.and_then(|f| f.get_socketaddr().ok()).map(|a| a.ip()) {
            req.headers
                .push(Header::Other(SOURCE_HEADER.into(), ip.to_string()));
        }
        req.into()
    }
}

/// Where a request came from: the transport's source, as [`SourceNote`] noted it.
pub(crate) fn source_ip(tx: &Transaction) -> Option<IpAddr> {
    tx.original.headers.iter().find_map(|h| match h {
        Header::Other(name, value) if name.eq_ignore_ascii_case(SOURCE_HEADER) => {
            value.parse().ok()
        }
        _ => None,
    })
}

/// Who the caller wants: the room (the request URI's user part) and a PIN, if dialled
/// as `ROOM*PIN`; and how the caller is shown in the room.
pub(crate) struct Target {
    pub(crate) room: String,
    /// Dialled as `ROOM*PIN`.
    pub(crate) pin: Option<String>,
    pub(crate) identity: String,
}

impl Target {
    pub(crate) fn of(tx: &Transaction) -> Option<Target> {
        let user = tx.original.uri.auth.as_ref()?.user.clone();
        let (room, pin) = match user.split_once('*') {
            Some((r, p)) => (r.to_owned(), Some(p.to_owned())),
            None => (user, None),
        };
        // Room names a keypad or a SIP URI can carry: nothing that would need escaping
        // on its way into the signalling node's URLs.
        let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if room.is_empty() || room.len() > 64 || !room.chars().all(fits) {
            return None;
        }
        Some(Target {
            room,
            pin,
            identity: caller_name(tx),
        })
    }
}

/// The caller as others in the room see them: the From display name, else the number
/// masked to its last two digits (a phone number is never shown whole).
pub(crate) fn caller_name(tx: &Transaction) -> String {
    let from = tx
        .original
        .from_header()
        .ok()
        .and_then(|f| rsipstack::sip::typed::From::parse(f.value()).ok());
    let display = from
        .as_ref()
        .and_then(|f| f.display_name.as_deref())
        .map(|d| d.trim_matches('"').trim().to_owned())
        .filter(|d| !d.is_empty() && d.chars().all(|c| !c.is_control()));
    let user = from.and_then(|f| f.uri.auth.map(|a| a.user));
    name_of(display.as_deref(), user.as_deref())
}

/// A SIP party's name in the room: its display name, else its number masked to the
/// last two digits.
pub(crate) fn name_of(display: Option<&str>, user: Option<&str>) -> String {
    if let Some(d) = display {
        return d.chars().take(64).collect();
    }
    let digits: String = user
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if digits.len() >= 4 {
        format!("Phone ··{}", &digits[digits.len() - 2..])
    } else {
        "SIP caller".to_owned()
    }
}
