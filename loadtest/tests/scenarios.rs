//! The load generator against a real signalling node with its embedded media node:
//! smoke passes, the same with impairment fails (exit 1), an unreachable target is an
//! error (exit 2). The short quarter replay is in `quarter.rs`, so that it runs alone.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn signalling_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("signalling");
    assert!(
        bin.exists(),
        "{} missing: build it with `cargo build -p signalling` (`cargo test --workspace` does)",
        bin.display()
    );
    bin
}

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn server() -> Server {
    let http = format!("127.0.0.1:{}", free_port());
    let child = Command::new(signalling_binary())
        .args([
            "--http",
            &http,
            "--udp-port",
            "0",
            "--joins-per-second",
            "500",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("signalling starts");
    let url = format!("http://{http}");
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&http).is_err() {
        assert!(Instant::now() < end, "signalling did not come up on {http}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child, url)
}

fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .output()
        .expect("loadtest runs")
}

fn report(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written"))
        .expect("report is JSON")
}

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
}
