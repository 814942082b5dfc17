//! What "a meeting passed" means (ARCHITECTURE.md), each bound overridable.

use clap::Args;
use serde::Serialize;

use client::stats::{StreamKind, StreamResult};

#[derive(Args, Clone, Copy, Debug, Serialize)]
pub struct Thresholds {
    /// Most loss after retransmission per stream, percent.
    #[arg(long = "max-loss-pct", default_value_t = 1.0)]
    pub loss_pct: f64,
    /// Most forwarding delay (p99) per stream, milliseconds.
    #[arg(long = "max-delay-p99-ms", default_value_t = 10.0)]
    pub delay_p99_ms: f64,
    /// Most time a video may spend in gaps over 500 ms, percent of its time.
    #[arg(long = "max-freeze-pct", default_value_t = 0.5)]
    pub freeze_pct: f64,
    /// Most audio jitter (p99 of RFC 3550's transit-time difference between
    /// consecutive packets), milliseconds.
    #[arg(long = "max-jitter-p99-ms", default_value_t = 20.0)]
    pub jitter_p99_ms: f64,
    /// Most join time (request to first media) at the 95th percentile, milliseconds.
    #[arg(long = "max-join-p95-ms", default_value_t = 1000.0)]
    pub join_p95_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            loss_pct: 1.0,
            delay_p99_ms: 10.0,
            freeze_pct: 0.5,
            jitter_p99_ms: 20.0,
            join_p95_ms: 1000.0,
        }
    }
}

impl Thresholds {
    /// Why a stream fails, if it does.
    pub fn stream_failure(&self, s: &StreamResult) -> Option<String> {
        if s.frames == 0 {
            return Some(format!("{:?} from {} never arrived", s.kind, s.sender));
        }
        if s.loss_pct > self.loss_pct {
            return Some(format!("loss {:.2}% > {}%", s.loss_pct, self.loss_pct));
        }
        if s.delay_p99_ms > self.delay_p99_ms {
            return Some(format!(
                "delay p99 {:.1} ms > {} ms",
                s.delay_p99_ms, self.delay_p99_ms
            ));
        }
        match s.kind {
            StreamKind::Video if s.freeze_pct > self.freeze_pct => Some(format!(
                "video frozen {:.2}% > {}%",
                s.freeze_pct, self.freeze_pct
            )),
            StreamKind::Audio if s.jitter_p99_ms > self.jitter_p99_ms => Some(format!(
                "audio jitter p99 {:.1} ms > {} ms",
                s.jitter_p99_ms, self.jitter_p99_ms
            )),
            _ => None,
        }
    }
}
