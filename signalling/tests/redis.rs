//! Several signalling nodes sharing their state in a real Redis (`--redis`): two
//! signalling processes, two `sfu` processes registered with both, and the load
//! generator's clients spread over the two signalling nodes. Participants of one room
//! who came through different signalling nodes meet on one media node and hear each
//! other's room messages; when one signalling node is killed, its clients resume
//! their sessions through the other and keep their meeting.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::members::{run_all, Member};
use common::processes::{free_port, spawn_sfu, spawn_signalling_with, Process};

/// A `redis-server` of the test's own on a free loopback port, keeping nothing on
/// disk.
fn start_redis() -> (Process, u16) {
    let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("redis-server is not installed: `apt-get install redis-server` (scripts/test.sh installs it)");
    let port = free_port();
    let child = Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let process = Process(child);
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "redis-server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    (process, port)
}

async fn metrics(env: &client::env::Env, http: &str) -> String {
    let url = format!("http://{http}/metrics");
    match env.http.get(url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_nodes_share_rooms_in_redis_and_clients_of_a_killed_one_resume_on_the_other() {
    let (_redis, port) = start_redis();
    let redis = format!("redis://127.0.0.1:{port}");
    let (secret, node_secret) = (control::secret::generate(), control::secret::generate());
    let http = [0, 1].map(|_| format!("127.0.0.1:{}", free_port()));
    let quic = [0, 1].map(|_| format!("127.0.0.1:{}", free_port()));
    // Each signalling node keeps meeting records: exactly one writes each meeting's.
    let dirs = ["a", "b"].map(|n| {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("knudepunkt-redis-records-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    });
    let args = |i: usize| {
        let records = dirs[i].to_str().unwrap().to_owned();
        [
            "--redis".to_owned(),
            redis.clone(),
            "--records".to_owned(),
            records,
        ]
    };
    let (args_a, args_b) = (args(0), args(1));
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let mut a = spawn_signalling_with(&http[0], &quic[0], &secret, &node_secret, &args_a);
    let _b = spawn_signalling_with(&http[1], &quic[1], &secret, &node_secret, &args_b);
    let both = format!("{},{}", quic[0], quic[1]);
    // Each media node serves both signalling nodes.
    let extra = ["--control-grace", "30"];
    let _n1 = spawn_sfu("node-1", &both, &node_secret, &extra);
    let _n2 = spawn_sfu("node-2", &both, &node_secret, &extra);

    let opus = client::media::OpusFrames::new().expect("opus encoder");
    let clock = client::media::Clock(Instant::now());
    let mut env = client::env::Env::new(&format!("http://{}", http[0]), opus, clock);
    env.token_secret = Some(jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()));
    let end = Instant::now() + Duration::from_secs(15);
    for h in &http {
        while !metrics(&env, h)
            .await
            .contains("signalling_media_nodes{state=\"ready\"} 2")
        {
            assert!(Instant::now() < end, "both media nodes register with {h}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The load generator's clients spread over the two signalling nodes by number
    // (`loadtest --also-target`): 902 and 904 through A, 901 and 903 through B; each
    // resumes through the other if its own is lost.
    env.ws_fallbacks = vec![format!("ws://{}", http[1])];
    let mut members = Vec::new();
    for (id, room) in [(901, "r1"), (902, "r1"), (903, "r2"), (904, "r2")] {
        members.push(Member::join(&env, room, id).await);
    }
    let ids: Vec<String> = members
        .iter()
        .map(|m| m.session.participant().to_owned())
        .collect();
    // Who was in the room already, though on the other signalling node.
    for (late, early) in [(1, 0), (3, 2)] {
        let listed = &members[late].session.joined["participants"];
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["participant"] == ids[early].as_str()),
            "{} is told {} is in the room: {listed}",
            members[late].id,
            members[early].id
        );
    }
    run_all(&env, &mut members, Duration::from_secs(6)).await;
    // One media node per room: each hears and sees the other.
    let pairs = [(0, 902), (1, 901), (2, 904), (3, 903)];
    for (m, from) in pairs {
        let v = members[m].video_from(from);
        assert!(v > 20, "{} gets {from}'s video: {v}", members[m].id);
    }
    // A room message made on B reaches A's member of the room (Redis pub/sub).
    let mute = serde_json::json!({"type": "mute", "kind": "audio", "muted": true});
    members[0].session.send(&mute).await.unwrap();
    run_all(&env, &mut members, Duration::from_secs(1)).await;
    let told = members[1].saw("muted");
    assert!(
        told.iter().any(|m| m["participant"] == ids[0].as_str()),
        "902 (on A) told 901 (on B) muted: {:?}",
        members[1].session.events
    );

    // Signalling node A dies as a process does.
    let killed_at = Instant::now();
    a.0.kill().unwrap();
    let _ = a.0.wait();
    let before: Vec<u64> = pairs
        .iter()
        .map(|(m, f)| members[*m].video_from(*f))
        .collect();
    let resumed = |m: &[Member]| [1, 3].iter().all(|i| !m[*i].saw("resumed").is_empty());
    while !resumed(&members) && killed_at.elapsed() < Duration::from_secs(25) {
        run_all(&env, &mut members, Duration::from_millis(500)).await;
    }
    let took = killed_at.elapsed();
    for i in [1, 3] {
        let m = &members[i];
        let r = m.saw("resumed");
        assert_eq!(
            r.len(),
            1,
            "{} resumed once on B: {:?}",
            m.id,
            m.session.events
        );
        assert_eq!(r[0]["participant"], ids[i].as_str(), "the same participant");
        assert!(m.saw("failed").is_empty() && m.saw("closed").is_empty());
    }
    run_all(&env, &mut members, Duration::from_secs(3)).await;
    for (k, (m, from)) in pairs.iter().enumerate() {
        let v = members[*m].video_from(*from);
        assert!(
            v > before[k] + 20,
            "{} still gets {from}'s video after the kill: {} -> {v}",
            members[*m].id,
            before[k]
        );
    }
    // The meeting goes on through B: a newcomer (905: through B) meets the resumed
    // participant.
    members.push(Member::join(&env, "r1", 905).await);
    run_all(&env, &mut members, Duration::from_secs(4)).await;
    for from in [901, 902] {
        assert!(members[4].video_from(from) > 10, "905 gets {from}'s video");
    }
    assert!(
        members[1].video_from(905) > 10,
        "the resumed 902 gets 905's video"
    );

    let b = metrics(&env, &http[1]).await;
    for line in [
        "signalling_sessions_carried_total 2",
        "signalling_sessions_resumed_total 2",
        "signalling_node_events_refused_total 0",
        "signalling_redis_errors_total 0",
    ] {
        assert!(b.contains(line), "{line}:\n{b}");
    }
    eprintln!("signalling node A killed; its two clients resumed on B {took:?} after the kill");
    for m in &mut members {
        m.session.leave().await;
    }

    // One record per meeting, by the node that placed its room (B: the rooms' first
    // participants, 901 and 903, came through it), with the participants that came
    // through A counted in it; none by A.
    let records = |dir: &std::path::Path| -> Vec<serde_json::Value> {
        let Ok(files) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        files
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().starts_with("meetings-"))
            .flat_map(|f| {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                text.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let end = Instant::now() + Duration::from_secs(10);
    while records(&dirs[1]).len() < 2 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (by_a, by_b) = (records(&dirs[0]), records(&dirs[1]));
    assert!(by_a.is_empty(), "A recorded nothing: {by_a:?}");
    let mut counts: Vec<(u64, u64)> = by_b
        .iter()
        .map(|r| {
            let p = r["participants"].as_u64().unwrap();
            (p, r["by_kind"]["browser"].as_u64().unwrap_or(0))
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [(2, 2), (3, 3)],
        "one record per meeting, every participant counted once: {by_b:?}"
    );
    for r in &by_b {
        assert_eq!(r["ended"], "empty", "{r}");
        let line = r.to_string();
        assert_eq!(
            r["room_id"].as_str().unwrap().len(),
            13,
            "a reference: {line}"
        );
        assert!(
            !line.contains("\"r1\"") && !line.contains("\"r2\""),
            "no names: {line}"
        );
        assert!(!line.contains("m90"), "no identities: {line}");
    }
    for dir in &dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}
