//! The gateway on its own (`gateway --signalling URL`), as on a machine near the room
//! systems: a signalling node with a secret and no in-process gateway, a service token
//! minted for the gateway (`signalling token --role service`), and a SIP call from a
//! trusted network (a raw INVITE over UDP) that joins its room: a participant there
//! sees it as a SIP call. The service token gets call tokens and nothing else: it
//! joins no room, and no other token gets call tokens. The gateway places the node's
//! dial-outs too (over the node's `/api/sip/dials`, which only it may take).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::room::{CallClaims, RoomApi, RoomPeer, Tokens};

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The signalling binary beside this test's (`cargo test --workspace` builds it).
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

/// Start `program` and wait (30 s at most) for the stdout line naming its address
/// (the first word after `after`).
fn start(program: &mut Command, after: &str) -> (Running, String) {
    let mut child = Running(
        program
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starts"),
    );
    let out = BufReader::new(child.0.stdout.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    // Read on, so that it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(30);
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        if let Some(rest) = line.split(after).nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            return (child, addr);
        }
    }
    panic!("no line with {after:?} from {program:?} within 30 s");
}

/// A `signalling` command's output (`secret`, `token`), with `secret` as its secret.
fn signalling(args: &[&str], secret: Option<&str>) -> String {
    let mut cmd = Command::new(signalling_binary());
    if let Some(s) = secret {
        cmd.env("KNUDEPUNKT_SECRET", s);
    }
    let out = cmd.args(args).output().expect("signalling runs");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn mint(secret: &str, room: &str, who: &str, role: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({"room": room, "sub": who, "role": role, "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// A SIP request from the test's socket (the caller at `port`).
fn request(method: &str, uri: &str, to: &str, call: &str, port: u16, body: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call}-{method}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@127.0.0.1>;tag=t-{call}\r\n\
         To: {to}\r\n\
         Call-ID: {call}\r\n\
         CSeq: {} {method}\r\n\
         Contact: <sip:tester@127.0.0.1:{port}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        if method == "BYE" { 2 } else { 1 },
        body.len()
    )
}

/// The final response (1xx skipped) to the request `cseq` names (`1 INVITE`), within
/// `wait`.
fn final_response(socket: &UdpSocket, cseq: &str, wait: Duration) -> Option<String> {
    let mut buf = [0u8; 4096];
    let end = Instant::now() + wait;
    while Instant::now() < end {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        // The gateway's RTP comes to this socket too once the call is up.
        let ours = text
            .lines()
            .any(|l| l.starts_with("CSeq: ") && l.ends_with(cseq));
        if text.starts_with("SIP/2.0 ") && !text.starts_with("SIP/2.0 1") && ours {
            return Some(text);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_of_its_own_joins_calls_with_a_service_token() {
    let secret = signalling(&["secret"], None);
    let (_node, url) = start(
        Command::new(signalling_binary()).args([
            "--http",
            "127.0.0.1:0",
            "--udp-port",
            "0",
            "--shards",
            "1",
            "--secret",
            &secret,
        ]),
        "Open ",
    );
    let http_base = url.split("/?").next().unwrap().trim_end_matches('/');
    let http = reqwest::Client::new();
    let service = signalling(
        &[
            "token",
            "--room",
            "*",
            "--identity",
            "gateway-1",
            "--role",
            "service",
            "--ttl",
            "1h",
        ],
        Some(&secret),
    );

    // Only a service token gets a call's token; a service token joins no room.
    let ask = |token: Option<&str>, body: serde_json::Value| {
        let mut r = http.post(format!("{http_base}/api/sip/token")).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let call = serde_json::json!({"room": "clinic", "identity": "SIP caller", "trusted": true});
    let admin = mint(&secret, "*", "admin", "admin");
    assert_eq!(ask(None, call.clone()).await.unwrap().status(), 401);
    assert_eq!(ask(Some(&admin), call.clone()).await.unwrap().status(), 403);
    let bad = serde_json::json!({"room": "clinic", "identity": "x", "trusted": "yes"});
    assert_eq!(ask(Some(&service), bad).await.unwrap().status(), 400);
    let r = ask(Some(&service), call.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    // A service token is for room `*`: the command refuses another; one made anyway
    // (signed with the secret) joins no room either.
    let refused = Command::new(signalling_binary())
        .args([
            "token",
            "--room",
            "clinic",
            "--identity",
            "gw",
            "--role",
            "service",
        ])
        .env("KNUDEPUNKT_SECRET", &secret)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let in_room = mint(&secret, "clinic", "gw", "service");
    let whip = http
        .post(format!("{http_base}/whip/clinic"))
        .bearer_auth(&in_room)
        .header("Content-Type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(whip.status(), 403);
    assert!(whip
        .text()
        .await
        .unwrap()
        .contains("service token joins no room"));

    // The room exists (outside dev mode rooms are made first); the gateway runs.
    let r = http
        .post(format!("{http_base}/api/rooms"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "clinic"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let sip_port = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    // No gateway places this node's dial-outs yet; only a service token may take them.
    let dial = |uri: String| {
        http.post(format!("{http_base}/api/rooms/clinic/dial"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({ "uri": uri }))
            .send()
    };
    assert_eq!(
        dial("sip:far@127.0.0.1".into()).await.unwrap().status(),
        501
    );
    let ws = http_base.replacen("http://", "ws://", 1) + "/api/sip/dials";
    let as_admin = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut r = ws.as_str().into_client_request().unwrap();
        let bearer = format!("Bearer {admin}").parse().unwrap();
        r.headers_mut().insert("authorization", bearer);
        r
    };
    match tokio_tungstenite::connect_async(as_admin).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("an admin token took the dial-outs: {:?}", other.map(|_| ())),
    }
    let (_gateway, listening) = start(
        Command::new(env!("CARGO_BIN_EXE_gateway")).args([
            "--signalling",
            http_base,
            "--sip",
            &format!("127.0.0.1:{sip_port}"),
            "--service-token",
            &service,
            "--sip-allow-plain-rtp",
            "--sip-trust",
            "127.0.0.0/8",
        ]),
        "listening on ",
    );
    let gateway: SocketAddr = listening.parse().unwrap();

    // A call from the trusted network: answered once it is in its room.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8\r\n"
    );
    let uri = "sip:clinic@127.0.0.1";
    let invite = request("INVITE", uri, &format!("<{uri}>"), "c1", port, &offer);
    socket.send_to(invite.as_bytes(), gateway).unwrap();
    let ok = final_response(&socket, "1 INVITE", Duration::from_secs(15))
        .expect("an answer to the INVITE");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains("PCMA/8000"), "{ok}");
    let to = ok
        .lines()
        .find_map(|l| l.strip_prefix("To: ").or_else(|| l.strip_prefix("t: ")))
        .expect("a To header")
        .to_owned();
    let ack = request("ACK", uri, &to, "c1", port, "");
    socket.send_to(ack.as_bytes(), gateway).unwrap();

    // Someone in the room sees the call, as a SIP call.
    let tokens = {
        let secret = secret.clone();
        Tokens::Mint(Arc::new(
            move |room: &str, who: &str, _: Option<CallClaims>| {
                mint(&secret, room, who, "publisher")
            },
        ))
    };
    let api = RoomApi::new(http_base, tokens, "127.0.0.1".parse().unwrap());
    let observer = RoomPeer::join(&api, "clinic", "observer")
        .await
        .expect("an observer joins");
    let listed = observer.joined()["participants"].clone();
    observer.leave().await;
    let sip: Vec<&serde_json::Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "sip")
        .collect();
    assert_eq!(sip.len(), 1, "{listed}");

    // The caller hangs up.
    let bye = request("BYE", uri, &to, "c1", port, "");
    socket.send_to(bye.as_bytes(), gateway).unwrap();
    let r = final_response(&socket, "2 BYE", Duration::from_secs(5)).expect("an answer to the BYE");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");

    // The room dials out through the gateway: once it has connected for the node's
    // dial-outs, its refusals come back (400: not a SIP URI), and a call it places
    // reaches the far end.
    let end = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let r = dial("tel:+4512345678".into()).await.unwrap();
        if r.status() != 501 || Instant::now() > end {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("not a SIP URI"));
    let far = UdpSocket::bind("127.0.0.1:0").unwrap();
    far.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let far_port = far.local_addr().unwrap().port();
    let placed = dial(format!("sip:ward3@127.0.0.1:{far_port}"))
        .await
        .unwrap();
    assert_eq!(placed.status(), 202);
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(10);
    let invite = loop {
        assert!(Instant::now() < end, "no INVITE from the gateway");
        if let Ok(n) = far.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("INVITE sip:ward3@") {
                break text;
            }
        }
    };
    assert!(invite.contains("m=audio "), "{invite}");
}
