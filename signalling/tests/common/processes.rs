//! The product's own binaries as processes, for tests that kill them as a crash does:
//! `signalling` without its embedded node, and `sfu` nodes registering over QUIC.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process, killed when dropped (a failed test included).
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A binary next to the test's own build (`cargo test --workspace` builds both).
pub fn binary(name: &str) -> PathBuf {
    // target/debug/deps/<test>-<hash> -> target/debug/<name>
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        bin.exists(),
        "{} missing: build it with `cargo build -p {name}` (`cargo test --workspace` does)",
        bin.display()
    );
    bin
}

/// A free loopback port (for UDP and TCP alike on this test machine).
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A media node registering with `signalling` (its `--quic` address, or several,
/// comma-separated), with `extra` arguments.
pub fn spawn_sfu(
    name: &str,
    signalling: impl std::fmt::Display,
    secret: &str,
    extra: &[&str],
) -> Process {
    Process(
        Command::new(binary("sfu"))
            .args(["--signalling", &signalling.to_string(), "--name", name])
            .args(["--port", "0", "--shards", "1", "--metrics", "127.0.0.1:0"])
            .args(extra)
            .env("KNUDEPUNKT_NODE_SECRET", secret)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("sfu starts"),
    )
}

/// The signalling node with no embedded media node, serving HTTP on `http` and
/// taking media nodes on `quic`; returns once it accepts connections.
pub fn spawn_signalling(http: &str, quic: &str, secret: &str, node_secret: &str) -> Process {
    spawn_signalling_with(http, quic, secret, node_secret, &[])
}

/// [`spawn_signalling`] with `extra` arguments.
pub fn spawn_signalling_with(
    http: &str,
    quic: &str,
    secret: &str,
    node_secret: &str,
    extra: &[&str],
) -> Process {
    let child = Command::new(binary("signalling"))
        .args(["--http", http, "--no-embedded-sfu", "--quic", quic])
        .args(extra)
        .env("KNUDEPUNKT_SECRET", secret)
        .env("KNUDEPUNKT_NODE_SECRET", node_secret)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("signalling starts");
    let process = Process(child);
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(http).is_err() {
        assert!(Instant::now() < end, "signalling did not come up on {http}");
        std::thread::sleep(Duration::from_millis(50));
    }
    process
}
