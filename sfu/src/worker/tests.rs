//! The worker in memory: real str0m client peers (ICE, DTLS, SRTP) exchange every
//! datagram with a [`Worker`] through a simulated network with simulated time. No
//! socket, no thread, no clock: what only socket tests could check before (joins,
//! renegotiation, teardown, demux, timers) is checked here deterministically.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use super::{Worker, WorkerContext};
use crate::control::{Command, NewPeer, NodeEvent};
use crate::core::ParticipantId;
use crate::metrics::Metrics;
use crate::peer::{parse_offer, JoinKind};
use crate::placement::Placement;

const ROOM: &str = "room";

fn node_addr() -> SocketAddr {
    "10.0.0.1:20000".parse().unwrap()
}

/// A client: a str0m peer in frame mode that publishes what it is asked to and counts
/// what it receives.
struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    participant: ParticipantId,
    audio: Option<Mid>,
    video: Option<Mid>,
    connected: bool,
    /// Frames received and sent, per kind.
    audio_in: u64,
    video_in: u64,
    audio_out: u64,
    video_out: u64,
    /// Offers the node sent, and how many m-lines the last one had.
    offers: u32,
    closed: bool,
    seq: u32,
    keyframe_wanted: bool,
}

/// The worker, its clients, and the wire between them.
struct Net {
    now: Instant,
    worker: Worker,
    placement: Arc<Mutex<Placement>>,
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
        let placement = Arc::new(Mutex::new(Placement::default()));
        let ctx = WorkerContext {
            index: 0,
            metrics,
            shared: Default::default(),
            track_ids: Arc::new(AtomicU64::new(1)),
            placement: placement.clone(),
        };
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .unwrap();
        Net {
            now,
            worker: Worker::new(ctx, node_addr(), now),
            placement,
            cert,
            clients: Vec::new(),
            events: Vec::new(),
            sent: 0,
        }
    }

    /// A client joins with an offer to publish audio and/or video (or nothing).
    fn join(&mut self, audio: bool, video: bool) -> usize {
        let n = self.clients.len();
        let addr: SocketAddr = format!("10.0.1.{}:5000", n + 1).parse().unwrap();
        let mut rtc = RtcConfig::new().build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let a =
            audio.then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let v =
            video.then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
        if !audio && !video {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api.apply().unwrap();
        let participant = ParticipantId(n as u64 + 1);
        self.placement
            .lock()
            .unwrap()
            .reserve(participant, ROOM, 100, || 0)
            .unwrap();
        let offer = parse_offer(&offer.to_sdp_string()).unwrap();
        let (node_rtc, answer, local_ufrag) =
            crate::node::answer_offer(self.now, &self.cert, node_addr(), offer).unwrap();
        let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let np = NewPeer {
            rtc: node_rtc,
            kind: JoinKind::Full,
            participant,
            identity: "someone".into(),
            room: ROOM.into(),
            local_ufrag,
        };
        self.worker
            .handle_command(self.now, Command::AddPeer(Box::new(np)));
        self.clients.push(Client {
            rtc,
            addr,
            participant,
            audio: a,
            video: v,
            connected: false,
            audio_in: 0,
            video_in: 0,
            audio_out: 0,
            video_out: 0,
            offers: 0,
            closed: false,
            seq: 0,
            keyframe_wanted: true,
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

    fn drain_client(&mut self, i: usize) -> bool {
        let mut moved = false;
        let c = &mut self.clients[i];
        if c.closed {
            return false;
        }
        loop {
            match c.rtc.poll_output() {
                Ok(Output::Timeout(_)) => break,
                Ok(Output::Transmit(t)) => {
                    moved = true;
                    assert_eq!(t.destination, node_addr());
                    self.worker.handle_datagram(self.now, c.addr, &t.contents);
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => c.connected = true,
                    Event::MediaData(d) => {
                        let kind = c.rtc.media(d.mid).map(|m| m.kind());
                        match kind {
                            Some(MediaKind::Audio) => c.audio_in += 1,
                            _ => c.video_in += 1,
                        }
                    }
                    Event::KeyframeRequest(_) => c.keyframe_wanted = true,
                    Event::Closed => c.closed = true,
                    _ => {}
                },
                Err(_) => {
                    c.closed = true;
                    break;
                }
            }
        }
        moved
    }

    fn deliver_from_worker(&mut self) -> bool {
        let tx = self.worker.transmits();
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
            let input = Input::Receive(
                self.now,
                Receive {
                    proto: Protocol::Udp,
                    source: node_addr(),
                    destination: dest,
                    contents: bytes.try_into().unwrap(),
                },
            );
            let _ = c.rtc.handle_input(input);
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
                let offer = SdpOffer::from_sdp_string(sdp).unwrap();
                let answer = c.rtc.sdp_api().accept_offer(offer).unwrap();
                let (reply, result) = bounded(1);
                let cmd = Command::Answer {
                    participant: *participant,
                    sdp: answer.to_sdp_string(),
                    reply,
                };
                self.worker.handle_command(self.now, cmd);
                // An offer can cross the participant's leave; any other error is a bug.
                match result.try_recv().unwrap() {
                    Ok(()) | Err(crate::control::ControlError::NoSuchParticipant) => {}
                    Err(e) => panic!("answer refused: {e}"),
                }
            }
            self.events.push(ev);
        }
        moved
    }

    /// Let simulated time pass in steps, publishers sending 20 ms audio and 30 fps
    /// video frames (a keyframe each second).
    fn run(&mut self, total: Duration) {
        let step = Duration::from_millis(10);
        let end = self.now + total;
        while self.now < end {
            self.now += step;
            for c in &mut self.clients {
                if c.closed {
                    continue;
                }
                let _ = c.rtc.handle_input(Input::Timeout(self.now));
                if c.connected {
                    c.seq += 1;
                    send_media(c, self.now);
                }
            }
            self.settle();
        }
    }
}

fn send_media(c: &mut Client, now: Instant) {
    let t = c.seq as u64 * 10; // ms
    if let Some(mid) = c.audio {
        if t.is_multiple_of(20) {
            let w = c.rtc.writer(mid).unwrap();
            let pt = w
                .payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .unwrap()
                .pt();
            let ts = MediaTime::new(t * 48, Frequency::FORTY_EIGHT_KHZ);
            w.write(pt, now, ts, vec![0xf8; 60]).unwrap();
            c.audio_out += 1;
        }
    }
    if let Some(mid) = c.video {
        if t.is_multiple_of(30) {
            let w = c.rtc.writer(mid).unwrap();
            let pt = w
                .payload_params()
                .find(|p| p.spec().codec == Codec::Vp8)
                .unwrap()
                .pt();
            let ts = MediaTime::new(t * 90, Frequency::NINETY_KHZ);
            // VP8's frame tag: bit 0 clear is a key frame. One a second, and on request.
            let key = std::mem::take(&mut c.keyframe_wanted) || t.is_multiple_of(990);
            let mut frame = vec![0x55; 400];
            frame[0] = if key { 0x10 } else { 0x11 };
            w.write(pt, now, ts, frame).unwrap();
            c.video_out += 1;
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
        assert!(net.clients[c].connected, "client {c} connected");
    }
    assert_eq!(
        count(&net.events, |e| matches!(e, NodeEvent::Connected { .. })),
        2
    );
    let sent = |n: &Net, c: usize| (n.clients[c].audio_out, n.clients[c].video_out);
    let got = |n: &Net, c: usize| (n.clients[c].audio_in, n.clients[c].video_in);
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
    let (b_audio, c_audio) = (net.clients[b].audio_in, net.clients[c].audio_in);
    let a_audio = net.clients[a].audio_in;
    net.run(Duration::from_secs(1));
    assert!(net.clients[b].audio_in > b_audio + 40);
    assert!(net.clients[c].audio_in > c_audio + 40, "c still hears b");
    assert_eq!(net.clients[a].audio_in, a_audio);
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
    let a = net.join(true, false);
    // The client goes silent before ICE: drop everything it would send.
    net.clients[a].closed = true;
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
    let heard = net.clients[b].audio_in;
    net.run(Duration::from_secs(1));
    assert!(net.clients[b].audio_in > heard + 40, "media goes on");
    assert!(net.clients[a].connected && !net.clients[a].closed);
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
