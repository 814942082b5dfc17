//! A room: its participants, their tracks, who receives what, and the periodic work
//! (allocation, keyframe requests, active speaker) that keeps it that way.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::allocator::{self, Demand, Rank};
use super::speaker::SpeakerDetector;
use super::subscription::{Resume, Subscription};
use super::track::Track;
use super::{
    Action, Codec, Forward, Kind, Layer, PacketIn, ParticipantId, Preference, RoomEvent, Sink,
    TrackId, TrackSource,
};

/// How often the allocator fits estimates to layers (and speakers are elected).
pub const ALLOCATION_INTERVAL: Duration = Duration::from_millis(500);

/// Assumed before a subscriber's first estimate (and str0m's starting estimate):
/// room for the lowest layer of a few publishers; probing finds the rest.
pub const DEFAULT_ESTIMATE_BPS: u64 = 1_000_000;

/// What audio costs a subscriber per track, reserved before video is allocated.
const AUDIO_BPS: u64 = 40_000;

/// A participant as its room sees it.
#[derive(Debug)]
struct Participant {
    id: ParticipantId,
    /// Whether it receives the room's tracks (a WHIP publisher does not).
    receives: bool,
    estimate_bps: Option<u64>,
    /// A host muted its audio: none of it is forwarded (`Room::hold_audio`).
    audio_held: bool,
}

#[derive(Debug, Default)]
pub struct Room {
    members: Vec<Participant>,
    tracks: HashMap<TrackId, Track>,
    speaker: SpeakerDetector,
    next_tick: Option<Instant>,
    // Scratch space reused every round, so rounds do not allocate once warmed up.
    demands: Vec<Demand>,
    demand_tracks: Vec<TrackId>,
    proposals: Vec<Option<Layer>>,
}

/// Figures for the control API.
pub use control::RoomFigures;

impl Room {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn participants(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.members.iter().map(|m| m.id)
    }

    pub fn track(&self, id: TrackId) -> Option<&Track> {
        self.tracks.get(&id)
    }

    pub fn tracks(&self) -> impl Iterator<Item = &Track> {
        self.tracks.values()
    }

    /// A participant joins; one that `receives` is subscribed to every track
    /// already published (oldest first) and to every track published later.
    pub fn add_participant(
        &mut self,
        id: ParticipantId,
        receives: bool,
        actions: &mut Vec<Action>,
    ) {
        if self.members.iter().any(|m| m.id == id) {
            return;
        }
        self.members.push(Participant {
            id,
            receives,
            estimate_bps: None,
            audio_held: false,
        });
        if receives {
            let mut ids: Vec<TrackId> = self.tracks.keys().copied().collect();
            ids.sort_unstable();
            for t in ids {
                if let Some(track) = self.tracks.get_mut(&t) {
                    subscribe(track, id, actions);
                }
            }
        }
    }

    /// A participant leaves: its tracks are unpublished, its subscriptions dropped.
    pub fn remove_participant(&mut self, id: ParticipantId, actions: &mut Vec<Action>) {
        self.members.retain(|m| m.id != id);
        let own: Vec<TrackId> = self
            .tracks
            .values()
            .filter(|t| t.publisher == id)
            .map(|t| t.id)
            .collect();
        for t in own {
            self.unpublish(t, actions);
        }
        for track in self.tracks.values_mut() {
            track.subscriptions.retain(|s| s.subscriber != id);
        }
        self.speaker.remove(id);
    }

