//! SIP callers in rooms, with a real SIP client: baresip (Debian's `baresip-core`,
//! installed by scripts/test.sh) dials the gateway that `signalling --sip` runs
//! in-process, and a WebRTC participant in the room (the gateway's own str0m room
//! peer, through the real media node) talks with it. Each side must hear the other's
//! tone: Goertzel on what the participant decoded, and on what baresip decoded (its
//! `sndfile` module writes it to a WAV file).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::sip::*;
use gateway::room::{RoomApi, RoomPeer, Woke};
use gateway::tone::{share_at, sine};

/// One call from baresip into `room` (`dial`: the URI), with a participant in the
/// room who says 660 Hz: each side must hear the other's tone. Returns the node's
/// log line of the call's end, and what baresip said.
async fn call_is_heard_both_ways(
    node: &Node,
    dir: &Path,
    room: &str,
    dial: &str,
) -> (String, String) {
    let baresip = baresip();
    // A participant in the room: says 660 Hz, keeps what it hears.
    let api = RoomApi::new(&node.http, node.tokens(), "127.0.0.1".parse().unwrap());
    let mut peer = RoomPeer::join(&api, room, "listener")
        .await
        .expect("the participant joins");
    let listener = tokio::spawn(async move {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut decoders: Vec<opus::Decoder> = Vec::new();
        let mut heard: Vec<Vec<i16>> = Vec::new();
        let start = Instant::now();
        let mut next = start;
        let mut frame = 0u64;
        let mut pcm = [0i16; 5760];
        while start.elapsed() < Duration::from_secs(9) {
            let now = Instant::now();
            if now >= next {
                let tone = sine(ROOM_HZ, 48_000, 8000.0, frame * 960, 960);
                let mut b = [0u8; 1500];
                let n = enc.encode(&tone, &mut b).unwrap();
                peer.send_opus(now, b[..n].to_vec(), 15, 960);
                frame += 1;
                next += Duration::from_millis(20);
            }
            let wake = peer
                .poll(
                    |source, data| {
                        let i = source as usize;
                        while decoders.len() <= i {
                            decoders
                                .push(opus::Decoder::new(48_000, opus::Channels::Mono).unwrap());
                            heard.push(Vec::new());
                        }
                        if let Ok(n) = decoders[i].decode(data, &mut pcm, false) {
                            heard[i].extend_from_slice(&pcm[..n]);
                        }
                    },
                    |_, _, _, _| {},
                )
                .expect("the participant's peer runs");
            if let Woke::Signal(m) = peer.wait(wake.min(next)).await {
                peer.on_signal(m).await.expect("the room goes on");
            }
        }
        peer.leave().await;
        heard
    });

    // baresip dials the room and hangs up after 6 s.
    let target = format!("/dial {dial}");
    let caller = tokio::task::spawn_blocking({
        let dir = dir.to_owned();
        move || {
            Command::new(baresip)
                .args(["-f", dir.to_str().unwrap(), "-e", &target, "-t", "6"])
                .output()
                .expect("baresip runs")
        }
    });
    // Someone who joins meanwhile sees the caller listed as a SIP call, named without
    // its number.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let observer = RoomPeer::join(&api, room, "observer")
        .await
        .expect("an observer joins");
    let listed = observer.joined()["participants"].clone();
    observer.leave().await;
    let sip: Vec<&serde_json::Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "sip")
        .collect();
    assert_eq!(sip.len(), 1, "{listed}");
    assert_eq!(sip[0]["identity"], "SIP caller", "{listed}");
    let out = caller.await.unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("Call established"), "baresip:\n{said}");

    // The participant heard the caller: one voice, 440 Hz.
    let heard = listener.await.unwrap();
    assert_eq!(
        heard.len(),
        1,
        "one voice in the room besides the participant"
    );
    let voice = &heard[0];
    assert!(voice.len() > 48_000 * 3, "{} samples heard", voice.len());
    let tail = &voice[voice.len() - 48_000 * 2..];
    let share = share_at(tail, 48_000, CALLER_HZ);
    assert!(share > 0.5, "the caller's {CALLER_HZ} Hz: share {share:.3}");

    // The caller heard the room: baresip's decoded audio, 660 Hz.
    let dump = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip dumped what it decoded");
    let (samples, rate) = wav(&dump);
    assert!(
        samples.len() > rate as usize * 3,
        "{} samples",
        samples.len()
    );
    let tail = &samples[samples.len() - rate as usize * 2..];
    let share = share_at(tail, rate, ROOM_HZ);
    assert!(
        share > 0.5,
        "the room's {ROOM_HZ} Hz at the caller: share {share:.3}"
    );

    // The call's end is logged with its RTP figures, and nothing names the room.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = node.log();
    let ended = log
        .lines()
        .find(|l| l.contains("call ended"))
        .unwrap_or_else(|| panic!("no call end logged:\n{log}"))
        .to_owned();
    let packets: u64 = ended
        .split("leg_packets=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(packets > 200, "{ended}");
    assert!(!log.contains(room), "the room's name was logged:\n{log}");
    (ended, said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_dials_a_room_and_each_side_hears_the_other() {
    let node = Node::start(&[]);
    let dir = std::env::temp_dir().join(format!("knudepunkt-sip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    baresip_config(&dir, "audio_codecs=PCMA/8000/1", "");
    let dial = format!("sip:sipcheck@{}", node.sip);
    let (ended, _) = call_is_heard_both_ways(&node, &dir, "sipcheck", &dial).await;
    assert!(ended.contains("codec=Pcma"), "{ended}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A keypad dials a number: a room created with a numeric alias (`POST /api/rooms
/// {"alias": "4711"}`) is reached at `sip:4711@host`, and the caller is heard in it.
/// An alias is digits, and one room's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_is_dialled_by_its_numeric_alias() {
    let node = Node::start(&[]);
    let status = |r: reqwest::Response| r.status().as_u16();
    let r = node.create_room(serde_json::json!({"name": "ward3", "alias": "4711"}));
    assert_eq!(status(r.await), 201);
    let r = node.create_room(serde_json::json!({"name": "ward4", "alias": "4711"}));
    assert_eq!(status(r.await), 409, "one room an alias");
    let r = node.create_room(serde_json::json!({"name": "ward4", "alias": "47a1"}));
    assert_eq!(status(r.await), 400);
    let dir = std::env::temp_dir().join(format!("knudepunkt-sip-alias-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    baresip_config(&dir, "audio_codecs=PCMA/8000/1", "");
    let dial = format!("sip:4711@{}", node.sip);
    call_is_heard_both_ways(&node, &dir, "ward3", &dial).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A trunk that authenticates (`--sip-auth-user`): baresip, whose From user is the
/// trunk's name, is challenged, answers with the password, and is in a PIN room with
/// no PIN, heard both ways. A caller of that name without credentials gets 401 with a
/// challenge, and with a wrong answer 403; other callers are not challenged (the PIN
/// path: 403 without one). The node holds only the token service's public key
/// (`--token-public-key`, from `signalling keypair`): its gateway's calls join with
/// tokens the node signs for them itself, the test's with the service's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_authenticates_with_its_password_and_needs_no_pin() {
    let keys = std::env::temp_dir().join(format!("knudepunkt-sip-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&keys);
    std::fs::create_dir_all(&keys).unwrap();
    let (private, public) = (keys.join("token.key"), keys.join("token.pub"));
    let out = Command::new(env!("CARGO_BIN_EXE_signalling"))
        .args(["keypair", "--private-key", private.to_str().unwrap()])
        .args(["--public-key", public.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let private_pem = std::fs::read_to_string(&private).unwrap();
    let password = "trunk-password-of-some-length";
    let node = Node::start(&[
        "--token-public-key",
        public.to_str().unwrap(),
        "--sip-allow-plain-rtp",
        "--sip-auth-user",
        "caller",
        "--sip-auth-password",
        password,
    ])
    .minting_with(Minter::PrivateKey(private_pem));
    let r = node.create_room(serde_json::json!({"name": "trunkroom", "pin": "246810"}));
    assert!(r.await.status().is_success());
    let dir = std::env::temp_dir().join(format!("knudepunkt-sip-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    baresip_config(
        &dir,
        &format!("audio_codecs=PCMA/8000/1;auth_pass={password}"),
        "",
    );
    let dial = format!("sip:trunkroom@{}", node.sip);
    call_is_heard_both_ways(&node, &dir, "trunkroom", &dial).await;
    assert!(!node.log().contains(password), "the password was logged");

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8\r\n"
    );
    let as_trunk = |call: &str, auth: &str| {
        request("INVITE", "sip:trunkroom@127.0.0.1", call, port, &offer)
            .replace("<sip:tester@", "<sip:caller@")
            .replacen("Max-Forwards:", &format!("{auth}Max-Forwards:"), 1)
    };
    let challenged = final_response(&socket, node.sip, as_trunk("a1", "").as_bytes());
    assert_eq!(status(&challenged), 401);
    let challenge = challenged.unwrap();
    let www = challenge
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .expect("a challenge");
    assert!(www.contains("realm=\"knudepunkt\""), "{www}");
    let nonce = www
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let wrong = format!(
        "Authorization: Digest username=\"caller\", realm=\"knudepunkt\", \
         nonce=\"{nonce}\", uri=\"sip:trunkroom@127.0.0.1\", \
         response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, \
         qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n"
    );
    let r = final_response(&socket, node.sip, as_trunk("a2", &wrong).as_bytes());
    assert_eq!(status(&r), 403, "a wrong answer");
    // Another caller is not challenged: without the room's PIN, 403.
    let other = request("INVITE", "sip:trunkroom@127.0.0.1", "a3", port, &offer);
    let r = final_response(&socket, node.sip, other.as_bytes());
    assert_eq!(status(&r), 403);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&keys);
}

/// Registration with a trunk (`--sip-register sip:4711@REGISTRAR`): sipp as the
/// registrar challenges each REGISTER and grants 2 s; the gateway answers with its
/// password (the digest names the number) and refreshes before the binding runs out.
/// Meanwhile the node says it is registered (`gateway_registered 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_registers_its_number_and_refreshes_it() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/registrar.xml");
    let port = free_udp_port();
    let mut registrar = Command::new(sipp());
    registrar
        .args(["-sf", file.to_str().unwrap(), "-i", "127.0.0.1"])
        .args(["-p", &port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error"])
        .current_dir(std::env::temp_dir());
    let registrar = tokio::task::spawn_blocking(move || registrar.output().expect("sipp runs"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let node = Node::start(&[
        "--sip-register",
        &format!("sip:4711@127.0.0.1:{port}"),
        "--sip-register-password",
        "the-trunks-password",
    ]);
    let registered = async {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let m = reqwest::get(format!("{}/metrics", node.http))
                .await
                .unwrap();
            if m.text().await.unwrap().contains("\ngateway_registered 1") {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(registered.await, "not registered:\n{}", node.log());
    let out = registrar.await.unwrap();
    assert!(
        out.status.success(),
        "the registrar's scenario failed: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    assert!(!node.log().contains("the-trunks-password"));
}

/// G.722, the wideband codec of room systems and desk phones: 16 kHz audio both ways
/// (that it is wideband, above G.711's band, is `gateway::call`'s G.722 test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_with_g722_is_heard_both_ways() {
    let node = Node::start(&[]);
    let dir = std::env::temp_dir().join(format!("knudepunkt-sip-g722-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    baresip_config(&dir, "audio_codecs=G722/16000/1", "module g722.so\n");
    let dial = format!("sip:widecheck@{}", node.sip);
    let (ended, _) = call_is_heard_both_ways(&node, &dir, "widecheck", &dial).await;
    assert!(ended.contains("codec=G722"), "{ended}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An Opus leg: the caller's Opus goes to the room as it is (its level read from it),
/// the room's mix is encoded to Opus for the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_with_opus_is_heard_both_ways() {
    let node = Node::start(&[]);
    let dir = std::env::temp_dir().join(format!("knudepunkt-sip-opus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    baresip_config(&dir, "audio_codecs=opus/48000/2", "");
    let dial = format!("sip:opuscheck@{}", node.sip);
    let (ended, _) = call_is_heard_both_ways(&node, &dir, "opuscheck", &dial).await;
    assert!(ended.contains("codec=Opus"), "{ended}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIP over TLS (a test CA's certificate) with SDES-SRTP, as a hospital's room system
/// calls in: heard both ways. Over TLS plain RTP is refused with a 488.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_over_tls_with_srtp_is_heard_and_plain_rtp_refused() {
    let dir = std::env::temp_dir().join(format!("knudepunkt-sips-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A test CA and the gateway's certificate, signed by it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca-key.pem"), ca_key.serialize_pem()).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    // A key that is not the certificate's stops the start, saying so.
    let wrong = Command::new(env!("CARGO_BIN_EXE_signalling"))
        .args(["--http", "127.0.0.1:0", "--udp-port", "0", "--shards", "1"])
        .args(["--sip", &format!("127.0.0.1:{}", free_sip_ports())])
        .args(["--sip-tls-cert", c.to_str().unwrap()])
        .args(["--sip-tls-key", dir.join("ca-key.pem").to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(2), "{said}");
    assert!(said.contains("ca-key.pem"), "{said}");
    let node = Node::start(&[
        "--sip-tls-cert",
        c.to_str().unwrap(),
        "--sip-tls-key",
        k.to_str().unwrap(),
    ]);
    let tls = SocketAddr::new(node.sip.ip(), node.sip.port() + 1);
    let dial = format!("sip:sipsecure@{tls};transport=tls");
    let ca_file = format!(
        "sip_cafile {}\nmodule srtp.so\n",
        dir.join("ca.pem").display()
    );

    let calls = dir.join("srtp");
    baresip_config(
        &calls,
        "audio_codecs=PCMA/8000/1;mediaenc=srtp-mand",
        &ca_file,
    );
    let (ended, said) = call_is_heard_both_ways(&node, &calls, "sipsecure", &dial).await;
    assert!(ended.contains("codec=Pcma"), "{ended}");
    assert!(said.contains("SRTP is Enabled"), "baresip:\n{said}");

    // The same over TLS without SRTP: refused, and baresip says why it ended.
    let plain = dir.join("plain");
    baresip_config(&plain, "audio_codecs=PCMA/8000/1", &ca_file);
    let out = Command::new(baresip())
        .args([
            "-f",
            plain.to_str().unwrap(),
            "-e",
            &format!("/dial {dial}"),
            "-t",
            "4",
        ])
        .output()
        .expect("baresip runs");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!said.contains("Call established"), "baresip:\n{said}");
    assert!(said.contains("488"), "baresip:\n{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a SIP sender gets wrong is refused with the right 4xx (a 488 says why in
/// its Warning header), counted, and harms nothing: the gateway answers as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sip_and_sdp_get_4xx_and_harm_no_one() {
    let node = Node::start(&[]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let to = node.sip;
    let room = "sip:harmless@127.0.0.1";
    let audio = |proto: &str| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} {proto} 8\r\n"
        )
    };
    let sent = |method: &str, uri: &str, call: &str, body: &str| {
        final_response(
            &socket,
            to,
            request(method, uri, call, port, body).as_bytes(),
        )
    };

    let r = sent("OPTIONS", "sip:127.0.0.1", "o1", "");
    assert_eq!(status(&r), 200, "{r:?}");
    // Garbage, a request line alone, a message cut in its headers: no answer needed,
    // no harm done.
    for junk in [
        &b"\x00\xff\x10 not SIP"[..],
        b"INVITE sip:x@127.0.0.1 SIP/2.0\r\n\r\n",
        b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK1\r\nCSeq: x",
    ] {
        socket.send_to(junk, to).unwrap();
    }
    let r = sent("INVITE", room, "i1", "v=0\r\nnonsense");
    assert_eq!(status(&r), 488, "{r:?}");
    assert!(r.as_ref().unwrap().contains("malformed SDP"), "{r:?}");
    let r = sent("INVITE", room, "i2", &audio("RTP/SAVP"));
    assert_eq!(status(&r), 488, "{r:?}");
    assert!(r.as_ref().unwrap().contains("SRTP"), "{r:?}");
    let video_only = audio("RTP/AVP").replace("m=audio", "m=video");
    let r = sent("INVITE", room, "i4", &video_only);
    assert_eq!(status(&r), 488, "{r:?}");
    assert!(r.as_ref().unwrap().contains("Warning: 304"), "{r:?}");
    let g729 = audio("RTP/AVP").replace(" 8\r\n", " 18\r\n");
    let r = sent("INVITE", room, "i5", &g729);
    assert!(r.as_ref().unwrap().contains("Warning: 305"), "{r:?}");
    let r = sent("INVITE", "sip:127.0.0.1", "i6", &audio("RTP/AVP"));
    assert_eq!(status(&r), 404, "no room named: {r:?}");
    let r = sent(
        "INVITE",
        "sip:a%2F..%2Fb@127.0.0.1",
        "i7",
        &audio("RTP/AVP"),
    );
    assert_eq!(status(&r), 404, "not a room name: {r:?}");
    // The parser's complaint about an offer spans lines: the Warning is one.
    let bad = audio("RTP/AVP").replace("m=audio", "m=audio x");
    let r = sent("INVITE", room, "i8", &bad);
    assert_eq!(status(&r), 488, "{r:?}");
    let warnings: Vec<&str> = r
        .as_deref()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("Warning"))
        .collect();
    assert_eq!(
        warnings,
        ["Warning: 399 knudepunkt \"malformed SDP\""],
        "{r:?}"
    );
    let r = sent("BYE", room, "b1", "");
    assert_eq!(status(&r), 481, "{r:?}");
    let r = sent("SUBSCRIBE", room, "s1", "");
    assert!((400..500).contains(&status(&r)), "{r:?}");

    // Still serving, and each refusal counted.
    let r = sent("OPTIONS", "sip:127.0.0.1", "o2", "");
    assert_eq!(status(&r), 200, "{r:?}");
    let metrics = reqwest::get(format!("{}/metrics", node.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("gateway_calls_total{result=\"refused\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(refused, Some(7), "{metrics}");
    let log = node.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains("harmless"),
        "the room's name was logged:\n{log}"
    );
}

/// Outside dev mode a caller needs the room's PIN: dialled as `ROOM*PIN` it joins and
/// is heard; without it, with a wrong one, or to a room that has none, 403. Wrong PINs
/// from one address are limited: past five a minute even the right one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_pin_admits_callers_and_wrong_pins_are_limited() {
    let out = Command::new(env!("CARGO_BIN_EXE_signalling"))
        .arg("secret")
        .output()
        .unwrap();
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let secret = secret.as_str();
    let node = Node::start(&[
        "--secret",
        secret,
        "--sip-allow-plain-rtp",
        "--sip-trust",
        "10.0.0.0/8",
    ]);
    let http = reqwest::Client::new();
    let admin = mint(secret, "*", "admin", "admin");
    let create = |body: serde_json::Value| {
        http.post(format!("{}/api/rooms", node.http))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let r = create(serde_json::json!({"name": "pinroom", "pin": "123456"}))
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = create(serde_json::json!({"name": "shortpin", "pin": "12"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = create(serde_json::json!({"name": "nopin"})).await.unwrap();
    assert!(r.status().is_success());

    // Dialled with its PIN: in, and heard both ways.
    let dir = std::env::temp_dir().join(format!("knudepunkt-pin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    baresip_config(&dir, "audio_codecs=PCMU/8000/1", "");
    let dial = format!("sip:pinroom*123456@{}", node.sip);
    let (ended, _) = call_is_heard_both_ways(&node, &dir, "pinroom", &dial).await;
    assert!(ended.contains("codec=Pcmu"), "{ended}");
    assert!(!node.log().contains("123456"), "the PIN was logged");

    // Without the PIN, with a wrong one, to a room without one: 403.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\n"
    );
    let invite = |uri: &str, call: &str| {
        let r = final_response(
            &socket,
            node.sip,
            request("INVITE", uri, call, port, &offer).as_bytes(),
        );
        status(&r)
    };
    assert_eq!(invite("sip:pinroom@127.0.0.1", "p1"), 403);
    // Headers cannot make a caller look trusted: a Via `received=` and the gateway's
    // own note of the source, both naming a trusted address, change nothing.
    let spoofed = request("INVITE", "sip:pinroom@127.0.0.1", "s1", port, &offer)
        .replacen(";branch=", ";received=10.0.0.5;branch=", 1)
        .replacen(
            "Max-Forwards:",
            "X-Knudepunkt-Source: 10.0.0.5\r\nMax-Forwards:",
            1,
        );
    // (Its 403 goes where its forged `received=` says, RFC 3261 §18.2.2: counted here.)
    let refused = || async {
        let m = reqwest::get(format!("{}/metrics", node.http))
            .await
            .unwrap();
        let text = m.text().await.unwrap();
        let count = |result: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("gateway_calls_total{{result=\"{result}\"}}")))
                .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (count("refused"), count("answered"))
    };
    let before = refused().await;
    socket.send_to(spoofed.as_bytes(), node.sip).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while refused().await.0 == before.0 {
        assert!(Instant::now() < end, "the forged INVITE was not refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        refused().await,
        (before.0 + 1, before.1),
        "refused, not answered"
    );
    assert_eq!(invite("sip:nopin@127.0.0.1", "p2"), 403);
    for i in 0..5 {
        assert_eq!(
            invite("sip:pinroom*654321@127.0.0.1", &format!("w{i}")),
            403
        );
    }
    // Five wrong ones from this address: even the right PIN is refused now.
    assert_eq!(invite("sip:pinroom*123456@127.0.0.1", "p3"), 403);
    let metrics = reqwest::get(format!("{}/metrics", node.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let wrong = metrics
        .lines()
        .find(|l| l.starts_with("signalling_pin_refusals_total{why=\"pin_wrong\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(wrong, Some(5), "{metrics}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn sipp() -> PathBuf {
    let path = PathBuf::from(std::env::var("SIPP").unwrap_or("/usr/bin/sipp".into()));
    assert!(
        path.exists(),
        "{} is missing: install Debian's sip-tester (scripts/test.sh does)",
        path.display()
    );
    path
}

/// sipp runs `scenario` (tests/sipp/) once against the gateway, dialling `service`.
async fn sipp_run(node: &Node, scenario: &str, service: &str) -> std::process::Output {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    let sip = node.sip.to_string();
    let (port, media) = (free_udp_port().to_string(), free_udp_port().to_string());
    let mut cmd = Command::new(sipp());
    cmd.arg(&sip)
        .args(["-sf", file.to_str().unwrap(), "-s", service])
        .args(["-i", "127.0.0.1", "-p", &port, "-mp", &media])
        .args(["-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error"])
        .current_dir(std::env::temp_dir());
    tokio::task::spawn_blocking(move || cmd.output().expect("sipp runs"))
        .await
        .unwrap()
}

/// PIN entry by DTMF, with sipp and the RFC 4733 pcaps Debian packages with it: a
/// caller who dials the room without its PIN hears the prompt, keys it in and is in
/// the room; one who keys in a wrong PIN three times is hung up on.
/// sipp runs `scenario` to its end, and an observer who joins `room` 7 s into it
/// sees one SIP caller there.
async fn sipp_caller_is_in_the_room(node: &Node, scenario: &str, room: &str) {
    let run = sipp_run(node, scenario, room);
    let look = async {
        tokio::time::sleep(Duration::from_secs(7)).await;
        let api = RoomApi::new(&node.http, node.tokens(), "127.0.0.1".parse().unwrap());
        let observer = RoomPeer::join(&api, room, "observer")
            .await
            .expect("an observer joins");
        let listed = observer.joined()["participants"].clone();
        observer.leave().await;
        listed
    };
    let (out, listed) = tokio::join!(run, look);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{scenario}: sipp:\n{said}");
    let callers = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "sip")
        .count();
    assert_eq!(
        callers, 1,
        "{scenario}: the caller was in the room: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_keys_in_the_pin_by_dtmf_or_sip_info_and_three_wrong_ones_end_the_call() {
    let out = Command::new(env!("CARGO_BIN_EXE_signalling"))
        .arg("secret")
        .output()
        .unwrap();
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let node = Node::start(&["--secret", &secret, "--sip-allow-plain-rtp"]);
    let admin = mint(&secret, "*", "admin", "admin");
    let r = reqwest::Client::new()
        .post(format!("{}/api/rooms", node.http))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "keypad", "pin": "428193"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    // The right PIN, by RFC 4733 events and by SIP INFO (dtmf-relay, from a caller
    // without RFC 4733): the caller is in the room while it talks.
    sipp_caller_is_in_the_room(&node, "pin_right.xml", "keypad").await;
    sipp_caller_is_in_the_room(&node, "pin_info.xml", "keypad").await;

    // Three wrong PINs: the gateway hangs up (the scenario waits for its BYE).
    let out = sipp_run(&node, "pin_wrong.xml", "keypad").await;
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sipp:\n{said}");
    let metrics = reqwest::get(format!("{}/metrics", node.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let wrong = metrics
        .lines()
        .find(|l| l.starts_with("signalling_pin_refusals_total{why=\"pin_wrong\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(wrong, Some(3), "{metrics}");
    let log = node.log();
    assert!(
        !log.contains("428193") && !log.contains("111111"),
        "a PIN was logged"
    );
}

/// A node that is stopped ends its SIP calls with a BYE before it goes: the caller
/// sees the call closed by the other side at once, not a call gone silent. (The first
/// SIGTERM, as systemd and Kubernetes send it, drains: the call's meeting goes on;
/// the second stops the node.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_ends_its_calls_with_a_bye() {
    let mut node = Node::start(&[]);
    let dir = std::env::temp_dir().join(format!("knudepunkt-bye-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    baresip_config(&dir, "audio_codecs=PCMA/8000/1", "");
    let target = format!("/dial sip:farewell@{}", node.sip);
    // baresip would stay on the call for 10 s.
    let caller = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            Command::new(baresip())
                .args(["-f", dir.to_str().unwrap(), "-e", &target, "-t", "10"])
                .output()
                .expect("baresip runs")
        }
    });
    // Stopped once the call is up (answered, in its room), however long that took.
    let answered = || async {
        let metrics = reqwest::get(format!("{}/metrics", node.http)).await.ok()?;
        let text = metrics.text().await.ok()?;
        text.lines()
            .any(|l| l == "gateway_calls_total{result=\"answered\"} 1")
            .then_some(())
    };
    let up = Instant::now();
    while answered().await.is_none() {
        assert!(
            up.elapsed() < Duration::from_secs(15),
            "the call was not answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = node.child.id().to_string();
    let term = || {
        let kill = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(kill.success());
    };
    // The first SIGTERM drains: the call's meeting goes on; the second stops.
    term();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "a draining node keeps its meeting"
    );
    let stopped_at = Instant::now();
    term();
    let exited = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(10),
            "the node did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exited.success(), "{exited:?}");
    let out = caller.await.unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("Call established"), "baresip:\n{said}");
    // baresip says "session closed: Connection reset by peer" for a BYE it received.
    assert!(
        said.contains("session closed: Connection reset by peer"),
        "baresip:\n{said}"
    );
    let log = node.log();
    assert!(log.contains("ended=Closing"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A caller that hangs up while its call is being set up (CANCEL, RFC 3261 §9): the
/// CANCEL gets 200, the INVITE 487, and no call stays behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_while_it_is_set_up_ends() {
    let node = Node::start(&[]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let uri = "sip:cancelled@127.0.0.1";
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8\r\n"
    );
    let invite = request("INVITE", uri, "c1", port, &offer);
    // The CANCEL names the INVITE's transaction: its branch, its CSeq number.
    let cancel = request("CANCEL", uri, "c1", port, "").replacen("-c1-CANCEL", "-c1-INVITE", 1);
    socket.send_to(invite.as_bytes(), node.sip).unwrap();
    socket.send_to(cancel.as_bytes(), node.sip).unwrap();
    let mut buf = [0u8; 4096];
    let (mut cancel_ok, mut invite_final) = (false, None);
    let end = Instant::now() + Duration::from_secs(10);
    while !(cancel_ok && invite_final.is_some()) {
        assert!(
            Instant::now() < end,
            "CANCEL answered: {cancel_ok}, INVITE: {invite_final:?}"
        );
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let status: u16 = text
            .strip_prefix("SIP/2.0 ")
            .and_then(|s| s.get(..3)?.parse().ok())
            .unwrap_or(0);
        if text.contains("CSeq: 1 CANCEL") && status == 200 {
            cancel_ok = true;
        } else if text.contains("CSeq: 1 INVITE") && status >= 200 {
            invite_final = Some(status);
        }
    }
    assert_eq!(invite_final, Some(487));
    // Nobody stays in the room.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rooms = reqwest::get(format!("{}/api/rooms", node.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!rooms.contains("cancelled"), "{rooms}");
}

/// A dial-out still ringing when the node stops (Ctrl-C) is cancelled: the far end
/// (raw SIP on a UDP socket, which rings and never answers) gets a CANCEL for its
/// INVITE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_dial_out_is_cancelled_when_the_node_stops() {
    let mut node = Node::start(&[]);
    let far = UdpSocket::bind("127.0.0.1:0").unwrap();
    far.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = far.local_addr().unwrap().port();
    let r = reqwest::Client::new()
        .post(format!("{}/api/rooms/ringing/dial", node.http))
        .json(&serde_json::json!({ "uri": format!("sip:ward9@127.0.0.1:{port}") }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(10);
    let (invite, gateway) = loop {
        assert!(Instant::now() < end, "no INVITE from the gateway");
        if let Ok((n, from)) = far.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("INVITE ") {
                break (text, from);
            }
        }
    };
    // It rings (180), and never answers.
    let ringing = response(&invite, "180 Ringing", Some("ring1"), "", "");
    far.send_to(ringing.as_bytes(), gateway).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kill = Command::new("kill")
        .args(["-INT", &node.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let end = Instant::now() + Duration::from_secs(5);
    let cancel = loop {
        assert!(Instant::now() < end, "no CANCEL: {}", node.log());
        if let Ok(n) = far.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("CANCEL ") {
                break text;
            }
        }
    };
    let call_id = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("Call-ID:").or_else(|| l.strip_prefix("i:")))
            .map(|v| v.trim().to_owned())
    };
    assert_eq!(call_id(&cancel), call_id(&invite), "{cancel}");
    let _ = node.child.wait();
}

/// A delayed-offer INVITE (no SDP, as room systems behind some call managers send
/// it): the gateway offers in its 200 (audio and video), reads the caller's answer in
/// the ACK, and the call is in its room with the codec the answer chose, and its
/// video reaching the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_offer_is_answered_in_the_ack() {
    let node = Node::start(&[]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let uri = "sip:late@127.0.0.1";
    let ok = final_response(
        &socket,
        node.sip,
        request("INVITE", uri, "d1", port, "").as_bytes(),
    )
    .expect("an answer to the INVITE");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains("m=audio "), "the 200 carries an offer: {ok}");
    assert!(ok.contains("RTP/AVP 8 0 9 111 101 102"), "{ok}");
    let video_port: u16 = ok
        .lines()
        .find_map(|l| l.strip_prefix("m=video "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("the 200 offers video: {ok}"));
    assert!(ok.contains("VP8/90000"), "{ok}");
    let to = ok
        .lines()
        .find(|l| l.starts_with("To:") || l.starts_with("t:"))
        .expect("a To header")
        .to_owned();
    // The caller's answer, in the ACK: PCMU of the offered codecs, and VP8.
    let video = UdpSocket::bind("127.0.0.1:0").unwrap();
    let vport = video.local_addr().unwrap().port();
    let answer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n\
         m=video {vport} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\n"
    );
    let ack = request("ACK", uri, "d1", port, &answer).replacen(&format!("To: <{uri}>"), &to, 1);
    socket.send_to(ack.as_bytes(), node.sip).unwrap();
    // The leg's RTP comes, in PCMU (payload type 0), to the answer's address.
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs(10);
    let pt = loop {
        assert!(Instant::now() < end, "no RTP from the gateway");
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        if n >= 12 && buf[0] >> 6 == 2 {
            break buf[1] & 0x7f;
        }
    };
    assert_eq!(pt, 0, "PCMU, as the answer chose");
    // The caller's video (VP8 keyframes, one packet each) goes to the offered port
    // and on into the room.
    for i in 0..20u16 {
        let mut p = vec![0x80, 0x80 | 96];
        p.extend_from_slice(&i.to_be_bytes());
        p.extend_from_slice(&(u32::from(i) * 6000).to_be_bytes());
        p.extend_from_slice(&0x5eed_u32.to_be_bytes());
        // VP8 descriptor (S, partition 0), then a keyframe header.
        p.extend_from_slice(&[
            0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
        ]);
        p.resize(p.len() + 200, 0x5a);
        video.send_to(&p, ("127.0.0.1", video_port)).unwrap();
        std::thread::sleep(Duration::from_millis(66));
    }
    // The call is in its room.
    let api = RoomApi::new(&node.http, node.tokens(), "127.0.0.1".parse().unwrap());
    let observer = RoomPeer::join(&api, "late", "observer")
        .await
        .expect("an observer joins");
    let listed = observer.joined()["participants"].clone();
    observer.leave().await;
    let callers = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "sip")
        .count();
    assert_eq!(callers, 1, "{listed}");
    let bye = request("BYE", uri, "d1", port, "")
        .replacen(&format!("To: <{uri}>"), &to, 1)
        .replacen("CSeq: 1 BYE", "CSeq: 2 BYE", 1);
    socket.send_to(bye.as_bytes(), node.sip).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < end, "no 200 to the BYE");
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        if text.starts_with("SIP/2.0 200") && text.contains("BYE") {
            break;
        }
    }
    // Its end is logged with the codec the answer chose.
    let mut log = String::new();
    let end = Instant::now() + Duration::from_secs(5);
    while !log.contains("call ended") && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log.push_str(&node.log());
    }
    let ended = log.lines().find(|l| l.contains("call ended")).unwrap_or("");
    assert!(ended.contains("codec=Pcmu"), "{log}");
    let to_room = ended
        .split("video_to_room=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(to_room > 0, "the caller's video reached the room: {ended}");
}

/// A delayed offer where SRTP is required (outside dev mode, plain RTP not allowed):
/// the gateway's 200 offers RTP/SAVP with an SDES key of its own on each line; the
/// caller's answer in the ACK takes it with a key of the caller's; then the gateway's
/// RTP opens with the offered key only, and the caller's SRTP, sealed with its own
/// key, is taken in (counted in the call's end line). An answer in plain RTP to that
/// offer ends the call with a BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_offer_where_srtp_is_required_is_encrypted() {
    let secret = control::secret::generate();
    let node = Node::start(&["--secret", &secret, "--sip-trust", "127.0.0.0/8"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let uri = "sip:sealed@127.0.0.1";
    let invite = |call: &str| {
        final_response(
            &socket,
            node.sip,
            request("INVITE", uri, call, port, "").as_bytes(),
        )
        .expect("an answer to the INVITE")
    };
    let ack = |call: &str, ok: &str, answer: &str| {
        let to = ok
            .lines()
            .find(|l| l.starts_with("To:") || l.starts_with("t:"))
            .expect("a To header");
        let ack = request("ACK", uri, call, port, answer).replacen(&format!("To: <{uri}>"), to, 1);
        socket.send_to(ack.as_bytes(), node.sip).unwrap();
        to.to_owned()
    };
    let ok = invite("s1");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(
        ok.contains("m=audio ") && ok.contains("RTP/SAVP 8 0 9 111 101 102"),
        "{ok}"
    );
    assert_eq!(
        ok.matches("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
            .count(),
        2,
        "{ok}"
    );
    // The caller reads the offer and answers PCMA with a key of its own.
    let offer = &ok[ok.find("v=0").expect("an SDP body")..];
    let srtp_only = gateway::sdp::Policy {
        allow_plain_rtp: false,
    };
    let caller = gateway::sdp::choose(offer, srtp_only).expect("a served offer");
    let keys = caller.srtp.clone().expect("SDES keys");
    let answer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/SAVP 8\r\na=rtpmap:8 PCMA/8000\r\na={}\r\na=sendrecv\r\n\
         m=video 0 RTP/SAVP 96\r\n",
        keys.answer_line()
    );
    let to = ack("s1", &ok, &answer);
    let mut srtp = keys.contexts().unwrap();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs(10);
    let (mut opened, mut sealed) = (0, 0);
    while opened < 10 {
        assert!(
            Instant::now() < end,
            "no SRTP from the gateway ({sealed} packets unopened): {}",
            node.log()
        );
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        if n < 12 || buf[0] >> 6 != 2 {
            continue;
        }
        match srtp.unprotect(&buf[..n]) {
            Some(rtp) => {
                assert_eq!(rtp[1] & 0x7f, 8, "PCMA, as the answer chose");
                opened += 1;
            }
            None => sealed += 1,
        }
    }
    assert_eq!(sealed, 0, "every packet opened with the offered key");
    // The caller's audio, sealed with its key, into the room.
    for i in 0..50u16 {
        let mut rtp = Vec::new();
        gateway::rtp::write(
            &mut rtp,
            8,
            false,
            i,
            160 * u32::from(i),
            0xca11,
            &[0xd5; 160],
        );
        let packet = srtp.protect(&rtp).unwrap();
        socket
            .send_to(&packet, caller.remote.unwrap_or(node.sip))
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let bye = request("BYE", uri, "s1", port, "")
        .replacen(&format!("To: <{uri}>"), &to, 1)
        .replacen("CSeq: 1 BYE", "CSeq: 2 BYE", 1);
    assert_eq!(
        status(&final_response(&socket, node.sip, bye.as_bytes())),
        200
    );
    let mut log = String::new();
    let end = Instant::now() + Duration::from_secs(5);
    while !log.contains("call ended") && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log.push_str(&node.log());
    }
    let ended = log.lines().find(|l| l.contains("call ended")).unwrap_or("");
    let from_leg = ended
        .split("leg_packets=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(from_leg >= 40, "the caller's SRTP was taken in: {ended}");

    // A plain answer to the encrypted offer: the gateway hangs up.
    let ok = invite("s2");
    let plain = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n\
         m=video 0 RTP/AVP 96\r\n"
    );
    ack("s2", &ok, &plain);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < end, "no BYE for a plain answer");
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        if text.starts_with("BYE ") && text.contains("Call-ID: s2") {
            break;
        }
    }
}

/// A caller that re-keys its SRTP in a re-INVITE (as room systems do on resume from
/// hold): the gateway opens its audio with the new key from then on (before, the call
/// went silent), and answers with its own key unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_re_keys_in_a_re_invite_is_still_heard() {
    use gateway::srtp::OfferedKey;
    let secret = control::secret::generate();
    let node = Node::start(&["--secret", &secret, "--sip-trust", "127.0.0.0/8"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let uri = "sip:rekeyed@127.0.0.1";
    let offer = |key: &OfferedKey, version: u32| {
        format!(
            "v=0\r\no=- 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/SAVP 8\r\na=rtpmap:8 PCMA/8000\r\na={}\r\na=sendrecv\r\n",
            key.line()
        )
    };
    let srtp_only = gateway::sdp::Policy {
        allow_plain_rtp: false,
    };
    // The gateway's key, from its answer; ours, as offered.
    let keys = |answer: &str, ours: &OfferedKey| {
        let body = &answer[answer.find("v=0").expect("an SDP answer")..];
        let leg = gateway::sdp::choose(body, srtp_only).expect("an answer it reads");
        leg.srtp
            .and_then(|k| k.answering(ours))
            .expect("keys for the offered suite")
    };
    let first = OfferedKey::new();
    let invite = request("INVITE", uri, "k1", port, &offer(&first, 1));
    let ok = final_response(&socket, node.sip, invite.as_bytes()).expect("an answer");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let to = ok
        .lines()
        .find(|l| l.starts_with("To:") || l.starts_with("t:"))
        .expect("a To header")
        .to_owned();
    let in_dialog = |method: &str, cseq: u32, body: &str| {
        request(method, uri, "k1", port, body)
            .replacen(&format!("To: <{uri}>"), &to, 1)
            .replacen(
                &format!("CSeq: 1 {method}"),
                &format!("CSeq: {cseq} {method}"),
                1,
            )
            .replacen("-k1-INVITE", &format!("-k1-INVITE{cseq}"), 1)
    };
    socket
        .send_to(in_dialog("ACK", 1, "").as_bytes(), node.sip)
        .unwrap();
    let gateway_at = SocketAddr::new(
        "127.0.0.1".parse().unwrap(),
        ok.lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .expect("the gateway's RTP port"),
    );
    let mut seq = 0u16;
    let mut send = |keys: &gateway::srtp::Sdes| {
        let mut srtp = keys.contexts().unwrap();
        for _ in 0..40 {
            seq += 1;
            let mut rtp = Vec::new();
            let ts = 160 * u32::from(seq);
            gateway::rtp::write(&mut rtp, 8, false, seq, ts, 0xca11, &[0xd5; 160]);
            socket
                .send_to(&srtp.protect(&rtp).unwrap(), gateway_at)
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    send(&keys(&ok, &first));
    // The caller re-keys (tag 1, same suite, a new key).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = OfferedKey::new();
    let reinvite = in_dialog("INVITE", 2, &offer(&second, 2));
    let r = final_response(&socket, node.sip, reinvite.as_bytes()).expect("an answer");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert_eq!(
        keys(&r, &second).answer_line(),
        keys(&ok, &second).answer_line(),
        "the gateway's own key is unchanged"
    );
    socket
        .send_to(in_dialog("ACK", 2, "").as_bytes(), node.sip)
        .unwrap();
    send(&keys(&r, &second));
    let bye = in_dialog("BYE", 3, "");
    assert_eq!(
        status(&final_response(&socket, node.sip, bye.as_bytes())),
        200
    );
    let mut log = String::new();
    let end = Instant::now() + Duration::from_secs(5);
    while !log.contains("call ended") && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log.push_str(&node.log());
    }
    assert!(log.contains("the far end re-keyed its SRTP"), "{log}");
    let ended = log.lines().find(|l| l.contains("call ended")).unwrap_or("");
    let from_leg = ended
        .split("leg_packets=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(from_leg >= 75, "both keys' audio was taken in: {ended}");
}

/// A delayed offer into an H.264 room: the gateway's 200 offers VP8 and H.264, the
/// caller's answer in the ACK takes both, and the call's video is fitted to the
/// room's codec: its H.264 keyframes reach the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_offer_into_an_h264_room_sends_h264() {
    let node = Node::start(&[]);
    let r = node.create_room(serde_json::json!({"name": "lateh264", "video_codec": "h264"}));
    assert_eq!(r.await.status().as_u16(), 201);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let uri = "sip:lateh264@127.0.0.1";
    let ok = final_response(
        &socket,
        node.sip,
        request("INVITE", uri, "h1", port, "").as_bytes(),
    )
    .expect("an answer to the INVITE");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let video_port: u16 = ok
        .lines()
        .find_map(|l| l.strip_prefix("m=video "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("the 200 offers video: {ok}"));
    let to = ok
        .lines()
        .find(|l| l.starts_with("To:") || l.starts_with("t:"))
        .expect("a To header")
        .to_owned();
    // The answer takes both video formats (VP8 listed first).
    let video = UdpSocket::bind("127.0.0.1:0").unwrap();
    let vport = video.local_addr().unwrap().port();
    let answer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n\
         m=video {vport} RTP/AVP 96 97\r\na=rtpmap:96 VP8/90000\r\n\
         a=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n\
         a=sendrecv\r\n"
    );
    let ack = request("ACK", uri, "h1", port, &answer).replacen(&format!("To: <{uri}>"), &to, 1);
    socket.send_to(ack.as_bytes(), node.sip).unwrap();
    // The call is up once its audio comes.
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < end, "no RTP from the gateway");
        if let Ok(n) = socket.recv(&mut buf) {
            if n >= 12 && buf[0] >> 6 == 2 {
                break;
            }
        }
    }
    // H.264 keyframes (a STAP-A with SPS and PPS, then an IDR), payload type 97.
    let sps = [0x67, 0x42, 0xe0, 0x1f, 0xda, 0x02, 0x80, 0xf6, 0x80];
    let pps = [0x68, 0xce, 0x3c, 0x80];
    let mut stap = vec![24u8];
    for nal in [&sps[..], &pps[..]] {
        stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        stap.extend_from_slice(nal);
    }
    let mut idr = vec![0x65u8, 0x88, 0x84];
    idr.resize(300, 0x5a);
    let mut seq = 0u16;
    for i in 0..20u32 {
        for (payload, marker) in [(&stap, false), (&idr, true)] {
            let mut p = vec![0x80, if marker { 0x80 | 97 } else { 97 }];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(i * 6000).to_be_bytes());
            p.extend_from_slice(&0x2640_u32.to_be_bytes());
            p.extend_from_slice(payload);
            video.send_to(&p, ("127.0.0.1", video_port)).unwrap();
            seq += 1;
        }
        std::thread::sleep(Duration::from_millis(66));
    }
    let bye = request("BYE", uri, "h1", port, "")
        .replacen(&format!("To: <{uri}>"), &to, 1)
        .replacen("CSeq: 1 BYE", "CSeq: 2 BYE", 1);
    socket.send_to(bye.as_bytes(), node.sip).unwrap();
    let mut log = String::new();
    let end = Instant::now() + Duration::from_secs(5);
    while !log.contains("call ended") && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log.push_str(&node.log());
    }
    let ended = log.lines().find(|l| l.contains("call ended")).unwrap_or("");
    let to_room = ended
        .split("video_to_room=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(to_room > 0, "H.264 reached the H.264 room: {log}");
}

/// A call that asked for a session timer (RFC 4028: 90 s, the caller refreshing) and
/// never refreshes is hung up by the gateway a third of the interval before it would
/// expire (60 s in), with a BYE, and counted as expired. (A minute of waiting: 90 s
/// is the least interval RFC 4028 lets either side ask.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrefreshed_call_is_hung_up_before_its_session_expires() {
    let node = Node::start(&[]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let uri = "sip:lapsed@127.0.0.1";
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8\r\n"
    );
    let invite = request("INVITE", uri, "x1", port, &offer).replacen(
        "Max-Forwards:",
        "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\nMax-Forwards:",
        1,
    );
    let ok = final_response(&socket, node.sip, invite.as_bytes()).expect("an answer");
    let answered = Instant::now();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains("Session-Expires: 90;refresher=uac"), "{ok}");
    let to = ok
        .lines()
        .find(|l| l.starts_with("To:") || l.starts_with("t:"))
        .expect("a To header")
        .to_owned();
    let ack = request("ACK", uri, "x1", port, "").replacen(&format!("To: <{uri}>"), &to, 1);
    socket.send_to(ack.as_bytes(), node.sip).unwrap();
    // No refresh: the BYE comes (the gateway's RTP comes meanwhile).
    let mut buf = [0u8; 4096];
    let bye = loop {
        assert!(
            answered.elapsed() < Duration::from_secs(80),
            "no BYE 80 s after the 200: {}",
            node.log()
        );
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("BYE ") {
            break (text, from);
        }
    };
    let at = answered.elapsed();
    assert!(
        (Duration::from_secs(55)..Duration::from_secs(75)).contains(&at),
        "the BYE came {at:?} after the 200, not a third of 90 s before it expired"
    );
    assert!(bye.0.contains("Call-ID: x1"), "{}", bye.0);
    // Answered, as a caller does.
    let ok = response(&bye.0, "200 OK", None, "", "");
    socket.send_to(ok.as_bytes(), bye.1).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = reqwest::get(format!("{}/metrics", node.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("gateway_calls_total{result=\"expired\"} 1") {
            break;
        }
        assert!(Instant::now() < end, "not counted as expired:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Session timers (RFC 4028), as SBCs and call managers ask for them: an interval
/// under 90 s gets 422 with Min-SE; one it takes is answered with the caller as the
/// refresher, and a refresh (re-INVITE) is answered with the interval again. (The
/// BYE after an unrefreshed interval: the test above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_timers_are_negotiated_and_refreshes_answered() {
    let node = Node::start(&[]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let uri = "sip:timed@127.0.0.1";
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8\r\n"
    );
    let with = |msg: String, extra: &str| {
        msg.replacen("Max-Forwards:", &format!("{extra}Max-Forwards:"), 1)
    };
    let short = with(
        request("INVITE", uri, "t1", port, &offer),
        "Supported: timer\r\nSession-Expires: 30\r\n",
    );
    let r = final_response(&socket, node.sip, short.as_bytes()).expect("an answer");
    assert!(r.starts_with("SIP/2.0 422"), "{r}");
    assert!(r.contains("Min-SE: 90"), "{r}");
    // A caller that asks the gateway to refresh gets no timer (it sends no refreshes).
    let uas = with(
        request("INVITE", uri, "t0", port, &offer),
        "Supported: timer\r\nSession-Expires: 300;refresher=uas\r\n",
    );
    let r = final_response(&socket, node.sip, uas.as_bytes()).expect("an answer");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(!r.contains("Session-Expires"), "{r}");
    let to0 = r
        .lines()
        .find(|l| l.starts_with("To:"))
        .expect("a To header")
        .to_owned();
    let ack0 = request("ACK", uri, "t0", port, "").replacen(&format!("To: <{uri}>"), &to0, 1);
    socket.send_to(ack0.as_bytes(), node.sip).unwrap();
    let bye0 = request("BYE", uri, "t0", port, "")
        .replacen(&format!("To: <{uri}>"), &to0, 1)
        .replacen("CSeq: 1 BYE", "CSeq: 2 BYE", 1);
    socket.send_to(bye0.as_bytes(), node.sip).unwrap();

    let invite = with(
        request("INVITE", uri, "t2", port, &offer),
        "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n",
    );
    let ok = final_response(&socket, node.sip, invite.as_bytes()).expect("an answer");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains("Session-Expires: 120;refresher=uac"), "{ok}");
    assert!(ok.contains("Require: timer"), "{ok}");
    let to = ok
        .lines()
        .find(|l| l.starts_with("To:") || l.starts_with("t:"))
        .expect("a To header")
        .to_owned();
    let in_dialog = |method: &str, cseq: u32, body: &str| {
        request(method, uri, "t2", port, body)
            .replacen(&format!("To: <{uri}>"), &to, 1)
            .replacen(
                &format!("CSeq: 1 {method}"),
                &format!("CSeq: {cseq} {method}"),
                1,
            )
    };
    socket
        .send_to(in_dialog("ACK", 1, "").as_bytes(), node.sip)
        .unwrap();
    // The caller refreshes (a real one minutes later; here once the ACK has surely
    // confirmed the dialog: a re-INVITE crossing it is not taken): answered with the
    // call's SDP and the interval.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // This refresh asks a new interval: the answer takes it.
    let refresh = with(
        in_dialog("INVITE", 2, &offer).replacen("-t2-INVITE", "-t2-refresh", 1),
        "Supported: timer\r\nSession-Expires: 150;refresher=uac\r\n",
    );
    let r = final_response(&socket, node.sip, refresh.as_bytes())
        .unwrap_or_else(|| panic!("no answer to the refresh:\n{refresh}\n{}", node.log()));
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains("Session-Expires: 150;refresher=uac"), "{r}");
    assert!(r.contains("m=audio "), "{r}");
    socket
        .send_to(
            in_dialog("ACK", 2, "")
                .replacen("-t2-ACK", "-t2-ack2", 1)
                .as_bytes(),
            node.sip,
        )
        .unwrap();
    let r = final_response(&socket, node.sip, in_dialog("BYE", 3, "").as_bytes());
    assert_eq!(status(&r), 200, "{r:?}");
}

/// Dial-out where SRTP is required (outside dev mode, plain RTP not allowed), placed
/// by the room's host (a publisher, or a host of another room, may not): the
/// gateway's INVITE offers RTP/SAVP with an SDES key of its own; a far end (raw SIP
/// on a UDP socket here) answers with a key of its own; the call joins the room and
/// the gateway's RTP opens with the offered key; closing the room sends the BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_out_where_srtp_is_required_is_encrypted() {
    let secret = control::secret::generate();
    let node = Node::start(&["--secret", &secret]);
    let far = UdpSocket::bind("127.0.0.1:0").unwrap();
    far.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let port = far.local_addr().unwrap().port();
    let admin = mint(&secret, "*", "admin", "admin");
    let http = reqwest::Client::new();
    // The room's host dials (a publisher of the room may not).
    let dial = |token: String| {
        http.post(format!("{}/api/rooms/sealed/dial", node.http))
            .bearer_auth(token)
            .json(&serde_json::json!({ "uri": format!("sip:ward@127.0.0.1:{port}") }))
            .send()
    };
    let r = dial(mint(&secret, "sealed", "nurse", "publisher"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = dial(mint(&secret, "another", "dr", "host")).await.unwrap();
    assert_eq!(r.status().as_u16(), 403, "a host of another room");
    let r = dial(mint(&secret, "sealed", "dr", "host")).await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(10);
    let (invite, gateway) = loop {
        assert!(Instant::now() < end, "no INVITE from the gateway");
        if let Ok((n, from)) = far.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("INVITE ") {
                break (text, from);
            }
        }
    };
    let offer = &invite[invite.find("v=0").expect("an offer")..];
    assert!(offer.contains("RTP/SAVP 8 0 9 111 101 102"), "{offer}");
    assert!(
        offer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{offer}"
    );
    let srtp_only = gateway::sdp::Policy {
        allow_plain_rtp: false,
    };
    let keys = gateway::sdp::choose(offer, srtp_only)
        .expect("a served offer")
        .srtp
        .expect("SDES keys");
    let answer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na={}\r\na=sendrecv\r\n\
         m=video 0 RTP/SAVP 96\r\n",
        keys.answer_line()
    );
    // The 200 repeats the INVITE's Via, From, Call-ID and CSeq, and tags its To.
    let contact = format!("Contact: <sip:ward@127.0.0.1:{port}>\r\n");
    let ok = response(&invite, "200 OK", Some("far1"), &contact, &answer);
    far.send_to(ok.as_bytes(), gateway).unwrap();
    // The gateway's audio, sealed with the key it offered.
    let mut srtp = keys.contexts().unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    let mut opened = 0;
    while opened < 10 {
        assert!(
            Instant::now() < end,
            "no SRTP from the gateway: {}",
            node.log()
        );
        let Ok(n) = far.recv(&mut buf) else {
            continue;
        };
        if n < 12 || buf[0] >> 6 != 2 {
            continue;
        }
        if let Some(rtp) = srtp.unprotect(&buf[..n]) {
            assert_eq!(rtp[1] & 0x7f, 0, "PCMU, as the answer chose");
            opened += 1;
        }
    }
    // The far end's audio, sealed with its key, is taken in (its RTP port is the
    // offer's).
    let gateway_rtp = SocketAddr::new(
        "127.0.0.1".parse().unwrap(),
        offer
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .expect("the gateway's RTP port"),
    );
    for i in 0..50u16 {
        let mut rtp = Vec::new();
        gateway::rtp::write(
            &mut rtp,
            0,
            false,
            i,
            160 * u32::from(i),
            0xfa2,
            &[0xff; 160],
        );
        far.send_to(&srtp.protect(&rtp).unwrap(), gateway_rtp)
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // The room closes: the far end gets the BYE.
    let closed = http
        .delete(format!("{}/api/rooms/sealed", node.http))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status().as_u16(), 204);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < end, "no BYE");
        let Ok(n) = far.recv(&mut buf) else {
            continue;
        };
        if buf[..n].starts_with(b"BYE ") {
            break;
        }
    }
    let mut log = String::new();
    let end = Instant::now() + Duration::from_secs(5);
    while !log.contains("call ended") && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log.push_str(&node.log());
    }
    let ended = log.lines().find(|l| l.contains("call ended")).unwrap_or("");
    let from_far = ended
        .split("leg_packets=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(from_far >= 40, "the far end's SRTP was taken in: {ended}");
}

/// A far end that speaks SIP over TLS (RFC 3261 §26.2) on one accepted connection:
/// its certificate signed by a test CA, each SIP message it reads handed on, each
/// it is given written back.
struct TlsFarEnd {
    port: u16,
    heard: std::sync::mpsc::Receiver<String>,
    say: std::sync::mpsc::Sender<String>,
}

impl TlsFarEnd {
    fn start(cert_pem: &str, key_pem: &str) -> TlsFarEnd {
        use rustls::pki_types::pem::PemObject;
        use std::io::{Read, Write};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = std::sync::Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (heard_tx, heard) = std::sync::mpsc::channel();
        let (say, said) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            tcp.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let conn = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut got: Vec<u8> = Vec::new();
            let end = Instant::now() + Duration::from_secs(60);
            while Instant::now() < end {
                for text in said.try_iter() {
                    if tls
                        .write_all(text.as_bytes())
                        .and_then(|()| tls.flush())
                        .is_err()
                    {
                        return;
                    }
                }
                let mut buf = [0u8; 4096];
                match tls.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
                // Whole messages: headers, then Content-Length bytes of body.
                while let Some(h) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..h]).into_owned();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            let name = name.trim().to_ascii_lowercase();
                            (name == "content-length" || name == "l")
                                .then(|| value.trim().parse().ok())?
                        })
                        .unwrap_or(0usize);
                    if got.len() < h + 4 + length {
                        break;
                    }
                    let message: Vec<u8> = got.drain(..h + 4 + length).collect();
                    if heard_tx
                        .send(String::from_utf8_lossy(&message).into_owned())
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        TlsFarEnd { port, heard, say }
    }

    /// The next message that begins with `start`, within 10 s.
    fn next(&self, start: &str) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let m = self
                .heard
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {start} over TLS"));
            if m.starts_with(start) {
                return m;
            }
        }
    }
}

/// A room dials out over TLS (`sips:`, with `--sip-tls-ca`): the gateway connects to
/// the far end over TLS and checks its certificate against the CA, offers SDES-SRTP,
/// and the far end's answer brings the call into the room: its audio sealed with the
/// offered key; closing the room sends the BYE over the same TLS connection. (A
/// gateway without trust anchors places no `sips:` call: 400, in the test below.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_dials_out_over_tls() {
    let dir = std::env::temp_dir().join(format!("knudepunkt-sips-dial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    // The gateway's own certificate, for its TLS listener (the far end's requests).
    let (gw_cert, gw_key) = (dir.join("gw.pem"), dir.join("gw-key.pem"));
    std::fs::write(&gw_cert, cert.pem()).unwrap();
    std::fs::write(&gw_key, key.serialize_pem()).unwrap();
    let far = TlsFarEnd::start(&cert.pem(), &key.serialize_pem());
    let secret = control::secret::generate();
    let tls_node = |ca: &std::path::Path| {
        Node::start(&[
            "--secret",
            &secret,
            "--sip-tls-ca",
            ca.to_str().unwrap(),
            "--sip-tls-cert",
            gw_cert.to_str().unwrap(),
            "--sip-tls-key",
            gw_key.to_str().unwrap(),
        ])
    };
    let node = tls_node(&ca_file);
    let admin = mint(&secret, "*", "admin", "admin");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/rooms/secure/dial", node.http))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "uri": format!("sips:ward7@127.0.0.1:{}", far.port) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let invite = far.next("INVITE ");
    assert!(invite.contains("SIP/2.0/TLS"), "over TLS: {invite}");
    // Its Contact is the gateway's TLS listener.
    let contact = invite
        .lines()
        .find_map(|l| l.strip_prefix("Contact:").or_else(|| l.strip_prefix("m:")))
        .expect("a Contact")
        .trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let listener = format!("127.0.0.1:{}", node.sip.port() + 1);
    assert!(
        contact.contains(&listener) && contact.to_ascii_lowercase().contains("transport=tls"),
        "{contact}"
    );
    let offer = &invite[invite.find("v=0").expect("an offer")..];
    assert!(offer.contains("RTP/SAVP 8 0 9 111 101 102"), "{offer}");
    let srtp_only = gateway::sdp::Policy {
        allow_plain_rtp: false,
    };
    let keys = gateway::sdp::choose(offer, srtp_only)
        .expect("a served offer")
        .srtp
        .expect("SDES keys");
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    media
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let media_port = media.local_addr().unwrap().port();
    let answer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {media_port} RTP/SAVP 8\r\na=rtpmap:8 PCMA/8000\r\na={}\r\na=sendrecv\r\n\
         m=video 0 RTP/SAVP 96\r\n",
        keys.answer_line()
    );
    let far_contact = format!("Contact: <sips:ward7@127.0.0.1:{}>\r\n", far.port);
    let ok = response(&invite, "200 OK", Some("tls1"), &far_contact, &answer);
    far.say.send(ok).unwrap();
    far.next("ACK ");
    // Its audio, sealed with the offered key.
    let mut srtp = keys.contexts().unwrap();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs(15);
    let mut opened = 0;
    while opened < 10 {
        assert!(
            Instant::now() < end,
            "no SRTP from the gateway: {}",
            node.log()
        );
        let Ok(n) = media.recv(&mut buf) else {
            continue;
        };
        if n >= 12 && buf[0] >> 6 == 2 && srtp.unprotect(&buf[..n]).is_some() {
            opened += 1;
        }
    }
    // The far end hangs up: its BYE (over the connection) gets 200 and ends the call.
    let header = |names: [&str; 2]| {
        invite
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                names.contains(&n.trim()).then(|| v.trim().to_owned())
            })
            .expect("the header")
    };
    let (from, to, call_id) = (
        header(["From", "f"]),
        header(["To", "t"]),
        header(["Call-ID", "i"]),
    );
    let bye = format!(
        "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{};branch=z9hG4bK-farbye1\r\n\
         Max-Forwards: 70\r\nFrom: {to};tag=tls1\r\nTo: {from}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        far.port
    );
    far.say.send(bye).unwrap();
    let ok = far.next("SIP/2.0 200");
    assert!(ok.contains("BYE"), "{ok}");
    let end = Instant::now() + Duration::from_secs(5);
    let mut log = String::new();
    while !log.contains("call ended") {
        assert!(Instant::now() < end, "the call did not end: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        log.push_str(&node.log());
    }
    assert!(log.contains("ended=Hangup"), "{log}");

    // A gateway whose anchors are another CA's places no call to that far end.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let mut other = rcgen::CertificateParams::new(vec![]).unwrap();
    other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = dir.join("other-ca.pem");
    std::fs::write(&other_ca, other.self_signed(&other_key).unwrap().pem()).unwrap();
    let stranger = tls_node(&other_ca);
    let far = TlsFarEnd::start(&cert.pem(), &key.serialize_pem());
    let r = http
        .post(format!("{}/api/rooms/secure/dial", stranger.http))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "uri": format!("sips:ward7@127.0.0.1:{}", far.port) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert!(
        far.heard.recv_timeout(Duration::from_secs(3)).is_err(),
        "a far end whose certificate the anchors do not sign got a message"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Dial-out: the room calls a SIP endpoint (`POST /api/rooms/{room}/dial {"uri"}`): sipp
/// answers as a room system would (its built-in UAS scenario), the call joins the room
/// (an observer sees it as a SIP call), and closing the room ends it with a BYE (sipp
/// counts its one call as completed). A URI that is not SIP is refused; a room
/// that calls out too often is told to wait (429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_dials_out_and_the_call_joins_it() {
    let node = Node::start(&[]);
    let (port, media) = (free_udp_port(), free_udp_port());
    let mut uas = std::process::Command::new(sipp());
    uas.args(["-sn", "uas", "-i", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-mp", &media.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error"])
        .current_dir(std::env::temp_dir());
    let uas = tokio::task::spawn_blocking(move || uas.output().expect("sipp runs"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let http = reqwest::Client::new();
    let dial = |uri: String| {
        http.post(format!("{}/api/rooms/dialled/dial", node.http))
            .json(&serde_json::json!({ "uri": uri }))
            .send()
    };
    let r = dial("tel:+4512345678".into()).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // sips: (SIP over TLS) is not placed.
    let r = dial(format!("sips:clinic42@127.0.0.1:{port}"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = dial(format!("sip:clinic42@127.0.0.1:{port}"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    // A room calls out a few times a minute: the fourth try within the minute waits.
    let r = dial(format!("sip:clinic43@127.0.0.1:{port}"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);

    // Answered, the call is in the room: an observer sees it as a SIP call.
    let api = RoomApi::new(&node.http, node.tokens(), "127.0.0.1".parse().unwrap());
    let end = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let observer = RoomPeer::join(&api, "dialled", "observer")
            .await
            .expect("an observer joins");
        let listed = observer.joined()["participants"].clone();
        observer.leave().await;
        let sip = listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "sip");
        if sip || Instant::now() > end {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "sip"),
        "{listed}\n{}",
        node.log()
    );
    // The room closes: the call gets its BYE, and sipp's call completes.
    let closed = http
        .delete(format!("{}/api/rooms/dialled", node.http))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status().as_u16(), 204);
    let out = tokio::time::timeout(Duration::from_secs(20), uas)
        .await
        .expect("sipp ends")
        .unwrap();
    assert!(
        out.status.success(),
        "sipp: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
