//! WHIP publishing and WHEP viewing over real HTTP, with str0m peers and with a
//! third-party stack (GStreamer webrtcbin).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{delete, dev_token, get, post_sdp, start_server, Peer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_publisher_reaches_whep_viewer() {
    let server = start_server(None, 10).await;
    let token = dev_token(&server, "live", "cam").await;
    let mut publisher = Peer::whip(&server, "live", &token).await.expect("WHIP 201");
    let mut viewer = Peer::whep(&server, "live", &token).await.expect("WHEP 201");
    assert!(publisher
        .location
        .as_ref()
        .unwrap()
        .starts_with("/whip/live/"));
    tokio::join!(
        publisher.run(Duration::from_secs(5)),
        viewer.run(Duration::from_secs(5))
    );
    assert!(
        viewer.frames() > 30,
        "the viewer decodes the publisher's video: {:?}",
        viewer.frames_by_sender()
    );

    // However they joined, a room's members are known alike: a WebSocket participant
    // is told of the WHIP publisher and the WHEP viewer.
    let ws_token = dev_token(&server, "live", "doctor").await;
    let doctor = Peer::join(&server, "live", "doctor", &ws_token)
        .await
        .expect("joins");
    let others = &doctor.joined()["participants"];
    assert_eq!(others.as_array().map(Vec::len), Some(2), "{others}");

    // Trickle is not needed; DELETE ends the session; a second DELETE finds nothing.
    let loc = publisher.location.clone().unwrap();
    let patch = reqwest::Client::new()
        .patch(format!("http://{}{loc}", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status().as_u16(), 405);
    assert_eq!(delete(&server, &loc, &token).await, 200);
    assert_eq!(delete(&server, &loc, &token).await, 404);
    let (_, metrics) = get(&server, "/metrics", None).await;
    assert!(metrics.contains("signalling_joins_total{result=\"whip_ok\"} 1"));
    assert!(metrics.contains("signalling_joins_total{result=\"whep_ok\"} 1"));
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_refusals_are_clear() {
    let secret = control::secret::generate();
    let server = start_server(Some(&secret), 10).await;
    let keys = signalling::token::Keys::new(secret.as_bytes());
    let viewer = keys.mint(
        "r",
        "v",
        signalling::token::Role::Viewer,
        Duration::from_secs(60),
    );
    let publisher = keys.mint(
        "r",
        "p",
        signalling::token::Role::Publisher,
        Duration::from_secs(60),
    );
    assert_eq!(
        post_sdp(&server, "/whip/r", "", "v=0\r\n")
            .await
            .unwrap_err()
            .0,
        401
    );
    let (status, body) = post_sdp(&server, "/whip/r", &viewer, "v=0\r\n")
        .await
        .unwrap_err();
    assert_eq!((status, body.contains("publisher token")), (403, true));
    let (status, body) = post_sdp(&server, "/whip/r", &publisher, "v=0\r\n")
        .await
        .unwrap_err();
    assert_eq!(
        (status, body.contains("no media section")),
        (400, true),
        "{body}"
    );
    let wrong_type = reqwest::Client::new()
        .post(format!("http://{}/whip/r", server.addr))
        .bearer_auth(&publisher)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status().as_u16(), 415);

    // A session's resource is unguessable, and only its own token or an admin's
    // ends it: not another participant's token for the same room.
    let p = Peer::whip(&server, "r", &publisher)
        .await
        .expect("WHIP 201");
    let loc = p.location.clone().unwrap();
    let id = loc.rsplit('/').next().unwrap();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{loc}"
    );
    assert_eq!(delete(&server, &loc, &viewer).await, 403);
    let other_publisher = keys.mint(
        "r",
        "p2",
        signalling::token::Role::Publisher,
        Duration::from_secs(60),
    );
    assert_eq!(delete(&server, &loc, &other_publisher).await, 403);
    let admin = keys.mint(
        "r",
        "a",
        signalling::token::Role::Admin,
        Duration::from_secs(60),
    );
    assert_eq!(delete(&server, &loc, &admin).await, 200);
    assert_eq!(delete(&server, &loc, &publisher).await, 404);
    // The room API's admin token (room `*`) ends one too.
    let p = Peer::whip(&server, "r", &publisher)
        .await
        .expect("WHIP 201");
    let loc = p.location.clone().unwrap();
    let admin_anywhere = keys.mint(
        "*",
        "ops",
        signalling::token::Role::Admin,
        Duration::from_secs(60),
    );
    assert_eq!(delete(&server, &loc, &admin_anywhere).await, 200);
    server.shutdown();
}

/// A third-party WebRTC stack (Chromium's libwebrtc) as a standard WHIP publisher and
/// a standard WHEP player: plain `fetch` of SDP, no WebSocket, no renegotiation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_with_whip_and_plays_with_whep() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "Chromium and playwright-core are needed: run ./scripts/test.sh, which installs them"
    );
    let server = start_server(None, 10).await;
    let url = server.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(dir.join("whip_whep.mjs"))
            .arg(url)
            .arg("whip-room")
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    eprintln!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "Chromium's WHEP player plays Chromium's WHIP stream"
    );
    server.shutdown();
}