    /// A publisher's new track; everyone else in the room is subscribed to it.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &mut self,
        id: TrackId,
        publisher: ParticipantId,
        (kind, source): (Kind, TrackSource),
        codec: Codec,
        clock_rate: u32,
        layer_count: u8,
        actions: &mut Vec<Action>,
    ) {
        let mut track = Track::new(id, publisher, kind, codec, clock_rate, layer_count);
        track.source = source;
        track.held = kind == Kind::Audio
            && self
                .members
                .iter()
                .any(|m| m.id == publisher && m.audio_held);
        for m in &self.members {
            if m.id != publisher && m.receives {
                subscribe(&mut track, m.id, actions);
            }
        }
        self.tracks.insert(id, track);
        actions.push(Action::Event(RoomEvent::TrackPublished {
            track: id,
            publisher,
            kind,
            source,
        }));
    }

    pub fn unpublish(&mut self, id: TrackId, actions: &mut Vec<Action>) {
        let Some(track) = self.tracks.remove(&id) else {
            return;
        };
        for s in track.subscriptions {
            actions.push(Action::Unsubscribe {
                subscriber: s.subscriber,
                track: id,
                sink: s.sink,
            });
        }
        actions.push(Action::Event(RoomEvent::TrackUnpublished {
            track: id,
            publisher: track.publisher,
        }));
    }

    /// The subscriber's slot for `track` is negotiated: start forwarding (from the
    /// next keyframe, which is requested now). A reused slot passes where its output
    /// stream left off (`resume`), so the subscriber sees one continuous stream.
    pub fn subscription_ready(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        track: TrackId,
        sink: Sink,
        resume: Option<Resume>,
        actions: &mut Vec<Action>,
    ) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if let Some(s) = t.subscription_mut(subscriber) {
            s.set_sink(now, sink, resume);
            t.request_keyframes(now, actions);
        }
    }

    /// Route one received packet of `track`.
    /// False when the packet was over its track's rate ceiling and dropped.
    pub fn on_packet(
        &mut self,
        now: Instant,
        track: TrackId,
        pkt: &PacketIn,
        out: &mut Vec<Forward>,
        actions: &mut Vec<Action>,
    ) -> bool {
        let Some(t) = self.tracks.get_mut(&track) else {
            return true;
        };
        if t.held {
            return true; // muted by a host: neither forwarded nor heard as a speaker
        }
        if let Some(level) = pkt.audio_level {
            self.speaker.on_level(t.publisher, level);
        }
        t.on_packet(now, pkt, out, actions)
    }

    /// A subscriber lost a picture (PLI/FIR on its slot for `track`).
    pub fn on_keyframe_request(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        track: TrackId,
        actions: &mut Vec<Action>,
    ) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        let layer = t
            .subscription(subscriber)
            .and_then(|s| s.current_layer().or(s.target()));
        if let Some(layer) = layer {
            t.request_keyframe(now, layer, actions);
        }
    }

    /// A host mutes (`held`) or releases a participant's audio: its packets are not
    /// forwarded meanwhile (its tracks stay published, so releasing needs no
    /// renegotiation). False if it is no participant of the room.
    pub fn hold_audio(&mut self, participant: ParticipantId, held: bool) -> bool {
        let Some(m) = self.members.iter_mut().find(|m| m.id == participant) else {
            return false;
        };
        m.audio_held = held;
        for t in self.tracks.values_mut() {
            if t.publisher == participant && t.kind == Kind::Audio {
                t.held = held;
            }
        }
        true
    }

    pub fn set_estimate(&mut self, subscriber: ParticipantId, bps: u64) {
        if let Some(m) = self.members.iter_mut().find(|m| m.id == subscriber) {
            m.estimate_bps = Some(bps);
        }
    }

    pub fn set_preference(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        track: TrackId,
        pref: Preference,
        actions: &mut Vec<Action>,
    ) -> bool {
        let Some(t) = self.tracks.get_mut(&track) else {
            return false;
        };
        let Some(s) = t.subscription_mut(subscriber) else {
            return false;
        };
        s.pref = pref;
        t.request_keyframes(now, actions);
        true
    }

    /// When the room next needs [`Room::tick`].
    pub fn next_tick(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Periodic work; call at least every [`ALLOCATION_INTERVAL`].
    pub fn tick(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.next_tick.is_some_and(|t| now < t) {
            return;
        }
        self.next_tick = Some(now + ALLOCATION_INTERVAL);
        for t in self.tracks.values_mut() {
            t.tick(now);
        }
        let members: Vec<(ParticipantId, Option<u64>)> = self
            .members
            .iter()
            .map(|m| (m.id, m.estimate_bps))
            .collect();
        for (id, estimate) in members {
            self.allocate_for(now, id, estimate.unwrap_or(DEFAULT_ESTIMATE_BPS), actions);
        }
        if let Some(p) = self.speaker.tick() {
            actions.push(Action::Event(RoomEvent::ActiveSpeaker { participant: p }));
        }
        for t in self.tracks.values_mut() {
            t.request_keyframes(now, actions);
        }
    }

    fn allocate_for(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        estimate: u64,
        actions: &mut Vec<Action>,
    ) {
        self.demands.clear();
        self.demand_tracks.clear();
        let mut audio_bps = 0;
        let speaker = self.speaker.current();
        let mut ids: Vec<TrackId> = self.tracks.keys().copied().collect();
        // A stable order (oldest track first) so that which track is paused first
        // does not depend on hash order.
        ids.sort_unstable();
        for id in ids {
            let t = &self.tracks[&id];
            let Some(s) = t.subscription(subscriber) else {
                continue;
            };
            if t.kind == Kind::Audio {
                if !s.pref.paused {
                    audio_bps += AUDIO_BPS;
                }
                continue;
            }
            // Not negotiated yet, or its publisher sends nothing now: neither is a
            // matter of bandwidth, and the allocation stays as it is (a new
            // subscription's lowest layer) until there is something to fit.
            let bitrates = t.layer_bitrates(now);
            if s.sink.is_none() || bitrates.iter().all(Option::is_none) {
                continue;
            }
            self.demand_tracks.push(t.id);
            self.demands.push(Demand {
                bitrates,
                max_layer: (!s.pref.paused).then_some(s.pref.max_layer),
                allocated: s.allocated(),
                rank: match t.source {
                    TrackSource::Screen => Rank::Screen,
                    TrackSource::Camera if speaker == Some(t.publisher) => Rank::Speaker,
                    TrackSource::Camera => Rank::Other,
                },
                keep_lowest: s.settling(now),
            });
        }
        if self.demands.is_empty() {
            return;
        }
        allocator::allocate(estimate, audio_bps, &self.demands, &mut self.proposals);
        // Badly over the estimate: downgrade now rather than after the usual rounds.
        let allocated_bps: u64 = self
            .demands
            .iter()
            .filter_map(|d| d.bitrates[d.allocated? as usize])
            .sum();
        let urgent = (allocated_bps + audio_bps) as f64 > estimate as f64 * 1.25;
        let mut min_bps = audio_bps;
        for (i, track) in self.demand_tracks.iter().enumerate() {
            let Some(t) = self.tracks.get_mut(track) else {
                continue;
            };
            let bitrates = self.demands[i].bitrates;
            let user_paused = self.demands[i].max_layer.is_none();
            let Some(s) = t.subscription_mut(subscriber) else {
                continue;
            };
            if user_paused {
                // The subscriber's own pause is not the allocator's: keep the
                // allocation for when it resumes, and tell it nothing.
                continue;
            }
            let event = match (s.propose(self.proposals[i], urgent), s.allocated()) {
                (Some(Some(_)), None) => Some(RoomEvent::VideoPaused {
                    subscriber,
                    track: *track,
                }),
                (Some(None), Some(_)) => Some(RoomEvent::VideoResumed {
                    subscriber,
                    track: *track,
                }),
                _ => None,
            };
            actions.extend(event.map(Action::Event));
            if let Some(l) = s.allocated() {
                min_bps += bitrates[l as usize].unwrap_or(0);
            }
        }
        let desired = allocator::desired_bitrate(audio_bps, &self.demands);
        actions.push(Action::SetBitrate {
            subscriber,
            min_bps,
            desired_bps: desired.max(min_bps),
        });
    }

    /// Subscriptions whose video is paused for lack of bandwidth.
    pub fn paused_videos(&self) -> usize {
        self.tracks
            .values()
            .filter(|t| t.kind == Kind::Video)
            .flat_map(|t| &t.subscriptions)
            .filter(|s| s.sink.is_some() && !s.pref.paused && s.allocated().is_none())
            .count()
    }

    pub fn figures(&self) -> RoomFigures {
        let mut f = RoomFigures {
            participants: self.members.len(),
            ..Default::default()
        };
        for t in self.tracks.values() {
            match t.kind {
                Kind::Audio => f.audio_tracks += 1,
                Kind::Video => {
                    f.video_tracks += 1;
                }
            }
            f.subscriptions += t.subscriptions.len();
        }
        f.paused_videos = self.paused_videos();
        f
    }
}

fn subscribe(track: &mut Track, subscriber: ParticipantId, actions: &mut Vec<Action>) {
    // Start at the lowest layer so that a picture appears at once; the allocator
    // raises it as the subscriber's estimate grows.
    track
        .subscriptions
        .push(Subscription::new(subscriber, track.clock_rate, Some(0)));
    actions.push(Action::Subscribe {
        subscriber,
        track: track.id,
        kind: track.kind,
        publisher: track.publisher,
        source: track.source,
    });
}
