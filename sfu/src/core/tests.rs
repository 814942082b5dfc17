//! The rules of the SFU, checked on the room with simulated time.

use std::time::{Duration, Instant};

use super::room::ALLOCATION_INTERVAL;
use super::*;

const P: ParticipantId = ParticipantId(1);
const S: ParticipantId = ParticipantId(2);
const S2: ParticipantId = ParticipantId(3);
const VIDEO: TrackId = TrackId(10);
const SINK: Sink = Sink { peer: 7, slot: 0 };
const SINK2: Sink = Sink { peer: 8, slot: 0 };

/// A room with publisher P (three-layer video) and subscriber S, simulated clock.
struct Sim {
    room: Room,
    now: Instant,
    actions: Vec<Action>,
    out: Vec<Forward>,
    /// Per layer: next sequence number and timestamp of the publisher's stream.
    seq: [u64; 3],
    ts: [u32; 3],
    ssrc: [u32; 3],
    /// Per layer: the VP8 PictureID and TL0PICIDX of the next frame (each layer
    /// numbers its own, from far apart, as libwebrtc does).
    picture: [Picture; 3],
    /// Everything forwarded to S, with the source layer.
    log: Vec<(usize, Forward)>,
}

/// Frame sizes giving ~150 / 500 / 1200 kbit/s at 30 fps.
const FRAME_BYTES: [usize; 3] = [625, 2_080, 5_000];

impl Sim {
    fn new() -> Self {
        let mut s = Sim::unnegotiated();
        s.room
            .subscription_ready(s.now, S, VIDEO, SINK, None, &mut s.actions);
        s
    }

    /// P publishes, S is subscribed, but S's slot for the video is not negotiated yet.
    fn unnegotiated() -> Self {
        let mut s = Sim {
            room: Room::new(),
            now: Instant::now(),
            actions: Vec::new(),
            out: Vec::new(),
            seq: [100, 5000, 40000],
            ts: [1000, 777_000, 3_000_000_000],
            ssrc: [11, 12, 13],
            picture: [(32_000, 250), (7, 3), (20_000, 100)]
                .map(|(id, tl0)| Picture { id, tl0: Some(tl0) }),
            log: Vec::new(),
        };
        s.room.add_participant(P, true, &mut s.actions);
        s.room.add_participant(S, true, &mut s.actions);
        s.room.publish(
            VIDEO,
            P,
            (Kind::Video, TrackSource::Camera),
            Codec::Vp8,
            90_000,
            3,
            &mut s.actions,
        );
        s
    }

    /// One packet of `layer`; returns what S (SINK) got.
    fn send(&mut self, layer: usize, keyframe: bool) -> Option<Forward> {
        let pkt = PacketIn {
            layer: layer as Layer,
            ssrc: self.ssrc[layer],
            seq: self.seq[layer],
            ts: self.ts[layer],
            marker: true,
            keyframe,
            payload_len: FRAME_BYTES[layer],
            audio_level: None,
            picture: Some(self.picture[layer]),
        };
        self.seq[layer] += 1;
        self.ts[layer] = self.ts[layer].wrapping_add(3000);
        // One packet a frame, every frame a base-layer picture.
        let p = &mut self.picture[layer];
        p.id = (p.id + 1) & picture::PICTURE_ID_MASK;
        p.tl0 = p.tl0.map(|t| t.wrapping_add(1));
        self.out.clear();
        self.room
            .on_packet(self.now, VIDEO, &pkt, &mut self.out, &mut self.actions);
        let f = self.out.iter().find(|f| f.sink == SINK).copied();
        if let Some(f) = f {
            self.log.push((layer, f));
        }
        f
    }

    /// One 33 ms frame on every layer; returns the forward to S, if any.
    fn frame(&mut self, key: [bool; 3]) -> Vec<(usize, Forward)> {
        self.now += Duration::from_millis(33);
        (0..3)
            .filter_map(|l| self.send(l, key[l]).map(|f| (l, f)))
            .collect()
    }

