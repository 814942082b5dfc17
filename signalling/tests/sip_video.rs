//! SIP callers' video through the gateway and the real media node: baresip callers
//! (VP8 from its test-pattern source) seeing each other, and a caller's picture
//! following the room's active speaker.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use common::sip::*;
use gateway::room::{RoomApi, RoomPeer, Woke};
use gateway::sdp::VideoCodec;
use gateway::tone::sine;

/// Video both ways: two baresip callers in one room, each through its own gateway
/// call and the media node, sending video from baresip's test-pattern source (with
/// `modules` loaded and `codecs` as its account's). Each one's decoder gets the other's picture (baresip says its
/// size once decoded), and the node's log of each call counts frames both ways and
/// the switch onto the other's video.
async fn two_callers_see_each_other(room: &str, codecs: &str, modules: &str) {
    for module in modules.lines().filter_map(|l| l.strip_prefix("module ")) {
        let path = std::path::Path::new("/usr/lib/baresip/modules").join(module);
        assert!(
            path.exists(),
            "{} is missing: install Debian's baresip-core and baresip-ffmpeg (scripts/test.sh does)",
            path.display()
        );
    }
    let node = Node::start(&[]);
    let dir = std::env::temp_dir().join(format!("knudepunkt-sip-{room}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let video = format!(
        "{modules}module fakevideo.so\n\
         video_source fakevideo,nil\nvideo_display fakevideo,nil\n\
         video_size 320x240\nvideo_fps 15\n"
    );
    let dial = format!("/dial sip:{room}@{}", node.sip);
    let callers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|who| {
            let d = dir.join(who);
            let account = format!("audio_codecs=PCMA/8000/1{codecs}");
            baresip_config(&d, &account, &video);
            let dial = dial.clone();
            tokio::task::spawn_blocking(move || {
                Command::new(baresip())
                    .args(["-f", d.to_str().unwrap(), "-e", &dial, "-t", "8"])
                    .output()
                    .expect("baresip runs")
            })
        })
        .collect();
    for c in callers {
        let out = c.await.unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(said.contains("Call established"), "baresip:\n{said}");
        assert!(
            said.contains("incoming rtp for 'video' established"),
            "baresip got no video:\n{said}"
        );
        // Said once the first frame decoded.
        assert!(
            said.contains("video: receiving with resolution 320 x 240"),
            "baresip decoded no picture:\n{said}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = node.log();
    let ended: Vec<&str> = log.lines().filter(|l| l.contains("call ended")).collect();
    assert_eq!(ended.len(), 2, "{log}");
    let count = |line: &str, field: &str| -> u64 {
        line.split(&format!("{field}="))
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    for line in ended {
        eprintln!("{line}");
        // 15 frames a second for about 6 s of overlap.
        assert!(count(line, "video_to_room") > 40, "{line}");
        assert!(count(line, "video_to_leg") > 40, "{line}");
        assert_eq!(count(line, "video_switches"), 1, "{line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vp8_callers_see_each_other() {
    two_callers_see_each_other("vp8check", ";video_codecs=VP8", "module vp8.so\n").await;
}

/// H.264 as room systems send it (baresip's `avcodec`, from Debian's baresip-ffmpeg,
/// offers packetization-mode 0 and 1, then H.263, MPEG-4 and H.265: the gateway takes
/// mode 1); SPS and PPS go with each keyframe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_h264_callers_see_each_other() {
    two_callers_see_each_other("h264check", "", "module avcodec.so\n").await;
}

/// A room participant with video: says 700 Hz while `loud(t)` (t since `start`),
/// silence otherwise, and sends 15 fake VP8 frames a second whose second byte is
/// `mark`: a keyframe first and whenever the node asks for one.
async fn speaker(peer: RoomPeer, mark: u8, start: Instant, loud: fn(Duration) -> bool) {
    present(peer, mark, start, loud, None).await
}

/// [`speaker`], sharing its video as a screen while `sharing` says so (a peer of
/// `RoomPeer::join_sharing`).
async fn present(
    mut peer: RoomPeer,
    mark: u8,
    start: Instant,
    loud: fn(Duration) -> bool,
    sharing: Option<fn(Duration) -> bool>,
) {
    let mut shared = false;
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let (mut next_audio, mut next_video) = (start, start);
    let (mut frame, mut key) = (0u64, true);
    while start.elapsed() < Duration::from_secs(13) {
        let now = Instant::now();
        if now >= next_audio {
            let on = loud(now - start);
            let pcm = sine(
                700.0,
                48_000,
                if on { 8000.0 } else { 0.0 },
                frame * 960,
                960,
            );
            let mut b = [0u8; 1500];
            let n = enc.encode(&pcm, &mut b).unwrap();
            peer.send_opus(now, b[..n].to_vec(), if on { 10 } else { 127 }, 960);
            frame += 1;
            next_audio += Duration::from_millis(20);
        }
        if let Some(sharing) = sharing {
            let now_shared = sharing(now - start);
            if now_shared != shared {
                peer.share_screen(now_shared)
                    .await
                    .expect("the share is sent");
                shared = now_shared;
            }
        }
        key |= peer.take_keyframe_request();
        if now >= next_video {
            let mut vp8 = vec![mark; 900];
            vp8[0] = if key { 0x10 } else { 0x11 };
            let rtp_time = (now - start).as_micros() as u64 * 90 / 1000;
            peer.send_video(now, VideoCodec::Vp8, vp8, rtp_time as u32);
            key = false;
            next_video += Duration::from_micros(66_667);
        }
        let wake = peer
            .poll(|_, _| {}, |_, _, _, _| {})
            .expect("the peer runs");
        if let Woke::Signal(m) = peer.wait(wake.min(next_audio).min(next_video)).await {
            peer.on_signal(m).await.expect("the room goes on");
        }
    }
    peer.leave().await;
}

/// A raw SIP caller: PCMA and VP8 on ports of its own; it sends nothing.
struct RawCaller {
    sip: UdpSocket,
    port: u16,
    uri: String,
    /// The dialog's To header (with the gateway's tag).
    to: String,
    video: UdpSocket,
}

impl RawCaller {
    /// INVITE `room`, take the 200, ACK it.
    fn dial(node: &Node, room: &str) -> RawCaller {
        let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let port = sip.local_addr().unwrap().port();
        let audio = UdpSocket::bind("127.0.0.1:0").unwrap();
        let video = UdpSocket::bind("127.0.0.1:0").unwrap();
        video
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n\
             m=video {} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\n",
            audio.local_addr().unwrap().port(),
            video.local_addr().unwrap().port()
        );
        let uri = format!("sip:{room}@127.0.0.1");
        let invite = request("INVITE", &uri, "v1", port, &offer);
        let ok = final_response(&sip, node.sip, invite.as_bytes()).expect("an answer");
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        assert!(ok.contains("m=video "), "{ok}");
        let to = ok
            .lines()
            .find(|l| l.starts_with("To:"))
            .expect("a To header")
            .to_owned();
        let caller = RawCaller {
            sip,
            port,
            uri,
            to,
            video,
        };
        let ack = caller.in_dialog("ACK", 1, "");
        caller.sip.send_to(ack.as_bytes(), node.sip).unwrap();
        caller
    }

    /// A request in the call's dialog.
    fn in_dialog(&self, method: &str, cseq: u32, body: &str) -> String {
        let uri = &self.uri;
        request(method, uri, "v1", self.port, body)
            .replacen(&format!("To: <{uri}>"), &self.to, 1)
            .replacen(
                &format!("CSeq: 1 {method}"),
                &format!("CSeq: {cseq} {method}"),
                1,
            )
    }

    /// BYE, answered with 200.
    fn hang_up(&self, node: &Node, cseq: u32) {
        let bye = self.in_dialog("BYE", cseq, "");
        let bye = final_response(&self.sip, node.sip, bye.as_bytes());
        assert_eq!(status(&bye), 200, "{bye:?}");
    }
}

/// The frames of the caller's picture from `start` for `total`: one SSRC with no
/// gap in its numbering.
fn watch(video: UdpSocket, start: Instant, total: Duration) -> Vec<Seen> {
    let mut seen: Vec<Seen> = Vec::new();
    let mut numbering: Option<(u32, u16)> = None;
    let mut buf = [0u8; 2048];
    while start.elapsed() < total {
        let Ok(n) = video.recv(&mut buf) else {
            continue;
        };
        let p = gateway::rtp::parse(&buf[..n]).expect("RTP");
        if let Some((ssrc, seq)) = numbering {
            assert_eq!(p.ssrc, ssrc, "one SSRC");
            assert_eq!(p.seq, seq.wrapping_add(1), "no gap in the numbering");
        }
        numbering = Some((p.ssrc, p.seq));
        let f = gateway::vp8::fragment(p.payload).expect("a VP8 descriptor");
        if f.start {
            seen.push(Seen {
                at: Instant::now(),
                mark: f.data[1],
                key: f.keyframe,
            });
        }
    }
    seen
}

/// Whose pictures the caller saw, in turn, was `runs`; each switch landed on a
/// keyframe and no frame came more than 500 ms after the one before.
fn assert_switches(seen: &[Seen], runs: &[char]) {
    let marks: String = seen.iter().map(|s| s.mark as char).collect();
    let longest = seen.windows(2).map(|w| w[1].at - w[0].at).max();
    eprintln!("the caller saw {marks}; longest gap {longest:?}");
    let mut saw: Vec<char> = marks.chars().collect();
    saw.dedup();
    assert_eq!(saw, runs, "whose video the caller saw: {marks}");
    for (i, w) in seen.windows(2).enumerate() {
        if w[1].mark != w[0].mark {
            assert!(w[1].key, "switched onto a delta frame at frame {}", i + 1);
        }
        let gap = w[1].at - w[0].at;
        assert!(
            gap <= Duration::from_millis(500),
            "a {gap:?} freeze at frame {}",
            i + 1
        );
    }
    assert!(seen.len() > 100, "{} frames", seen.len());
}

/// A shared screen goes before the speaker: alice speaks throughout, carol shares
/// her screen from 4 s to 8 s. The caller sees alice, then carol's screen, then alice
/// again; each switch on a keyframe, one stream, no freeze.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_picture_is_the_shared_screen_while_one_is_shared() {
    let node = Node::start(&[]);
    let api = RoomApi::new(&node.http, node.tokens(), "127.0.0.1".parse().unwrap());
    let start = Instant::now();
    let a = RoomPeer::join_with_video(&api, "show", "alice")
        .await
        .expect("alice joins");
    let c = RoomPeer::join_sharing(&api, "show", "carol")
        .await
        .expect("carol joins");
    fn always(_: Duration) -> bool {
        true
    }
    fn quiet(_: Duration) -> bool {
        false
    }
    fn sharing(t: Duration) -> bool {
        t >= Duration::from_secs(4) && t < Duration::from_secs(8)
    }
    let peers = [
        tokio::spawn(speaker(a, b'A', start, always)),
        tokio::spawn(present(c, b'S', start, quiet, Some(sharing))),
    ];
    let caller = RawCaller::dial(&node, "show");
    let video = caller.video.try_clone().unwrap();
    let seen = tokio::task::spawn_blocking(move || watch(video, start, Duration::from_secs(12)));
    let seen = seen.await.unwrap();
    caller.hang_up(&node, 2);
    for p in peers {
        p.await.unwrap();
    }
    assert_switches(&seen, &['A', 'S', 'A']);
}

/// A frame as the caller got it: when its first packet came, whose it is (its mark),
/// whether it is a keyframe.
struct Seen {
    at: Instant,
    mark: u8,
    key: bool,
}

/// Two of the room's participants take turns speaking (A, then B, then A, four
/// seconds each): the SIP caller's picture follows the speaker, each switch lands on
/// the new speaker's keyframe, the stream stays one SSRC with no sequence gap, and no
/// frame is more than 500 ms after the one before (no freeze).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_picture_follows_the_active_speaker() {
    let node = Node::start(&[]);
    let api = RoomApi::new(&node.http, node.tokens(), "127.0.0.1".parse().unwrap());
    let start = Instant::now();
    let a = RoomPeer::join_with_video(&api, "turns", "alice")
        .await
        .expect("alice joins");
    let b = RoomPeer::join_with_video(&api, "turns", "bob")
        .await
        .expect("bob joins");
    fn a_loud(t: Duration) -> bool {
        t < Duration::from_secs(4) || t >= Duration::from_secs(8)
    }
    fn b_loud(t: Duration) -> bool {
        !a_loud(t)
    }
    let speakers = [
        tokio::spawn(speaker(a, b'A', start, a_loud)),
        tokio::spawn(speaker(b, b'B', start, b_loud)),
    ];

    let caller = RawCaller::dial(&node, "turns");
    let video = caller.video.try_clone().unwrap();
    let seen = tokio::task::spawn_blocking(move || watch(video, start, Duration::from_secs(12)));
    // Halfway through A's second turn the caller asks for a keyframe by SIP INFO
    // (RFC 5168), as room systems do when their decoder lost the picture.
    tokio::time::sleep_until((start + Duration::from_millis(10_500)).into()).await;
    let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<media_control><vc_primitive>\
                <to_encoder><picture_fast_update/></to_encoder></vc_primitive></media_control>";
    let info = caller.in_dialog("INFO", 2, body).replacen(
        "Content-Type: application/sdp",
        "Content-Type: application/media_control+xml",
        1,
    );
    let asked = Instant::now();
    let r = final_response(&caller.sip, node.sip, info.as_bytes());
    assert_eq!(status(&r), 200, "{r:?}");
    let seen = seen.await.unwrap();
    caller.hang_up(&node, 3);
    for s in speakers {
        s.await.unwrap();
    }
    assert_switches(&seen, &['A', 'B', 'A']);
    // The INFO brought a keyframe of the video shown (no switch), within a second.
    let answered = seen.windows(2).any(|w| {
        w[1].key
            && w[1].mark == w[0].mark
            && w[1].at > asked
            && w[1].at - asked < Duration::from_secs(1)
    });
    assert!(
        answered,
        "no keyframe after the caller's picture_fast_update"
    );
}

/// A room of one video codec (`POST /api/rooms {"video_codec": "h264"}`, what room
/// systems send): a caller whose video is VP8 alone is refused with a 488 that names
/// the room's codec (no transcoding); an unknown codec is refused at creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vp8_caller_is_refused_by_an_h264_room() {
    let node = Node::start(&[]);
    let r = node
        .create_room(serde_json::json!({"name": "ward", "video_codec": "av1"}))
        .await;
    assert_eq!(r.status().as_u16(), 400);
    let r = node
        .create_room(serde_json::json!({"name": "ward", "video_codec": "h264"}))
        .await;
    assert_eq!(r.status().as_u16(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["video_codec"], "h264");

    let dir = std::env::temp_dir().join(format!("knudepunkt-sip-488-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    baresip_config(
        &dir,
        "audio_codecs=PCMA/8000/1;video_codecs=VP8",
        "module vp8.so\nmodule fakevideo.so\nvideo_source fakevideo,nil\n\
         video_display fakevideo,nil\n",
    );
    let out = Command::new(baresip())
        .args(["-f", dir.to_str().unwrap(), "-e"])
        .arg(format!("/dial sip:ward@{}", node.sip))
        .args(["-t", "4"])
        .output()
        .expect("baresip runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!said.contains("Call established"), "baresip:\n{said}");
    assert!(said.contains("488"), "baresip:\n{said}");
    let log = node.log();
    assert!(log.contains("its video is not its room's codec"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
