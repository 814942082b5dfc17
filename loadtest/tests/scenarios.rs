//! The load generator against a real signalling node with its embedded media node:
//! smoke passes, the same with impairment fails (exit 1), a load generator that cannot
//! offer its load makes the run inconclusive (exit 3), an unreachable target is an
//! error (exit 2). The short quarter replay is in `quarter.rs`, so that it runs alone.

mod common;

use common::{conclusive, free_port, loadtest, loadtest_ci, report, server};

#[test]
fn smoke_passes_and_impaired_smoke_fails() {
    let s = server();
    let dir = std::env::temp_dir().join(format!("knudepunkt-lt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("smoke.json");
    let out = loadtest_ci(&[
        "smoke",
        "--target",
        &s.1,
        "--report",
        path.to_str().unwrap(),
    ]);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let r = report(&path);
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
        "valid",
        "video_layer_frames",
    ] {
        assert!(!r[field].is_null(), "report has {field}");
    }
    assert!(r["details"]["load_generator"]["offered"]["frames_planned"].as_u64() > Some(0));
    assert!(dir.join("smoke.concurrency.svg").exists() && dir.join("smoke.quality.svg").exists());
    if conclusive(&r) {
        assert_eq!(out.status.code(), Some(0), "smoke passes");
        assert_eq!(r["passed"], true);
        assert_eq!(r["meetings_passed"], r["meetings_started"]);
        assert!(r["join_ms"]["p95"].as_f64().unwrap() > 0.0);
    } else {
        assert_eq!(out.status.code(), Some(3));
    }

    // Dropping a fifth of what the clients receive must fail the thresholds.
    let path = dir.join("impaired.json");
    let out = loadtest_ci(&[
        "smoke",
        "--target",
        &s.1,
        "--impair-drop-pct",
        "20",
        "--report",
        path.to_str().unwrap(),
    ]);
    let r = report(&path);
    assert_eq!(r["passed"], false);
    assert!(r["loss_pct"]["max"].as_f64().unwrap() > 1.0);
    if conclusive(&r) {
        assert_eq!(
            out.status.code(),
            Some(1),
            "impaired smoke fails the thresholds"
        );
    }

    // A load generator that skips frames (here on purpose, 1 in 50: 2% > 0.1%) did not
    // offer its planned load: inconclusive, never passed, exit 3, and it says why.
    let path = dir.join("starved.json");
    let out = loadtest(&[
        "smoke",
        "--target",
        &s.1,
        "--inject-skip-every",
        "50",
        "--report",
        path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("INCONCLUSIVE"), "{stderr}");
    let r = report(&path);
    assert_eq!(r["valid"], false);
    assert_eq!(r["passed"], false);
    assert!(r["inconclusive"]
        .as_str()
        .unwrap()
        .contains("frames skipped"));

    // H.264 instead of VP8 (after the others: one load at a time on a small machine).
    let path = dir.join("h264.json");
    let out = loadtest_ci(&[
        "smoke",
        "--codec",
        "h264",
        "--target",
        &s.1,
        "--report",
        path.to_str().unwrap(),
    ]);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let r = report(&path);
    assert_eq!(r["details"]["load_generator"]["codec"], "h264");
    if conclusive(&r) {
        assert_eq!(out.status.code(), Some(0), "H.264 smoke passes");
        assert_eq!(r["meetings_passed"], r["meetings_started"]);
    }
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

/// One plan on two machines (here two processes side by side): `--slice 0/2` and
/// `--slice 1/2` run its two meetings, one each, and `loadtest merge` makes one
/// report of both, judged again. A report merged with itself is refused (a slice
/// twice).
#[test]
fn two_slices_of_a_plan_merge_into_one_report() {
    let s = server();
    let dir = std::env::temp_dir().join(format!("knudepunkt-lt-slices-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let paths: Vec<_> = (0..2).map(|i| dir.join(format!("slice{i}.json"))).collect();
    let runs: Vec<_> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (target, path) = (s.1.clone(), p.to_str().unwrap().to_owned());
            std::thread::spawn(move || {
                let slice = format!("{i}/2");
                loadtest_ci(&[
                    "smoke",
                    "--meetings",
                    "2",
                    "--target",
                    &target,
                    "--slice",
                    &slice,
                    "--report",
                    &path,
                ])
            })
        })
        .collect();
    for r in runs {
        let out = r.join().unwrap();
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    for p in &paths {
        let r = report(p);
        assert_eq!(r["meetings_started"], 1, "one meeting per slice");
        assert!(r["details"]["parts"]["aggregate"]["histograms"].is_array());
    }
    let all = dir.join("all.json");
    let (a, b) = (paths[0].to_str().unwrap(), paths[1].to_str().unwrap());
    let out = loadtest(&["merge", a, b, "--report", all.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let merged = report(&all);
    assert_eq!(merged["meetings_started"], 2, "{stderr}");
    assert_eq!(merged["meetings_completed"], 2);
    assert_eq!(
        merged["details"]["merged_from"].as_array().unwrap().len(),
        2
    );
    let joins = |r: &serde_json::Value| r["details"]["parts"]["tally"]["started"].as_u64();
    assert_eq!(joins(&merged), Some(2));
    if conclusive(&merged) {
        let both = [report(&paths[0]), report(&paths[1])];
        let expect = if both.iter().all(|r| r["passed"] == true) {
            0
        } else {
            1
        };
        assert_eq!(out.status.code(), Some(expect), "{stderr}");
    } else {
        assert_eq!(out.status.code(), Some(3), "{stderr}");
    }
    let out = loadtest(&["merge", a, a]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("twice"));
    let out = loadtest(&["smoke", "--slice", "2/2"]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
