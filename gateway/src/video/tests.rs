use super::*;
use crate::sdp::{choose, Policy, VideoCodec};

const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
    t=0 0\r\nm=audio 10000 RTP/AVP 8\r\nm=video 10002 RTP/AVP 100\r\n\
    a=rtpmap:100 VP8/90000\r\na=sendrecv\r\n";

fn video(offer: &str) -> Video {
    let leg = choose(
        offer,
        Policy {
            allow_plain_rtp: true,
        },
    )
    .unwrap();
    Video::new(leg.video.expect("a video line"), 7).unwrap()
}

/// A VP8 frame: keyframe or not (the P bit), `len` bytes.
fn frame(key: bool, len: usize) -> Vec<u8> {
    let mut f = vec![0xaa; len];
    f[0] = if key { 0x10 } else { 0x11 };
    f
}

fn drain(v: &mut Video) -> Vec<VideoOutput> {
    std::iter::from_fn(|| v.poll_output()).collect()
}

/// The leg packets in `out`, read.
fn leg_packets(out: &[VideoOutput]) -> Vec<(bool, u16, u32, u32, Vec<u8>)> {
    out.iter()
        .filter_map(|o| match o {
            VideoOutput::Leg(p) => {
                let r = rtp::parse(p).unwrap();
                Some((r.marker, r.seq, r.ts, r.ssrc, r.payload.to_vec()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_switch_waits_for_the_new_sources_keyframe_and_keeps_the_legs_numbering() {
    let t0 = Instant::now();
    let mut v = video(OFFER);
    // The first video there is is shown from its first keyframe.
    v.on_room_frame(t0, 1, VideoCodec::Vp8, &frame(false, 100), 1000);
    assert_eq!(drain(&mut v), vec![VideoOutput::SourceKeyframe(1)]);
    v.on_room_frame(t0, 1, VideoCodec::Vp8, &frame(true, 100), 4000);
    let out = drain(&mut v);
    assert_eq!(out[0], VideoOutput::Steer, "the switch is told first");
    let first = leg_packets(&out);
    assert_eq!(first.len(), 1);
    assert_eq!(v.shown(), Some(1));
    // Source 2 is wanted: asked for a keyframe; until it comes, source 1 stays.
    let t1 = t0 + Duration::from_millis(33);
    v.show(t1, 2);
    assert_eq!(drain(&mut v), vec![VideoOutput::SourceKeyframe(2)]);
    v.on_room_frame(t1, 2, VideoCodec::Vp8, &frame(false, 100), 50_000);
    v.on_room_frame(t1, 1, VideoCodec::Vp8, &frame(false, 100), 7000);
    let kept = leg_packets(&drain(&mut v));
    assert_eq!(
        kept.len(),
        1,
        "source 1 goes on, source 2's delta frame waits"
    );
    // Not there after 500 ms: asked again.
    v.handle_timeout(t1 + KEYFRAME_INTERVAL);
    assert_eq!(drain(&mut v), vec![VideoOutput::SourceKeyframe(2)]);
    // Its keyframe switches the leg; source 1's frames stop.
    let t2 = t1 + Duration::from_millis(600);
    v.on_room_frame(t2, 2, VideoCodec::Vp8, &frame(true, 2500), 80_000);
    v.on_room_frame(t2, 1, VideoCodec::Vp8, &frame(false, 100), 10_000);
    let switched = leg_packets(&drain(&mut v));
    assert_eq!(switched.len(), 3, "a 2500-byte keyframe in three packets");
    assert_eq!(v.shown(), Some(2));
    assert_eq!(v.stats.switches, 2);
    // One SSRC, sequence numbers in a row, the marker on a frame's last packet, time
    // moving on by what passed (600 ms at 90 kHz).
    let all: Vec<_> = first.iter().chain(&kept).chain(&switched).collect();
    for w in all.windows(2) {
        assert_eq!(w[1].1, w[0].1.wrapping_add(1));
        assert_eq!(w[1].3, w[0].3);
    }
    assert_eq!(
        switched.iter().map(|p| p.0).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert_eq!(switched[0].2.wrapping_sub(kept[0].2), 54_000);
    // The descriptor: S on the first packet only, PictureIDs in a row.
    let pid = |p: &[u8]| u16::from_be_bytes([p[2] & 0x7f, p[3]]);
    assert_eq!(switched[0].4[0] & 0x10, 0x10);
    assert_eq!(switched[1].4[0] & 0x10, 0);
    assert_eq!(pid(&kept[0].4), (pid(&first[0].4) + 1) & 0x7fff);
    assert_eq!(pid(&switched[2].4), (pid(&kept[0].4) + 1) & 0x7fff);
    // The frame's bytes arrive whole.
    let bytes: Vec<u8> = switched.iter().flat_map(|p| p.4[4..].to_vec()).collect();
    assert_eq!(bytes, frame(true, 2500));
}

/// The caller's VP8 RTP: `(seq, ts, marker, payload)`.
fn caller_packet(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    rtp::write(&mut p, 100, marker, seq, ts, 0xc0ffee, payload);
    p
}

#[test]
fn the_callers_frames_reach_the_room_whole_and_a_loss_waits_for_a_keyframe() {
    let t0 = Instant::now();
    let mut v = video(OFFER);
    let start = [&[0x90, 0x80, 0x01][..], &frame(true, 10)].concat();
    let more = [0x80, 0x80, 0x01, 1, 2, 3];
    v.on_leg_datagram(t0, &caller_packet(1, 900, false, &start));
    v.on_leg_datagram(t0, &caller_packet(2, 900, true, &more));
    let mut expected = frame(true, 10);
    expected.extend_from_slice(&[1, 2, 3]);
    assert_eq!(
        drain(&mut v),
        vec![VideoOutput::Room {
            frame: expected,
            rtp_time: 900
        }]
    );
    // A delta frame, then a lost packet: the frame after it is dropped, the caller is
    // asked for a keyframe (SIP INFO: no RTCP feedback offered), once per 500 ms.
    let delta = [&[0x90, 0x80, 0x02][..], &frame(false, 10)].concat();
    v.on_leg_datagram(t0, &caller_packet(3, 3900, true, &delta));
    assert_eq!(drain(&mut v).len(), 1);
    v.on_leg_datagram(t0, &caller_packet(5, 6900, true, &delta));
    v.on_leg_datagram(t0, &caller_packet(6, 9900, true, &delta));
    assert_eq!(drain(&mut v), vec![VideoOutput::CallerKeyframe]);
    assert_eq!(v.stats.frames_dropped, 2);
    // The keyframe: frames flow again.
    v.on_leg_datagram(t0, &caller_packet(7, 12900, true, &start));
    assert!(matches!(drain(&mut v)[..], [VideoOutput::Room { .. }]));
    assert_eq!(v.stats.frames_to_room, 3);
}

#[test]
fn keyframe_requests_go_by_rtcp_where_offered_and_are_spaced() {
    let t0 = Instant::now();
    let fb = OFFER.replace("a=sendrecv", "a=rtcp-fb:100 nack pli\r\na=sendrecv");
    let mut v = video(&fb);
    // Before the caller's SSRC is known: SIP INFO.
    v.room_wants_keyframe(t0);
    assert_eq!(drain(&mut v), vec![VideoOutput::CallerKeyframe]);
    let start = [&[0x10][..], &frame(true, 10)].concat();
    v.on_leg_datagram(t0, &caller_packet(1, 900, true, &start));
    drain(&mut v);
    v.room_wants_keyframe(t0 + Duration::from_millis(100));
    assert!(drain(&mut v).is_empty(), "within 500 ms of the last");
    v.room_wants_keyframe(t0 + KEYFRAME_INTERVAL);
    let out = drain(&mut v);
    let [VideoOutput::LegRtcp(pli)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(pli[..4], [0x81, 206, 0, 2]);
    assert_eq!(pli[8..12], 0xc0ffee_u32.to_be_bytes());
    // The caller's own PLI asks the shown source.
    v.on_room_frame(t0, 4, VideoCodec::Vp8, &frame(true, 10), 0);
    drain(&mut v);
    let t1 = t0 + Duration::from_secs(1);
    assert!(v.on_leg_datagram(t1, &rtcp::pli(0xc0ffee, 7)));
    assert_eq!(drain(&mut v), vec![VideoOutput::SourceKeyframe(4)]);
}

#[test]
fn nothing_a_caller_sends_breaks_the_video() {
    let t0 = Instant::now();
    let mut v = video(OFFER);
    let mut x: u32 = 12345;
    for n in 0..5000 {
        let mut d = vec![0u8; n % 64];
        for b in d.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        if d.len() > 1 && n % 2 == 0 {
            d[0] = 0x80;
            d[1] = if n % 4 == 0 { 100 } else { 206 };
        }
        v.on_leg_datagram(t0, &d);
    }
    drain(&mut v);
}

#[test]
fn the_speakers_video_is_picked_else_the_one_shown_else_the_first() {
    let videos = vec![camera(3, "p1"), camera(5, "p2")];
    assert_eq!(pick(&videos, Some("p2"), Some(3)), Some(5));
    // A speaker without video (a phone) changes nothing.
    assert_eq!(pick(&videos, Some("p9"), Some(5)), Some(5));
    assert_eq!(pick(&videos, None, None), Some(3));
    // The shown one left.
    assert_eq!(pick(&videos[..1], None, Some(5)), Some(3));
    assert_eq!(pick(&[], Some("p1"), Some(3)), None);
    // A shared screen goes before every camera, the speaker's too; of two screens the
    // one shown stays.
    let mut with_screens = videos.clone();
    with_screens.push(Candidate {
        screen: true,
        ..camera(7, "p1")
    });
    assert_eq!(pick(&with_screens, Some("p2"), Some(5)), Some(7));
    with_screens.push(Candidate {
        screen: true,
        ..camera(9, "p2")
    });
    assert_eq!(pick(&with_screens, Some("p2"), Some(9)), Some(9));
    assert_eq!(pick(&with_screens, Some("p2"), Some(5)), Some(7));
    assert_eq!(
        (max_layer(Some(256)), max_layer(Some(768)), max_layer(None)),
        (0, 1, 2)
    );
}

#[test]
fn an_h264_leg_shows_h264_sources_only_and_sends_the_callers_frames_whole() {
    let t0 = Instant::now();
    let offer = OFFER.replace(
        "a=rtpmap:100 VP8/90000",
        "a=rtpmap:100 H264/90000\r\na=fmtp:100 profile-level-id=42e01f;packetization-mode=1",
    );
    let mut v = video(&offer);
    let annexb = |nals: &[&[u8]]| -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&[0, 0, 0, 1][..], n].concat())
            .collect()
    };
    let idr: Vec<u8> = [0x65].into_iter().chain([7u8; 2000]).collect();
    let key = annexb(&[&[0x67, 0x42, 0xe0, 0x1f], &[0x68, 0xce], &idr]);
    // A VP8 source is never shown on an H.264 leg.
    v.on_room_frame(t0, 1, VideoCodec::Vp8, &frame(true, 100), 0);
    assert!(!v.suitable(1, t0));
    assert_eq!(v.shown(), None);
    assert!(leg_packets(&drain(&mut v)).is_empty());
    v.on_room_frame(t0, 2, VideoCodec::H264, &key, 0);
    let sent = leg_packets(&drain(&mut v));
    assert_eq!(v.shown(), Some(2));
    assert!(sent.len() >= 3, "STAP-A of SPS and PPS, then FU-As");
    assert_eq!(sent[0].4[0] & 0x1f, 24);
    assert!(sent.last().unwrap().0, "the marker on the last");
    // The packets, back from the caller as its own video, reach the room whole.
    for (i, p) in sent.iter().enumerate() {
        v.on_leg_datagram(t0, &caller_packet(10 + i as u16, 3000, p.0, &p.4));
    }
    assert_eq!(
        drain(&mut v),
        vec![VideoOutput::Room {
            frame: key,
            rtp_time: 3000
        }]
    );
}

/// A receiver report from the caller about our stream (SSRC 7), `lost` of 256.
fn report(lost: u8) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7, 0, 0, 0, 9, 0, 0, 0, 7, lost, 0, 0, 1];
    p.extend_from_slice(&[0; 16]);
    p
}

#[test]
fn the_legs_layer_follows_the_loss_its_caller_reports() {
    let t0 = Instant::now();
    // b=AS:1000: layer 1 at most.
    let mut v = video(&OFFER.replace("a=sendrecv", "b=AS:1000\r\na=sendrecv"));
    assert_eq!(v.max_layer(), 1);
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Heavy loss: down one, then not again within 2 s.
    v.on_leg_datagram(at(1), &report(60));
    assert_eq!(drain(&mut v), vec![VideoOutput::Steer]);
    assert_eq!(v.max_layer(), 0);
    v.on_leg_datagram(at(2), &report(60));
    assert!(drain(&mut v).is_empty(), "layer 0 is the floor");
    // A report between clean and lossy starts the clean period over.
    v.on_leg_datagram(at(3), &report(1));
    v.on_leg_datagram(at(4), &report(15));
    // Clean reports for 10 s: back up, never above the SDP's cap.
    for s in 5..=14 {
        v.on_leg_datagram(at(s), &report(1));
        assert!(drain(&mut v).is_empty(), "not clean for 10 s yet at {s}");
    }
    for s in 15..=15 {
        v.on_leg_datagram(at(s), &report(1));
    }
    assert_eq!(drain(&mut v), vec![VideoOutput::Steer]);
    assert_eq!(v.max_layer(), 1);
    for s in 16..=40 {
        v.on_leg_datagram(at(s), &report(0));
    }
    assert!(drain(&mut v).is_empty());
    // TMMBR of 200 kbit/s: layer 0 at once.
    let mut tmmbr = vec![0x83, 205, 0, 4, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 7];
    tmmbr.extend_from_slice(&((1 << 26) | (100_000u32 << 9) | 40).to_be_bytes());
    v.on_leg_datagram(at(41), &tmmbr);
    assert_eq!(drain(&mut v), vec![VideoOutput::Steer]);
    assert_eq!(v.max_layer(), 0);
}

#[test]
fn a_switch_to_a_silent_source_gives_up_and_the_caller_is_still_served() {
    let t0 = Instant::now();
    let mut v = video(OFFER);
    v.on_room_frame(t0, 1, VideoCodec::Vp8, &frame(true, 100), 0);
    drain(&mut v);
    v.show(t0, 2);
    drain(&mut v);
    // The caller's keyframe request reaches the shown source while the switch waits.
    v.caller_wants_keyframe(t0);
    assert_eq!(drain(&mut v), vec![VideoOutput::SourceKeyframe(1)]);
    // Source 2 never sends: asked every 500 ms, then given up.
    let mut asked = 0;
    let mut out = Vec::new();
    for i in 1..=20 {
        v.handle_timeout(t0 + KEYFRAME_INTERVAL * i);
        out.extend(drain(&mut v));
    }
    asked += out
        .iter()
        .filter(|o| **o == VideoOutput::SourceKeyframe(2))
        .count();
    assert_eq!(v.wanted(), None);
    assert_eq!(v.shown(), Some(1));
    assert!(asked < SWITCH_TRIES as usize, "{asked} requests");
    // The node is told, and the source left alone for a while.
    assert_eq!(out.last(), Some(&VideoOutput::Steer));
    let later = t0 + KEYFRAME_INTERVAL * 21;
    assert!(!v.suitable(2, later));
    assert!(v.suitable(2, later + GIVEN_UP_FOR));
}

#[test]
fn a_source_in_another_codec_is_given_up_and_steered_away_from() {
    let t0 = Instant::now();
    let mut v = video(OFFER);
    v.show(t0, 3);
    drain(&mut v);
    // Source 3 turns out to send H.264 to a VP8 leg.
    v.on_room_frame(t0, 3, VideoCodec::H264, &[0, 0, 0, 1, 0x65, 1], 0);
    assert_eq!(drain(&mut v), vec![VideoOutput::Steer]);
    assert_eq!(v.wanted(), None);
    assert!(!v.suitable(3, t0));
}

#[test]
fn a_broken_frame_from_the_caller_holds_its_video_until_a_keyframe() {
    let t0 = Instant::now();
    let mut v = video(OFFER);
    let start = [&[0x10][..], &frame(true, 10)].concat();
    v.on_leg_datagram(t0, &caller_packet(1, 900, true, &start));
    drain(&mut v);
    // A frame whose first packet is no start (partition 1): broken, not lost.
    v.on_leg_datagram(t0, &caller_packet(2, 1800, true, &[0x01, 0x11, 0]));
    let delta = [&[0x10][..], &frame(false, 10)].concat();
    v.on_leg_datagram(t0, &caller_packet(3, 2700, true, &delta));
    let out = drain(&mut v);
    assert_eq!(
        out,
        vec![VideoOutput::CallerKeyframe],
        "nothing to the room"
    );
}

fn camera(source: u32, participant: &str) -> Candidate {
    Candidate {
        source,
        participant: participant.to_owned(),
        screen: false,
    }
}