/// Stock GStreamer webrtcbin (libnice ICE, OpenSSL DTLS with its default RSA-2048
/// certificate, its own SDP and RTP stack) publishes through WHIP; a str0m WHEP
/// viewer receives its VP8 frames whole, and a webrtcbin WHEP player decodes them. The offer's fingerprint is webrtcbin's own: an RSA
/// client certificate, which str0m's own DTLS refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_webrtcbin_publishes_with_whip() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gstreamer/whip_publish.py");
    let has_gi = Command::new("/usr/bin/python3")
        .args(["-c", "import gi; gi.require_version('GstWebRTC', '1.0'); from gi.repository import GstWebRTC"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_gi,
        "GStreamer webrtcbin and python3-gi are needed: run ./scripts/test.sh, which installs them"
    );
    let server = start_server(None, 10).await;
    let token = dev_token(&server, "gst", "webrtcbin").await;
    let url = format!("http://{}/whip/gst", server.addr);
    let publisher = {
        let token = token.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("/usr/bin/python3")
                .arg(script)
                .arg(url)
                .arg(token)
                .arg("8")
                .output()
                .expect("python3 runs")
        })
    };
    // Let webrtcbin connect and publish, then watch: with a str0m viewer, and with a
    // second webrtcbin that plays over WHEP and decodes the VP8 (vp8dec).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let player = {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gstreamer/whep_play.py");
        let url = format!("http://{}/whep/gst", server.addr);
        let token = token.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("/usr/bin/python3")
                .arg(script)
                .arg(url)
                .arg(token)
                .arg("5")
                .output()
                .expect("python3 runs")
        })
    };
    let mut viewer = Peer::whep(&server, "gst", &token).await.expect("WHEP 201");
    viewer.run(Duration::from_secs(5)).await;
    eprintln!("viewer frames: {}", viewer.unprobed_frames());
    let played = player.await.unwrap();
    let played_out = String::from_utf8_lossy(&played.stdout).into_owned();
    eprintln!("{played_out}\n{}", String::from_utf8_lossy(&played.stderr));
    assert!(
        played.status.success(),
        "webrtcbin played over WHEP without error"
    );
    let decoded: u64 = played_out
        .lines()
        .find_map(|l| {
            l.strip_prefix("whep_play: decoded ")?
                .strip_suffix(" frames")?
                .parse()
                .ok()
        })
        .expect("the WHEP player says how many frames it decoded");
    assert!(
        decoded > 20,
        "webrtcbin's WHEP player decodes the VP8 (15 fps for about 3 s): {decoded} frames"
    );
    let out = publisher.await.unwrap();
    eprintln!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "webrtcbin published without error");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("connection state connected"),
        "webrtcbin's connection came up"
    );
    assert!(
        viewer.unprobed_frames() > 20,
        "the WHEP viewer receives webrtcbin's VP8 whole (15 fps): {} frames",
        viewer.unprobed_frames()
    );
    let (_, metrics) = get(&server, "/metrics", None).await;
    assert!(metrics.contains("signalling_joins_total{result=\"whip_ok\"} 1"));
    // Its certificate was RSA, as webrtcbin makes it.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("DTLS certificate key: rsaEncryption"),
        "webrtcbin used its own RSA certificate"
    );
    server.shutdown();
}

/// A shared screen reaches a WHEP viewer like any other video: the viewer's one
/// receive-only video m-line plays the screen of a presenter who sends no camera,
/// once the presenter shares, and nothing before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_viewer_receives_a_shared_screen() {
    use gateway::room::{RoomApi, RoomPeer, Tokens, Woke};
    use gateway::sdp::VideoCodec;
    use std::time::Instant;

    let server = start_server(None, 10).await;
    let api = RoomApi::new(
        &format!("http://{}", server.addr),
        Tokens::Dev,
        "127.0.0.1".parse().unwrap(),
    );
    let mut presenter = RoomPeer::join_sharing(&api, "talk", "presenter")
        .await
        .expect("the presenter joins");
    let token = dev_token(&server, "talk", "viewer").await;
    let mut viewer = Peer::whep(&server, "talk", &token).await.expect("WHEP 201");
    let start = Instant::now();
    // The presenter sends its screen's frames all along, and shares from 2 s on.
    let presenting = async {
        let (mut next, mut key, mut shared) = (start, true, false);
        while start.elapsed() < Duration::from_secs(6) {
            let now = Instant::now();
            if !shared && start.elapsed() >= Duration::from_secs(2) {
                presenter.share_screen(true).await.expect("shared");
                shared = true;
            }
            key |= presenter.take_keyframe_request();
            if now >= next {
                let mut vp8 = vec![b'S'; 900];
                vp8[0] = if key { 0x10 } else { 0x11 };
                let rtp_time = (now - start).as_micros() as u64 * 90 / 1000;
                presenter.send_video(now, VideoCodec::Vp8, vp8, rtp_time as u32);
                key = false;
                next += Duration::from_micros(66_667);
            }
            let wake = presenter
                .poll(|_, _| {}, |_, _, _, _| {})
                .expect("the presenter runs");
            if let Woke::Signal(m) = presenter.wait(wake.min(next)).await {
                presenter.on_signal(m).await.expect("the room goes on");
            }
        }
    };
    let watching = async {
        viewer.run(Duration::from_millis(1800)).await;
        let before = viewer.unprobed_frames();
        viewer.run(Duration::from_millis(4200)).await;
        (before, viewer.unprobed_frames())
    };
    let ((), (before, after)) = tokio::join!(presenting, watching);
    assert_eq!(before, 0, "nothing of the kept m-line before the share");
    assert!(
        after > 20,
        "the viewer got {after} frames of the shared screen"
    );
    server.shutdown();
}
