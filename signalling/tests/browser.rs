//! A real browser end to end: two headless Chromium pages open the served client page
//! (`/?room=...`), publish camera and microphone (fake devices, VP8 simulcast) through
//! the embedded media node, and each must play the other's video.
//!
//! Needs Debian's Chromium and `playwright-core` in tests/browser/node_modules;
//! `./scripts/test.sh` installs both. Without them this test fails and says so.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chromium_pages_see_each_other() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        Path::new(&chromium()).exists(),
        "Chromium not found at {} (set CHROMIUM, or run ./scripts/test.sh, which installs Debian's chromium)",
        chromium()
    );
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core missing: run `npm ci` in {} (./scripts/test.sh does)",
        dir.display()
    );
    let server = signalling::start({
        let mut c = signalling::Config::local(1);
        c.joins_per_second = 50.0;
        c
    })
    .await
    .expect("server starts");
    let url = server.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(dir.join("two_pages.mjs"))
            .arg(url)
            .arg("browser-e2e")
            .env("BROWSER_TEST_TIMEOUT_MS", "45000")
            .output()
            .expect("node runs (Node.js must be installed)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("browser report:\n{stdout}\n{stderr}");
    let metrics = server.node.as_ref().unwrap().metrics().render();
    let forwarded: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("sfu_rtp_forwarded_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    server.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(out.status.success(), "both pages play each other's video");
    assert!(
        forwarded > 100,
        "the media went through the node ({forwarded} forwarded)"
    );
}