    /// Half a second of inter frames on every layer, then the room's periodic work.
    fn tick(&mut self) {
        let end = self.now + ALLOCATION_INTERVAL;
        while self.now + Duration::from_millis(33) <= end {
            self.frame([false; 3]);
        }
        self.now = end;
        self.room.tick(self.now, &mut self.actions);
    }

    /// S on the top layer: ample bandwidth, the upgrade rounds, layer 2's keyframe.
    fn on_top_layer() -> Self {
        let mut sim = Sim::new();
        sim.room.set_estimate(S, 10_000_000);
        sim.frame([true, false, false]);
        for _ in 0..4 {
            sim.tick();
        }
        sim.frame([false, false, true]);
        sim
    }

    /// Tick until S's video is past [`subscription::SETTLING`].
    fn settle(&mut self) {
        let settling = |sim: &Sim| {
            let t = sim.room.track(VIDEO).unwrap();
            t.subscription(S).unwrap().settling(sim.now)
        };
        while settling(self) {
            self.tick();
        }
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn keyframe_requests(&mut self) -> Vec<Layer> {
        self.take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::RequestKeyframe { layer, .. } => Some(layer),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn starts_and_switches_only_at_keyframes() {
    let mut sim = Sim::new();
    // The subscriber starts at layer 0, and only from a keyframe.
    assert!(sim.frame([false; 3]).is_empty());
    let got = sim.frame([true, false, false]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 0);
    // Ample bandwidth: after the upgrade rounds the target becomes layer 2 ...
    sim.room.set_estimate(S, 10_000_000);
    for _ in 0..4 {
        sim.frame([false; 3]);
        sim.tick();
    }
    // ... yet layer 0 keeps flowing until layer 2 has a keyframe.
    for _ in 0..5 {
        let got = sim.frame([false, false, false]);
        assert_eq!(got.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [0]);
    }
    let got = sim.frame([false, true, false]);
    assert_eq!(
        got.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [0],
        "layer 1 is not the target"
    );
    // The keyframe's frame: layer 0 still, then the switch to layer 2.
    let got = sim.frame([false, false, true]);
    assert_eq!(got.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [0, 2]);
    let got = sim.frame([false, false, false]);
    assert_eq!(got.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2]);
    assert!(sim
        .take_actions()
        .iter()
        .any(|a| matches!(a, Action::Event(RoomEvent::LayerChanged { layer: 2, .. }))));
}

#[test]
fn sequence_timestamp_and_picture_numbers_continue_across_switches_and_restarts() {
    let mut sim = Sim::new();
    sim.frame([true, false, false]);
    sim.tick();
    // Up to layer 2.
    sim.room.set_estimate(S, 10_000_000);
    sim.tick();
    sim.tick();
    sim.frame([false, false, true]);
    sim.tick();
    assert_eq!(sim.log.last().unwrap().0, 2);
    // The publisher's encoder restarts on layer 2: new SSRC, new sequence space.
    sim.ssrc[2] = 99;
    sim.seq[2] = 3;
    sim.ts[2] = 17;
    sim.picture[2] = Picture {
        id: 4,
        tl0: Some(0),
    };
    let got = sim.frame([false; 3]);
    assert!(
        got.is_empty(),
        "a new stream is not forwarded before its keyframe"
    );
    sim.tick();
    assert!(
        sim.keyframe_requests().contains(&2),
        "keyframe requested for the restarted layer"
    );
    sim.frame([false, false, true]);
    sim.tick();
    // Down to layer 0 for lack of bandwidth.
    sim.room.set_estimate(S, 250_000);
    sim.tick();
    sim.frame([true, false, false]);
    sim.tick();
    assert_eq!(sim.log.last().unwrap().0, 0);
    let seen: Vec<Forward> = sim.log.iter().map(|(_, f)| *f).collect();
    assert!(seen.len() > 60, "{} forwarded", seen.len());
    for w in seen.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "no gap, no duplicate: {w:?}");
        let dt = w[1].ts.wrapping_sub(w[0].ts);
        assert!(
            dt > 0 && dt < 90_000,
            "timestamp moves forward by a frame-ish step: {w:?}"
        );
        // Every packet is a base-layer frame here: both VP8 counts go up by one.
        let (a, b) = (w[0].picture.unwrap(), w[1].picture.unwrap());
        assert_eq!(b.id, (a.id + 1) & picture::PICTURE_ID_MASK, "{w:?}");
        assert_eq!(b.tl0, a.tl0.map(|t| t.wrapping_add(1)), "{w:?}");
    }
    let layers: Vec<usize> = sim.log.iter().map(|(l, _)| *l).collect();
    assert!(
        layers.windows(2).filter(|w| w[0] != w[1]).count() >= 2,
        "switched up and down: {layers:?}"
    );
}

