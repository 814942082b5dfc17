//! A short quarter replay (a hundred meetings, high speed-up) against a real
//! signalling node with its embedded media node completes, every participant receiving
//! every stream, under CI's bounds (ten times the product's timing thresholds).
//! In its own test binary, so that no other load runs beside it, and in optimised
//! builds (`cargo test --profile ci`, or `--release`), as a node serves meetings.

mod common;

use common::{conclusive, loadtest_ci, report, server_with};

// Quality is a real-time measure: judged against debug builds it measures the
// debug build's CPU (a 21 ms stall in a debug node failed a CI run), not the product.
// scripts/test.sh runs this test with `cargo test --profile ci` against optimised builds
// (release's optimisation without its link-time work).
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "judges real-time quality: run optimised, --profile ci or --release (scripts/test.sh does)"
)]
fn a_short_quarter_replay_completes_and_every_stream_arrives() {
    // One shard: on a 2-core machine the load generator needs the other core. It
    // yields it to the node when the node wants it (the node's delay is measured,
    // not the load generator's wait for a core).
    let s = server_with(&["--shards", "1"]);
    let path = std::env::temp_dir().join(format!("knudepunkt-q-{}.json", std::process::id()));
    let out = loadtest_ci(&[
        "quarter",
        "--threads",
        "1",
        "--yield-cpu",
        "--target",
        &s.1,
        "--meetings",
        "100",
        "--speedup",
        "16000",
        // Six seconds of media a meeting: enough frames per stream that its delay
        // p99 is a percentile, not the one worst frame (a single 28 ms stall of the
        // machine failed a 3-second stream in a CI rehearsal).
        "--min-media",
        "6",
        "--report",
        path.to_str().unwrap(),
    ]);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let r = report(&path);
    assert_eq!(r["details"]["load_generator"]["yield_cpu"], true);
    assert_eq!(r["meetings_completed"], 100);
    assert!(r["details"]["wall_time_s"].as_f64().unwrap() > 60.0);
    if conclusive(&r) {
        // What must always hold (the strict per-stream judgement is the benchmarks'):
        // every participant got every stream, loss over the streams stays within 1%,
        // and all but at most one meeting in a hundred pass every stream's bounds (an
        // allocator pause at a meeting's start, on a shared CI machine, can cost one
        // stream of six seconds a few frames).
        for f in r["failures"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            assert!(
                !f.contains("streams arrived") && !f.contains("no media received"),
                "{f}"
            );
        }
        assert!(r["loss_pct"]["p99"].as_f64().unwrap() <= 1.0, "loss p99");
        let passed = r["meetings_passed"].as_u64().unwrap();
        assert!(passed >= 99, "{passed} of 100 meetings passed");
        assert!(matches!(out.status.code(), Some(0 | 1)));
    }
}
