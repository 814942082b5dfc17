//! Helpers for the load generator's tests: a real signalling node (its binary,
//! with its embedded media node) on free loopback ports, and the loadtest binary.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn signalling_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("signalling");
    assert!(
        bin.exists(),
        "{} missing: build it with `cargo build -p signalling` (`cargo test --workspace` does)",
        bin.display()
    );
    bin
}

pub struct Server(pub Child, pub String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn server() -> Server {
    server_with(&[])
}

/// A signalling node with extra arguments.
pub fn server_with(extra: &[&str]) -> Server {
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
        .args(extra)
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

pub fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .output()
        .expect("loadtest runs")
}

pub fn report(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written"))
        .expect("report is JSON")
}
