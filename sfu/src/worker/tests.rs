//! The worker in memory: the product's client peers (`client` crate: ICE, DTLS, SRTP,
//! probes in every frame) exchange every datagram with a [`Worker`] through a
//! simulated network with simulated time. No socket, no thread, no clock: what only
//! socket tests could check before (joins, renegotiation, teardown, demux, timers) is
//! checked here deterministically.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::media::{Clock, LayerProfile, OpusFrames, VideoCodec};
use client::peer::{Peer, PeerSetup};
use client::stats::{Measure, StreamKind};
use client::Env;
use crossbeam_channel::bounded;
use str0m::change::{SdpAnswer, SdpOffer};

use super::{Worker, WorkerContext};
use crate::command::{Command, NewPeer};
use crate::core::{Kind, ParticipantId, TrackSource};
use crate::metrics::Metrics;
use crate::peer::{parse_offer, JoinKind};
use crate::placement::ShardPlacement;
use control::NodeEvent;

const ROOM: &str = "room";

fn node_addr() -> SocketAddr {
    "10.0.0.1:20000".parse().unwrap()
}

/// A client: the client crate's peer publishing what it is asked to (20 ms audio,
/// one 30 fps video layer), and the network's view of it.
struct Client {
    peer: Peer,
    addr: SocketAddr,
    participant: ParticipantId,
    measure: Measure,
    /// Offers the node sent.
    offers: u32,
    /// Gone silent: the network drops what it sends and what is sent to it.
    closed: bool,
    /// Takes the node's offers but never answers them (a client that missed them).
    deaf: bool,
}

impl Client {
    fn connected(&self) -> bool {
        self.peer.rtc.is_connected()
    }

    /// Frames received, per kind.
    fn received(&self, kind: StreamKind) -> u64 {
        let r = self.peer.received().filter(|r| r.kind == kind);
        r.map(|r| r.frames).sum()
    }

    fn audio_in(&self) -> u64 {
        self.received(StreamKind::Audio)
    }

    fn video_in(&self) -> u64 {
        self.received(StreamKind::Video)
    }
}

/// The worker, its clients, and the wire between them.
struct Net {
    now: Instant,
    env: Env,
    worker: Worker,
    placement: Arc<Mutex<ShardPlacement>>,
    cert: str0m::config::DtlsCert,
    clients: Vec<Client>,
    events: Vec<NodeEvent>,
    /// Datagrams the worker wrote, to all destinations.
    sent: u64,
}

impl Net {
    fn new() -> Self {
        crate::node::install_crypto();
        let now = Instant::now();
        let metrics = Arc::new(Metrics::new());
        let placement = Arc::new(Mutex::new(ShardPlacement::default()));
        let ctx = WorkerContext {
            index: 0,
            metrics,
            shared: Default::default(),
            track_ids: Arc::new(AtomicU64::new(1)),
            placement: placement.clone(),
            offer_give_up: crate::peer::OFFER_GIVE_UP,
        };
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .unwrap();
        // One video layer at 30 fps, a keyframe a second.
        let env = Env {
            layers: vec![LayerProfile {
                kbps: 100,
                fps: 30.0,
            }],
            keyframe_interval: Duration::from_secs(1),
            ..Env::new("", OpusFrames::new().unwrap(), Clock(now))
        };
        Net {
            now,
            env,
            worker: Worker::new(ctx, vec![node_addr()], Vec::new(), now),
            placement,
            cert,
            clients: Vec::new(),
            events: Vec::new(),
            sent: 0,
        }
    }

    /// A client joins with an offer to publish audio and/or video.
    fn join(&mut self, audio: bool, video: bool) -> usize {
        self.join_as(audio, video, false)
    }

    /// A client joins; a `silent` one never sends a datagram after its offer.
    fn join_as(&mut self, audio: bool, video: bool, silent: bool) -> usize {
        self.join_with(audio, video, silent, false)
    }

