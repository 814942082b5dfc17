//! What "a meeting passed" means (ARCHITECTURE.md), each bound overridable.

use clap::Args;
use serde::Serialize;

use client::stats::{StreamKind, StreamResult, FREEZE_GAP_US};

#[derive(Args, Clone, Copy, Debug, Serialize, serde::Deserialize, PartialEq)]
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
    /// The link itself loses packets (a test of recovery, e.g. nftables dropping a
    /// share of the node's UDP): video is judged on loss after retransmission, on its
    /// gaps (none over 500 ms) and on the delay of frames a retransmission completed
    /// (--max-recovery-p99-ms); audio loss is reported, not judged (nothing recovers
    /// it, unless the run sends it in RED: --audio-red); join time is judged apart, on
    /// --max-lossy-join-p95-ms.
    #[arg(long)]
    pub lossy_link: bool,
    /// The run sends audio in RED (--audio-red): its loss is judged on a lossy link
    /// too.
    #[arg(skip)]
    pub audio_red: bool,
    /// On a lossy link: most delay (p99) of video frames completed by a
    /// retransmission, milliseconds.
    #[arg(long = "max-recovery-p99-ms", default_value_t = 500.0)]
    pub recovery_p99_ms: f64,
    /// On a lossy link: most join time at the 95th percentile, milliseconds (a lost
    /// DTLS flight costs a join its 1 s retransmission timer).
    #[arg(long = "max-lossy-join-p95-ms", default_value_t = 3000.0)]
    pub lossy_join_p95_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            loss_pct: 1.0,
            delay_p99_ms: 10.0,
            freeze_pct: 0.5,
            jitter_p99_ms: 20.0,
            join_p95_ms: 1000.0,
            lossy_link: false,
            audio_red: false,
            recovery_p99_ms: 500.0,
            lossy_join_p95_ms: 3000.0,
        }
    }
}

impl Thresholds {
    /// The bound on join p95 for this link.
    pub fn join_bound_ms(&self) -> f64 {
        if self.lossy_link {
            self.lossy_join_p95_ms
        } else {
            self.join_p95_ms
        }
    }

    /// Why a stream fails, if it does.
    pub fn stream_failure(&self, s: &StreamResult) -> Option<String> {
        if s.frames == 0 {
            return Some(format!("{:?} from {} never arrived", s.kind, s.sender));
        }
        let lossy_audio = self.lossy_link && !self.audio_red && s.kind == StreamKind::Audio;
        if s.loss_pct > self.loss_pct && !lossy_audio {
            return Some(format!("loss {:.2}% > {}%", s.loss_pct, self.loss_pct));
        }
        // Frames completed by a retransmission are not in the forwarding delay.
        if s.delay_p99_ms > self.delay_p99_ms {
            return Some(format!(
                "delay p99 {:.1} ms > {} ms",
                s.delay_p99_ms, self.delay_p99_ms
            ));
        }
        if self.lossy_link {
            if s.kind == StreamKind::Video && s.recovery_p99_ms > self.recovery_p99_ms {
                return Some(format!(
                    "recovery delay p99 {:.1} ms > {} ms",
                    s.recovery_p99_ms, self.recovery_p99_ms
                ));
            }
            let gap_ms = FREEZE_GAP_US as f64 / 1000.0;
            if s.kind == StreamKind::Video && s.max_gap_ms > gap_ms {
                return Some(format!("video gap {:.0} ms > {gap_ms} ms", s.max_gap_ms));
            }
        } else if s.recovered_frames * 100 > s.frames {
            // A clean link loses nothing: retransmissions are the node's own loss.
            return Some(format!(
                "{} of {} frames needed a retransmission on a clean link (recovery p99 {:.1} ms)",
                s.recovered_frames, s.frames, s.recovery_p99_ms
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(kind: StreamKind) -> StreamResult {
        StreamResult {
            kind,
            sender: 1,
            frames: 1000,
            loss_pct: 0.0,
            delay_p50_ms: 0.2,
            delay_p99_ms: 1.0,
            recovered_frames: 0,
            recovery_p99_ms: 0.0,
            jitter_p99_ms: 1.0,
            freeze_pct: 0.0,
            max_gap_ms: 40.0,
            max_gap_at_s: 0.0,
            layer_frames: [0, 0, 1000],
        }
    }

    #[test]
    fn a_lossy_link_judges_recovery_not_the_network() {
        let clean = Thresholds::default();
        let lossy = Thresholds {
            lossy_link: true,
            ..clean
        };
        // Audio that lost a tenth on the way: reported on a lossy link, failed on a
        // clean one.
        let audio = StreamResult {
            loss_pct: 10.0,
            ..stream(StreamKind::Audio)
        };
        assert!(clean.stream_failure(&audio).unwrap().contains("loss"));
        assert_eq!(lossy.stream_failure(&audio), None);
        // ... unless it came in RED: then its loss after recovery is judged.
        let red = Thresholds {
            audio_red: true,
            ..lossy
        };
        assert!(red.stream_failure(&audio).is_some());
        // Video whose lost packets came back within 200 ms: passes a lossy link; on a
        // clean link that many retransmissions are the node's loss.
        let video = StreamResult {
            loss_pct: 0.3,
            recovered_frames: 80,
            recovery_p99_ms: 200.0,
            ..stream(StreamKind::Video)
        };
        assert_eq!(lossy.stream_failure(&video), None);
        assert!(clean
            .stream_failure(&video)
            .unwrap()
            .contains("80 of 1000 frames needed a retransmission"));
        // Still judged on a lossy link: video loss after retransmission, slow
        // recovery, a gap over 500 ms, and the forwarding delay.
        for (bad, why) in [
            (
                StreamResult {
                    loss_pct: 1.5,
                    ..video.clone()
                },
                "loss 1.50%",
            ),
            (
                StreamResult {
                    recovery_p99_ms: 700.0,
                    ..video.clone()
                },
                "recovery delay",
            ),
            (
                StreamResult {
                    max_gap_ms: 650.0,
                    ..video.clone()
                },
                "video gap 650 ms",
            ),
            (
                StreamResult {
                    delay_p99_ms: 30.0,
                    ..video.clone()
                },
                "delay p99 30.0",
            ),
        ] {
            let e = lossy.stream_failure(&bad).expect(why);
            assert!(e.contains(why), "{e}");
        }
        assert_eq!(lossy.join_bound_ms(), 3000.0);
        assert_eq!(clean.join_bound_ms(), 1000.0);
    }
}
