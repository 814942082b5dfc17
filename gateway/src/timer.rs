//! RFC 4028 session timers, sans-IO: a caller (or the SBC in front of it) that
//! supports them refreshes the call with a re-INVITE or UPDATE within the interval
//! both sides agreed, and a call that stops being refreshed is over: its far end
//! crashed or lost the network, and the gateway hangs up instead of holding a room
//! seat for a call no one is on. The caller is the refresher (`refresher=uac`);
//! the gateway answers refreshes and watches the time.

use std::time::{Duration, Instant};

/// The smallest interval taken (RFC 4028 §4: 90 s); a smaller one gets a 422.
pub const MIN_SE: u32 = 90;
/// The interval when a caller supports timers but names none (RFC 4028's advice).
pub const DEFAULT_SE: u32 = 1800;

/// What a caller's INVITE asks of session timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Negotiation {
    /// No timer: the caller does not support them (the gateway refreshes nothing).
    Off,
    /// A timer of this many seconds, the caller refreshing.
    On(u32),
    /// The caller's interval is under [`MIN_SE`]: 422 with `Min-SE: 90`.
    TooSmall,
}

/// Read an INVITE's `Session-Expires` and `Min-SE` values (delta-seconds, parameters
/// after `;`), with whether it supports (or requires) the `timer` extension. The
/// caller's interval is taken as it is (RFC 4028 §9: an answer never raises it); a
/// caller that asks the gateway to refresh (`refresher=uas`) gets no timer, since the
/// gateway sends no refreshes of its own.
pub fn negotiate(
    session_expires: Option<&str>,
    min_se: Option<&str>,
    supports_timer: bool,
) -> Negotiation {
    if !supports_timer {
        return Negotiation::Off;
    }
    let wants_uas = session_expires.is_some_and(|v| {
        v.split(';')
            .skip(1)
            .any(|p| p.trim().eq_ignore_ascii_case("refresher=uas"))
    });
    if wants_uas {
        return Negotiation::Off;
    }
    let floor = min_se.and_then(seconds).unwrap_or(0).max(MIN_SE);
    match session_expires.map(seconds) {
        None => Negotiation::On(DEFAULT_SE.max(floor)),
        Some(Some(s)) if s >= MIN_SE => Negotiation::On(s),
        Some(Some(_)) => Negotiation::TooSmall,
        // A value that does not parse: treated as none asked.
        Some(None) => Negotiation::On(DEFAULT_SE.max(floor)),
    }
}

/// The interval a refresh (re-INVITE or UPDATE) asks, if a usable one.
pub fn refresh_interval(session_expires: Option<&str>) -> Option<u32> {
    session_expires.and_then(seconds).filter(|&s| s >= MIN_SE)
}

/// A header's delta-seconds, its parameters left out.
fn seconds(v: &str) -> Option<u32> {
    v.split(';').next()?.trim().parse::<u32>().ok()
}

/// The `Session-Expires` value of the gateway's answers.
pub fn header_value(seconds: u32) -> String {
    format!("{seconds};refresher=uac")
}

/// One call's session timer.
#[derive(Clone, Copy, Debug)]
pub struct SessionTimer {
    interval: Duration,
    refreshed: Instant,
}

impl SessionTimer {
    pub fn new(seconds: u32, now: Instant) -> Self {
        SessionTimer {
            interval: Duration::from_secs(seconds.into()),
            refreshed: now,
        }
    }

    /// A refresh (re-INVITE or UPDATE) was answered at `now`, for `seconds` more.
    pub fn refreshed(&mut self, now: Instant, seconds: u32) {
        self.refreshed = now;
        self.interval = Duration::from_secs(seconds.into());
    }

    /// When the call is over unless refreshed: as the side that does not refresh, the
    /// gateway sends its BYE before the session expires, by a third of the interval or
    /// 32 s, whichever is less (RFC 4028 §10).
    pub fn deadline(&self) -> Instant {
        let margin = (self.interval / 3).min(Duration::from_secs(32));
        self.refreshed + self.interval - margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_an_invite_asks() {
        assert_eq!(
            negotiate(Some("1800;refresher=uac"), None, true),
            Negotiation::On(1800)
        );
        assert_eq!(
            negotiate(Some("120"), Some("90"), true),
            Negotiation::On(120)
        );
        // Never raised above what the caller asked.
        assert_eq!(
            negotiate(Some("120"), Some("300"), true),
            Negotiation::On(120)
        );
        // The gateway refreshes nothing itself: no timer when asked to.
        assert_eq!(
            negotiate(Some("1800;refresher=uas"), None, true),
            Negotiation::Off
        );
        assert_eq!(refresh_interval(Some("600;refresher=uac")), Some(600));
        assert_eq!(refresh_interval(Some("30")), None);
        assert_eq!(refresh_interval(None), None);
        assert_eq!(negotiate(Some("30"), None, true), Negotiation::TooSmall);
        assert_eq!(negotiate(None, None, true), Negotiation::On(DEFAULT_SE));
        assert_eq!(
            negotiate(Some("soon"), None, true),
            Negotiation::On(DEFAULT_SE)
        );
        // No support, no timer, whatever a proxy wrote.
        assert_eq!(negotiate(Some("1800"), None, false), Negotiation::Off);
        assert_eq!(header_value(1800), "1800;refresher=uac");
    }

    #[test]
    fn the_gateway_hangs_up_before_an_unrefreshed_session_expires() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(90, t0);
        // 90 s less a third (30 s): 60 s.
        assert_eq!(t.deadline(), t0 + Duration::from_secs(60));
        t.refreshed(t0 + Duration::from_secs(50), 90);
        assert_eq!(t.deadline(), t0 + Duration::from_secs(110));
        // A refresh may change the interval.
        t.refreshed(t0 + Duration::from_secs(100), 120);
        assert_eq!(t.deadline(), t0 + Duration::from_secs(188));
        // Long intervals: 32 s before they end.
        let t = SessionTimer::new(1800, t0);
        assert_eq!(t.deadline(), t0 + Duration::from_secs(1768));
    }
}
