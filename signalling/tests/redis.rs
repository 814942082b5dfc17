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
    let (redis_server, port) = start_redis();
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

    // A room created through A is known to B (its settings are in Redis), and goes
    // from B's list when A deletes it.
    let admin = common::sip::mint(&secret, "*", "admin", "admin");
    let rooms_at = |i: usize| {
        let (env, admin, url) = (&env, &admin, format!("http://{}/api/rooms", http[i]));
        async move {
            let r = env.http.get(url).bearer_auth(admin).send().await.unwrap();
            let v: serde_json::Value = r.json().await.unwrap();
            v["rooms"].as_array().unwrap().clone()
        }
    };
    let made = env
        .http
        .post(format!("http://{}/api/rooms", http[0]))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "settled", "alias": "4711", "video_codec": "vp8"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let known = |rooms: Vec<serde_json::Value>| rooms.iter().any(|r| r == "settled");
    let end = Instant::now() + Duration::from_secs(5);
    while !known(rooms_at(1).await) {
        assert!(Instant::now() < end, "B knows the room A created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = env
        .http
        .delete(format!("http://{}/api/rooms/settled", http[0]))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    let end = Instant::now() + Duration::from_secs(5);
    while known(rooms_at(1).await) {
        assert!(Instant::now() < end, "B forgets the room A deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A host through A mutes and removes a participant who came through B.
    let host_token = common::sip::mint(&secret, "r3", "host", "host");
    let mut host = client::websocket::Session::join(&env, "r3", &host_token, 906, false)
        .await
        .expect("the host joins (through A)");
    let mut guest = Member::join(&env, "r3", 907).await;
    let target = guest.session.participant().to_owned();
    let mute =
        serde_json::json!({"type": "mute_participant", "participant": target, "muted": true});
    host.send(&mute).await.unwrap();
    let mut host_measure = client::stats::Measure::new(Instant::now());
    let until = Instant::now() + Duration::from_secs(1);
    let (h, g) = tokio::join!(
        host.run(&env, until, &mut host_measure),
        guest.session.run(&env, until, &mut guest.measure)
    );
    assert!(h.is_ok() && g.is_ok(), "{h:?} {g:?}");
    assert!(
        guest
            .saw("muted")
            .iter()
            .any(|m| m["by_host"] == true && m["participant"] == target.as_str()),
        "907 (on B) told the host (on A) muted it: {:?}",
        guest.session.events
    );
    let remove = serde_json::json!({"type": "remove", "participant": target});
    host.send(&remove).await.unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    let (_, g) = tokio::join!(
        host.run(&env, until, &mut host_measure),
        guest.session.run(&env, until, &mut guest.measure)
    );
    assert!(
        matches!(&g, Ok(client::websocket::End::Closed(why)) if why.contains("removed")),
        "907 removed by the host on the other node: {g:?}"
    );
    host.leave().await;
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
    // The cluster's registry: each signalling node with both media nodes; then a
    // third media node that registers with A alone is one B has not.
    let listing = env
        .http
        .get(format!("http://{}/api/rooms", http[1]))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let registry = listing["cluster"]["signalling"].as_array().unwrap();
    assert_eq!(registry.len(), 2, "{listing}");
    for s in registry {
        let nodes = s["nodes"].as_object().unwrap();
        assert!(
            nodes.contains_key("node-1") && nodes.contains_key("node-2"),
            "{listing}"
        );
    }
    let unreached = |n: u32| format!("signalling_media_nodes{{state=\"unreached\"}} {n}");
    assert!(metrics(&env, &http[1]).await.contains(&unreached(0)));
    let lone = spawn_sfu("node-3", &quic[0], &node_secret, &[]);
    let end = Instant::now() + Duration::from_secs(10);
    while !metrics(&env, &http[1]).await.contains(&unreached(1)) {
        assert!(Instant::now() < end, "B counts node-3 unreached");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(lone);
    // Gone from A too before anything is placed again.
    let end = Instant::now() + Duration::from_secs(10);
    while !metrics(&env, &http[0])
        .await
        .contains("signalling_media_nodes{state=\"ready\"} 2")
    {
        assert!(Instant::now() < end, "A loses node-3");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Room r3 was placed through A (its host came first): A records it, with the
    // participant who came through B, before A is killed.
    let end = Instant::now() + Duration::from_secs(10);
    while records(&dirs[0]).is_empty() {
        assert!(Instant::now() < end, "A records r3");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The load generator's meetings too, spread over both signalling nodes
    // (`--also-target`), running through the kill.
    let report =
        std::env::temp_dir().join(format!("knudepunkt-redis-load-{}.json", std::process::id()));
    let load = Command::new(common::processes::binary("loadtest"))
        .args(["smoke", "--meetings", "2", "--duration", "16"])
        .args(["--target", &format!("http://{}", http[0])])
        .args(["--also-target", &format!("http://{}", http[1])])
        // The CI bounds of the load generator's own tests: a debug build on a busy
        // machine (loadtest/tests/common: CI_BOUNDS).
        .args(["--max-delay-p99-ms", "100", "--max-jitter-p99-ms", "200"])
        .args(["--max-join-p95-ms", "10000", "--max-freeze-pct", "5"])
        .arg("--report")
        .arg(&report)
        .env("KNUDEPUNKT_SECRET", &secret)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("loadtest starts");
    let load = Process(load);
    // Its five participants in (with this test's four), before the kill.
    let participants = |text: String| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with("signalling_participants "));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let here = participants(metrics(&env, &http[0]).await)
            + participants(metrics(&env, &http[1]).await);
        if here >= 9 {
            break;
        }
        assert!(
            Instant::now() < end,
            "the load generator's participants join: {here}"
        );
        run_all(&env, &mut members, Duration::from_millis(500)).await;
    }
    run_all(&env, &mut members, Duration::from_secs(1)).await;

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

    // The load generator's run passed its thresholds through the kill.
    let mut load = load;
    let end = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = load.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < end, "the load generator ends");
        run_all(&env, &mut members, Duration::from_millis(500)).await;
    };
    let judged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for file in [
        report.clone(),
        report.with_extension("concurrency.svg"),
        report.with_extension("quality.svg"),
    ] {
        let _ = std::fs::remove_file(file);
    }
    // Inconclusive (exit 3: the machine was too busy to offer the load) says nothing
    // of quality, and is said; the meetings must still have gone on.
    if status.code() == Some(3) {
        eprintln!("the load generator's run was inconclusive: its quality not judged");
    } else {
        assert!(
            status.success() && judged["passed"] == true,
            "the load generator's meetings pass through the kill: {status} {judged}"
        );
    }
    assert_eq!(judged["meetings_completed"], 2, "{judged}");

    // Every session handed to B was resumed there: this test's two, and those of the
    // load generator's that came through A (its participants are spread by their
    // random numbers: often some, sometimes none).
    let b = metrics(&env, &http[1]).await;
    let count = |name: &str| -> u64 {
        let line = b.lines().find(|l| l.starts_with(name)).unwrap_or_default();
        line.rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let carried = count("signalling_sessions_carried_total ");
    assert!(carried >= 2, "this test's two at least: {carried}\n{b}");
    eprintln!("sessions handed to B and resumed there: {carried}");
    assert_eq!(count("signalling_sessions_resumed_total "), carried, "{b}");
    for line in [
        "signalling_node_events_refused_total 0",
        "signalling_redis_errors_total 0",
    ] {
        assert!(b.contains(line), "{line}:\n{b}");
    }
    eprintln!("signalling node A killed; its two clients resumed on B {took:?} after the kill");
    for m in &mut members {
        m.session.leave().await;
    }

    // One record per meeting, by the node that placed its room (B placed r1 and r2:
    // their first participants, 901 and 903, came through it), with the participants
    // that came through A counted in it; r3's by A alone.
    // This test's rooms (the load generator's are recorded too).
    let refs = signalling::redact::Redactor::new(secret.as_bytes(), false);
    let ours = |r: &serde_json::Value| {
        ["r1", "r2", "r3"]
            .iter()
            .any(|n| r["room_id"] == refs.room(n))
    };
    let end = Instant::now() + Duration::from_secs(10);
    while records(&dirs[1]).into_iter().filter(ours).count() < 2 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (by_a, by_b): (Vec<_>, Vec<_>) = (
        records(&dirs[0]).into_iter().filter(ours).collect(),
        records(&dirs[1]).into_iter().filter(ours).collect(),
    );
    assert_eq!(by_a.len(), 1, "A recorded r3 alone: {by_a:?}");
    assert_eq!(by_a[0]["participants"], 2, "the host and 907: {by_a:?}");
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
    // r2's 904 came through A: counted by B from its join on (A handed B its steps),
    // not from its session's handover.
    let r2 = by_b
        .iter()
        .find(|r| r["room_id"] == refs.room("r2"))
        .unwrap();
    let (minutes, duration) = (
        r2["participant_minutes"].as_f64().unwrap(),
        r2["duration_s"].as_f64().unwrap(),
    );
    assert!(
        minutes * 60.0 > 1.8 * duration,
        "two participants throughout: {minutes} participant-minutes in {duration} s"
    );
    for r in by_a.iter().chain(&by_b) {
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

    // Redis gone: an operator closing a room is told 503 (its settings could not be
    // cleared), and the room's sessions on this signalling node are closed all the same.
    let opus = client::media::OpusFrames::new().expect("opus encoder");
    let mut env_b = client::env::Env::new(&format!("http://{}", http[1]), opus, clock);
    env_b.token_secret = env.token_secret.clone();
    let mut last = Member::join(&env_b, "r9", 909).await;
    drop(redis_server);
    let closing = env_b
        .http
        .delete(format!("http://{}/api/rooms/r9", http[1]))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(closing.status(), 503, "{:?}", closing.text().await);
    let until = Instant::now() + Duration::from_secs(3);
    let end = last.session.run(&env_b, until, &mut last.measure).await;
    assert!(
        matches!(&end, Ok(client::websocket::End::Closed(why)) if why.contains("closed")),
        "909 told its room was closed though Redis is gone: {end:?}"
    );
}

/// The placement script itself, from two signalling nodes' handles on one real
/// Redis: a live room stays where it is whatever either node would prefer, a room
/// whose node a signalling node does not reach is not placed twice, a gone node's
/// counts hold nothing, and two nodes placing one room at once agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_placed_once_for_all_signalling_nodes() {
    use signalling::shared::{Placed, RoomSettings, Shared};
    let (_redis, port) = start_redis();
    let url = format!("redis://127.0.0.1:{port}");
    let (a, b) = (
        Shared::connect(&url).await.unwrap(),
        Shared::connect(&url).await.unwrap(),
    );
    assert_ne!(a.instance, b.instance);
    let nodes = |l1: usize, l2: usize| vec![("n1".to_owned(), 10, l1), ("n2".to_owned(), 10, l2)];
    let on = |node: &str, new_room: bool| Placed::On {
        node: node.into(),
        new_room,
    };
    // Placed by A on its emptiest node; B, though it sees n1 emptier, joins it there.
    assert_eq!(a.place("r", &nodes(5, 0)).await.unwrap(), on("n2", true));
    assert_eq!(b.place("r", &nodes(0, 9)).await.unwrap(), on("n2", false));
    // A signalling node that does not reach n2 places it nowhere else while a live
    // signalling node has n2 (A's registry says so)...
    let status = |name: &str| signalling::cluster::NodeStatus {
        name: name.into(),
        participants: 0,
        capacity: 10,
        load: Default::default(),
    };
    a.publish_nodes(&[status("n1"), status("n2")])
        .await
        .unwrap();
    let only_n1 = vec![("n1".to_owned(), 10, 0)];
    assert_eq!(
        b.place("r", &only_n1).await.unwrap(),
        Placed::Elsewhere("n2".into())
    );
    // ... but once no live signalling node has n2 (it is gone), anew.
    a.publish_nodes(&[status("n1")]).await.unwrap();
    assert_eq!(b.place("r", &only_n1).await.unwrap(), on("n1", true));
    // Everyone gone: the next meeting is placed afresh.
    a.set_count("r", 0, "n1").await.unwrap();
    b.set_count("r", 0, "n1").await.unwrap();
    assert_eq!(b.place("r", &nodes(0, 9)).await.unwrap(), on("n1", true));
    // Full nodes take no new room.
    let full = vec![("n1".to_owned(), 1, 1)];
    assert_eq!(a.place("f", &full).await.unwrap(), Placed::Full);

    // A signalling node that never heartbeated (gone) holds no room in place, and
    // its meetings are recorded by whoever asks next.
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("knudepunkt:room:g")
        .arg(&["node", "n1", "c:999999", "3", "rec", "999999"])
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(b.recorder_of("g").await.unwrap(), b.instance, "taken over");
    assert_eq!(a.recorder_of("g").await.unwrap(), b.instance, "B's now");
    assert_eq!(a.place("g", &nodes(9, 0)).await.unwrap(), on("n2", true));
    assert_eq!(
        b.recorder_of("g").await.unwrap(),
        a.instance,
        "the placer records"
    );

    // Two signalling nodes placing the same rooms at once, each preferring another
    // node: every room lands on one.
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let races = (0..40).map(|i| {
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            let room = format!("race{i}");
            let (prefer_n1, prefer_n2) = (nodes(0, 9), nodes(9, 0));
            let (x, y) = tokio::join!(a.place(&room, &prefer_n1), b.place(&room, &prefer_n2));
            let node = |p: Placed| match p {
                Placed::On { node, .. } => node,
                other => panic!("{other:?}"),
            };
            (node(x.unwrap()), node(y.unwrap()))
        })
    });
    for race in futures_util::future::join_all(races).await {
        let (x, y) = race.unwrap();
        assert_eq!(x, y, "one node per room");
    }

    // Room settings made through one are read by the other (and by a node that
    // starts later).
    let settings = RoomSettings {
        declared: true,
        pin: Some("123456".into()),
        video_codec: Some("h264".into()),
        alias: Some("4711".into()),
        lobby: true,
    };
    a.store_settings("s", Some(settings.clone())).await.unwrap();
    let later = Shared::connect(&url).await.unwrap();
    let all = later.all_settings().await.unwrap();
    assert_eq!(all, [("s".to_owned(), settings)]);
    a.store_settings("s", None).await.unwrap();
    assert!(later.all_settings().await.unwrap().is_empty());
}