#[test]
fn keyframe_requests_are_merged_per_layer() {
    let mut sim = Sim::new();
    sim.room.add_participant(S2, true, &mut sim.actions);
    sim.room
        .subscription_ready(sim.now, S2, VIDEO, SINK2, None, &mut sim.actions);
    // Both subscribers wait for layer 0: the readiness of S and S2 made one request.
    assert_eq!(sim.keyframe_requests(), [0]);
    // Subscribers lose pictures and ask again and again within 500 ms: nothing new.
    for _ in 0..5 {
        sim.now += Duration::from_millis(50);
        sim.room
            .on_keyframe_request(sim.now, S, VIDEO, &mut sim.actions);
        sim.room
            .on_keyframe_request(sim.now, S2, VIDEO, &mut sim.actions);
    }
    assert!(sim.keyframe_requests().is_empty());
    // After the interval, one more.
    sim.now += Duration::from_millis(300);
    sim.room
        .on_keyframe_request(sim.now, S, VIDEO, &mut sim.actions);
    sim.room
        .on_keyframe_request(sim.now, S2, VIDEO, &mut sim.actions);
    assert_eq!(sim.keyframe_requests(), [0]);
}

fn events(actions: &[Action]) -> Vec<RoomEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn allocator_downgrades_pauses_and_upgrades_with_hysteresis() {
    let mut sim = Sim::new();
    sim.frame([true; 3]);
    sim.room.set_estimate(S, 10_000_000);
    sim.tick();
    let alloc = |sim: &Sim| {
        sim.room
            .track(VIDEO)
            .unwrap()
            .subscription(S)
            .unwrap()
            .allocated()
    };
    assert_eq!(alloc(&sim), Some(0), "one round is not enough to upgrade");
    sim.frame([false; 3]);
    sim.tick();
    assert_eq!(alloc(&sim), Some(2));
    // Estimate collapses (once past the first seconds, when an estimate may pause a
    // video): down at once, then paused when nothing fits.
    sim.settle();
    sim.take_actions();
    sim.room.set_estimate(S, 300_000);
    sim.frame([false; 3]);
    sim.tick();
    assert_eq!(alloc(&sim), Some(0));
    sim.room.set_estimate(S, 50_000);
    sim.frame([false; 3]);
    sim.tick();
    assert_eq!(alloc(&sim), Some(0), "pausing needs consecutive rounds");
    sim.tick();
    assert_eq!(alloc(&sim), None);
    assert!(
        events(&sim.take_actions()).contains(&RoomEvent::VideoPaused {
            subscriber: S,
            track: VIDEO
        })
    );
    // Audio-only while paused: nothing of the video is forwarded.
    assert!(sim.frame([true; 3]).is_empty());
    // Estimate recovers: resumed only after consecutive rounds.
    sim.room.set_estimate(S, 10_000_000);
    sim.frame([false; 3]);
    sim.tick();
    assert_eq!(alloc(&sim), None);
    sim.frame([false; 3]);
    sim.tick();
    assert!(alloc(&sim).is_some());
    assert!(
        events(&sim.take_actions()).contains(&RoomEvent::VideoResumed {
            subscriber: S,
            track: VIDEO
        })
    );
    // A probing target is always set.
    sim.tick();
    assert!(sim
        .take_actions()
        .iter()
        .any(|a| matches!(a, Action::SetBitrate { subscriber: S, desired_bps, .. } if *desired_bps > 1_000_000)));
}