    /// A client joins; one `sharing` keeps its video m-line for a screen share (it
    /// sends its frames from the start, as a page that shares at once would).
    fn join_with(&mut self, audio: bool, video: bool, silent: bool, sharing: bool) -> usize {
        let n = self.clients.len();
        let addr: SocketAddr = format!("10.0.1.{}:5000", n + 1).parse().unwrap();
        let setup = PeerSetup {
            codec: VideoCodec::Vp8,
            audio,
            layers: video as usize,
            vp8_pt: None,
            audio_red: false,
        };
        let mut peer = Peer::with_setup(&self.env, setup, addr, self.now).unwrap();
        let (offer, pending, mids) = peer.publishing_offer().unwrap();
        let participant = ParticipantId(n as u64 + 1);
        self.placement
            .lock()
            .unwrap()
            .reserve(participant, ROOM, 100, || 0)
            .unwrap();
        let offer = parse_offer(&offer.to_sdp_string()).unwrap();
        let (node_rtc, answer, local_ufrag) = crate::node::answer_offer(
            self.now,
            &self.cert,
            &crate::node::HostCandidates::udp(vec![node_addr()]),
            offer,
            control::RoomVideo::Any,
        )
        .unwrap();
        let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
        peer.rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let screen = mids.video.filter(|_| sharing);
        peer.start_sending(&self.env, mids, n as u32 + 1, false, self.now)
            .unwrap();
        let np = NewPeer {
            rtc: node_rtc,
            kind: JoinKind::Full,
            participant,
            identity: "someone".into(),
            room: ROOM.into(),
            local_ufrag,
            screen,
        };
        self.worker
            .handle_command(self.now, Command::AddPeer(Box::new(np)));
        self.clients.push(Client {
            peer,
            addr,
            participant,
            measure: Measure::new(self.now),
            offers: 0,
            closed: silent,
            deaf: false,
        });
        self.settle();
        n
    }

    /// Carry datagrams both ways and answer the node's offers until all is quiet.
    fn settle(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            for i in 0..self.clients.len() {
                moved |= self.drain_client(i);
            }
            self.worker.end_batch(self.now);
            self.worker.handle_timeout(self.now);
            moved |= self.deliver_from_worker();
            moved |= self.take_events();
            if !moved {
                return;
            }
        }
        panic!("the network never settled");
    }

    /// Hand what the client sent to the worker.
    fn drain_client(&mut self, i: usize) -> bool {
        let c = &mut self.clients[i];
        if c.closed {
            c.peer.transmits().clear();
            return false;
        }
        if c.peer.poll(&self.env, &mut c.measure, self.now).is_err() {
            c.closed = true;
        }
        let tx = c.peer.transmits();
        let mut moved = false;
        for (to, bytes) in tx.iter() {
            moved = true;
            assert_eq!(to, node_addr());
            self.worker.handle_datagram(self.now, c.addr, bytes);
        }
        tx.clear();
        moved
    }

    fn deliver_from_worker(&mut self) -> bool {
        let tx = &mut self.worker.transmits()[0];
        let mut moved = false;
        for (dest, bytes) in tx.iter() {
            moved = true;
            self.sent += 1;
            let Some(c) = self.clients.iter_mut().find(|c| c.addr == dest) else {
                continue;
            };
            if c.closed {
                continue;
            }
            let (now, measure) = (self.now, &mut c.measure);
            let _ = c
                .peer
                .handle_datagram(&self.env, now, now, node_addr(), bytes, measure);
        }
        tx.clear();
        moved
    }

    /// Collect the worker's events; answer its offers as a client would.
    fn take_events(&mut self) -> bool {
        let mut moved = false;
        while let Some(ev) = self.worker.poll_event() {
            moved = true;
            if let NodeEvent::Offer {
                participant, sdp, ..
            } = &ev
            {
                let c = self
                    .clients
                    .iter_mut()
                    .find(|c| c.participant == *participant)
                    .unwrap();
                c.offers += 1;
                if c.deaf {
                    self.events.push(ev);
                    continue;
                }
                let offer = SdpOffer::from_sdp_string(sdp).unwrap();
                let answer = c.peer.rtc.sdp_api().accept_offer(offer).unwrap();
                let (reply, result) = bounded(1);
                let cmd = Command::Answer {
                    participant: *participant,
                    sdp: answer.to_sdp_string(),
                    reply,
                };
                self.worker.handle_command(self.now, cmd);
                // An offer can cross the participant's leave; any other error is a bug.
                match result.try_recv().unwrap() {
                    Ok(()) | Err(control::ControlError::NoSuchParticipant) => {}
                    Err(e) => panic!("answer refused: {e}"),
                }
            }
            self.events.push(ev);
        }
        moved
    }

    /// Let simulated time pass in 10 ms steps, the publishers sending what is due.
    fn run(&mut self, total: Duration) {
        let step = Duration::from_millis(10);
        let end = self.now + total;
        while self.now < end {
            self.now += step;
            for c in &mut self.clients {
                if c.closed {
                    continue;
                }
                if c.peer.turn(&self.env, &mut c.measure, self.now).is_err() {
                    c.closed = true;
                }
            }
            self.settle();
        }
    }
}

