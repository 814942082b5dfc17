//! `--sip-share`: half the participants dial into their rooms through the node's SIP
//! gateway (`signalling --sip`) as plain-RTP legs. Every meeting must pass: the legs'
//! video reaches the WebRTC participants with its probes, the legs get the room's
//! mix (not silence, no stall) and its picture (judged as video); the report says
//! how many legs there were. A gateway that does not answer fails the run.

mod common;

use common::{conclusive, free_sip_port, loadtest, loadtest_ci, report, server_with};

#[test]
fn a_run_with_sip_legs_passes_and_judges_what_they_hear_and_see() {
    let sip = format!("127.0.0.1:{}", free_sip_port());
    let s = server_with(&["--sip", &sip]);
    let dir = std::env::temp_dir().join(format!("knudepunkt-lt-sip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sip.json");
    let out = loadtest_ci(&[
        "smoke",
        "--meetings",
        "3",
        "--target",
        &s.1,
        "--sip",
        &sip,
        "--sip-share",
        "50",
        "--report",
        path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    let r = report(&path);
    let legs = &r["details"]["load_generator"]["sip"];
    assert_eq!(legs["share_pct"], 50.0);
    let participants = r["participants_peak"].as_u64().unwrap();
    assert!(legs["legs"].as_u64().unwrap() >= 2, "{legs}");
    assert!(
        legs["legs"].as_u64().unwrap() <= participants.max(2),
        "{legs}"
    );
    // What the legs saw and heard, as the report gives it.
    assert_eq!(r["sip_legs"]["legs"], legs["legs"]);
    assert!(
        r["sip_legs"]["picture_delay_p99_ms"]["p99"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        stderr.contains("SIP legs ("),
        "the summary has the legs' row"
    );
    if conclusive(&r) {
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(r["meetings_passed"], r["meetings_started"]);
    }

    // Nobody answers SIP there: every leg fails its meeting, and the run fails.
    let out = loadtest(&[
        "smoke",
        "--meetings",
        "1",
        "--duration",
        "2",
        "--target",
        &s.1,
        "--sip",
        &format!("127.0.0.1:{}", free_sip_port()),
        "--sip-share",
        "100",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not answer the INVITE"), "{stderr}");

    // The share needs the gateway's address, and a share is a percentage.
    let out = loadtest(&["smoke", "--target", &s.1, "--sip-share", "10"]);
    assert_eq!(out.status.code(), Some(2));
    let out = loadtest(&[
        "smoke",
        "--target",
        &s.1,
        "--sip",
        &sip,
        "--sip-share",
        "120",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
