//! Bad input never harms others: garbage datagrams from unknown and known addresses,
//! malformed SDP, and unknown participants get errors and counters, while the room
//! keeps forwarding.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{Client, Net, VideoCodec};
use rand::{Rng, SeedableRng};
use sfu::ControlError;

fn frames_between(net: &Net, a: usize, b: u8) -> u64 {
    net.clients[a].video_from(b).map_or(0, |r| r.frames)
}

#[test]
fn garbage_does_not_stop_forwarding() {
    let mut net = Net::new(1);
    net.join(Client::new(1, VideoCodec::Vp8, 3), "room");
    net.join(Client::new(2, VideoCodec::Vp8, 1), "room");
    assert!(net.run_until(Duration::from_secs(20), |n| {
        frames_between(n, 0, 2) > 10 && frames_between(n, 1, 1) > 10
    }));
    let node_addr = net.node.shard_addrs()[0];
    let before = (frames_between(&net, 0, 2), frames_between(&net, 1, 1));

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let rogue = UdpSocket::bind("127.0.0.1:0").unwrap();
    for round in 0..20 {
        for _ in 0..50 {
            let len = rng.random_range(0..1500);
            let mut data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            match rng.random_range(0..4) {
                // RTP-looking (version 2) and RTCP-looking headers.
                0 if len > 12 => data[0] = 0x80,
                1 if len > 8 => {
                    data[0] = 0x81;
                    data[1] = 200;
                }
                // STUN-looking: binding request type and magic cookie.
                2 if len > 20 => {
                    data[..2].copy_from_slice(&[0x00, 0x01]);
                    data[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
                }
                _ => {}
            }
            rogue.send_to(&data, node_addr).unwrap();
            // The same garbage from a participant's own address: str0m must reject it
            // (failed SRTP, malformed) without harming the participant or the room.
            net.clients[1].send_raw(node_addr, &data);
        }
        net.run(Duration::from_millis(50));
        let _ = round;
    }
    let after_garbage = (frames_between(&net, 0, 2), frames_between(&net, 1, 1));
    assert!(
        net.run_until(Duration::from_secs(10), |n| {
            frames_between(n, 0, 2) > after_garbage.0 + 30
                && frames_between(n, 1, 1) > after_garbage.1 + 30
        }),
        "media keeps flowing both ways: before {before:?}, after garbage {after_garbage:?}"
    );
    let metrics = net.node.metrics().render();
    let dropped = |reason: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with("sfu_datagrams_dropped_total") && l.contains(reason))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        dropped("unknown_source") >= 500,
        "unknown sources counted:\n{metrics}"
    );
    assert!(
        dropped("rtc_error") > 0,
        "rejected input from a participant counted"
    );
    net.node.shutdown();
}

#[test]
fn malformed_offers_get_errors_that_name_the_problem() {
    let net = Net::new(1);
    let err = |sdp: &str| match net.node.add_participant("r", "x", sdp) {
        Err(ControlError::BadOffer(m)) => m,
        other => panic!("expected BadOffer, got {other:?}"),
    };
    assert!(err("").contains("v=0"));
    assert!(err("hello").contains("v=0"));
    assert!(err("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n").contains("no media"));
    assert!(err(&"v=0\r\n".repeat(20_000)).contains("too large"));
    // A syntactically broken media section.
    assert!(!err("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video x y z\r\n").is_empty());
    // Unknown participants and tracks.
    assert_eq!(
        net.node.answer(sfu::core::ParticipantId(999), "v=0"),
        Err(ControlError::NoSuchParticipant)
    );
    assert_eq!(
        net.node.room_stats("nope").unwrap_err(),
        ControlError::NoSuchRoom
    );
    net.node.shutdown();
}

/// ICE-TCP connections that are not a participant's: one whose first packet is
/// garbage (not STUN), one whose frame is longer than any WebRTC packet, one whose
/// first packet is a STUN check naming no one, and one that sends part of a frame,
/// then stalls. The node closes the first two at once, the other two once their
/// time to name a participant runs out (counted by reason), and the meeting on the
/// shard, one of whose participants is on TCP, goes on.
#[test]
fn stray_tcp_connections_are_closed_and_harm_no_one() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let mut net = Net::new(1);
    net.join(Client::over_tcp(1), "room");
    net.join(Client::new(2, VideoCodec::Vp8, 1), "room");
    assert!(net.run_until(Duration::from_secs(20), |n| {
        frames_between(n, 0, 2) > 10 && frames_between(n, 1, 1) > 10
    }));
    let tcp_addr = net.node.shard_candidates()[0].tcp[0];
    let framed = |p: &[u8]| {
        let mut v = sfu::tcp::framing::header(p.len()).to_vec();
        v.extend_from_slice(p);
        v
    };
    let connect = |bytes: &[u8]| {
        let mut s = TcpStream::connect(tcp_addr).unwrap();
        s.write_all(bytes).unwrap();
        s.set_nonblocking(true).unwrap();
        s
    };
    let mut garbage = connect(&framed(&[0x80; 200]));
    let mut giant = connect(&[0xff, 0xff, 1, 2, 3]);
    // A binding request with a username no peer has (its integrity is not looked at:
    // the ufrag already finds no one).
    let mut stun = vec![0u8; 20];
    stun[..2].copy_from_slice(&[0x00, 0x01]);
    stun[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    let mut stranger = connect(&framed(&stun));
    let mut staller = connect(&[0x00, 0x40, 1, 2, 3]);

    let mut buf = [0u8; 16];
    let mut closed = |s: &mut TcpStream| s.read(&mut buf).ok() == Some(0);
    let before = (frames_between(&net, 0, 2), frames_between(&net, 1, 1));
    assert!(
        net.run_until(Duration::from_secs(5), |_| closed(&mut garbage)
            && closed(&mut giant)),
        "the garbage and the giant frame's connections are closed at once"
    );
    assert!(
        net.run_until(Duration::from_secs(10), |n| {
            frames_between(n, 0, 2) > before.0 + 30 && frames_between(n, 1, 1) > before.1 + 30
        }),
        "the meeting goes on, over TCP too"
    );
    assert!(
        net.run_until(Duration::from_secs(20), |_| closed(&mut stranger)
            && closed(&mut staller)),
        "the connections that named no one are let go once they had 10 s"
    );
    let metrics = net.node.metrics().render();
    let closed = |reason: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with("sfu_ice_tcp_closed_total") && l.contains(reason))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(closed("\"unknown\""), 3, "{metrics}");
    assert_eq!(closed("\"malformed\""), 1, "{metrics}");
    assert!(
        metrics.contains("sfu_ice_tcp_connections{shard=\"0\"} 1"),
        "the participant's connection stays:\n{metrics}"
    );
    net.node.shutdown();
}
