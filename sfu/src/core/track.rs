//! A publisher's track: its layers, their measured bitrates, its subscriptions, and
//! the merging of keyframe requests towards the publisher.

use std::time::{Duration, Instant};

use super::budget::{Budget, AUDIO_MAX_BPS};
use super::subscription::{Step, Subscription};
use super::MAX_LAYERS;
use super::{
    Action, Codec, Forward, Kind, Layer, PacketIn, ParticipantId, RoomEvent, TrackId, TrackSource,
};

/// At most one keyframe request per layer of a track in this interval, however many
/// subscribers ask.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// A layer with no packet for this long is not offered to subscribers.
const LAYER_IDLE: Duration = Duration::from_millis(1500);

/// A forwarded layer silent this long, while a lower layer of its track completed
/// [`STALL_FRAMES`] frames since, is abandoned at once for that layer (browsers drop
/// their top layer under CPU or uplink pressure): the allocator's rounds would leave
/// the subscriber frozen for seconds. Counting the lower layer's frames keeps a
/// publisher that sends seldom on every layer (a camera turned off sends a black
/// frame a second; a still screen share) from looking stalled.
pub const LAYER_STALLED: Duration = Duration::from_millis(300);
pub const STALL_FRAMES: u32 = 2;

/// SSRCs remembered per layer, to tell a restart from a stray packet of an old one.
const SSRC_HISTORY: usize = 4;

#[derive(Debug, Default, Clone, Copy)]
struct LayerState {
    ssrc: Option<u32>,
    /// Earlier SSRCs of this layer: their late packets are dropped, not followed.
    /// (Options: SSRC 0 is a valid SSRC, not an empty entry.)
    old_ssrcs: [Option<u32>; SSRC_HISTORY],
    /// Bumped when the layer gets a new SSRC (encoder restart): subscriptions must
    /// re-sync at a keyframe because the sequence space changed.
    epoch: u32,
    /// Highest sequence number seen on the current SSRC: a keyframe start that
    /// arrives late (a retransmission) is not a switch point, because the packets
    /// after it were already dropped for the switching subscribers.
    highest_seq: Option<u64>,
    bytes_since_tick: u64,
    bitrate_bps: Option<u64>,
    last_packet: Option<Instant>,
    last_keyframe_request: Option<Instant>,
    /// Frames this layer completed (packets with the marker bit), wrapping.
    frames: u32,
    /// Every layer's `frames` at this layer's last packet.
    frames_then: [u32; MAX_LAYERS],
}

/// A track's layers by what they do now: bit `i` for layer `i`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Activity {
    /// A packet within [`LAYER_STALLED`].
    pub live: u8,
    /// Packets once, none within [`LAYER_STALLED`] while the flowing layer completed
    /// [`STALL_FRAMES`] frames.
    pub stalled: u8,
}

#[derive(Debug)]
pub struct Track {
    pub id: TrackId,
    pub publisher: ParticipantId,
    pub kind: Kind,
    /// A camera's or a shared screen's (served first by the allocator).
    pub source: TrackSource,
    /// Not forwarded: its publisher's audio was muted by a host.
    pub held: bool,
    pub codec: Codec,
    pub clock_rate: u32,
    /// Number of layers declared (1 without simulcast).
    pub layer_count: u8,
    layers: [LayerState; MAX_LAYERS],
    epochs: [u32; MAX_LAYERS],
    last_tick: Option<Instant>,
    /// The ceiling on what the publisher may send (audio: no allocator holds it back).
    budget: Option<Budget>,
    pub subscriptions: Vec<Subscription>,
}

impl Track {
    pub fn new(
        id: TrackId,
        publisher: ParticipantId,
        kind: Kind,
        codec: Codec,
        clock_rate: u32,
        layer_count: u8,
    ) -> Self {
        Track {
            id,
            publisher,
            kind,
            source: TrackSource::Camera,
            held: false,
            codec,
            clock_rate,
            layer_count: layer_count.clamp(1, MAX_LAYERS as u8),
            layers: Default::default(),
            epochs: [0; MAX_LAYERS],
            last_tick: None,
            budget: (kind == Kind::Audio).then(|| Budget::new(AUDIO_MAX_BPS)),
            subscriptions: Vec::new(),
        }
    }