fn count(events: &[NodeEvent], f: impl Fn(&NodeEvent) -> bool) -> usize {
    events.iter().filter(|e| f(e)).count()
}

#[test]
fn clients_connect_and_every_frame_is_forwarded() {
    let mut net = Net::new();
    let a = net.join(true, true);
    let b = net.join(true, true);
    net.run(Duration::from_secs(1));
    for c in [a, b] {
        assert!(net.clients[c].connected(), "client {c} connected");
    }
    assert_eq!(
        count(&net.events, |e| matches!(e, NodeEvent::Connected { .. })),
        2
    );
    let sent = |n: &Net, c: usize| n.clients[c].peer.frames_written();
    let got = |n: &Net, c: usize| (n.clients[c].audio_in(), n.clients[c].video_in());
    let (sent_a, sent_b, got_a, got_b) = (sent(&net, a), sent(&net, b), got(&net, a), got(&net, b));
    net.run(Duration::from_secs(3));
    // Delivery is instant here: every frame sent after the warm-up arrives, give or
    // take the one in flight at each end.
    let delta = |x: (u64, u64), y: (u64, u64)| (x.0 - y.0, x.1 - y.1);
    for (to, from, got0, sent0) in [(b, a, got_b, sent_a), (a, b, got_a, sent_b)] {
        let (audio_in, video_in) = delta(got(&net, to), got0);
        let (audio_out, video_out) = delta(sent(&net, from), sent0);
        assert!(
            audio_out >= 140 && video_out >= 90,
            "{audio_out} {video_out}"
        );
        assert!(
            audio_in.abs_diff(audio_out) <= 1,
            "audio {audio_in} of {audio_out}"
        );
        assert!(
            video_in.abs_diff(video_out) <= 1,
            "video {video_in} of {video_out}"
        );
    }
}

