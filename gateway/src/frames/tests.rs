use super::*;

fn vp8_packets(key: bool, picture: u16, size: usize) -> Vec<Vec<u8>> {
    let mut frame = if key {
        vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]
    } else {
        vec![0x11, 0x02, 0x00]
    };
    frame.resize(size, picture as u8);
    frame
        .chunks(vp8::MAX_PAYLOAD)
        .enumerate()
        .map(|(i, c)| [&vp8::descriptor(i == 0, picture)[..], c].concat())
        .collect()
}

/// Push a frame's packets from `seq` on, in `order` (indices), at `now`.
fn push(f: &mut Frames, now: Instant, seq: u64, ts: u32, packets: &[Vec<u8>], order: &[usize]) {
    for &i in order {
        f.push(now, seq + i as u64, ts, i + 1 == packets.len(), &packets[i]);
    }
}

fn out(f: &mut Frames) -> Vec<u32> {
    std::iter::from_fn(|| f.poll()).map(|(_, ts)| ts).collect()
}

#[test]
fn frames_go_out_whole_in_order_and_whatever_order_their_packets_came() {
    let now = Instant::now();
    let mut f = Frames::new(VideoCodec::Vp8);
    let key = vp8_packets(true, 1, 3000);
    push(&mut f, now, 100, 1000, &key, &[2, 0, 1]);
    let (frame, ts) = f.poll().unwrap();
    assert_eq!(ts, 1000);
    assert_eq!(frame.len(), 3000, "descriptors stripped, payload whole");
    assert!(vp8::is_keyframe(&frame));
    let delta = vp8_packets(false, 2, 2000);
    push(&mut f, now, 103, 4000, &delta, &[0, 1]);
    assert_eq!(out(&mut f), [4000]);
    // A late duplicate of a frame that went out changes nothing.
    push(&mut f, now, 103, 4000, &delta, &[0, 1]);
    assert!(f.poll().is_none());
}

#[test]
fn a_keyframe_after_the_nodes_switch_gap_goes_out_at_once() {
    let now = Instant::now();
    let mut f = Frames::new(VideoCodec::Vp8);
    push(&mut f, now, 1, 0, &vp8_packets(true, 1, 2000), &[0, 1]);
    push(&mut f, now, 3, 3000, &vp8_packets(false, 2, 2000), &[0, 1]);
    assert_eq!(out(&mut f), [0, 3000]);
    // The node switched layers mid-frame: packet 5 of a cut frame came, 6 never
    // will (the deliberate gap), then the new layer's keyframe from 7.
    let cut = vp8_packets(false, 3, 2000);
    f.push(now, 5, 6000, false, &cut[0]);
    push(
        &mut f,
        now,
        7,
        9000,
        &vp8_packets(true, 4, 3000),
        &[0, 1, 2],
    );
    assert_eq!(
        out(&mut f),
        [9000],
        "not held for the packet that never comes"
    );
    assert_eq!(f.dropped, 1);
    assert_eq!(f.next_timeout(), None);
}

#[test]
fn a_delta_frame_waits_for_its_predecessors_retransmission() {
    let t0 = Instant::now();
    let mut f = Frames::new(VideoCodec::Vp8);
    push(&mut f, t0, 1, 0, &vp8_packets(true, 1, 2000), &[0, 1]);
    assert_eq!(out(&mut f), [0]);
    // Frame 3000's second packet is lost; frame 6000 comes whole.
    let lost = vp8_packets(false, 2, 2000);
    f.push(t0, 3, 3000, false, &lost[0]);
    push(&mut f, t0, 5, 6000, &vp8_packets(false, 3, 2000), &[0, 1]);
    assert!(f.poll().is_none(), "not before its predecessor");
    assert_eq!(f.next_timeout(), Some(t0 + RECOVERY));
    // The retransmission comes in time: both go out, in order.
    f.push(t0 + Duration::from_millis(20), 4, 3000, true, &lost[1]);
    assert_eq!(out(&mut f), [3000, 6000]);
    assert!(!f.take_key_wanted());
}

#[test]
fn a_predecessor_that_never_comes_costs_a_keyframe() {
    let t0 = Instant::now();
    let mut f = Frames::new(VideoCodec::Vp8);
    push(&mut f, t0, 1, 0, &vp8_packets(true, 1, 2000), &[0, 1]);
    assert_eq!(out(&mut f), [0]);
    let lost = vp8_packets(false, 2, 2000);
    f.push(t0, 3, 3000, false, &lost[0]);
    push(&mut f, t0, 5, 6000, &vp8_packets(false, 3, 2000), &[0, 1]);
    f.handle_timeout(t0 + RECOVERY / 2);
    assert!(f.poll().is_none() && !f.take_key_wanted());
    f.handle_timeout(t0 + RECOVERY);
    assert!(f.poll().is_none());
    assert!(f.take_key_wanted(), "the publisher is asked for a keyframe");
    assert_eq!(
        f.next_timeout(),
        Some(t0 + RECOVERY + KEY_REPEAT),
        "and again later"
    );
    // Deltas are undecodable now; the keyframe goes out.
    push(&mut f, t0, 7, 9000, &vp8_packets(false, 4, 2000), &[0, 1]);
    push(&mut f, t0, 9, 12000, &vp8_packets(true, 5, 2000), &[0, 1]);
    assert_eq!(out(&mut f), [12000]);
}