    /// Route one packet: fill `out` with a [`Forward`] per subscriber that gets it.
    /// Allocation-free unless an event must be reported. False when the packet was
    /// over the track's rate ceiling and dropped.
    pub fn on_packet(
        &mut self,
        now: Instant,
        pkt: &PacketIn,
        out: &mut Vec<Forward>,
        actions: &mut Vec<Action>,
    ) -> bool {
        let li = pkt.layer as usize;
        if li >= MAX_LAYERS {
            return true;
        }
        if let Some(budget) = &mut self.budget {
            if !budget.take(now, pkt.payload_len) {
                return false;
            }
        }
        let layer = &mut self.layers[li];
        if layer.ssrc != Some(pkt.ssrc) {
            if layer.old_ssrcs.contains(&Some(pkt.ssrc)) {
                return true; // a straggler of a stream that was replaced
            }
            if let Some(old) = layer.ssrc {
                layer.old_ssrcs.rotate_right(1);
                layer.old_ssrcs[0] = Some(old);
                layer.epoch = layer.epoch.wrapping_add(1);
                self.epochs[li] = layer.epoch;
            }
            layer.ssrc = Some(pkt.ssrc);
            layer.highest_seq = None;
        }
        layer.bytes_since_tick += pkt.payload_len as u64;
        layer.last_packet = Some(now);
        layer.frames = layer.frames.wrapping_add(u32::from(pkt.marker));
        let frames = std::array::from_fn(|i| self.layers[i].frames);
        let layer = &mut self.layers[li];
        layer.frames_then = frames;
        let newest = layer.highest_seq.is_none_or(|h| pkt.seq > h);
        if newest {
            layer.highest_seq = Some(pkt.seq);
        }
        let epoch = layer.epoch;
        let mut pkt = *pkt;
        pkt.keyframe &= newest;
        // Layers above this one that stalled: their subscribers fall back to the best
        // layer still flowing (video only; a bit per layer, nothing allocated).
        let above = self.kind == Kind::Video && li + 1 < self.layer_count as usize;
        let activity = if above {
            self.activity(now, li)
        } else {
            Activity::default()
        };
        let stalled_above = activity.stalled >> (li + 1) != 0;
        let mut fell_back = false;
        for sub in &mut self.subscriptions {
            let Some(sink) = sub.sink else { continue };
            if stalled_above {
                fell_back |= sub.fall_back(pkt.layer, activity);
            }
            match sub.on_packet(now, &pkt, epoch) {
                Step::Drop => {}
                Step::Forward(o) => out.push(Forward::new(sink, o)),
                Step::Switched(o, layer) => {
                    out.push(Forward::new(sink, o));
                    if self.kind == Kind::Video {
                        actions.push(Action::Event(RoomEvent::LayerChanged {
                            subscriber: sub.subscriber,
                            track: self.id,
                            layer,
                        }));
                    }
                }
            }
        }
        if fell_back {
            self.request_keyframe(now, pkt.layer, actions);
        }
        true
    }

    /// Which layers flow, and which stalled while layer `flowing` went on, as of `now`.
    fn activity(&self, now: Instant, flowing: usize) -> Activity {
        let mut a = Activity::default();
        let frames = self.layers[flowing].frames;
        for (i, l) in self.layers.iter().enumerate() {
            let Some(t) = l.last_packet else { continue };
            if now.saturating_duration_since(t) < LAYER_STALLED {
                a.live |= 1 << i;
            } else if frames.wrapping_sub(l.frames_then[flowing]) >= STALL_FRAMES {
                a.stalled |= 1 << i;
            }
        }
        a
    }

    /// Measured bitrate of each layer that is currently being received.
    pub fn layer_bitrates(&self, now: Instant) -> [Option<u64>; MAX_LAYERS] {
        let mut out = [None; MAX_LAYERS];
        for (i, l) in self.layers.iter().enumerate() {
            let live = l
                .last_packet
                .is_some_and(|t| now.saturating_duration_since(t) < LAYER_IDLE);
            if live {
                // Before the first measurement, assume the nominal rate of the layer.
                out[i] = Some(l.bitrate_bps.unwrap_or(NOMINAL_BPS[i]));
            }
        }
        out
    }

    /// Update the bitrate measurements; called by the room every allocator round.
    pub fn tick(&mut self, now: Instant) {
        let last = self.last_tick.replace(now);
        let secs = last.map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
        for l in &mut self.layers {
            let bytes = std::mem::take(&mut l.bytes_since_tick);
            let idle = l
                .last_packet
                .is_none_or(|t| now.saturating_duration_since(t) >= LAYER_IDLE);
            if idle {
                // Forget the rate: when the layer comes back it is measured anew
                // (nominal until then), not under-estimated from stale decay.
                l.bitrate_bps = None;
                continue;
            }
            if bytes == 0 || secs <= 0.0 {
                continue; // a short pause keeps the last measurement
            }
            let bps = (bytes as f64 * 8.0 / secs) as u64;
            // Smooth: frame sizes vary a lot (keyframes), decisions should not.
            l.bitrate_bps = Some(match l.bitrate_bps {
                Some(prev) => (prev * 6 + bps * 4) / 10,
                None => bps,
            });
        }
    }

    /// Ask the publisher for keyframes on the layers subscribers are waiting for,
    /// merged: at most one request per layer per [`KEYFRAME_REQUEST_INTERVAL`].
    pub fn request_keyframes(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.kind != Kind::Video {
            return;
        }
        let mut wanted = [false; MAX_LAYERS];
        for sub in &self.subscriptions {
            if let Some(l) = sub.wants_keyframe(&self.epochs) {
                wanted[(l as usize).min(MAX_LAYERS - 1)] = true;
            }
        }
        for (i, w) in wanted.into_iter().enumerate() {
            if w {
                self.request_keyframe(now, i as Layer, actions);
            }
        }
    }

    /// A keyframe request for one layer, merged with recent ones.
    pub fn request_keyframe(&mut self, now: Instant, layer: Layer, actions: &mut Vec<Action>) {
        let Some(l) = self.layers.get_mut(layer as usize) else {
            return;
        };
        let recent = l
            .last_keyframe_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL);
        if recent {
            return;
        }
        l.last_keyframe_request = Some(now);
        actions.push(Action::RequestKeyframe {
            publisher: self.publisher,
            track: self.id,
            layer,
        });
    }

    pub fn subscription_mut(&mut self, subscriber: ParticipantId) -> Option<&mut Subscription> {
        self.subscriptions
            .iter_mut()
            .find(|s| s.subscriber == subscriber)
    }

    pub fn subscription(&self, subscriber: ParticipantId) -> Option<&Subscription> {
        self.subscriptions
            .iter()
            .find(|s| s.subscriber == subscriber)
    }
}

/// Expected bitrates of the layers before they are measured (the load model's profile, ARCHITECTURE.md).
pub const NOMINAL_BPS: [u64; MAX_LAYERS] = [150_000, 500_000, 1_200_000];
