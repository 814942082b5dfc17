//! A byte budget refilled at a fixed rate: the ceiling on what a publisher may send
//! on a track. Audio has no simulcast layers and no allocator to hold it back, so
//! without a ceiling one publisher's audio could carry any bitrate to every
//! subscriber; beyond it packets are dropped (and counted by the caller).

use std::time::Instant;

/// Most an audio track may carry: Opus needs at most 128 kbit/s even in stereo music
/// mode; twice that leaves room for FEC and RED.
pub const AUDIO_MAX_BPS: u64 = 256_000;

#[derive(Debug, Clone)]
pub struct Budget {
    bytes_per_second: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Budget {
    /// `bps` on average, with half a second of it as the burst allowed.
    pub fn new(bps: u64) -> Self {
        let bytes_per_second = bps as f64 / 8.0;
        Budget {
            bytes_per_second,
            burst: bytes_per_second / 2.0,
            tokens: bytes_per_second / 2.0,
            last: None,
        }
    }

    /// Spend `bytes` if the budget holds them; false when the packet is over it.
    pub fn take(&mut self, now: Instant, bytes: usize) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.bytes_per_second;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}
