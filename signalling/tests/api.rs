//! The signalling API over real HTTP and WebSocket, with real str0m peers.

mod common;

use std::time::Duration;

use common::{connect, dev_token, get, recv, send, start_server, Peer};
use serde_json::json;
use signalling::token::{Keys, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_exchange_media_events_and_leave() {
    let server = start_server(None, 10).await;
    let ta = dev_token(&server, "consult", "alice").await;
    let tb = dev_token(&server, "consult", "bob").await;
    let mut a = Peer::join(&server, "consult", "alice", &ta)
        .await
        .expect("alice joins");
    let mut b = Peer::join(&server, "consult", "bob", &tb)
        .await
        .expect("bob joins");
    // Bob's welcome lists Alice.
    assert_eq!(b.joined()["participants"][0]["identity"], "alice");
    tokio::join!(a.run(Duration::from_secs(6)), b.run(Duration::from_secs(6)));

    let joined = a.saw("participant_joined");
    assert!(joined
        .iter()
        .any(|e| e["identity"] == "bob" && e["participant"] == b.me));
    let published = a.saw("track_published");
    assert!(published
        .iter()
        .any(|e| e["kind"] == "video" && e["participant"] == b.me && e["stream"] == b.me));
    assert!(published
        .iter()
        .any(|e| e["kind"] == "audio" && e["participant"] == b.me));
    assert!(
        a.frames_from(&b) > 30,
        "alice gets bob's video: {:?}",
        a.frames_by_sender()
    );
    assert!(b.frames_from(&a) > 30, "bob gets alice's video");

    // Preferences: pause bob's video for alice, and a bad layer is refused.
    let track = published.iter().find(|e| e["kind"] == "video").unwrap()["track"].clone();
    a.send(json!({"type": "preference", "track": track, "max_layer": 7}))
        .await;
    a.send(json!({"type": "mute", "kind": "audio", "muted": true}))
        .await;
    tokio::join!(a.run(Duration::from_secs(1)), b.run(Duration::from_secs(1)));
    assert!(a
        .saw("error")
        .iter()
        .any(|e| e["message"].as_str().unwrap().contains("max_layer")));
    assert!(b
        .saw("muted")
        .iter()
        .any(|e| e["participant"] == a.me && e["muted"] == true));
    // Bob leaves: Alice is told, and his tracks are gone.
    b.send(json!({"type": "leave"})).await;
    a.run(Duration::from_secs(2)).await;
    assert!(a
        .saw("participant_left")
        .iter()
        .any(|e| e["participant"] == b.me));
    assert!(a
        .saw("track_unpublished")
        .iter()
        .any(|e| e["participant"] == b.me));

    let (status, metrics) = get(&server, "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("signalling_joins_total{result=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("sfu_rtp_forwarded_total"));
    server.shutdown();
}

async fn refused(server: &signalling::Server, room: &str, first: serde_json::Value) -> String {
    let mut ws = connect(server, room).await;
    send(&mut ws, first).await;
    let reply = recv(&mut ws, Duration::from_secs(5))
        .await
        .expect("a reply");
    assert_eq!(reply["type"], "error", "{reply}");
    reply["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_failures_name_the_reason() {
    let secret = control::secret::generate();
    let server = start_server(Some(&secret), 10).await;
    let keys = Keys::new(secret.as_bytes());
    let offer = "v=0\r\n";
    let join = |t: &str| json!({"type": "join", "token": t, "offer": offer});
    assert_eq!(refused(&server, "r", join("")).await, "missing token");
    assert_eq!(
        refused(&server, "r", join("x.y.z")).await,
        "token is malformed"
    );
    let other = Keys::new(b"other").mint("r", "a", Role::Publisher, Duration::from_secs(60));
    assert_eq!(
        refused(&server, "r", join(&other)).await,
        "token signature does not verify"
    );
    let wrong_room = keys.mint("elsewhere", "a", Role::Publisher, Duration::from_secs(60));
    assert_eq!(
        refused(&server, "r", join(&wrong_room)).await,
        "token is for another room"
    );
    let expired = keys.mint("r", "a", Role::Publisher, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(refused(&server, "r", join(&expired)).await, "token expired");
    // A good token with a bad offer: the node's error names the problem.
    let good = keys.mint("r", "a", Role::Publisher, Duration::from_secs(60));
    assert!(refused(&server, "r", join(&good))
        .await
        .contains("no media section"));
    // A viewer's real publishing offer, as the media node parses it, is refused.
    let viewer = keys.mint("r", "v", Role::Viewer, Duration::from_secs(60));
    let err = Peer::join(&server, "r", "v", &viewer)
        .await
        .err()
        .expect("a viewer may not publish");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("viewers may not publish"),
        "{err}"
    );

    // HTTP: no dev tokens with a secret; admin calls need an admin token.
    assert_eq!(get(&server, "/api/dev-token?room=r", None).await.0, 404);
    assert_eq!(get(&server, "/api/rooms", None).await.0, 401);
    assert_eq!(get(&server, "/api/rooms", Some(&good)).await.0, 403);
    let admin = keys.mint("*", "ops", Role::Admin, Duration::from_secs(60));
    let (status, body) = get(&server, "/api/rooms", Some(&admin)).await;
    assert_eq!((status, body.contains("rooms")), (200, true));

    let (_, metrics) = get(&server, "/metrics", None).await;
    // "missing" twice: the join without a token and the admin call without one;
    // "wrong_room" twice: the other room's token and a room token used for admin.
    for (reason, n) in [
        ("missing", 2),
        ("malformed", 1),
        ("bad_signature", 1),
        ("wrong_room", 2),
        ("expired", 1),
    ] {
        assert!(
            metrics.contains(&format!(
                "signalling_token_rejections_total{{reason=\"{reason}\"}} {n}"
            )),
            "{reason} counted {n} times:\n{metrics}"
        );
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_full_rooms_and_floods_get_clear_errors() {
    let server = start_server(None, 2).await;
    // Malformed JSON, an unknown type, a message that is not a join.
    assert!(refused(&server, "r", json!("not an object"))
        .await
        .starts_with("bad message"));
    let msg = refused(&server, "r", json!({"type": "dance"})).await;
    assert!(msg.contains("unknown variant"), "{msg}");
    let msg = refused(&server, "r", json!({"type": "leave"})).await;
    assert!(msg.contains("first message must be a join"), "{msg}");
    // Bad room names.
    let t = dev_token(&server, "r", "x").await;
    assert!(refused(
        &server,
        "bad%20room",
        json!({"type": "join", "token": t, "offer": ""})
    )
    .await
    .contains("room names"));
    // Oversize: the connection is closed.
    let mut ws = connect(&server, "r").await;
    let huge = "x".repeat(100 * 1024);
    send(&mut ws, json!({"type": "join", "token": huge, "offer": ""})).await;
    let reply = recv(&mut ws, Duration::from_secs(5)).await;
    assert!(
        reply.as_ref().is_none_or(|r| r["type"] == "error"),
        "oversize message is refused: {reply:?}"
    );
    assert!(
        recv(&mut ws, Duration::from_secs(5)).await.is_none(),
        "and the socket closed"
    );

    // A room of two is full for the third.
    let mut peers = Vec::new();
    for name in ["a", "b"] {
        let t = dev_token(&server, "small", name).await;
        peers.push(Peer::join(&server, "small", name, &t).await.expect("joins"));
    }
    let t = dev_token(&server, "small", "c").await;
    let err = Peer::join(&server, "small", "c", &t)
        .await
        .err()
        .expect("refused");
    assert!(
        err["message"].as_str().unwrap().contains("room is full"),
        "{err}"
    );
    // Others are unaffected: another room works.
    let t = dev_token(&server, "other", "d").await;
    Peer::join(&server, "other", "d", &t)
        .await
        .expect("another room still works");
    let (_, metrics) = get(&server, "/metrics", None).await;
    assert!(
        metrics.contains("signalling_joins_total{result=\"room_full\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("signalling_bad_messages_total{reason=\"malformed_json\"}")
            || metrics.contains("signalling_bad_messages_total{reason=\"bad_message\"}")
    );
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_joins_from_one_address_is_limited() {
    let server = signalling::start({
        let mut c = signalling::Config::local(1);
        c.joins_per_second = 1.0;
        c
    })
    .await
    .unwrap();
    let t = dev_token(&server, "r", "x").await;
    let mut limited = 0;
    for _ in 0..15 {
        // Bad offers, so that only the limiter's verdict differs.
        let msg = refused(
            &server,
            "r",
            json!({"type": "join", "token": t, "offer": "v=0\r\n"}),
        )
        .await;
        if msg.contains("too many joins") {
            limited += 1;
        }
    }
    assert!(limited >= 4, "burst of 10 then limited: {limited} limited");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_messages_and_of_idle_sockets_are_bounded() {
    let server = signalling::start({
        // Joins 1/s in bursts of 10: the pre-join cap is its floor of 16.
        let mut c = signalling::Config::local(1);
        c.joins_per_second = 1.0;
        c
    })
    .await
    .unwrap();
    // A joined client that floods mutes: beyond its budget (20/s, bursts of 40) they
    // are dropped, and it is told once, not once per message.
    let (ta, tb) = (
        dev_token(&server, "flood", "a").await,
        dev_token(&server, "flood", "b").await,
    );
    let mut a = Peer::join(&server, "flood", "a", &ta).await.expect("joins");
    let mut b = Peer::join(&server, "flood", "b", &tb).await.expect("joins");
    for i in 0..200 {
        a.send(json!({"type": "mute", "kind": "audio", "muted": i % 2 == 0}))
            .await;
    }
    tokio::join!(
        a.run(Duration::from_millis(500)),
        b.run(Duration::from_millis(500))
    );
    let relayed = b.saw("muted").len();
    assert!(
        (40..=60).contains(&relayed),
        "{relayed} of 200 mutes relayed"
    );
    let told: Vec<_> = a
        .saw("error")
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .contains("too many messages")
        })
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");

    // Sockets that never join: one address holds at most 16 at a time.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(connect(&server, "r").await);
    }
    let url = format!("ws://{}/ws/r", server.addr);
    let refused = tokio_tungstenite::connect_async(&url)
        .await
        .expect_err("capped");
    assert!(refused.to_string().contains("429"), "{refused}");
    idle.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio_tungstenite::connect_async(&url).await.is_ok(),
        "a place was freed"
    );
    server.shutdown();
}

/// An admin closes a room while a newcomer joins it: the newcomer either was in the
/// room when it closed (told `closed`, or refused if it was still being set up, and
/// then nothing of it stays on the node), or it joined the room anew and stays, on its
/// node as in the directory. It is never closed out silently by the close of
/// a room it was not in. (Guards a race: the room used to be closed by name on its
/// node after the directory forgot it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_room_never_closes_out_a_newcomer() {
    let server = start_server(None, 10).await;
    let http = reqwest::Client::new();
    for i in 0..8 {
        let room = format!("race-{i}");
        let ta = dev_token(&server, &room, "a").await;
        let tc = dev_token(&server, &room, "c").await;
        let _a = Peer::join(&server, &room, "a", &ta).await.expect("joins");
        let close = http
            .delete(format!("http://{}/api/rooms/{room}", server.addr))
            .send();
        let (closed, newcomer) = tokio::join!(close, Peer::join(&server, &room, "c", &tc));
        assert_eq!(closed.unwrap().status().as_u16(), 204);
        let mut c = match newcomer {
            Ok(c) => c,
            // It was admitted to the room that then closed while the node set it up:
            // refused, and undone on the node (checked below: the room is empty).
            Err(e) if e["message"] == "no such room" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let node = server.node.as_ref().expect("the embedded node");
                assert!(!node.has_room(&room), "round {i}: nothing left on the node");
                continue;
            }
            Err(e) => panic!("round {i}: {e}"),
        };
        c.run(Duration::from_millis(300)).await;
        if !c.saw("closed").is_empty() {
            continue; // it was in the room when it closed
        }
        let me = c.joined()["participant"].as_str().unwrap().to_owned();
        let id = control::ParticipantId(me[1..].parse().unwrap());
        assert!(
            server.state.directory.member(id).is_some(),
            "round {i}: the newcomer is still in the directory"
        );
        let (figures, _) = server.state.cluster.room_stats(&room).await.unwrap();
        assert_eq!(figures.participants, 1, "round {i}: and on its node");
    }
    server.shutdown();
}

/// A join's first reply over a WebSocket that came through a proxy naming `client`.
async fn refused_via_proxy(server: &signalling::Server, client: &str, token: &str) -> String {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/ws/r", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", client.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(
        &mut ws,
        json!({"type": "join", "token": token, "offer": "v=0\r\n"}),
    )
    .await;
    let reply = recv(&mut ws, Duration::from_secs(5))
        .await
        .expect("a reply");
    reply["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_callers_are_never_local_and_trusted_proxies_name_the_client() {
    // Dev mode: what loopback callers get, a caller through a (same-host) proxy does not.
    let server = start_server(None, 10).await;
    let http = reqwest::Client::new();
    let call = |path: &str, proxied: bool| {
        let mut req = http.get(format!("http://{}{path}", server.addr));
        if proxied {
            req = req.header("x-forwarded-for", "203.0.113.7");
        }
        req.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(call("/api/dev-token?room=r", false).await.unwrap()),
        200
    );
    assert_eq!(
        status(call("/api/dev-token?room=r", true).await.unwrap()),
        403
    );
    assert_eq!(status(call("/api/rooms", false).await.unwrap()), 200);
    assert_eq!(status(call("/api/rooms", true).await.unwrap()), 401);
    server.shutdown();

    // Behind a trusted proxy each client has its own join budget (1/s, bursts of 10).
    let server = signalling::start({
        let mut c = signalling::Config::local(1);
        c.joins_per_second = 1.0;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c
    })
    .await
    .unwrap();
    let t = dev_token(&server, "r", "x").await;
    let mut limited = 0;
    for _ in 0..14 {
        if refused_via_proxy(&server, "203.0.113.7", &t)
            .await
            .contains("too many joins")
        {
            limited += 1;
        }
    }
    assert!(limited >= 3, "one client's flood is limited: {limited}");
    let other = refused_via_proxy(&server, "198.51.100.2", &t).await;
    assert!(
        !other.contains("too many joins"),
        "another client is not: {other}"
    );
    server.shutdown();

    // /metrics on its own address is off the public port.
    let server = signalling::start({
        let mut c = signalling::Config::local(1);
        c.metrics = Some("127.0.0.1:0".parse().unwrap());
        c
    })
    .await
    .unwrap();
    assert_eq!(get(&server, "/metrics", None).await.0, 404);
    let own = format!("http://{}/metrics", server.metrics_addr.unwrap());
    let text = reqwest::get(own).await.unwrap().text().await.unwrap();
    assert!(text.contains("signalling_join_duration_seconds"), "{text}");
    assert!(
        text.contains("sfu_packets_received_total"),
        "the embedded node's too"
    );
    server.shutdown();
}

#[tokio::test]
async fn no_secret_on_a_public_address_is_refused_and_health_endpoints_answer() {
    let err = signalling::start({
        let mut c = signalling::Config::local(1);
        c.http = "0.0.0.0:0".parse().unwrap();
        c.embedded = Some(sfu::NodeConfig::default());
        c.joins_per_second = 1.0;
        c
    })
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("without a token secret"));
    // Weak secrets are refused at start, saying why and how to make a good one.
    for (token, node, refused) in [
        (
            "s3cret",
            None,
            "token secret (--secret): it carries 4 bytes",
        ),
        (
            "CHANGE-ME-join-token-secret-and-then-some-more",
            None,
            "a word of example secrets",
        ),
        ("", Some("change-me"), "node secret (--node-secret)"),
    ] {
        let mut c = signalling::Config::local(1);
        c.secret = (!token.is_empty()).then(|| token.to_owned());
        c.quic = node.map(|_| "127.0.0.1:0".parse().unwrap());
        c.node_secret = node.map(str::to_owned);
        let err = signalling::start(c)
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(refused), "{err}");
        assert!(err.contains("signalling secret"), "{err}");
    }
    let server = start_server(None, 10).await;
    assert_eq!(get(&server, "/healthz", None).await.0, 200);
    assert_eq!(get(&server, "/readyz", None).await.0, 200);
    let (status, page) = get(&server, "/", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("RTCPeerConnection"));
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_can_be_required_to_exist_before_joins() {
    let mut config = signalling::Config::local(1);
    config.rooms_on_join = false;
    let server = signalling::start(config).await.unwrap();
    let t = dev_token(&server, "clinic", "doc").await;
    let err = Peer::join(&server, "clinic", "doc", &t)
        .await
        .err()
        .expect("refused");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("rooms must be created first"),
        "{err}"
    );

    let http = reqwest::Client::new();
    let post = |body: &'static str| {
        http.post(format!("http://{}/api/rooms", server.addr))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        post(r#"{"name": "clinic"}"#)
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    assert_eq!(
        post(r#"{"name": "clinic"}"#)
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        post(r#"{"name": "no spaces"}"#)
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    assert_eq!(post("not json").await.unwrap().status().as_u16(), 400);
    let (_, rooms) = get(&server, "/api/rooms", None).await;
    assert!(rooms.contains("clinic"));
    let mut p = Peer::join(&server, "clinic", "doc", &t)
        .await
        .expect("the created room can be joined");
    let del = http
        .delete(format!("http://{}/api/rooms/clinic", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status().as_u16(), 204);
    // Its participant is told the meeting is over (not to rejoin, as `failed` says).
    p.run(Duration::from_secs(1)).await;
    assert_eq!(p.saw("closed").len(), 1, "{:?}", p.saw("failed"));
    assert!(p.saw("failed").is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        Peer::join(&server, "clinic", "doc", &t).await.is_err(),
        "a deleted room is gone"
    );
    server.shutdown();
}

/// A join storm is queued, not refused: 40 joins at once (ten times the joins set up
/// at a time) all get their answer, in rooms of two, and the queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_storm_waits_its_turn_instead_of_being_refused() {
    let server = start_server(None, 10).await;
    let mut tokens = Vec::new();
    for i in 0..40 {
        let room = format!("storm-{}", i / 2);
        let identity = format!("p{i}");
        let t = dev_token(&server, &room, &identity).await;
        tokens.push((room, identity, t));
    }
    let started = std::time::Instant::now();
    let joins = tokens
        .iter()
        .map(|(room, identity, t)| Peer::join(&server, room, identity, t));
    let results = futures_util::future::join_all(joins).await;
    let took = started.elapsed();
    let refused: Vec<serde_json::Value> = results
        .iter()
        .filter_map(|r| r.as_ref().err().cloned())
        .collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    let (_, metrics) = get(&server, "/metrics", None).await;
    assert!(
        metrics.contains("signalling_joins_total{result=\"ok\"} 40"),
        "{metrics}"
    );
    assert!(metrics.contains("signalling_joins_waiting 0"), "{metrics}");
    println!("40 joins answered in {took:?}");
    server.shutdown();
}

/// Everything the process logs, as text (the test binary's one global subscriber).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_at_info_name_no_room_and_no_person() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let (room, who) = ("jensen-consult-4711", "Karen.Jensen");
    let server = start_server(None, 10).await;
    let token = dev_token(&server, room, who).await;
    let mut p = Peer::join(&server, room, who, &token).await.expect("joins");
    p.run(Duration::from_millis(500)).await;
    p.send(json!({"type": "leave"})).await;
    // A refusal whose message names the room.
    let mut strict = signalling::Config::local(1);
    strict.rooms_on_join = false;
    let strict = signalling::start(strict).await.unwrap();
    let t = dev_token(&strict, room, who).await;
    let refused = Peer::join(&strict, room, who, &t)
        .await
        .err()
        .expect("no room");
    assert!(refused.to_string().contains(room), "the client is told");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let reference = server.state.redact.room(room);
    let joined = text
        .lines()
        .find(|l| l.contains("joined"))
        .expect("a join is logged");
    assert!(joined.contains(&reference), "{joined}");
    assert!(
        text.contains("left") && text.contains("join refused"),
        "{text}"
    );
    assert!(
        !text.contains(room),
        "a room name reached the logs:\n{text}"
    );
    assert!(!text.contains(who), "an identity reached the logs:\n{text}");
    server.shutdown();
    strict.shutdown();
}

/// Resume tokens and join tokens are not interchangeable, a resume token is for its
/// room only, and a session of this run that ended cannot be resumed: each refusal
/// comes at once, with its reason. (Resuming after a restart: `multinode.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_tokens_resume_only_what_a_restart_left() {
    let secret = control::secret::generate();
    let server = start_server(Some(&secret), 10).await;
    let keys = Keys::new(secret.as_bytes());
    let join = keys.mint("ward", "alice", Role::Publisher, Duration::from_secs(60));
    let mut a = Peer::join(&server, "ward", "alice", &join)
        .await
        .expect("alice joins");
    let resume = a.joined()["resume"]
        .as_str()
        .expect("a resume token")
        .to_owned();
    assert_ne!(resume, join);
    // A join token does not resume; a resume token does not join.
    let e = refused(&server, "ward", json!({"type": "resume", "token": join})).await;
    assert_eq!(e, "resume: token is malformed");
    let offer = "v=0\r\n";
    let e = refused(
        &server,
        "ward",
        json!({"type": "join", "token": resume, "offer": offer}),
    )
    .await;
    assert_eq!(e, "token is malformed");
    // For its own room only, and only with this node's secret.
    let e = refused(&server, "other", json!({"type": "resume", "token": resume})).await;
    assert_eq!(e, "resume: token is for another room");
    let session = signalling::token::Resume {
        pid: 1,
        sip: false,
        host: true,
    };
    let forged = Keys::new(control::secret::generate().as_bytes()).mint_resume("ward", session);
    let e = refused(&server, "ward", json!({"type": "resume", "token": forged})).await;
    assert_eq!(e, "resume: token signature does not verify");
    // Alice's session is this run's (this node did not restart): nothing to take
    // back, said at once (not after waiting for a node's hand-over).
    let e = refused(&server, "ward", json!({"type": "resume", "token": resume})).await;
    assert_eq!(e, "no session to resume: it ended; join again");
    a.run(Duration::from_millis(500)).await;
    assert!(a.saw("failed").is_empty(), "alice's session is untouched");
    let (_, metrics) = get(&server, "/metrics", None).await;
    assert!(metrics.contains("signalling_sessions_resumed_total 0"));
    server.shutdown();
}

/// STUN/TURN servers reach clients three ways: `GET /api/ice-servers` (with a join
/// token for the room), the `joined` message, and WHIP's `Link` headers; TURN
/// credentials are the REST API's, time-limited, naming no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_ice_servers_with_turn_credentials() {
    let turn_secret = control::secret::generate();
    let server = signalling::start({
        let mut c = signalling::Config::local(1);
        c.ice_servers = vec![
            "stun:stun.example.org:3478".into(),
            "turn:turn.example.org:3478?transport=udp".into(),
        ];
        c.turn_secret = Some(turn_secret);
        c
    })
    .await
    .expect("server starts");
    let token = dev_token(&server, "ward", "alice").await;
    let (status, _) = get(&server, "/api/ice-servers?room=ward", None).await;
    assert_eq!(status, 401, "a join token is needed");
    let (status, _) = get(&server, "/api/ice-servers?room=other", Some(&token)).await;
    assert_eq!(status, 403, "for its own room");
    let (status, body) = get(&server, "/api/ice-servers?room=ward", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let servers = v["ice_servers"].as_array().unwrap();
    assert_eq!(servers[0]["urls"][0], "stun:stun.example.org:3478");
    let user = servers[1]["username"].as_str().unwrap();
    let expiry: u64 = user.strip_suffix(":knudepunkt").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        expiry > now + 3600 && expiry <= now + 12 * 3600 + 5,
        "12 h by default"
    );
    assert!(servers[1]["credential"].as_str().unwrap().len() >= 28);

    // In `joined`, too.
    let a = Peer::join(&server, "ward", "alice", &token)
        .await
        .expect("alice joins");
    assert_eq!(
        a.joined()["ice_servers"][1]["urls"][0],
        "turn:turn.example.org:3478?transport=udp"
    );

    // And as WHIP's Link headers (RFC 9725), visible to browsers (CORS).
    let mut rtc = str0m::Rtc::new(std::time::Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(
        str0m::media::MediaKind::Audio,
        str0m::media::Direction::SendOnly,
        None,
        None,
        None,
    );
    let (offer, _pending) = api.apply().unwrap();
    let publisher = dev_token(&server, "ward", "whip").await;
    let r = reqwest::Client::new()
        .post(format!("http://{}/whip/ward", server.addr))
        .bearer_auth(&publisher)
        .header("content-type", "application/sdp")
        .body(offer.to_sdp_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let links: Vec<&str> = r
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    assert_eq!(links[0], "<stun:stun.example.org:3478>; rel=\"ice-server\"");
    assert!(links[1].starts_with(
        "<turn:turn.example.org:3478?transport=udp>; rel=\"ice-server\"; username=\""
    ));
    assert!(links[1].ends_with("credential-type=\"password\""));
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("link"));
    server.shutdown();
}

/// A TURN server without a secret, or a URL of another scheme, is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ice_configurations_are_refused_at_start() {
    let start = |urls: Vec<String>, secret: Option<String>| async move {
        let mut c = signalling::Config::local(1);
        c.ice_servers = urls;
        c.turn_secret = secret;
        signalling::start(c).await.err().map(|e| e.to_string())
    };
    let e = start(vec!["turn:t.example.org".into()], None)
        .await
        .unwrap();
    assert!(e.contains("--turn-secret"), "{e}");
    let e = start(vec!["https://t.example.org".into()], None)
        .await
        .unwrap();
    assert!(e.contains("expected stun:"), "{e}");
    let e = start(vec!["turn:t.example.org".into()], Some("short".into()))
        .await
        .unwrap();
    assert!(e.contains("TURN secret"), "{e}");
}

/// The waiting room over the API, as a booking system and two str0m clients use it:
/// links are minted by an admin only, in the roles offered; a guest waits until the
/// host (told who waits, by name) lets it in; a host may remove and mute, a guest may
/// not; WHIP into a room with a waiting room is for hosts only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_room_admits_guests_by_a_hosts_word() {
    let secret = control::secret::generate();
    let server = start_server(Some(&secret), 10).await;
    let keys = Keys::new(secret.as_bytes());
    let admin = keys.mint("*", "booking", Role::Admin, Duration::from_secs(60));
    let http = reqwest::Client::new();
    let post = |path: &str, bearer: Option<&str>, body: serde_json::Value| {
        let mut req = http
            .post(format!("http://{}{path}", server.addr))
            .json(&body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send()
    };
    let created = post(
        "/api/rooms",
        Some(&admin),
        json!({"name": "clinic", "lobby": true}),
    )
    .await
    .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let link = |role: &str, name: &str| {
        let body = json!({"role": role, "name": name});
        post("/api/rooms/clinic/links", Some(&admin), body)
    };
    // Admins only; known roles; bounded lifetimes.
    let guest_token = keys.mint("clinic", "g", Role::Guest, Duration::from_secs(60));
    let by_guest = post(
        "/api/rooms/clinic/links",
        Some(&guest_token),
        json!({"role": "host", "name": "x"}),
    );
    assert_eq!(by_guest.await.unwrap().status().as_u16(), 403);
    assert_eq!(link("admin", "x").await.unwrap().status().as_u16(), 400);
    let long = json!({"role": "guest", "name": "x", "ttl": "31d"});
    let long = post("/api/rooms/clinic/links", Some(&admin), long)
        .await
        .unwrap();
    assert_eq!(long.status().as_u16(), 400);
    let mint = |r: reqwest::Response| async move {
        assert_eq!(r.status().as_u16(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["url"]
                .as_str()
                .unwrap()
                .starts_with("/?room=clinic#token="),
            "{v}"
        );
        v["token"].as_str().unwrap().to_owned()
    };
    let host_token = mint(link("host", "Dr Hansen").await.unwrap()).await;
    let ann_token = mint(link("guest", "Patient Ann").await.unwrap()).await;
    assert_eq!(
        keys.verify(Some(&host_token), "clinic").unwrap().role,
        Role::Host
    );
    // An appointment ahead: not valid yet.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let tomorrow = now + 86_400;
    // Further ahead than a year: refused.
    let far = json!({"role": "guest", "name": "x", "not_before": now + 400 * 86_400});
    let far = post("/api/rooms/clinic/links", Some(&admin), far)
        .await
        .unwrap();
    assert_eq!(far.status().as_u16(), 400);
    let ahead = json!({"role": "guest", "name": "Later", "not_before": tomorrow});
    let later = mint(
        post("/api/rooms/clinic/links", Some(&admin), ahead)
            .await
            .unwrap(),
    )
    .await;
    let refusal = Peer::join(&server, "clinic", "Later", &later)
        .await
        .err()
        .unwrap();
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("not valid yet"),
        "{refusal}"
    );

    let mut host = Peer::join(&server, "clinic", "Dr Hansen", &host_token)
        .await
        .expect("the host enters at once");
    assert_eq!(host.joined()["host"], true);
    // WHIP cannot wait: for hosts only in this room.
    let whip = Peer::whip(&server, "clinic", &ann_token)
        .await
        .err()
        .unwrap();
    assert_eq!(whip.0, 403, "{}", whip.1);

    // Ann waits until the host lets her in; the host is told her name.
    let joining = {
        let (s, t) = (&server, ann_token.clone());
        async move { Peer::join(s, "clinic", "Patient Ann", &t).await }
    };
    let admit = async {
        let until = std::time::Instant::now() + Duration::from_secs(8);
        loop {
            host.run(Duration::from_millis(200)).await;
            let lobby = host.saw("lobby");
            let waiting = lobby.last().map(|l| l["waiting"].clone());
            if let Some(w) = waiting.filter(|w| w[0]["name"] == "Patient Ann") {
                host.send(json!({"type": "admit", "guest": w[0]["id"]}))
                    .await;
                return;
            }
            assert!(
                std::time::Instant::now() < until,
                "the host never heard of ann"
            );
        }
    };
    let (ann, ()) = tokio::join!(joining, admit);
    let mut ann = ann.expect("admitted");
    assert!(ann.joined().get("host").is_none(), "a guest is no host");
    tokio::join!(
        host.run(Duration::from_secs(3)),
        ann.run(Duration::from_secs(3))
    );
    assert!(host.frames_from(&ann) > 20, "the host sees ann");

    // A guest may not run the meeting.
    ann.send(json!({"type": "remove", "participant": host.me}))
        .await;
    ann.run(Duration::from_millis(300)).await;
    assert!(ann
        .saw("error")
        .iter()
        .any(|e| e["message"].as_str().unwrap().contains("only a host")));
    // The host mutes ann (all are told, ann that it was a host), then removes her.
    host.send(json!({"type": "mute_participant", "participant": ann.me}))
        .await;
    tokio::join!(
        host.run(Duration::from_millis(500)),
        ann.run(Duration::from_millis(500))
    );
    let muted = ann.saw("muted");
    assert!(
        muted
            .iter()
            .any(|m| m["participant"] == ann.me && m["by_host"] == true),
        "{muted:?}"
    );
    host.send(json!({"type": "remove", "participant": ann.me}))
        .await;
    tokio::join!(
        host.run(Duration::from_secs(1)),
        ann.run(Duration::from_secs(1))
    );
    let closed = ann.saw("closed");
    assert!(
        closed.iter().any(|c| c["reason"] == "removed by a host"),
        "{closed:?}"
    );
    assert!(host
        .saw("participant_left")
        .iter()
        .any(|l| l["participant"] == ann.me));
    // Another room's participant is not the host's to remove.
    host.send(json!({"type": "remove", "participant": "p999999"}))
        .await;
    host.run(Duration::from_millis(300)).await;
    assert!(host
        .saw("error")
        .iter()
        .any(|e| e["message"].as_str().unwrap().contains("no participant")));

    // A guest token waits in a room without a waiting room too (a node that forgot a
    // room's flag lets no guest in unasked); closing the room tells it.
    let open = keys.mint("open", "Cy", Role::Guest, Duration::from_secs(60));
    let mut ws = common::connect(&server, "open").await;
    let join = json!({"type": "join", "token": open, "offer": "v=0\r\n"});
    common::send(&mut ws, join).await;
    let first = common::recv(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(first["type"], "waiting", "{first}");
    let del = http
        .delete(format!("http://{}/api/rooms/open", server.addr))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status().as_u16(), 204);
    let told = loop {
        let m = common::recv(&mut ws, Duration::from_secs(5)).await.unwrap();
        if m["type"] != "waiting" {
            break m;
        }
    };
    assert_eq!(told["code"], "no_room", "{told}");
    server.shutdown();
}

/// Draining (what SIGTERM starts): `/readyz` answers 503 at once; a meeting that is
/// not running here is refused (`draining`: a client tries again, and a load
/// balancer sends it to a ready node), a late joiner of a running one comes in; when
/// the drain's time is up, those still here are told to join again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_starts_no_new_meeting_and_lets_the_running_one_go_on() {
    let server = start_server(None, 10).await;
    let ta = dev_token(&server, "running", "alice").await;
    let mut a = Peer::join(&server, "running", "alice", &ta)
        .await
        .expect("alice joins");
    assert_eq!(get(&server, "/readyz", None).await.0, 200);
    let server = std::sync::Arc::new(server);
    let drain = {
        let server = server.clone();
        tokio::spawn(async move { server.drain(Duration::from_secs(4)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = get(&server, "/readyz", None).await;
    assert_eq!((status, body.trim()), (503, "draining"));
    let tn = dev_token(&server, "new", "nina").await;
    let refusal = Peer::join(&server, "new", "nina", &tn).await.err().unwrap();
    assert_eq!(refusal["code"], "draining", "{refusal}");
    let tb = dev_token(&server, "running", "bob").await;
    let mut b = Peer::join(&server, "running", "bob", &tb)
        .await
        .expect("a late joiner of the running meeting comes in");
    tokio::join!(a.run(Duration::from_secs(2)), b.run(Duration::from_secs(2)));
    assert!(a.frames_from(&b) > 10, "the meeting goes on");
    // Time is up: both are told to join again.
    tokio::join!(a.run(Duration::from_secs(3)), b.run(Duration::from_secs(3)));
    drain.await.unwrap();
    for p in [&a, &b] {
        let failed = p.saw("failed");
        assert!(
            failed
                .iter()
                .any(|f| f["reason"].as_str().unwrap().contains("join again")),
            "{}: {failed:?}",
            p.name
        );
    }
    let (_, rooms) = get(&server, "/api/rooms", None).await;
    assert!(!rooms.contains("running"), "{rooms}");
    if let Ok(server) = std::sync::Arc::try_unwrap(server) {
        server.shutdown();
    }
}

/// A node with the token service's Ed25519 public key (`--token-public-key`) takes the
/// service's EdDSA tokens and no token it could have minted from anything it holds:
/// participants meet, admins administer, HS256 tokens made with the public key or the
/// node secret are refused, no links are minted, and resume tokens still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_token_services_public_key_takes_its_tokens_alone() {
    let (private, public) = signalling::token::ed25519::generate();
    let node_secret = control::secret::generate();
    let mut config = signalling::Config::local(1);
    config.token_public_key = Some(public.clone());
    // Listening for media nodes, so that the node holds its node secret (resume
    // tokens are keyed by it).
    config.quic = Some("127.0.0.1:0".parse().unwrap());
    config.node_secret = Some(node_secret.clone());
    let server = signalling::start(config).await.expect("server starts");
    assert!(!server.dev_mode);
    let service = Keys::from_private_key(private.as_bytes()).unwrap();
    let minute = Duration::from_secs(60);
    let ta = service.mint("ward", "alice", Role::Publisher, minute);
    let tb = service.mint("ward", "bob", Role::Publisher, minute);
    let mut a = Peer::join(&server, "ward", "alice", &ta)
        .await
        .expect("alice joins");
    let mut b = Peer::join(&server, "ward", "bob", &tb)
        .await
        .expect("bob joins");
    tokio::join!(a.run(Duration::from_secs(3)), b.run(Duration::from_secs(3)));
    assert!(a.frames_from(&b) > 10, "alice gets bob's video");
    assert!(b.frames_from(&a) > 10, "bob gets alice's video");

    // Admin rights come from the service's token only.
    let admin = service.mint("*", "ops", Role::Admin, minute);
    assert_eq!(get(&server, "/api/rooms", Some(&admin)).await.0, 200);
    let forged = [
        Keys::new(public.as_bytes()).mint("*", "m", Role::Admin, minute),
        Keys::new(node_secret.as_bytes()).mint("*", "m", Role::Admin, minute),
    ];
    for f in &forged {
        assert_eq!(get(&server, "/api/rooms", Some(f)).await.0, 401);
        let e = refused(
            &server,
            "ward",
            json!({"type": "join", "token": f, "offer": "v=0\r\n"}),
        )
        .await;
        assert_eq!(e, "token signature does not verify");
    }
    assert_eq!(get(&server, "/api/dev-token?room=ward", None).await.0, 404);
    // Links outlive the node: it mints none.
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/rooms/ward/links", server.addr))
        .bearer_auth(&admin)
        .json(&json!({"role": "guest", "name": "g"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert!(r.text().await.unwrap().contains("--token-private-key"));

    // The resume token the node gave alice is keyed by the node secret: another node
    // with the same secret (this one after a restart) takes it; it passes this node's
    // signature check (there is nothing to take back: this node did not restart).
    let resume = a.joined()["resume"]
        .as_str()
        .expect("a resume token")
        .to_owned();
    let restarted = Keys::from_public_key(public.as_bytes(), Some(node_secret.as_bytes())).unwrap();
    assert!(restarted.verify_resume(&resume, "ward").is_ok());
    let other = Keys::from_public_key(public.as_bytes(), None).unwrap();
    assert!(other.verify_resume(&resume, "ward").is_err());
    let e = refused(&server, "ward", json!({"type": "resume", "token": resume})).await;
    assert_eq!(e, "no session to resume: it ended; join again");
    let (_, metrics) = get(&server, "/metrics", None).await;
    assert!(
        metrics.contains("signalling_token_rejections_total{reason=\"bad_signature\"} 4"),
        "{metrics}"
    );
    server.shutdown();
}

/// Meeting records (`--records DIR`): a meeting of two ends with its last participant
/// and is written as one line in the day's file, naming no one (the room as its log
/// reference), and counted in `signalling_meetings_total`; a meeting running when the
/// node stops is in the journal, and the node started again records it as ended by a
/// crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetings_are_recorded_without_names_and_a_crash_loses_none() {
    let dir = std::env::temp_dir().join(format!("knudepunkt-api-records-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = || {
        let mut c = signalling::Config::local(1);
        c.records = Some(dir.clone());
        signalling::start(c)
    };
    let server = start().await.expect("server starts");
    let (ta, tb) = (
        dev_token(&server, "ward", "Alice Jensen").await,
        dev_token(&server, "ward", "Bob Hansen").await,
    );
    let mut a = Peer::join(&server, "ward", "Alice Jensen", &ta)
        .await
        .expect("alice joins");
    let mut b = Peer::join(&server, "ward", "Bob Hansen", &tb)
        .await
        .expect("bob joins");
    // Long enough for the media node's first quality reports (ten seconds after the
    // first receiver report, which a loaded machine may be slow to bring).
    tokio::join!(
        a.run(Duration::from_secs(16)),
        b.run(Duration::from_secs(16))
    );
    b.send(json!({"type": "leave"})).await;
    a.run(Duration::from_millis(500)).await;
    a.send(json!({"type": "leave"})).await;
    a.run(Duration::from_millis(500)).await;
    let day = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("meetings-"))
        .expect("a day file");
    let text = std::fs::read_to_string(day.path()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let r: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(r["room_id"], server.state.redact.room("ward"), "{r}");
    assert_eq!(
        (r["participants"].as_u64(), r["participants_peak"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(r["by_kind"]["browser"], 2);
    assert_eq!(r["ended"], "empty");
    assert!(r["quality"]["reports"].as_u64().unwrap() >= 1, "{r}");
    // Loopback loses nothing to speak of, and its jitter is small.
    assert!(r["quality"]["loss_mean_pct"].as_f64().unwrap() < 5.0, "{r}");
    assert!(r["quality"]["jitter_max_ms"].as_u64().unwrap() < 100, "{r}");
    assert!(r["duration_s"].as_f64().unwrap() >= 2.0, "{r}");
    assert!(r["participant_minutes"].as_f64().unwrap() > 0.0, "{r}");
    for name in ["ward", "Alice", "Bob", "127.0.0.1"] {
        assert!(!text.contains(name), "{name} in the record: {text}");
    }
    let (_, metrics) = get(&server, "/metrics", None).await;
    assert!(metrics.contains("signalling_meetings_total 1"), "{metrics}");

    // A meeting in progress when the node stops: journalled within 5 s.
    let tc = dev_token(&server, "clinic", "Carol").await;
    let mut c = Peer::join(&server, "clinic", "Carol", &tc)
        .await
        .expect("carol joins");
    c.run(Duration::from_secs(6)).await;
    server.shutdown();
    drop(c);
    let server = start().await.expect("the node starts again");
    let text = std::fs::read_to_string(day.path()).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    let r: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(
        (r["ended"].as_str(), r["participants"].as_u64()),
        (Some("crash"), Some(1))
    );
    assert!(!dir.join("journal.json").exists());
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Meeting webhooks (`--webhook`): a meeting's start and end are POSTed as signed JSON
/// (HMAC-SHA256 over the time and the body), in order; a receiver that fails once
/// gets the notice again; nothing in them names anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetings_are_told_to_a_webhook_signed_and_retried() {
    use std::sync::{Arc, Mutex};
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let tries = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let receiver = {
        let (got, tries) = (got.clone(), tries.clone());
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let (got, tries) = (got.clone(), tries.clone());
                async move {
                    // The first try fails: the node tries again.
                    if tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let sig = headers["x-knudepunkt-signature"]
                        .to_str()
                        .unwrap()
                        .to_owned();
                    got.lock().unwrap().push((sig, body));
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let secret = control::secret::generate();
    let mut config = signalling::Config::local(1);
    config.webhook = Some((format!("http://{at}/hook"), secret.clone()));
    let server = signalling::start(config).await.expect("server starts");
    let ta = dev_token(&server, "ward", "Alice Jensen").await;
    let mut a = Peer::join(&server, "ward", "Alice Jensen", &ta)
        .await
        .expect("alice joins");
    a.run(Duration::from_millis(1500)).await;
    a.send(json!({"type": "leave"})).await;
    a.run(Duration::from_millis(200)).await;
    let end = std::time::Instant::now() + Duration::from_secs(15);
    while got.lock().unwrap().len() < 2 {
        assert!(
            std::time::Instant::now() < end,
            "two notices: {:?}",
            got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = got.lock().unwrap().clone();
    let events: Vec<serde_json::Value> = got
        .iter()
        .map(|(sig, body)| {
            let t: u64 = sig
                .strip_prefix("t=")
                .and_then(|s| s.split(',').next())
                .and_then(|t| t.parse().ok())
                .expect("a time in the signature");
            let expected =
                signalling::records::webhook::signature(secret.as_bytes(), t, body.as_bytes());
            assert_eq!(sig, &expected, "signed with the secret");
            for name in ["ward", "Alice"] {
                assert!(!body.contains(name), "{name} in {body}");
            }
            serde_json::from_str(body).unwrap()
        })
        .collect();
    assert_eq!(events[0]["event"], "meeting_started");
    assert_eq!(events[1]["event"], "meeting_ended");
    assert_eq!(events[0]["room_id"], events[1]["room_id"]);
    assert_eq!(events[1]["participants"], 1);
    // Counted once the receiver's answer came back (it keeps the notice first).
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, metrics) = get(&server, "/metrics", None).await;
        let counted = metrics.contains("signalling_webhooks_total{result=\"retried\"} 1")
            && metrics.contains("signalling_webhooks_total{result=\"delivered\"} 2");
        if counted {
            break;
        }
        assert!(std::time::Instant::now() < end, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown();
}
