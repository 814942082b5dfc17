//! Multi-process: a signalling node without an embedded media node, and two `sfu`
//! processes that register over QUIC. Rooms spread over both; killing one makes its
//! participants rejoin on the other, and media flows again. Killing the signalling
//! node instead interrupts no media: the node keeps its participants, hands them to
//! the restarted signalling node, and their clients resume over new WebSockets.

mod common;

use std::time::{Duration, Instant};

use common::members::{run_all, wait_for, Member};
use common::processes::{free_port, spawn_sfu, spawn_signalling};
use common::{dev_token, get, Peer};
use futures_util::future::join_all;

/// A signalling node with no embedded media node, taking `sfu` nodes over QUIC:
/// the node, where they register, and their secret.
async fn signalling_for_nodes() -> (signalling::Server, std::net::SocketAddr, String) {
    let mut config = signalling::Config::local(1);
    config.embedded = None;
    config.quic = Some("127.0.0.1:0".parse().unwrap());
    let node_secret = control::secret::generate();
    config.node_secret = Some(node_secret.clone());
    let server = signalling::start(config).await.expect("signalling starts");
    let quic = server.quic_addr.unwrap();
    (server, quic, node_secret)
}

/// One multi-process test at a time: each runs media nodes and clients of its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_over_nodes_and_survive_losing_one() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (server, quic, node_secret) = signalling_for_nodes().await;
    assert_eq!(
        get(&server, "/readyz", None).await.0,
        503,
        "not ready without media nodes"
    );

    let mut a = spawn_sfu("node-a", quic, &node_secret, &[]);
    let _b = spawn_sfu("node-b", quic, &node_secret, &[]);
    // A strong secret, but not the one: the node is refused.
    let _intruder = spawn_sfu("intruder", quic, &control::secret::generate(), &[]);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_goes_on_through_a_signalling_restart() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (secret, node_secret) = (control::secret::generate(), control::secret::generate());
    let http = format!("127.0.0.1:{}", free_port());
    let quic = format!("127.0.0.1:{}", free_port());
    let mut signalling = spawn_signalling(&http, &quic, &secret, &node_secret);
    // A grace period shorter than the time the node is registered before the
    // restart: it must count from the loss of the connection.
    let _node = spawn_sfu("node-a", &quic, &node_secret, &["--control-grace", "12"]);

    let opus = client::media::OpusFrames::new().expect("opus encoder");
    let clock = client::media::Clock(Instant::now());
    let mut env = client::env::Env::new(&format!("http://{http}"), opus, clock);
    env.token_secret = Some(jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()));
    let ready = || async {
        let url = format!("http://{http}/readyz");
        matches!(env.http.get(&url).send().await, Ok(r) if r.status() == 200)
    };
    let end = Instant::now() + Duration::from_secs(10);
    while !ready().await {
        assert!(Instant::now() < end, "the media node registers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 901 is the room's host (by its token).
    let host_token = common::sip::mint(&secret, "r", "host", "host");
    let mut host = client::websocket::Session::join(&env, "r", &host_token, 901, false)
        .await
        .expect("the host joins");
    host.keep_events();
    let host = Member {
        session: host,
        measure: client::stats::Measure::new(Instant::now()),
        id: 901,
    };
    let mut members = vec![host, Member::join(&env, "r", 902).await];
    let ids: Vec<String> = members
        .iter()
        .map(|m| m.session.participant().to_owned())
        .collect();
    run_all(&env, &mut members, Duration::from_secs(13)).await;
    let before = [members[0].video_from(902), members[1].video_from(901)];
    assert!(
        before.iter().all(|n| *n > 20),
        "video flows first: {before:?}"
    );

    // The signalling node dies as a process does: no goodbye to anyone.
    let killed_at = Instant::now();
    signalling.0.kill().unwrap();
    let _ = signalling.0.wait();
    run_all(&env, &mut members, Duration::from_secs(2)).await;
    let while_down = [members[0].video_from(902), members[1].video_from(901)];
    assert!(
        while_down[0] > before[0] + 20 && while_down[1] > before[1] + 20,
        "media goes on while signalling is down: {before:?} -> {while_down:?}"
    );

    // Back on the same addresses: the node hands its sessions back and the clients
    // resume them, same participants, same peer connections (the same `Session`s).
    let _restarted = spawn_signalling(&http, &quic, &secret, &node_secret);
    let resumed = |m: &[Member]| m.iter().all(|m| !m.saw("resumed").is_empty());
    while !resumed(&members) && killed_at.elapsed() < Duration::from_secs(25) {
        run_all(&env, &mut members, Duration::from_millis(500)).await;
    }
    let took = killed_at.elapsed();
    for (m, id) in members.iter().zip(&ids) {
        let r = m.saw("resumed");
        assert_eq!(r.len(), 1, "{} resumed once: {:?}", m.id, m.session.events);
        assert_eq!(r[0]["participant"], id.as_str(), "the same participant");
        assert!(m.saw("failed").is_empty() && m.saw("joined").is_empty());
    }
    let after_resume = [members[0].video_from(902), members[1].video_from(901)];
    assert!(
        after_resume[0] > while_down[0] && after_resume[1] > while_down[1],
        "video kept flowing: {while_down:?} -> {after_resume:?}"
    );
    // The host hosts on through the restart: its mute of 902 is made (a guest's would
    // be refused), and it was told who waits again (after `resumed`, in its queue).
    let mute =
        serde_json::json!({"type": "mute_participant", "participant": ids[1], "muted": true});
    members[0].session.send(&mute).await.unwrap();
    run_all(&env, &mut members, Duration::from_secs(1)).await;
    assert_eq!(
        members[0].saw("lobby").len(),
        2,
        "{:?}",
        members[0].session.events
    );
    assert!(
        members[1]
            .saw("muted")
            .iter()
            .any(|m| m["by_host"] == true && m["participant"] == ids[1].as_str()),
        "902 muted by the resumed host: {:?}",
        members[1].session.events
    );

    // Renegotiation works over the resumed WebSockets: a newcomer's media reaches both.
    members.push(Member::join(&env, "r", 903).await);
    run_all(&env, &mut members, Duration::from_secs(5)).await;
    for m in &members[..2] {
        assert!(m.video_from(903) > 10, "{} gets the newcomer's video", m.id);
    }
    assert!(members[2].video_from(901) > 10 && members[2].video_from(902) > 10);
    for m in &members[..2] {
        let stream = m
            .measure
            .streams
            .get(&(
                if m.id == 901 { 902 } else { 901 },
                client::stats::StreamKind::Video,
            ))
            .unwrap()
            .finish(clock_us(&env));
        assert!(
            stream.max_gap_ms < 1000.0,
            "{}: no video gap of a second or more through the restart: {stream:?}",
            m.id
        );
        eprintln!(
            "{}: video through the restart: {} frames, longest gap {:.0} ms, loss {:.2}%",
            m.id, stream.frames, stream.max_gap_ms, stream.loss_pct
        );
    }
    let metrics = env
        .http
        .get(format!("http://{http}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "signalling_sessions_carried_total 2",
        "signalling_sessions_resumed_total 2",
        "signalling_node_events_refused_total 0",
    ] {
        assert!(metrics.contains(line), "{line}:\n{metrics}");
    }
    eprintln!("signalling killed and restarted; both sessions resumed {took:?} after the kill");
    for m in &mut members {
        m.session.leave().await;
    }
}

fn clock_us(env: &client::env::Env) -> u64 {
    env.clock.us(Instant::now())
}

/// A media node stopped with SIGTERM drains: its heartbeat says so, the signalling
/// node places new rooms on the other node, a late joiner of its running meeting
/// still comes to it (the meeting is not split), and once that meeting ends the node
/// stops by itself. A second node stopped with SIGTERM twice stops at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_media_node_takes_no_new_room_and_stops_when_its_meeting_ends() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (server, quic, node_secret) = signalling_for_nodes().await;
    let cluster = &server.state.cluster;
    let mut a = spawn_sfu("node-a", quic, &node_secret, &[]);
    assert!(wait_for(Duration::from_secs(10), || cluster.ready_nodes() == 1).await);
    let join = |room: &'static str, who: &'static str| {
        let server = &server;
        async move {
            let token = dev_token(server, room, who).await;
            Peer::join(server, room, who, &token).await.expect("joins")
        }
    };
    let node_of = |room: &'static str| {
        let server = &server;
        async move {
            let (_, body) = get(server, &format!("/api/rooms/{room}"), None).await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["node"].as_str().unwrap_or("").to_owned()
        }
    };
    let mut x = join("early", "x").await;
    assert_eq!(node_of("early").await, "node-a");
    let b = spawn_sfu("node-b", quic, &node_secret, &[]);
    assert!(wait_for(Duration::from_secs(10), || cluster.ready_nodes() == 2).await);

    let term = |p: &common::processes::Process| {
        let pid = p.0.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
    };
    term(&a);
    let draining = |name: &str| {
        cluster
            .nodes()
            .iter()
            .any(|n| n.name == name && n.load.draining)
    };
    assert!(
        wait_for(Duration::from_secs(5), || draining("node-a")).await,
        "the heartbeat says node-a drains"
    );
    // New rooms go to node-b (from the second on, node-a would be the emptier).
    let mut later = Vec::new();
    for room in ["later1", "later2", "later3"] {
        later.push(join(room, "z").await);
        assert_eq!(node_of(room).await, "node-b", "{room}");
    }
    // A late joiner of the running meeting meets it on node-a.
    let mut y = join("early", "y").await;
    assert_eq!(node_of("early").await, "node-a");
    tokio::join!(x.run(Duration::from_secs(2)), y.run(Duration::from_secs(2)));
    assert!(x.frames_from(&y) > 10, "the meeting goes on on node-a");
    assert!(
        a.0.try_wait().unwrap().is_none(),
        "node-a waits for its meeting"
    );
    // The meeting ends: node-a stops by itself, cleanly.
    for p in [&mut x, &mut y] {
        p.send(serde_json::json!({"type": "leave"})).await;
    }
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = a.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < end,
            "node-a did not stop after its meeting ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    // node-b has meetings: one SIGTERM drains it, a second stops it at once.
    let mut b = b;
    term(&b);
    assert!(wait_for(Duration::from_secs(5), || draining("node-b")).await);
    assert!(
        b.0.try_wait().unwrap().is_none(),
        "node-b drains while its meetings run"
    );
    term(&b);
    let end = Instant::now() + Duration::from_secs(5);
    while b.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < end,
            "a second SIGTERM stops node-b at once"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(later);
    server.shutdown();
}