#[test]
fn a_leaving_publisher_renegotiates_and_tears_down() {
    let mut net = Net::new();
    let a = net.join(true, true);
    let b = net.join(true, true);
    let c = net.join(true, false);
    net.run(Duration::from_secs(2));
    // Each client was offered the others' tracks as they appeared.
    assert!(net.clients[a].offers >= 1 && net.clients[c].offers >= 1);
    let offers_before = net.clients[c].offers;

    let leaving = net.clients[a].participant;
    net.worker
        .handle_command(net.now, Command::RemovePeer(leaving));
    net.settle();
    // The place was released and the room was told.
    assert_eq!(net.placement.lock().unwrap().shard_of(leaving), None);
    let left = count(
        &net.events,
        |e| matches!(e, NodeEvent::ParticipantLeft { participant, .. } if *participant == leaving),
    );
    assert_eq!(left, 1);
    let unpublished = count(
        &net.events,
        |e| matches!(e, NodeEvent::TrackUnpublished { participant, .. } if *participant == leaving),
    );
    assert_eq!(unpublished, 2, "its audio and video are unpublished");
    // The others get a new offer retiring the m-lines that carried its tracks.
    assert_eq!(net.clients[c].offers, offers_before + 1);
    let last_offer = net
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            NodeEvent::Offer {
                participant, sdp, ..
            } if *participant == net.clients[c].participant => Some(sdp.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(last_offer.matches("a=inactive").count(), 2, "{last_offer}");

    // Media between those left goes on; a gets nothing more.
    let (b_audio, c_audio) = (net.clients[b].audio_in(), net.clients[c].audio_in());
    let a_audio = net.clients[a].audio_in();
    net.run(Duration::from_secs(1));
    assert!(net.clients[b].audio_in() > b_audio + 40);
    assert!(net.clients[c].audio_in() > c_audio + 40, "c still hears b");
    assert_eq!(net.clients[a].audio_in(), a_audio);
    assert_eq!(
        net.worker
            .shared
            .participants
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );

    // The last ones leave: the room goes.
    for i in [b, c] {
        let p = net.clients[i].participant;
        net.worker.handle_command(net.now, Command::RemovePeer(p));
    }
    net.settle();
    assert!(net.worker.rooms.is_empty());
    assert_eq!(
        net.worker
            .shared
            .rooms
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn a_peer_that_never_connects_is_removed_after_the_connect_timeout() {
    let mut net = Net::new();
    // The client goes silent before ICE: the network drops everything it would send.
    let a = net.join_as(true, false, true);
    let p = net.clients[a].participant;
    for _ in 0..19 {
        net.now += Duration::from_secs(1);
        net.worker.handle_timeout(net.now);
        net.take_events();
    }
    assert_eq!(
        count(&net.events, |e| matches!(e, NodeEvent::PeerFailed { .. })),
        0
    );
    for _ in 0..2 {
        net.now += Duration::from_secs(1);
        net.worker.handle_timeout(net.now);
        net.take_events();
    }
    let failed = count(&net.events, |e| {
        matches!(e, NodeEvent::PeerFailed { participant, reason, .. }
            if *participant == p && reason == "connect_timeout")
    });
    assert_eq!(failed, 1);
    assert!(net.worker.by_participant.is_empty());
}

#[test]
fn strangers_are_dropped_and_counted_without_harm() {
    let mut net = Net::new();
    let a = net.join(true, false);
    let b = net.join(true, false);
    net.run(Duration::from_millis(500));
    let stranger: SocketAddr = "10.9.9.9:4000".parse().unwrap();
    let metrics = net.worker.metrics.clone();
    let before = metrics.dropped_unknown_source.get();
    let errors = metrics.dropped_rtc_error.get();
    for i in 0..200u32 {
        // Bytes that are no kind of datagram WebRTC knows: refused before demux.
        let junk: Vec<u8> = (0..(i % 250) as u8)
            .map(|x| x.wrapping_mul(31) | 0x02)
            .collect();
        net.worker.handle_datagram(net.now, stranger, &junk);
        // RTP-looking datagrams from a stranger: not ours. From a participant's own
        // address they go to its Rtc, which cannot decrypt them.
        let rtp = [0x80, 0x60, 0, i as u8, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4];
        net.worker.handle_datagram(net.now, stranger, &rtp);
        let addr = net.clients[a].addr;
        net.worker.handle_datagram(net.now, addr, &rtp);
    }
    net.worker.end_batch(net.now);
    let unknown = metrics.dropped_unknown_source.get() - before;
    let refused = metrics.dropped_rtc_error.get() - errors;
    assert_eq!(
        unknown + refused,
        400,
        "{unknown} unknown, {refused} refused"
    );
    assert!(unknown >= 200, "{unknown}");
    let heard = net.clients[b].audio_in();
    net.run(Duration::from_secs(1));
    assert!(net.clients[b].audio_in() > heard + 40, "media goes on");
    assert!(net.clients[a].connected() && !net.clients[a].closed);
}

#[test]
fn the_next_deadline_is_the_earliest_peer_timeout_or_housekeeping() {
    let mut net = Net::new();
    net.join(true, true);
    net.join(true, true);
    net.run(Duration::from_millis(500));
    // Nothing is due before the deadline the worker names; at it, something is.
    let deadline = net.worker.poll_timeout();
    assert!(deadline > net.now);
    assert!(deadline <= net.now + super::HOUSEKEEPING);
    let sent = net.sent;
    net.worker.handle_timeout(net.now);
    net.deliver_from_worker();
    assert_eq!(net.sent, sent, "nothing was due yet");
}

#[test]
fn an_unanswered_offer_is_sent_again_and_at_last_fails_its_participant() {
    let mut net = Net::new();
    let a = net.join(true, true);
    net.run(Duration::from_millis(500));
    // Alice misses the offer that would add Bob's tracks.
    net.clients[a].deaf = true;
    let b = net.join(true, true);
    net.run(Duration::from_millis(500));
    assert_eq!(net.clients[a].offers, 1);
    net.run(Duration::from_secs(9));
    assert_eq!(net.clients[a].offers, 1, "not before 10 s");
    net.run(Duration::from_secs(1));
    assert_eq!(net.clients[a].offers, 2, "sent again after 10 s");
    // Answered now: renegotiation goes on, and Bob's media reaches her.
    net.clients[a].deaf = false;
    net.run(Duration::from_secs(10));
    assert_eq!(net.clients[a].offers, 3, "the third copy is answered");
    assert!(net.clients[a].video_in() > 0, "bob's video reaches alice");
    // A client that never answers is failed, not left pending for ever.
    net.clients[b].deaf = true;
    let c = net.join(true, false);
    net.run(Duration::from_secs(74));
    let failed = |n: &Net| {
        count(&n.events, |e| {
            matches!(e, NodeEvent::PeerFailed { participant, reason, .. }
                if *participant == n.clients[b].participant && reason == "offer_unanswered")
        })
    };
    assert_eq!(failed(&net), 0, "not within 75 s");
    net.run(Duration::from_secs(2));
    assert_eq!(failed(&net), 1);
    assert!(net.clients[c].connected());
}

#[test]
fn a_screen_share_is_published_while_shared_and_served_as_a_screen() {
    let mut net = Net::new();
    let sharer = net.join_with(true, true, false, true);
    let viewer = net.join(true, false);
    net.run(Duration::from_secs(1));
    let who = net.clients[sharer].participant;
    let published = |n: &Net| {
        n.events
            .iter()
            .filter_map(|e| match e {
                NodeEvent::TrackPublished {
                    participant,
                    kind: Kind::Video,
                    source,
                    track,
                    ..
                } if *participant == who => Some((*track, *source)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // The kept m-line publishes nothing until shared: the viewer gets no video.
    assert!(published(&net).is_empty());
    assert_eq!(net.clients[viewer].video_in(), 0);

    let screen = |n: &mut Net, on: bool| share(n, who, on);
    screen(&mut net, true).unwrap();
    net.run(Duration::from_secs(2));
    let shared = published(&net);
    assert_eq!(shared.len(), 1);
    let (track, source) = shared[0];
    assert_eq!(source, TrackSource::Screen);
    // The viewer's offer says its new m-line carries a screen; its frames arrive.
    let offered = net.events.iter().any(|e| {
        matches!(e, NodeEvent::Offer { participant, tracks, .. }
            if *participant == net.clients[viewer].participant
                && tracks.iter().any(|t| t.track == track && t.source == TrackSource::Screen))
    });
    assert!(offered, "the viewer was offered the screen as a screen");
    let got = net.clients[viewer].video_in();
    assert!(got > 20, "the viewer received {got} video packets");
    // Sharing again while shared changes nothing.
    screen(&mut net, true).unwrap();
    net.settle();
    assert_eq!(published(&net).len(), 1);

    // Stopped: unpublished, and nothing more reaches the viewer.
    screen(&mut net, false).unwrap();
    net.settle();
    let unpublished = count(
        &net.events,
        |e| matches!(e, NodeEvent::TrackUnpublished { track: t, .. } if *t == track),
    );
    assert_eq!(unpublished, 1);
    net.run(Duration::from_millis(200));
    let after = net.clients[viewer].video_in();
    net.run(Duration::from_secs(1));
    assert_eq!(net.clients[viewer].video_in(), after);

    // Shared again: a new track.
    screen(&mut net, true).unwrap();
    net.run(Duration::from_secs(1));
    assert_eq!(published(&net).len(), 2);
    assert!(net.clients[viewer].video_in() > after);

    // One shared screen a room: another sharer must wait for this one to stop.
    let second = net.join_with(true, true, false, true);
    net.run(Duration::from_millis(500));
    let second = net.clients[second].participant;
    assert_eq!(
        share(&mut net, second, true),
        Err(control::ControlError::ScreenTaken)
    );

    // A participant that kept no m-line cannot share.
    let viewer = net.clients[viewer].participant;
    assert_eq!(
        share(&mut net, viewer, true),
        Err(control::ControlError::NoSuchTrack)
    );
}

/// `participant` starts or stops sharing its screen: the shard's reply.
fn share(net: &mut Net, participant: ParticipantId, on: bool) -> Result<(), control::ControlError> {
    let (reply, result) = bounded(1);
    let cmd = Command::Screen {
        participant,
        on,
        reply,
    };
    net.worker.handle_command(net.now, cmd);
    result.try_recv().unwrap()
}