#[test]
fn a_stream_starts_at_a_keyframe() {
    let now = Instant::now();
    let mut f = Frames::new(VideoCodec::Vp8);
    push(&mut f, now, 10, 0, &vp8_packets(false, 1, 2000), &[0, 1]);
    assert!(f.poll().is_none());
    push(&mut f, now, 12, 3000, &vp8_packets(true, 2, 2000), &[0, 1]);
    assert_eq!(out(&mut f), [3000]);
}

#[test]
fn h264_frames_come_out_in_annex_b() {
    let now = Instant::now();
    let mut f = Frames::new(VideoCodec::H264);
    let sps = [0x67, 0x42, 0xe0, 0x1f];
    let pps = [0x68, 0xce, 0x3c, 0x80];
    let mut stap = vec![24];
    for nal in [&sps[..], &pps[..]] {
        stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        stap.extend_from_slice(nal);
    }
    // The IDR in two FU-A fragments.
    let fu_start = [0x7c, 0x85, 1, 2, 3];
    let fu_end = [0x7c, 0x45, 4, 5];
    f.push(now, 1, 0, false, &fu_start);
    f.push(now, 2, 0, true, &fu_end);
    assert!(
        f.poll().is_none(),
        "the frame's first packet (STAP-A) is missing"
    );
    f.push(now, 0, 0, false, &stap);
    let (frame, _) = f.poll().unwrap();
    assert!(h264::is_keyframe(&frame));
    assert_eq!(h264::profile(&frame), Some(66));
    let units: Vec<&[u8]> = h264::nal_units(&frame).collect();
    assert_eq!(units, [&sps[..], &pps[..], &[0x65, 1, 2, 3, 4, 5][..]]);
    // A non-IDR slice alone is a frame of its own.
    f.push(now, 3, 3000, true, &[0x41, 9, 9]);
    assert_eq!(out(&mut f), [3000]);
}

#[test]
fn what_a_publisher_sends_cannot_grow_a_frame_without_bound() {
    let now = Instant::now();
    let mut f = Frames::new(VideoCodec::Vp8);
    let chunk = [&vp8::descriptor(false, 1)[..], &[0u8; 1100][..]].concat();
    for seq in 0..5000u64 {
        f.push(now, seq, 0, false, &chunk);
    }
    for ts in 1..100u32 {
        f.push(now, 10_000 + ts as u64, ts, false, &chunk);
    }
    assert!(f.pending.len() <= MAX_PENDING);
    assert!(f.pending.iter().all(|p| p.packets.len() <= MAX_PACKETS));
}

#[test]
fn a_whole_keyframe_does_not_wait_behind_a_blocked_delta() {
    let t0 = Instant::now();
    let mut f = Frames::new(VideoCodec::Vp8);
    push(&mut f, t0, 1, 0, &vp8_packets(true, 1, 1000), &[0]);
    assert_eq!(out(&mut f), [0]);
    // A one-packet delta frame (seq 2) is lost; the next delta (3) is whole but
    // blocked; then a whole keyframe comes: it goes out at once, no PLI.
    push(&mut f, t0, 3, 6000, &vp8_packets(false, 3, 1000), &[0]);
    assert!(f.poll().is_none());
    push(&mut f, t0, 4, 9000, &vp8_packets(true, 4, 2000), &[1, 0]);
    assert_eq!(out(&mut f), [9000]);
    assert_eq!(f.next_timeout(), None);
    assert!(!f.take_key_wanted());
}

#[test]
fn a_dropped_frames_late_packets_and_a_lost_keyframe_request_are_handled() {
    let t0 = Instant::now();
    let mut f = Frames::new(VideoCodec::Vp8);
    push(&mut f, t0, 1, 0, &vp8_packets(true, 1, 1000), &[0]);
    assert_eq!(out(&mut f), [0]);
    let lost = vp8_packets(false, 2, 2000);
    f.push(t0, 2, 3000, false, &lost[0]);
    push(&mut f, t0, 4, 6000, &vp8_packets(false, 3, 2000), &[0, 1]);
    f.handle_timeout(t0 + RECOVERY);
    assert!(f.take_key_wanted());
    // The lost frame's retransmission comes after it was given up: not a new frame
    // that would sit at the front, and no second request for it.
    f.push(t0 + RECOVERY, 3, 3000, true, &lost[1]);
    let more = vp8_packets(false, 4, 2000);
    push(&mut f, t0 + RECOVERY, 6, 9000, &more, &[0, 1]);
    assert!(f.poll().is_none());
    assert!(f.pending.is_empty(), "{} frames kept", f.pending.len());
    assert!(!f.take_key_wanted());
    // No keyframe in 500 ms: asked again (the request or the keyframe was lost).
    let again = f.next_timeout().unwrap();
    assert_eq!(again, t0 + RECOVERY + KEY_REPEAT);
    f.handle_timeout(again);
    assert!(f.take_key_wanted());
    push(
        &mut f,
        again,
        8,
        12000,
        &vp8_packets(true, 5, 2000),
        &[0, 1],
    );
    assert_eq!(out(&mut f), [12000]);
    assert_eq!(f.next_timeout(), None);
}
