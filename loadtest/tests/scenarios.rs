//! The load generator against a real signalling node with its embedded media node:
//! smoke passes, the same with impairment fails (exit 1), an unreachable target is an
//! error (exit 2). The short quarter replay is in `quarter.rs`, so that it runs alone.

mod common;

use common::{free_port, loadtest, report, server};

#[test]
fn smoke_passes_and_impaired_smoke_fails() {
    let s = server();
    let dir = std::env::temp_dir().join(format!("knudepunkt-lt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("smoke.json");
    let out = loadtest(&[
        "smoke",
        "--target",
        &s.1,
        "--report",
        path.to_str().unwrap(),
    ]);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "smoke passes");
    let r = report(&path);
    assert_eq!(r["passed"], true);
    for field in [
        "scenario",
        "meetings_started",
        "meetings_completed",
        "meetings_passed",
        "participants_peak",
        "concurrent_meetings_peak",
        "join_ms",
        "loss_pct",
        "delay_ms",
        "freeze_pct",
        "thresholds",
        "duration_s",
        "quarter_equivalent_meetings",
    ] {
        assert!(!r[field].is_null(), "report has {field}");
    }
    assert_eq!(r["meetings_passed"], r["meetings_started"]);
    assert!(r["join_ms"]["p95"].as_f64().unwrap() > 0.0);
    assert!(dir.join("smoke.concurrency.svg").exists() && dir.join("smoke.quality.svg").exists());

    // Dropping a fifth of what the clients receive must fail the thresholds.
    let path = dir.join("impaired.json");
    let out = loadtest(&[
        "smoke",
        "--target",
        &s.1,
        "--impair-drop-pct",
        "20",
        "--report",
        path.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "impaired smoke fails the thresholds"
    );
    let r = report(&path);
    assert_eq!(r["passed"], false);
    assert!(r["loss_pct"]["max"].as_f64().unwrap() > 1.0);

    // H.264 instead of VP8 (after the others: one load at a time on a small machine).
    let path = dir.join("h264.json");
    let out = loadtest(&[
        "smoke",
        "--codec",
        "h264",
        "--target",
        &s.1,
        "--report",
        path.to_str().unwrap(),
    ]);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "H.264 smoke passes");
    let r = report(&path);
    assert_eq!(r["details"]["load_generator"]["codec"], "h264");
    assert_eq!(r["meetings_passed"], r["meetings_started"]);
}

#[test]
fn an_unreachable_target_or_bad_arguments_are_errors() {
    let port = free_port();
    let out = loadtest(&["smoke", "--target", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
    let out = loadtest(&["steady", "--meetings", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = loadtest(&["smoke", "--layers", "7"]);
    assert_eq!(out.status.code(), Some(2));
    let out = loadtest(&["smoke", "--codec", "av1"]);
    assert_eq!(out.status.code(), Some(2));
}
