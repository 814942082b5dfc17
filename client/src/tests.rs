//! The client peer in memory: two peers, one publishing to the other, datagrams handed
//! across and time simulated, as `sfu::worker`'s tests drive the worker.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::media::{Clock, OpusFrames, VideoCodec};
use crate::peer::{Peer, PeerSetup};
use crate::stats::{Measure, StreamKind};
use crate::Env;

fn env(codec: VideoCodec, t0: Instant) -> Env {
    let opus = OpusFrames::new().expect("opus encoder");
    Env {
        codec,
        keyframe_interval: Duration::from_secs(2),
        ..Env::new("", opus, Clock(t0))
    }
}

struct End {
    peer: Peer,
    addr: SocketAddr,
    measure: Measure,
}

impl End {
    fn new(env: &Env, setup: PeerSetup, port: u16, t0: Instant) -> End {
        let addr = SocketAddr::from(([10, 0, 0, port as u8], port));
        End {
            peer: Peer::with_setup(env, setup, addr, t0).expect("peer"),
            addr,
            measure: Measure::new(t0),
        }
    }

    fn turn(&mut self, env: &Env, now: Instant) {
        self.peer.turn(env, &mut self.measure, now).expect("turn");
    }

    /// What this end sent, taken out of its queue.
    fn sent(&mut self) -> Vec<Vec<u8>> {
        let tx = self.peer.transmits();
        let out = tx.iter().map(|(_, d)| d.to_vec()).collect();
        tx.clear();
        out
    }

    fn receive(&mut self, env: &Env, now: Instant, from: SocketAddr, datagrams: Vec<Vec<u8>>) {
        for d in datagrams {
            self.peer
                .handle_datagram(env, now, now, from, &d, &mut self.measure)
                .expect("datagram");
        }
    }
}

/// A publisher set up as `setup` and a receiver, for `secs` of simulated time, 1 ms a
/// step.
fn publish(codec: VideoCodec, setup: impl Fn(&mut PeerSetup), secs: u64) -> (Env, End) {
    let t0 = Instant::now();
    let env = env(codec, t0);
    let mut a_setup = PeerSetup::of(&env);
    setup(&mut a_setup);
    let mut a = End::new(&env, a_setup, 1, t0);
    let mut b = End::new(&env, PeerSetup::of(&env), 2, t0);
    let (offer, pending, mids) = a.peer.publishing_offer().expect("offer");
    let answer = b.peer.rtc.sdp_api().accept_offer(offer).expect("answer");
    a.peer
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("accepted");
    a.peer
        .start_sending(&env, mids, 7, true, t0)
        .expect("sending");
    let mut now = t0;
    while now < t0 + Duration::from_secs(secs) {
        now += Duration::from_millis(1);
        a.turn(&env, now);
        b.turn(&env, now);
        let (to_b, to_a) = (a.sent(), b.sent());
        b.receive(&env, now, a.addr, to_b);
        a.receive(&env, now, b.addr, to_a);
    }
    (env, b)
}

#[test]
fn a_published_stream_arrives_whole_and_is_measured() {
    for codec in [VideoCodec::Vp8, VideoCodec::H264] {
        let (env, b) = publish(codec, |_| {}, 3);
        let end_us = env.clock.us(Instant::now() + Duration::from_secs(3));
        let audio = b
            .measure
            .streams
            .get(&(7, StreamKind::Audio))
            .expect("audio measured");
        let video = b
            .measure
            .streams
            .get(&(7, StreamKind::Video))
            .expect("video measured");
        let (audio, video) = (audio.finish(end_us), video.finish(end_us));
        // Connecting takes a few hundred simulated milliseconds; after it, every 20 ms
        // an Opus frame and every layer's frames at their rates.
        assert!(audio.frames > 100, "{codec:?} audio: {audio:?}");
        assert!(video.frames > 100, "{codec:?} video: {video:?}");
        assert_eq!(audio.loss_pct, 0.0, "{codec:?} audio: {audio:?}");
        assert_eq!(video.loss_pct, 0.0, "{codec:?} video: {video:?}");
        // The receiver got all three simulcast layers (no SFU picks one here).
        assert!(video.layer_frames.iter().all(|n| *n > 0), "{video:?}");
        assert!(b.measure.join_ms.is_some());
        // Per m-line: audio on one, the three layers' streams on the video one.
        let video_mid = b
            .peer
            .received()
            .find(|r| r.kind == StreamKind::Video)
            .expect("video received")
            .mid;
        for r in b.peer.received() {
            assert_eq!(r.from, Some(7), "{r:?}");
            if r.kind == StreamKind::Video {
                assert_eq!(r.mid, video_mid, "{r:?}");
            }
        }
        assert_eq!(b.peer.received().count(), 4);
    }
}

#[test]
fn one_layer_is_a_plain_stream_and_vp8_can_move_payload_type() {
    let (env, b) = publish(
        VideoCodec::Vp8,
        |s| {
            s.layers = 1;
            s.vp8_pt = Some(120);
        },
        3,
    );
    let end_us = env.clock.us(Instant::now() + Duration::from_secs(3));
    let video = b
        .measure
        .streams
        .get(&(7, StreamKind::Video))
        .expect("video measured");
    let video = video.finish(end_us);
    assert_eq!(video.loss_pct, 0.0, "{video:?}");
    // Layer 0 of the run's profile (7.5 fps here) and nothing else.
    assert!(video.layer_frames[0] > 15, "{video:?}");
    assert_eq!(video.layer_frames[1..], [0, 0], "{video:?}");
    let streams: Vec<_> = b.peer.received().map(|r| r.kind).collect();
    assert_eq!(
        streams.len(),
        2,
        "one audio and one video stream: {streams:?}"
    );
}
