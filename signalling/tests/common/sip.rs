//! SIP test scaffolding: `signalling --sip` started on loopback ports of its own,
//! baresip configured, and raw SIP requests sent from a socket of the test's.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gateway::room::{CallClaims, Tokens};

/// The caller's tone (baresip's `ausine`) and the room participant's.
pub const CALLER_HZ: f64 = 440.0;
pub const ROOM_HZ: f64 = 660.0;

pub struct Node {
    pub child: Child,
    pub http: String,
    pub sip: SocketAddr,
    stderr: mpsc::Receiver<String>,
    /// How the test mints the node's tokens, outside dev mode.
    minter: Option<Minter>,
}

/// A node's token key as the test holds it.
#[derive(Clone)]
pub enum Minter {
    /// The node's `--secret` (HS256).
    Secret(String),
    /// The token service's Ed25519 private key (PEM) for a node with
    /// `--token-public-key` (EdDSA).
    PrivateKey(String),
}

impl Minter {
    pub fn mint(&self, room: &str, who: &str, role: &str) -> String {
        match self {
            Minter::Secret(s) => mint(s, room, who, role),
            Minter::PrivateKey(pem) => {
                let key = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
                let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
                jsonwebtoken::encode(&header, &claims(room, who, role), &key).unwrap()
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// `signalling --sip` in dev mode on loopback, on ports of its choosing, with
    /// `extra` arguments.
    pub fn start(extra: &[&str]) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_signalling"))
            .args(["--http", "127.0.0.1:0", "--udp-port", "0", "--shards", "1"])
            .args(["--sip", &format!("127.0.0.1:{}", free_sip_ports())])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("signalling starts");
        let (tx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line)
            .expect("signalling says where it serves");
        let http = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("a URL")
            .split("?")
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        let sip = loop {
            let l = stderr
                .recv_timeout(Duration::from_secs(20))
                .expect("the gateway says where it listens");
            if let Some(rest) = l.strip_prefix("SIP gateway on ") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        let minter = extra
            .windows(2)
            .find(|w| w[0] == "--secret")
            .map(|w| Minter::Secret(w[1].to_owned()));
        Node {
            child,
            http,
            sip,
            stderr,
            minter,
        }
    }

    /// The test mints this node's tokens with `minter` (for a node started with
    /// `--token-public-key`: the private key).
    pub fn minting_with(mut self, minter: Minter) -> Node {
        self.minter = Some(minter);
        self
    }

    /// Tokens for a test's own participants: dev tokens, or minted with the node's key.
    pub fn tokens(&self) -> Tokens {
        let Some(minter) = self.minter.clone() else {
            return Tokens::Dev;
        };
        Tokens::Mint(std::sync::Arc::new(
            move |room: &str, who: &str, _: Option<CallClaims>| minter.mint(room, who, "publisher"),
        ))
    }

    /// `POST /api/rooms` with `body` (dev mode: no admin token needed from loopback).
    /// `POST /api/rooms` with `body` (as an admin, outside dev mode).
    pub async fn create_room(&self, body: serde_json::Value) -> reqwest::Response {
        let mut post = reqwest::Client::new()
            .post(format!("{}/api/rooms", self.http))
            .json(&body);
        if let Some(minter) = &self.minter {
            post = post.bearer_auth(minter.mint("*", "admin", "admin"));
        }
        post.send().await.expect("the node answers")
    }

    /// Everything it logged so far, without colours.
    pub fn log(&self) -> String {
        let mut plain = String::new();
        for line in self.stderr.try_iter() {
            let mut esc = false;
            for c in line.chars() {
                match c {
                    '\u{1b}' => esc = true,
                    'm' if esc => esc = false,
                    _ if esc => {}
                    _ => plain.push(c),
                }
            }
            plain.push('\n');
        }
        plain
    }
}

pub fn mint(secret: &str, room: &str, who: &str, role: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let claims = claims(room, who, role);
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// A token's claims for ten minutes.
fn claims(room: &str, who: &str, role: &str) -> serde_json::Value {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    serde_json::json!({"room": room, "sub": who, "role": role, "exp": exp})
}

pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// A port free for SIP over UDP and TCP, with the next one free for TLS.
pub fn free_sip_ports() -> u16 {
    loop {
        let p = free_udp_port();
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if p < u16::MAX && free(p) && free(p + 1) {
            return p;
        }
    }
}

pub fn baresip() -> PathBuf {
    let path = PathBuf::from(std::env::var("BARESIP").unwrap_or("/usr/bin/baresip".into()));
    assert!(
        path.exists(),
        "{} is missing: install Debian's baresip-core (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A baresip configuration in `dir`: SIP on loopback, a sine as microphone, what it
/// decodes dumped to WAV files; the account's `params` (codecs, media encryption)
/// and `extra` configuration lines. baresip listens on a port it picks itself: one
/// picked here could be taken by a test running beside it before baresip binds it.
pub fn baresip_config(dir: &Path, params: &str, extra: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let config = format!(
        "sip_listen 127.0.0.1:0\n\
         net_interface 127.0.0.1\n\
         module_path /usr/lib/baresip/modules\n\
         audio_source ausine,{CALLER_HZ}\n\
         ausrc_srate 48000\n\
         ausrc_channels 2\n\
         audio_player aufile,{dir}/unused.wav\n\
         snd_path {dir}\n\
         module ausine.so\n\
         module g711.so\n\
         module opus.so\n\
         module aufile.so\n\
         module sndfile.so\n\
         module_tmp account.so\n\
         module_app menu.so\n\
         {extra}",
        dir = dir.display()
    );
    std::fs::write(dir.join("config"), config).unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:caller@127.0.0.1>;regint=0;{params}\n"),
    )
    .unwrap();
}

/// The samples of a 16-bit PCM WAV file, and its rate.
pub fn wav(path: &Path) -> (Vec<i16>, u32) {
    let b = std::fs::read(path).unwrap();
    assert!(
        b.len() > 44 && &b[..4] == b"RIFF",
        "{} is no WAV",
        path.display()
    );
    let rate = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    let channels = u16::from_le_bytes([b[22], b[23]]) as usize;
    let samples: Vec<i16> = b[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .step_by(channels.max(1))
        .collect();
    (samples, rate)
}

/// A SIP request from a raw UDP socket at `port`, as a careless or hostile sender
/// writes it.
pub fn request(method: &str, uri: &str, call: &str, port: u16, body: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call}-{method}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@127.0.0.1>;tag=t-{call}\r\n\
         To: <{uri}>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:tester@127.0.0.1:{port}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Send `msg` and wait for its final response (a 1xx is skipped, and so are the
/// gateway's RTP and responses to other requests: the CSeq must be `msg`'s): its text.
pub fn final_response(socket: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<String> {
    socket.send_to(msg, to).unwrap();
    let sent = String::from_utf8_lossy(msg);
    let line = |name: &str| {
        sent.lines()
            .find(|l| l.starts_with(name))
            .map(str::to_owned)
    };
    let (cseq, call_id) = (line("CSeq:"), line("Call-ID:"));
    let mut buf = [0u8; 4096];
    // An INVITE's answer waits for its room's join: allow a loaded machine its time.
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let has = |want: &Option<String>| {
            want.as_deref()
                .is_none_or(|w| text.lines().any(|l| l.eq_ignore_ascii_case(w)))
        };
        let ours = has(&cseq) && has(&call_id);
        if text.starts_with("SIP/2.0 ") && !text.starts_with("SIP/2.0 1") && ours {
            return Some(text);
        }
    }
    None
}

pub fn status(response: &Option<String>) -> u16 {
    response
        .as_deref()
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A far end's response to `request` (a SIP message's text): `status` (`200 OK`), the
/// request's Via, From, Call-ID and CSeq repeated, its To tagged with `to_tag` (`None`:
/// as it was, inside a dialog), then `extra` header lines (each ending CRLF) and
/// `body` (SDP when not empty).
pub fn response(
    request: &str,
    status: &str,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in request.lines().take_while(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match (name.as_str(), to_tag) {
            ("via" | "v" | "from" | "f" | "call-id" | "i" | "cseq", _) | ("to" | "t", None) => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            ("to" | "t", Some(tag)) => out.push_str(&format!("{line};tag={tag}\r\n")),
            _ => {}
        }
    }
    out.push_str(extra);
    if !body.is_empty() {
        out.push_str("Content-Type: application/sdp\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}
