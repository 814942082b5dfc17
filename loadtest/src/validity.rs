//! Whether a run offered the load it planned. A load generator short of CPU skips
//! frames, sends them late and comes round late to its clients: it then offers less
//! load than planned, which would make the target look better than it is. Such a run
//! is **inconclusive**: not passed, not failed (exit status 3), with the reason.

use std::sync::atomic::Ordering;

use serde::Serialize;

use client::Counters;

/// The most of frames skipped, frames late, or client turns late, as a share.
pub const MAX_SHARE: f64 = 0.001;

/// What the load generator did, over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LoadFigures {
    pub frames_planned: u64,
    pub frames_skipped: u64,
    /// Written over `slots::LATE` after their slot.
    pub frames_late: u64,
    pub client_turns: u64,
    /// Client turns that came round over 50 ms late.
    pub slow_client_turns: u64,
}

impl LoadFigures {
    pub fn read(c: &Counters) -> Self {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        LoadFigures {
            frames_planned: load(&c.frames_planned),
            frames_skipped: load(&c.frames_skipped),
            frames_late: load(&c.frames_late),
            client_turns: load(&c.client_turns),
            slow_client_turns: load(&c.slow_turns),
        }
    }

    /// What happened since `before` (a step of a longer run).
    pub fn since(&self, before: &LoadFigures) -> LoadFigures {
        LoadFigures {
            frames_planned: self.frames_planned.saturating_sub(before.frames_planned),
            frames_skipped: self.frames_skipped.saturating_sub(before.frames_skipped),
            frames_late: self.frames_late.saturating_sub(before.frames_late),
            client_turns: self.client_turns.saturating_sub(before.client_turns),
            slow_client_turns: self
                .slow_client_turns
                .saturating_sub(before.slow_client_turns),
        }
    }

    /// `Ok` when the planned load was offered; otherwise why the run is inconclusive.
    pub fn judge(&self) -> Result<(), String> {
        let measures = [
            (self.frames_skipped, self.frames_planned, "frames skipped"),
            (
                self.frames_late,
                self.frames_planned,
                "frames sent over 5 ms late",
            ),
            (
                self.slow_client_turns,
                self.client_turns,
                "client turns over 50 ms late",
            ),
        ];
        let why: Vec<String> = measures
            .iter()
            .filter(|(n, of, _)| *of > 0 && *n as f64 / *of as f64 > MAX_SHARE)
            .map(|(n, of, what)| {
                let pct = *n as f64 / *of as f64 * 100.0;
                format!("{n} of {of} {what} ({pct:.2}%)")
            })
            .collect();
        if why.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the load generator could not offer its planned load: {} (limit {}% each)",
                why.join("; "),
                MAX_SHARE * 100.0
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenth_of_a_percent_is_tolerated_more_is_inconclusive() {
        let ok = LoadFigures {
            frames_planned: 100_000,
            frames_skipped: 100,
            frames_late: 100,
            client_turns: 50_000,
            slow_client_turns: 50,
        };
        assert_eq!(ok.judge(), Ok(()));
        let skipped = LoadFigures {
            frames_skipped: 101,
            ..ok
        };
        let e = skipped.judge().unwrap_err();
        assert!(e.contains("101 of 100000 frames skipped"), "{e}");
        let late = LoadFigures {
            frames_late: 5_000,
            ..ok
        };
        assert!(late.judge().unwrap_err().contains("over 5 ms late"));
        let slow = LoadFigures {
            slow_client_turns: 51,
            ..ok
        };
        assert!(slow.judge().unwrap_err().contains("client turns"));
        // Nothing planned (a run that never started sending): nothing to judge here.
        assert_eq!(LoadFigures::default().judge(), Ok(()));
        // A step is judged on its own share of a run.
        let later = LoadFigures {
            frames_planned: 110_000,
            frames_skipped: 200,
            ..ok
        };
        let step = later.since(&ok);
        assert_eq!((step.frames_planned, step.frames_skipped), (10_000, 100));
        assert!(step
            .judge()
            .unwrap_err()
            .contains("100 of 10000 frames skipped"));
    }
}