#[test]
fn an_early_estimate_does_not_pause_a_video_that_just_started() {
    let mut sim = Sim::new();
    sim.frame([true; 3]);
    // The first estimates of a lossy link can fall far below what it carries.
    sim.room.set_estimate(S, 50_000);
    let start = sim.now;
    let alloc = |sim: &Sim| {
        let t = sim.room.track(VIDEO).unwrap();
        t.subscription(S).unwrap().allocated()
    };
    while sim.now < start + subscription::SETTLING - ALLOCATION_INTERVAL {
        sim.tick();
        assert_eq!(alloc(&sim), Some(0), "kept on its lowest layer at first");
    }
    assert!(!events(&sim.take_actions())
        .iter()
        .any(|e| matches!(e, RoomEvent::VideoPaused { .. })));
    assert!(
        sim.log.len() > 100,
        "forwarded all along: {}",
        sim.log.len()
    );
    // An estimate that stays too low pauses it once the video has settled.
    for _ in 0..4 {
        sim.tick();
    }
    assert_eq!(alloc(&sim), None);
    assert!(
        events(&sim.take_actions()).contains(&RoomEvent::VideoPaused {
            subscriber: S,
            track: VIDEO
        })
    );
}

#[test]
fn a_video_is_not_paused_before_it_is_negotiated_or_while_its_publisher_is_silent() {
    let mut sim = Sim::unnegotiated();
    sim.room.set_estimate(S, 50_000);
    let alloc = |sim: &Sim| {
        let t = sim.room.track(VIDEO).unwrap();
        t.subscription(S).unwrap().allocated()
    };
    // Seconds pass before S's slot is negotiated, the publisher not sending yet.
    for _ in 0..6 {
        sim.now += ALLOCATION_INTERVAL;
        sim.room.tick(sim.now, &mut sim.actions);
    }
    assert_eq!(alloc(&sim), Some(0));
    sim.room
        .subscription_ready(sim.now, S, VIDEO, SINK, None, &mut sim.actions);
    // Then its first seconds, on an estimate that fits nothing: layer 0 all along.
    sim.frame([true; 3]);
    for _ in 0..6 {
        sim.tick();
        assert_eq!(alloc(&sim), Some(0));
    }
    assert!(!events(&sim.take_actions())
        .iter()
        .any(|e| matches!(e, RoomEvent::VideoPaused { .. })));
    assert!(sim.log.len() > 50, "forwarded: {}", sim.log.len());
}

#[test]
fn estimate_near_a_threshold_does_not_flap() {
    let mut sim = Sim::new();
    sim.frame([true; 3]);
    // Layer 1 is ~500 kbit/s: kept above 500k, taken only above 625k (headroom) and
    // only when proposed in consecutive rounds. An estimate jumping between 480k and
    // 640k every round would flip the layer every round without hysteresis.
    let mut changes = 0;
    let mut last = None;
    for i in 0..40 {
        let est = if i % 2 == 0 { 480_000 } else { 640_000 };
        sim.room.set_estimate(S, est);
        sim.tick();
        let a = sim
            .room
            .track(VIDEO)
            .unwrap()
            .subscription(S)
            .unwrap()
            .allocated();
        if i > 0 && a != last {
            changes += 1;
        }
        last = a;
    }
    assert!(changes <= 1, "allocation changed {changes} times");
}

#[test]
fn subscriber_can_pause_and_cap() {
    let mut sim = Sim::new();
    sim.room.set_estimate(S, 10_000_000);
    for _ in 0..3 {
        sim.frame([true; 3]);
        sim.tick();
    }
    sim.frame([true; 3]);
    let cap = Preference {
        paused: false,
        max_layer: 0,
    };
    assert!(sim
        .room
        .set_preference(sim.now, S, VIDEO, cap, &mut sim.actions));
    let got = sim.frame([true; 3]);
    assert_eq!(got.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [0]);
    let pause = Preference {
        paused: true,
        max_layer: 2,
    };
    sim.room
        .set_preference(sim.now, S, VIDEO, pause, &mut sim.actions);
    assert!(sim.frame([true; 3]).is_empty());
    sim.room
        .set_preference(sim.now, S, VIDEO, Preference::default(), &mut sim.actions);
    let got = sim.frame([true; 3]);
    assert_eq!(got.len(), 1);
}

