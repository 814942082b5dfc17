//! One subscriber's view of one track: which layer it gets, and the rewriting that
//! makes the layers it gets over time look like one stream.

use std::time::{Duration, Instant};

use super::picture::Picture;
use super::rewrite::{Out, Rewriter};
use super::track::Activity;
use super::{Layer, PacketIn, ParticipantId, Preference, Sink};

/// Where a reused output stream left off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    pub seq: u64,
    pub ts: u32,
    pub at: Instant,
    /// The VP8 numbering of the last picture written (video).
    pub picture: Option<Picture>,
}

/// How many consecutive allocator rounds must propose a change before it is taken:
/// this, with the allocator's headroom, keeps layers from flapping.
pub const UPGRADE_ROUNDS: u8 = 2;

/// How long a video that just started is kept on at least its lowest layer whatever
/// the subscriber's estimate says. The estimate of a new link rests on a few seconds
/// of feedback: on a lossy one (a mobile network) str0m's loss-based estimator can
/// read random loss as congestion at first and fall for a moment far below what the
/// link carries, and pausing on that left a subscriber's tiles black for seconds.
/// A link that really is too thin still pauses videos, once this has passed.
pub const SETTLING: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Subscription {
    pub subscriber: ParticipantId,
    /// Set once the subscriber's sending slot is negotiated; nothing is forwarded before.
    pub sink: Option<Sink>,
    pub pref: Preference,
    /// The allocator's choice; `None` means paused for lack of bandwidth.
    allocated: Option<Layer>,
    votes: u8,
    voted_up: bool,
    /// The layer being forwarded now, and the publisher's stream epoch it belongs to.
    current: Option<(Layer, u32)>,
    /// When forwarding into the sink began (see [`SETTLING`]).
    started: Option<Instant>,
    /// The last packet forwarded did not end its frame: a switch now abandons that
    /// frame, and leaves a sequence gap so that receivers see it incomplete.
    mid_frame: bool,
    rewriter: Rewriter,
}

/// Outcome of a packet for this subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Drop,
    Forward(Out),
    /// Forward, and it is the first packet of a newly chosen layer.
    Switched(Out, Layer),
}

impl Subscription {
    pub fn new(subscriber: ParticipantId, clock_rate: u32, initial: Option<Layer>) -> Self {
        Subscription {
            subscriber,
            sink: None,
            pref: Preference::default(),
            allocated: initial,
            votes: 0,
            voted_up: false,
            current: None,
            started: None,
            mid_frame: false,
            rewriter: Rewriter::new(clock_rate),
        }
    }

    /// Start forwarding into `sink`; `resume` continues the sink's output stream
    /// (sequence, timestamp, time of the last packet written to it).
    pub fn set_sink(&mut self, now: Instant, sink: Sink, resume: Option<Resume>) {
        self.sink = Some(sink);
        self.started = Some(now);
        self.current = None;
        self.mid_frame = false;
        if let Some(r) = resume {
            self.rewriter.resume(r.seq, r.ts, r.at, r.picture);
        }
    }

    /// The layer this subscription should be receiving, all things considered.
    pub fn target(&self) -> Option<Layer> {
        if self.pref.paused || self.sink.is_none() {
            return None;
        }
        self.allocated.map(|l| l.min(self.pref.max_layer))
    }

    /// Whether this video started within [`SETTLING`]: the allocator keeps its
    /// lowest layer then, whatever the estimate.
    pub fn settling(&self, now: Instant) -> bool {
        self.started
            .is_some_and(|t| now.saturating_duration_since(t) < SETTLING)
    }

    pub fn allocated(&self) -> Option<Layer> {
        self.allocated
    }

    /// The layer being forwarded now.
    pub fn current_layer(&self) -> Option<Layer> {
        self.current.map(|(l, _)| l)
    }

