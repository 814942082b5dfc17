//! Multi-process: a signalling node without an embedded media node, and two `sfu`
//! processes that register over QUIC. Rooms spread over both; killing one makes its
//! participants rejoin on the other, and media flows again.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{dev_token, get, Peer};
use futures_util::future::join_all;

fn sfu_binary() -> PathBuf {
    // target/debug/deps/multinode-... -> target/debug/sfu
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("sfu");
    assert!(
        bin.exists(),
        "{} missing: build it with `cargo build -p sfu` (`cargo test --workspace` does)",
        bin.display()
    );
    bin
}

struct Sfu(Child);

impl Drop for Sfu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_sfu(name: &str, signalling: std::net::SocketAddr, secret: &str) -> Sfu {
    Sfu(Command::new(sfu_binary())
        .args(["--signalling", &signalling.to_string(), "--name", name])
        .args(["--port", "0", "--shards", "1", "--metrics", "127.0.0.1:0"])
        .env("KNUDEPUNKT_NODE_SECRET", secret)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("sfu starts"))
}

async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_over_nodes_and_survive_losing_one() {
    let mut config = signalling::Config::local(1);
    config.embedded = None;
    config.quic = Some("127.0.0.1:0".parse().unwrap());
    let node_secret = control::secret::generate();
    config.node_secret = Some(node_secret.clone());
    let server = signalling::start(config).await.expect("signalling starts");
    let quic = server.quic_addr.unwrap();
    assert_eq!(
        get(&server, "/readyz", None).await.0,
        503,
        "not ready without media nodes"
    );

    let mut a = spawn_sfu("node-a", quic, &node_secret);
    let _b = spawn_sfu("node-b", quic, &node_secret);
    // A strong secret, but not the one: the node is refused.
    let _intruder = spawn_sfu("intruder", quic, &control::secret::generate());
    let cluster = &server.state.cluster;
    assert!(
        wait_for(Duration::from_secs(10), || cluster.ready_nodes() == 2).await,
        "both nodes register"
    );
    assert_eq!(get(&server, "/readyz", None).await.0, 200);
    assert!(
        wait_for(Duration::from_secs(5), || server
            .state
            .metrics
            .media_nodes_refused
            .get()
            >= 1)
        .await,
        "a node with the wrong secret is refused"
    );
    assert_eq!(cluster.ready_nodes(), 2);

    // Four rooms of two: placement spreads them over both nodes.
    let mut peers = Vec::new();
    for r in 0..4 {
        for who in ["x", "y"] {
            let room = format!("room{r}");
            let token = dev_token(&server, &room, who).await;
            peers.push((
                room.clone(),
                who,
                Peer::join(&server, &room, who, &token)
                    .await
                    .expect("joins"),
            ));
        }
    }
    let nodes = cluster.nodes();
    assert!(
        nodes.iter().all(|n| n.participants == 4),
        "rooms spread evenly: {nodes:?}"
    );
    join_all(
        peers
            .iter_mut()
            .map(|(_, _, p)| p.run(Duration::from_secs(4))),
    )
    .await;
    for (room, who, p) in &peers {
        assert!(
            p.frames() > 20,
            "{who} in {room} gets video before the loss: {:?}",
            p.frames_by_sender()
        );
    }
    // Each node's own report, its heartbeat, agrees and counts the media.
    let nodes = cluster.nodes();
    assert!(
        nodes
            .iter()
            .all(|n| n.load.participants == 4 && n.load.packets_per_second > 0.0),
        "heartbeats report each node's load: {nodes:?}"
    );

    // Lose node A: its participants are told, rejoin, and media flows again.
    let killed_at = Instant::now();
    a.0.kill().unwrap();
    let told = |peers: &[(String, &str, Peer)]| {
        peers
            .iter()
            .filter(|(_, _, p)| !p.saw("failed").is_empty())
            .count()
    };
    while told(&peers) < 4 && killed_at.elapsed() < Duration::from_secs(15) {
        join_all(
            peers
                .iter_mut()
                .map(|(_, _, p)| p.run(Duration::from_millis(500))),
        )
        .await;
    }
    let detected = killed_at.elapsed();
    let failed: Vec<usize> = (0..peers.len())
        .filter(|i| !peers[*i].2.saw("failed").is_empty())
        .collect();
    assert_eq!(
        failed.len(),
        4,
        "the lost node's four participants are told to rejoin"
    );
    assert!(wait_for(Duration::from_secs(5), || cluster.ready_nodes() == 1).await);
    for i in &failed {
        let (room, who, _) = &peers[*i];
        let token = dev_token(&server, room, who).await;
        let fresh = Peer::join(&server, room, who, &token)
            .await
            .expect("rejoins on the other node");
        peers[*i].2 = fresh;
    }
    join_all(
        peers
            .iter_mut()
            .map(|(_, _, p)| p.run(Duration::from_secs(4))),
    )
    .await;
    let recovered = killed_at.elapsed();
    for i in &failed {
        let (room, who, p) = &peers[*i];
        assert!(
            p.frames() > 20,
            "{who} in {room} gets video again after rejoining: {:?}",
            p.frames_by_sender()
        );
    }
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        nodes[0].participants, 8,
        "everyone is on the surviving node: {nodes:?}"
    );
    eprintln!("lost node detected and clients told in {detected:?}; media checked again after {recovered:?} (4 s of it checking)");
    let (_, metrics) = get(&server, "/metrics", None).await;
    assert!(metrics.contains("signalling_media_nodes_lost_total 1"));
    // Every event the real nodes sent was about their own rooms and sessions.
    assert!(
        metrics.contains("signalling_node_events_refused_total 0"),
        "{metrics}"
    );
    server.shutdown();
}