#[test]
fn leaving_unpublishes_and_unsubscribes() {
    let mut sim = Sim::new();
    sim.frame([true; 3]);
    sim.take_actions();
    // The subscriber leaves: the track has no subscription left.
    sim.room.remove_participant(S, &mut sim.actions);
    assert!(sim.room.track(VIDEO).unwrap().subscriptions.is_empty());
    assert!(sim.frame([true; 3]).is_empty());
    // A newcomer is subscribed to the existing track.
    sim.room.add_participant(S2, true, &mut sim.actions);
    assert!(sim.take_actions().contains(&Action::Subscribe {
        subscriber: S2,
        track: VIDEO,
        kind: Kind::Video,
        publisher: P,
        source: TrackSource::Camera,
    }));
    // The publisher leaves: its track is unpublished and its subscribers released.
    sim.room.remove_participant(P, &mut sim.actions);
    let actions = sim.take_actions();
    assert!(actions.contains(&Action::Unsubscribe {
        subscriber: S2,
        track: VIDEO,
        sink: None
    }));
    assert!(events(&actions).contains(&RoomEvent::TrackUnpublished {
        track: VIDEO,
        publisher: P
    }));
    assert!(sim.room.track(VIDEO).is_none());
}

#[test]
fn late_keyframe_start_is_not_a_switch_point() {
    let mut sim = Sim::new();
    // The keyframe's first packet is lost; the rest of the frame arrives.
    let first = sim.seq[0];
    sim.seq[0] += 1;
    assert!(sim.frame([false; 3]).is_empty());
    // Its retransmission arrives late: switching there would leave a gap.
    let late = PacketIn {
        layer: 0,
        ssrc: sim.ssrc[0],
        seq: first,
        ts: sim.ts[0],
        marker: false,
        keyframe: true,
        payload_len: 600,
        audio_level: None,
        picture: None,
    };
    sim.out.clear();
    sim.room
        .on_packet(sim.now, VIDEO, &late, &mut sim.out, &mut sim.actions);
    assert!(sim.out.is_empty());
    // The next keyframe is taken.
    assert_eq!(sim.frame([true, false, false]).len(), 1);
}

#[test]
fn stragglers_of_a_replaced_stream_are_dropped() {
    let mut sim = Sim::new();
    sim.frame([true, false, false]);
    let old_ssrc = sim.ssrc[0];
    // The encoder restarts: new SSRC, and a keyframe on it.
    sim.ssrc[0] = 555;
    sim.seq[0] = 9;
    sim.frame([true, false, false]);
    sim.frame([false; 3]);
    let before = sim.log.len();
    // A reordered packet of the old stream arrives: ignored, no re-sync.
    sim.ssrc[0] = old_ssrc;
    assert!(sim.frame([false; 3]).is_empty());
    sim.ssrc[0] = 555;
    assert_eq!(
        sim.frame([false; 3]).len(),
        1,
        "the new stream keeps flowing"
    );
    assert_eq!(sim.log.len(), before + 1);
}

#[test]
fn ssrc_zero_is_an_ssrc_like_any_other() {
    let mut sim = Sim::new();
    sim.ssrc[0] = 0;
    assert_eq!(sim.frame([true, false, false]).len(), 1);
    assert_eq!(sim.frame([false; 3]).len(), 1);
    // And it is remembered as a replaced stream like any other.
    sim.ssrc[0] = 77;
    sim.frame([true, false, false]);
    sim.ssrc[0] = 0;
    assert!(sim.frame([false; 3]).is_empty());
}

