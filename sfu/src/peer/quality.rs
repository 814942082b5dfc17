//! What a subscriber's RTCP receiver reports say of the media it receives: the loss
//! each report names (str0m averages it per stream for each stats event) and the
//! interarrival jitter, gathered between reports to the signalling node, which puts
//! them in the meeting's record. Per stats event (once a second a stream), not per
//! packet.

use std::time::{Duration, Instant};

/// How often a subscriber's quality is reported (while it has reports).
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// One report's figures: loss per mille (mean, worst), how many loss figures those
/// are of (0: none came), worst jitter in ms.
pub type Figures = (u32, u32, u32, u32);

#[derive(Debug, Default)]
pub struct ReceiveQuality {
    loss_sum: f64,
    losses: u32,
    loss_max: f32,
    jitter_max_ms: f32,
    /// When the next report is due (from the first figure after the last).
    due: Option<Instant>,
}

impl ReceiveQuality {
    /// A stream's stats event: its loss fraction (if a report came) and the jitter
    /// its receiver named, in RTP units of a `clock_rate` clock.
    pub fn add(&mut self, now: Instant, loss: Option<f32>, jitter: Option<(u32, u32)>) {
        let mut any = false;
        if let Some(l) = loss.filter(|l| l.is_finite() && *l >= 0.0) {
            let l = l.min(1.0);
            self.loss_sum += f64::from(l);
            self.losses += 1;
            self.loss_max = self.loss_max.max(l);
            any = true;
        }
        if let Some((units, clock_rate)) = jitter.filter(|(_, rate)| *rate > 0) {
            let ms = units as f32 * 1000.0 / clock_rate as f32;
            self.jitter_max_ms = self.jitter_max_ms.max(ms);
            any = true;
        }
        if any && self.due.is_none() {
            self.due = Some(now + REPORT_EVERY);
        }
    }

    /// The figures since the last report, once one is due (and then it starts over).
    pub fn take(&mut self, now: Instant) -> Option<Figures> {
        if self.due.is_none_or(|due| now < due) {
            return None;
        }
        let mean = if self.losses > 0 {
            self.loss_sum / f64::from(self.losses)
        } else {
            0.0
        };
        let figures = (
            (mean * 1000.0).round() as u32,
            (self.loss_max * 1000.0).round() as u32,
            self.losses,
            self.jitter_max_ms.round() as u32,
        );
        *self = ReceiveQuality::default();
        Some(figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_sum_up_what_came_since_the_last() {
        let t0 = Instant::now();
        let mut q = ReceiveQuality::default();
        assert_eq!(q.take(t0 + REPORT_EVERY * 2), None, "no reports, no report");
        q.add(t0, Some(0.01), Some((900, 90_000)));
        q.add(t0, Some(0.03), Some((240, 48_000)));
        q.add(t0, None, None);
        q.add(t0, Some(f32::NAN), Some((1, 0)));
        assert_eq!(q.take(t0 + Duration::from_secs(9)), None, "not due");
        // Mean 2 %, worst 3 %, worst jitter 10 ms (900 at 90 kHz; 240 at 48 kHz: 5).
        assert_eq!(q.take(t0 + REPORT_EVERY), Some((20, 30, 2, 10)));
        assert_eq!(q.take(t0 + REPORT_EVERY * 3), None, "it started over");
        q.add(t0 + REPORT_EVERY * 3, Some(2.0), None);
        assert_eq!(q.take(t0 + REPORT_EVERY * 4), Some((1000, 1000, 1, 0)));
        // Jitter alone (no loss figure came): the loss says nothing.
        q.add(t0 + REPORT_EVERY * 5, None, Some((450, 90_000)));
        assert_eq!(q.take(t0 + REPORT_EVERY * 6), Some((0, 0, 0, 5)));
    }
}