    /// The target layer if we are waiting for its keyframe to switch to it.
    pub fn wants_keyframe(&self, epochs: &[u32]) -> Option<Layer> {
        let target = self.target()?;
        let epoch = epochs.get(target as usize).copied().unwrap_or(0);
        (self.current != Some((target, epoch))).then_some(target)
    }

    /// Apply the allocator's proposal with hysteresis: a change is taken only after
    /// it was proposed in [`UPGRADE_ROUNDS`] consecutive rounds, except a downgrade to
    /// a lower layer when the subscriber is badly over its estimate (`urgent`).
    /// Returns the previous allocation when it changed.
    pub fn propose(&mut self, proposal: Option<Layer>, urgent: bool) -> Option<Option<Layer>> {
        let before = self.allocated;
        if before == proposal {
            self.votes = 0;
            return None;
        }
        let up = match (before, proposal) {
            (None, Some(_)) => true,
            (Some(b), Some(p)) => p > b,
            _ => false,
        };
        // Votes count consecutive proposals in one direction.
        self.votes = if self.voted_up == up {
            self.votes + 1
        } else {
            1
        };
        self.voted_up = up;
        // Pausing a video is the last resort: like upgrades, it must be proposed in
        // consecutive rounds; only a downgrade between layers is taken at once when
        // the subscriber is badly over its estimate.
        let pause = proposal.is_none();
        if self.votes < UPGRADE_ROUNDS && (up || pause || !urgent) {
            return None;
        }
        self.votes = 0;
        self.allocated = proposal;
        Some(before)
    }

    /// The layer being forwarded stalled (and the one waited for, if another) while
    /// `flowing`, the best layer below it that flows, just had a packet: take it at
    /// once, no voting rounds. Returns whether the subscription fell back, and so
    /// waits for a keyframe of `flowing`.
    pub fn fall_back(&mut self, flowing: Layer, activity: Activity) -> bool {
        let Some(target) = self.target() else {
            return false;
        };
        let on = self.current.map_or(target, |(l, _)| l);
        let stalled = |l: Layer| activity.stalled & (1 << l) != 0;
        let flows = |l: Layer| activity.live & (1 << l) != 0;
        let stuck = stalled(on) && (target == on || stalled(target));
        let best_below = flowing < on && !(flowing + 1..on).any(flows);
        if !stuck || !best_below || self.allocated.is_some_and(|a| a <= flowing) {
            return false;
        }
        self.allocated = Some(flowing);
        self.votes = 0;
        true
    }

    /// Decide what happens to one packet of the track.
    pub fn on_packet(&mut self, now: Instant, pkt: &PacketIn, epoch: u32) -> Step {
        let Some(target) = self.target() else {
            self.current = None;
            self.mid_frame = false;
            return Step::Drop;
        };
        if self.current == Some((pkt.layer, epoch)) {
            // Keep forwarding the current layer until the target's keyframe arrives, so
            // the subscriber never sees a gap while we wait.
            return match self.rewriter.rewrite(now, pkt.seq, pkt.ts, pkt.picture) {
                Some(out) => {
                    self.mid_frame = !pkt.marker;
                    Step::Forward(out)
                }
                None => Step::Drop,
            };
        }
        // Switch at the target's keyframe, even in the middle of a frame of the current
        // layer: a publisher's layers arrive interleaved (its pacer sends them side by
        // side), and waiting for a keyframe that starts between two frames could wait
        // forever (a subscriber was held on layer 1 for a minute that way). The
        // abandoned frame is marked by a sequence gap.
        if pkt.layer == target && pkt.keyframe {
            let abandoned = std::mem::replace(&mut self.mid_frame, !pkt.marker);
            self.current = Some((target, epoch));
            self.rewriter
                .switch(now, pkt.seq, pkt.ts, abandoned, pkt.picture);
            if let Some(out) = self.rewriter.rewrite(now, pkt.seq, pkt.ts, pkt.picture) {
                return Step::Switched(out, target);
            }
        }
        Step::Drop
    }
}