#[test]
fn a_switch_in_the_middle_of_a_frame_leaves_a_gap() {
    let mut sim = Sim::new();
    sim.frame([true, false, false]);
    sim.room.set_estimate(S, 10_000_000);
    sim.tick();
    sim.tick();
    // Layer 0's next frame is cut in two packets; layer 2's keyframe starts between.
    let packet = |sim: &mut Sim, layer: usize, key: bool, marker: bool| {
        let pkt = PacketIn {
            layer: layer as Layer,
            ssrc: sim.ssrc[layer],
            seq: sim.seq[layer],
            ts: sim.ts[layer],
            marker,
            keyframe: key,
            payload_len: 1000,
            audio_level: None,
            picture: None,
        };
        sim.seq[layer] += 1;
        sim.out.clear();
        sim.room
            .on_packet(sim.now, VIDEO, &pkt, &mut sim.out, &mut sim.actions);
        sim.out.iter().any(|f| f.sink == SINK)
    };
    sim.now += Duration::from_millis(33);
    assert!(
        packet(&mut sim, 0, false, false),
        "first half of a layer-0 frame"
    );
    let before = sim.out.iter().find(|f| f.sink == SINK).unwrap().seq;
    assert!(
        packet(&mut sim, 2, true, true),
        "layer 2's keyframe switches, though layer 0 is mid-frame"
    );
    let after = sim.out.iter().find(|f| f.sink == SINK).unwrap().seq;
    assert_eq!(after, before + 2, "one sequence number left out");
    assert!(
        !packet(&mut sim, 0, false, true),
        "the rest of layer 0's frame is not forwarded"
    );
    // Between frames, no gap.
    sim.ts[2] = sim.ts[2].wrapping_add(3000);
    assert!(packet(&mut sim, 2, false, true));
    let next = sim.out.iter().find(|f| f.sink == SINK).unwrap().seq;
    assert_eq!(next, after + 1);
}

#[test]
fn audio_beyond_its_ceiling_is_dropped_and_ordinary_audio_never_is() {
    const AUDIO: TrackId = TrackId(20);
    let mut sim = Sim::new();
    sim.room.publish(
        AUDIO,
        P,
        (Kind::Audio, TrackSource::Camera),
        Codec::Opus,
        48_000,
        1,
        &mut sim.actions,
    );
    sim.room
        .subscription_ready(sim.now, S, AUDIO, SINK2, None, &mut sim.actions);
    // Every 20 ms for `seconds`, a packet of `bytes`: how many were forwarded.
    let mut seq = 0;
    let mut run = |sim: &mut Sim, bytes: usize, seconds: u64| {
        let (mut passed, mut dropped) = (0, 0);
        for _ in 0..seconds * 50 {
            sim.now += Duration::from_millis(20);
            seq += 1;
            let pkt = PacketIn {
                layer: 0,
                ssrc: 99,
                seq,
                ts: (seq * 960) as u32,
                marker: false,
                keyframe: true,
                payload_len: bytes,
                audio_level: Some(-30),
                picture: None,
            };
            sim.out.clear();
            if sim
                .room
                .on_packet(sim.now, AUDIO, &pkt, &mut sim.out, &mut sim.actions)
            {
                assert!(sim.out.iter().any(|f| f.sink == SINK2));
                passed += 1;
            } else {
                assert!(sim.out.is_empty(), "a dropped packet goes to nobody");
                dropped += 1;
            }
        }
        (passed, dropped)
    };
    // Opus at 64 kbit/s (160 bytes per 20 ms): never touched.
    assert_eq!(run(&mut sim, 160, 10), (500, 0));
    // 512 kbit/s (1280 bytes per 20 ms): held to 256 kbit/s after the burst.
    let (passed, dropped) = run(&mut sim, 1280, 10);
    let carried_bps = passed as u64 * 1280 * 8 / 10;
    assert!(dropped > 200, "{passed} passed, {dropped} dropped");
    assert!(
        (240_000..=280_000).contains(&carried_bps),
        "{carried_bps} bit/s carried"
    );
    // Video has its allocator, not this ceiling.
    for _ in 0..30 {
        assert_eq!(sim.frame([true; 3]).len(), 1);
    }
}