/// The `signalling` process on SIGTERM (what systemd and Kubernetes send): it
/// drains, `/readyz` answers 503 while a meeting runs, and a second SIGTERM stops it
/// at once; with no meeting, one SIGTERM stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signalling_process_drains_on_sigterm() {
    let _one = ONE_AT_A_TIME.lock().await;
    let http = format!("127.0.0.1:{}", free_port());
    let start = |http: &str| {
        common::processes::Process(
            std::process::Command::new(common::processes::binary("signalling"))
                .args(["--http", http, "--udp-port", "0", "--shards", "1"])
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("signalling starts"),
        )
    };
    let ready = |http: &str| {
        let http = http.to_owned();
        async move {
            let r = reqwest::get(format!("http://{http}/readyz")).await;
            r.map(|r| r.status().as_u16()).unwrap_or(0)
        }
    };
    let term = |p: &common::processes::Process| {
        let pid = p.0.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(sent.unwrap().success());
    };
    let stops_within = |p: &mut common::processes::Process, limit: Duration| {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = p.0.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut node = start(&http);
    let end = Instant::now() + Duration::from_secs(20);
    while ready(&http).await != 200 {
        assert!(Instant::now() < end, "signalling did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A meeting runs: one SIGTERM drains, a second stops.
    let url = format!("http://{http}");
    let env = std::sync::Arc::new(client::env::Env::new(
        &url,
        client::media::OpusFrames::new().unwrap(),
        client::media::Clock(Instant::now()),
    ));
    let token: serde_json::Value = reqwest::get(format!("{url}/api/dev-token?room=r&identity=a"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session =
        client::websocket::Session::join(&env, "r", token["token"].as_str().unwrap(), 1, false)
            .await
            .unwrap_or_else(|_| panic!("a participant joins"));
    term(&node);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ready(&http).await, 503, "draining: not ready");
    assert!(
        node.0.try_wait().unwrap().is_none(),
        "the meeting keeps it running"
    );
    term(&node);
    let status =
        stops_within(&mut node, Duration::from_secs(5)).expect("a second SIGTERM stops it");
    assert!(status.success(), "{status}");
    drop(session);
    // No meeting: one SIGTERM stops it.
    let mut node = start(&http);
    let end = Instant::now() + Duration::from_secs(20);
    while ready(&http).await != 200 {
        assert!(Instant::now() < end, "signalling did not come up again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    term(&node);
    let status =
        stops_within(&mut node, Duration::from_secs(5)).expect("one SIGTERM stops an idle node");
    assert!(status.success(), "{status}");
}
