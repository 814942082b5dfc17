//! Faults on the node's own link: the node in a network namespace of its own, its
//! clients in another, nftables dropping 5% of UDP each way at random. Judged as a
//! lossy link (`--lossy-link`): video recovers by retransmission (loss after it ≤ 1%,
//! no gap over 500 ms, recovery delay within its own bound), plain audio loss is
//! reported (about twice the link's: two hops, nothing recovers it), audio in RED
//! (`--audio-red`) is judged (loss after recovery ≤ 1%), join time judged apart.

mod common;

use common::netns::{LossyLink, CLIENT_IP, NODE_IP};
use common::{conclusive, report, signalling_binary, CI_BOUNDS};

#[test]
fn meetings_pass_over_a_link_that_loses_five_percent_each_way() {
    let link = LossyLink::new(5);
    let signalling = signalling_binary();
    let secret = std::process::Command::new(&signalling)
        .arg("secret")
        .output()
        .expect("signalling secret");
    let secret = String::from_utf8(secret.stdout).unwrap().trim().to_owned();
    let http = format!("{NODE_IP}:8080");
    let node = link.spawn_node(
        &signalling,
        &[
            "--http",
            &http,
            "--secret",
            &secret,
            "--udp-bind",
            NODE_IP,
            "--udp-port",
            "20000",
            "--joins-per-second",
            "500",
        ],
        "serving meetings",
    );
    let dir = std::env::temp_dir().join(format!("knudepunkt-lossy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = format!("http://{http}");
    let loadtest = env!("CARGO_BIN_EXE_loadtest");
    // One smoke run as the clients are, then one whose audio goes in RED.
    let run = |name: &str, extra: &[&str]| {
        let path = dir.join(format!("{name}.json"));
        let mut args = vec![
            "smoke",
            "--target",
            &target,
            "--secret",
            &secret,
            "--bind-ip",
            CLIENT_IP,
            "--lossy-link",
            // Long enough that one lost frame of the top layer (15 frames a second) is
            // well under the 1% bound: over the default 8 s, one frame in 81 was 1.2%.
            "--duration",
            "20",
            // Twice the product's recovery bound: CI's machine is shared and the build
            // unoptimised; the gap rule (none over 500 ms) stays as it is.
            "--max-recovery-p99-ms",
            "1000",
            "--max-lossy-join-p95-ms",
            "10000",
            "--report",
            path.to_str().unwrap(),
        ];
        args.extend(extra);
        args.extend(CI_BOUNDS);
        let mut out = link
            .client(loadtest, &args)
            .output()
            .expect("loadtest runs");
        if out.status.code() == Some(3) {
            eprintln!(
                "inconclusive, running once more:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out = link
                .client(loadtest, &args)
                .output()
                .expect("loadtest runs");
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("{name}:\n{stderr}");
        (out.status.code(), stderr, report(&path))
    };
    let (code, stderr, r) = run("lossy", &[]);
    let (red_code, red_stderr, red) = run("lossy-red", &["--audio-red"]);
    drop(node);
    let (node_side, client_side) = link.dropped();

    // The link did lose packets, each way, and plain audio shows it.
    assert!(
        node_side > 20 && client_side > 20,
        "dropped {node_side} / {client_side}"
    );
    let audio = r["audio_loss_pct"]["p50"].as_f64().unwrap();
    assert!(
        audio > 3.0,
        "audio lost {audio}%: the link should lose 5% each way"
    );
    assert_eq!(r["thresholds"]["lossy_link"], true);
    // Video frames came back by retransmission.
    assert!(
        r["recovery"]["frames_pct"].as_f64().unwrap() > 1.0,
        "{}",
        r["recovery"]
    );
    if conclusive(&r) {
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(r["passed"], true);
        assert_eq!(r["media_passed"], true);
        assert!(r["video_loss_pct"]["max"].as_f64().unwrap() <= 1.0);
    }
    // Audio in RED (two earlier frames in every packet, through the node as RED):
    // what the link lost comes back from the packets after it, and audio is judged.
    let red_audio = red["audio_loss_pct"]["max"].as_f64().unwrap();
    eprintln!("audio loss: {audio}% (p50) plain, {red_audio}% (max) in RED");
    assert_eq!(red["thresholds"]["audio_red"], true);
    // Whether or not the generator kept time: RED recovers most of what was lost.
    assert!(
        red_audio < audio / 3.0,
        "audio in RED lost {red_audio}%, plain audio {audio}%"
    );
    if conclusive(&red) {
        assert!(red_audio <= 1.0, "audio in RED lost {red_audio}%");
        assert_eq!(red_code, Some(0), "{red_stderr}");
        assert_eq!(red["media_passed"], true);
    }
}