#[test]
fn a_stalled_layer_falls_back_to_the_best_flowing_one_at_once() {
    let mut sim = Sim::on_top_layer();
    let got = sim.frame([false; 3]);
    assert_eq!(got.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2]);
    sim.take_actions();

    // The publisher drops its top layer (a browser under CPU pressure); the two
    // lower ones go on. 299 ms after its last packet nothing changes yet.
    let stopped = sim.now;
    let at = |ms: u64| stopped + Duration::from_millis(ms);
    for ms in [33, 66, 99, 132, 165, 198, 231, 264, 299] {
        sim.now = at(ms);
        assert_eq!(sim.send(0, false), None);
        assert_eq!(sim.send(1, false), None);
    }
    assert!(sim.keyframe_requests().is_empty());
    // At 300 ms: a packet of layer 0 changes nothing while layer 1 flows; layer 1's
    // own packet moves the subscriber to layer 1 at once, and asks for its keyframe.
    sim.now = at(300);
    assert_eq!(sim.send(0, false), None);
    assert!(sim.keyframe_requests().is_empty());
    assert_eq!(sim.send(1, false), None, "not before its keyframe");
    assert_eq!(sim.keyframe_requests(), [1]);
    sim.now = at(320);
    assert!(
        sim.send(1, true).is_some(),
        "switched at layer 1's keyframe"
    );
    assert!(
        events(&sim.take_actions()).contains(&RoomEvent::LayerChanged {
            subscriber: S,
            track: VIDEO,
            layer: 1,
        })
    );

    // Later allocator rounds, while layer 2 stays away, keep layer 1 flowing: a round
    // that still counts layer 2 as received may aim at it again, but the subscriber
    // keeps layer 1 until a keyframe of layer 2 would come.
    let mut forwarded = 0;
    for i in 1..=90u64 {
        sim.now = at(320 + i * 33);
        if sim.send(1, false).is_some() {
            forwarded += 1;
        }
        sim.send(0, false);
        if i % 15 == 0 {
            sim.room.tick(sim.now, &mut sim.actions);
        }
    }
    assert_eq!(forwarded, 90, "no freeze on layer 1");
}

#[test]
fn a_publisher_that_sends_seldom_on_every_layer_is_not_stalled() {
    let mut sim = Sim::on_top_layer();
    sim.take_actions();
    // A camera turned off: a black frame a second on every layer, the lowest layer's
    // packet first. The top layer is silent for a second before each of its frames,
    // but the lower layers completed no more frames meanwhile: no fall back.
    let mut top = 0;
    for _ in 0..5 {
        sim.now += Duration::from_secs(1);
        for l in 0..3 {
            if sim.send(l, false).is_some_and(|_| l == 2) {
                top += 1;
            }
        }
    }
    assert!(sim.keyframe_requests().is_empty(), "no keyframe asked for");
    assert_eq!(top, 5, "the subscriber stays on the top layer");
}

#[test]
fn audio_held_by_a_host_is_not_forwarded_until_released() {
    const AUDIO: TrackId = TrackId(21);
    let mut sim = Sim::new();
    sim.room.publish(
        AUDIO,
        P,
        (Kind::Audio, TrackSource::Camera),
        Codec::Opus,
        48_000,
        1,
        &mut sim.actions,
    );
    sim.room
        .subscription_ready(sim.now, S, AUDIO, SINK2, None, &mut sim.actions);
    let mut seq = 0;
    let mut forwarded = |sim: &mut Sim| {
        seq += 1;
        let pkt = PacketIn {
            layer: 0,
            ssrc: 77,
            seq,
            ts: (seq * 960) as u32,
            marker: false,
            keyframe: true,
            payload_len: 100,
            audio_level: Some(-20),
            picture: None,
        };
        sim.now += Duration::from_millis(20);
        sim.out.clear();
        sim.room
            .on_packet(sim.now, AUDIO, &pkt, &mut sim.out, &mut sim.actions);
        sim.out.len()
    };
    assert_eq!(forwarded(&mut sim), 1);
    assert!(sim.room.hold_audio(P, true));
    assert_eq!(forwarded(&mut sim), 0);
    // Its video is not held.
    assert_eq!(sim.frame([true; 3]).len(), 1);
    assert!(sim.room.hold_audio(P, false));
    assert_eq!(forwarded(&mut sim), 1);
    // Held before its audio is published: the new track is held too.
    assert!(sim.room.hold_audio(P, true));
    sim.room.publish(
        TrackId(22),
        P,
        (Kind::Audio, TrackSource::Camera),
        Codec::Opus,
        48_000,
        1,
        &mut sim.actions,
    );
    assert!(sim.room.track(TrackId(22)).unwrap().held);
    // Nobody of the room: refused.
    assert!(!sim.room.hold_audio(ParticipantId(999), true));
}
