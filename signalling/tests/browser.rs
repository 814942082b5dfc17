//! Real browsers end to end: headless Chromium and Firefox ESR pages open the served
//! client page (`/?room=...`), publish camera and microphone (fake devices, VP8
//! simulcast) through the embedded media node, and each must play the others' video;
//! also through TURN only, over ICE-TCP with UDP dropped, as WHIP/WHEP clients, and
//! with a SIP video caller (baresip, through the gateway).
//!
//! Needs Debian's Chromium and Firefox ESR, and `playwright-core` and `puppeteer-core`
//! in tests/browser/node_modules; the Firefox and ICE-TCP tests build network
//! namespaces (root). `./scripts/test.sh` installs all of it. Without them a test
//! fails and says so.

mod common;
#[path = "../../loadtest/tests/common/netns.rs"]
mod netns;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// One browser test at a time: each runs two Chromium pages, and six at once on a
/// 2-core CI machine decode too few frames to judge (a run failed that way).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The longest a browser script may run: its own deadlines bound its waits, but not
/// a browser that hangs at launch or close. Past it the script's whole process group
/// (node and its browsers) is killed and the test fails with what it printed.
const SCRIPT_LIMIT: Duration = Duration::from_secs(150);

/// `Command::output`, bounded by a time limit.
trait Bounded {
    fn output_within(&mut self, limit: Duration) -> std::io::Result<std::process::Output>;
}

impl Bounded for Command {
    fn output_within(&mut self, limit: Duration) -> std::io::Result<std::process::Output> {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        let mut child = self
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = r.read_to_end(&mut v);
                v
            })
        };
        let out = drain(Box::new(child.stdout.take().expect("piped")));
        let err = drain(Box::new(child.stderr.take().expect("piped")));
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if std::time::Instant::now() > deadline {
                // The group: node and the browsers it started.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                eprintln!("the script ran over {limit:?}: killed");
                break child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Ok(std::process::Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }
}

/// The browser scripts' directory, once Chromium and playwright-core are there.
fn scripts() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        Path::new(&chromium()).exists(),
        "Chromium not found at {} (set CHROMIUM, or run ./scripts/test.sh, which installs Debian's chromium)",
        chromium()
    );
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core missing: run `npm ci` in {} (./scripts/test.sh does)",
        dir.display()
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chromium_pages_see_each_other() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scripts();
    let server = signalling::start({
        let mut c = signalling::Config::local(1);
        c.joins_per_second = 50.0;
        c
    })
    .await
    .expect("server starts");
    let url = server.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(dir.join("two_pages.mjs"))
            .arg(url)
            .arg("browser-e2e")
            .env("BROWSER_TEST_TIMEOUT_MS", "45000")
            .output_within(SCRIPT_LIMIT)
            .expect("node runs (Node.js must be installed)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("browser report:\n{stdout}\n{stderr}");
    let metrics = server.node.as_ref().unwrap().metrics().render();
    let forwarded: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("sfu_rtp_forwarded_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    server.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(out.status.success(), "both pages play each other's video");
    assert!(
        forwarded > 100,
        "the media went through the node ({forwarded} forwarded)"
    );
}

/// A browser page and a SIP caller meet: a Chromium page in the room (simulcast from
/// its fake camera) and baresip dialling the room through the gateway that
/// `signalling --sip` runs (its test pattern). The page plays the caller's video and
/// lists the caller as a SIP call; baresip decodes the page's video. In a room created
/// with `video_codec` (`codec`: "h264"), both send that codec.
async fn page_meets_sip_caller(room: &str, codec: Option<&str>) {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scripts();
    let node = common::sip::Node::start(&[]);
    if let Some(codec) = codec {
        let created = node
            .create_room(serde_json::json!({"name": room, "video_codec": codec}))
            .await;
        assert_eq!(created.status().as_u16(), 201);
    }
    let url = format!("{}/", node.http);
    let expect = match codec {
        Some("h264") => "video/H264",
        Some(_) => "video/VP8",
        None => "",
    };
    let page = tokio::task::spawn_blocking({
        let room = room.to_owned();
        move || {
            Command::new("node")
                .arg(dir.join("sip_caller.mjs"))
                .arg(url)
                .arg(room)
                .env("BROWSER_TEST_TIMEOUT_MS", "45000")
                .env("EXPECT_CODEC", expect)
                .output_within(SCRIPT_LIMIT)
                .expect("node runs (Node.js must be installed)")
        }
    });
    // The caller dials once the page is in the room (it takes a few seconds to join).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls = std::env::temp_dir().join(format!("knudepunkt-{room}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&calls);
    // VP8 (vp8), or H.264 among baresip's avcodec formats (Debian's baresip-ffmpeg).
    let (account, module) = match codec {
        Some("h264") => ("audio_codecs=PCMA/8000/1", "avcodec.so"),
        _ => ("audio_codecs=PCMA/8000/1;video_codecs=VP8", "vp8.so"),
    };
    common::sip::baresip_config(
        &calls,
        account,
        &format!(
            "module {module}\nmodule fakevideo.so\nvideo_source fakevideo,nil\n\
             video_display fakevideo,nil\nvideo_size 320x240\nvideo_fps 15\n"
        ),
    );
    let dial = format!("/dial sip:{room}@{}", node.sip);
    let caller = tokio::task::spawn_blocking({
        let calls = calls.clone();
        move || {
            Command::new(common::sip::baresip())
                .args(["-f", calls.to_str().unwrap(), "-e", &dial, "-t", "15"])
                .output_within(Duration::from_secs(40))
                .expect("baresip runs")
        }
    });
    let out = page.await.unwrap();
    let said = caller.await.unwrap();
    let said = String::from_utf8_lossy(&said.stdout);
    eprintln!(
        "browser report:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded = said
        .lines()
        .find(|l| l.contains("video: receiving with resolution"));
    eprintln!("baresip: {decoded:?}");
    let _ = std::fs::remove_dir_all(&calls);
    assert!(
        out.status.success(),
        "the page plays the SIP caller's video"
    );
    assert!(said.contains("Call established"), "baresip:\n{said}");
    assert!(
        decoded.is_some(),
        "baresip decoded none of the page's video:\n{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chromium_page_and_a_sip_caller_see_each_other() {
    page_meets_sip_caller("sip-page", None).await;
}

/// A room made for room systems (`video_codec: h264`): the page publishes H.264
/// simulcast and receives H.264, and an H.264 SIP caller sees it and is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_an_h264_room_a_page_and_an_h264_caller_see_each_other() {
    page_meets_sip_caller("sip-h264", Some("h264")).await;
}

/// VP8 picture numbers across layer switches: bob's page caps alice's video at layer
/// 0, then 1, four times over; bob's Chromium must decode on through every switch
/// (each layer numbers its pictures on its own; the node renumbers them per
/// subscriber), dropping next to nothing and asking for no keyframe storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chromium_subscriber_decodes_on_across_forced_layer_switches() {
    assert!(
        run_script("switches.mjs", "switches").await,
        "bob decodes alice's video on through every forced layer switch"
    );
}

/// Reused m-lines in a browser: visitors come and go one after another while alice
/// stays; the node gives each visitor's tracks the m-lines of the one before (whose
/// msid names the first visitor), and alice's page shows each in its own tile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_shows_each_visitor_on_the_m_lines_of_the_one_before() {
    assert!(
        run_script("visitors.mjs", "visitors").await,
        "alice sees bob, carol and dave, each in its own tile, on the same two m-lines"
    );
}

/// Screen sharing in a browser: alice's page shares its screen (headless Chromium's
/// synthetic screen); bob's page plays one more video, alice's screen, large and
/// first; when she stops, it goes and her camera plays on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_shares_its_screen_and_another_page_plays_it() {
    assert!(
        run_script("screen.mjs", "screen").await,
        "bob's page plays alice's shared screen, large, until she stops"
    );
}

/// The waiting room, end to end in Chromium: a booking system's calls create a room
/// with a lobby and mint a host's and guests' links; the patient waits until the
/// host lets them in, a second guest is turned away, the host mutes the patient at
/// the node (the host's page receives none of the patient's audio until the patient
/// unmutes) and removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_admits_turns_away_mutes_and_removes_guests() {
    assert!(
        run_script("lobby.mjs", "clinic").await,
        "the host runs the waiting room and the meeting"
    );
}

/// The page a person uses: the form with device choice and preview (a link with a
/// name still joins at once), joining muted, the form gone in the meeting, a banner
/// while the connection is lost, Danish; axe-core finds no serious or critical
/// violation in any state, and at phone size nothing scrolls sideways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lets_a_person_choose_devices_and_fits_a_phone() {
    assert!(
        run_script("page.mjs", "page").await,
        "the page passes its states at desktop and phone size"
    );
}

/// The check before a consultation: `/check` says camera, microphone and the
/// connection to the media node work (directly, over UDP), in English and Danish,
/// joining no meeting; the check's peer is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_page_tests_camera_microphone_and_connection() {
    assert!(
        run_script("check.mjs", "-").await,
        "the check says everything works"
    );
}

/// Where the browser scripts save their screenshots (README shows some of them).
fn screenshots() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Runs a browser script against a local server (signalling with its embedded media
/// node) in `room`; prints its report; whether it passed.
async fn run_script(script: &str, room: &str) -> bool {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scripts();
    let server = signalling::start(signalling::Config::local(1))
        .await
        .expect("server starts");
    let url = server.url();
    let (script, room) = (dir.join(script), room.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(url)
            .arg(room)
            .env("BROWSER_TEST_TIMEOUT_MS", "60000")
            .env("SCREENSHOTS", screenshots())
            .output_within(SCRIPT_LIMIT)
            .expect("node runs (Node.js must be installed)")
    })
    .await
    .unwrap();
    eprintln!(
        "browser report:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    out.status.success()
}

/// The signalling node's own process, with a media node of its own process: killing
/// the signalling node (as a crash does) must not stop the pages' media, and each
/// page must take its session back over a new WebSocket once the node is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_pages_resume_after_a_signalling_restart() {
    let _one = ONE_AT_A_TIME.lock().await;
    use common::processes::{free_port, spawn_sfu, spawn_signalling};
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = scripts();
    let (http, quic) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let (secret, node_secret) = (control::secret::generate(), control::secret::generate());
    let args = [
        http.clone(),
        quic.clone(),
        secret.clone(),
        node_secret.clone(),
    ];
    let start = move || spawn_signalling(&args[0], &args[1], &args[2], &args[3]);
    let mut first = start();
    let _node = spawn_sfu("browser-node", &quic, &node_secret, &[]);
    let keys = signalling::token::Keys::new(secret.as_bytes());
    let ttl = Duration::from_secs(600);
    let tokens = ["alice", "bob"]
        .map(|who| keys.mint("resume-room", who, signalling::token::Role::Publisher, ttl));
    let mut script = Command::new("node")
        .arg(dir.join("resume.mjs"))
        .arg(format!("http://{http}/"))
        .arg("resume-room")
        .args(&tokens)
        .env("BROWSER_TEST_TIMEOUT_MS", "60000")
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs (Node.js must be installed)");
    let stdout = script.stdout.take().unwrap();
    let report = tokio::task::spawn_blocking(move || {
        let mut report = String::new();
        let mut restarted = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "READY" {
                // As a crash: no goodbye to anyone. Back on the same addresses.
                let _ = first.0.kill();
                let _ = first.0.wait();
                std::thread::sleep(Duration::from_secs(1));
                restarted = Some(start());
            } else {
                report.push_str(&line);
                report.push('\n');
            }
        }
        let status = script.wait().expect("the script ends");
        drop(restarted);
        (status, report)
    })
    .await
    .unwrap();
    eprintln!("browser report:\n{}", report.1);
    assert!(
        report.0.success(),
        "both pages resumed their sessions, same peer connections, video playing throughout"
    );
}

/// TURN: a coturn server on loopback sharing the node's TURN secret; two Chromium
/// pages that may use relay candidates only (as on a network that blocks all but the
/// TURN server) get their TURN credentials from the node and see each other's video
/// through the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_pages_meet_through_turn_only() {
    let _one = ONE_AT_A_TIME.lock().await;
    use common::processes::{free_port, Process};
    use std::process::Stdio;

    let dir = scripts();
    let turnserver = ["/usr/bin/turnserver", "/usr/sbin/turnserver"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect(
            "coturn's turnserver is needed (Debian package coturn; ./scripts/test.sh installs it)",
        );
    let secret = control::secret::generate();
    let port = free_port();
    let relay_ports = 40_000 + (std::process::id() % 20_000) as u16;
    let log = std::env::temp_dir().join(format!("knudepunkt-turn-{}.log", std::process::id()));
    let _turn = Process(
        Command::new(turnserver)
            .args([
                "-n",
                "--listening-ip",
                "127.0.0.1",
                "--relay-ip",
                "127.0.0.1",
            ])
            .args(["--listening-port", &port.to_string()])
            .args(["--min-port", &relay_ports.to_string()])
            .args(["--max-port", &(relay_ports + 50).to_string()])
            .args(["--use-auth-secret", "--static-auth-secret", &secret])
            .args([
                "--realm",
                "knudepunkt",
                "--fingerprint",
                "--allow-loopback-peers",
            ])
            .args([
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--simple-log",
                "--verbose",
            ])
            .arg("--log-file")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts"),
    );
    let server = signalling::start({
        let mut c = signalling::Config::local(1);
        c.ice_servers = vec![format!("turn:127.0.0.1:{port}?transport=udp")];
        c.turn_secret = Some(secret);
        c
    })
    .await
    .expect("server starts");
    let url = server.url();
    let (check_dir, check_url) = (dir.clone(), url.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(dir.join("locked_down.mjs"))
            .arg(url)
            .args(["turn-room", "relay"])
            .env("BROWSER_TEST_TIMEOUT_MS", "45000")
            .output_within(SCRIPT_LIMIT)
            .expect("node runs (Node.js must be installed)")
    })
    .await
    .unwrap();
    // The check before a consultation finds the same way: its direct try fails, and
    // it goes through the TURN server its answer named.
    let check = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(check_dir.join("check.mjs"))
            .arg(check_url)
            .arg("relay")
            .env("BROWSER_TEST_TIMEOUT_MS", "45000")
            .output_within(SCRIPT_LIMIT)
            .expect("node runs")
    })
    .await
    .unwrap();
    eprintln!("check report:\n{}", String::from_utf8_lossy(&check.stdout));
    server.shutdown();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "browser report:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let turn_log = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        out.status.success(),
        "both pages play each other's video over relay candidates only"
    );
    assert!(
        check.status.success(),
        "the check page finds its way through TURN"
    );
    // The TURN server authenticated the node's credentials and relayed the media.
    assert!(
        turn_log.contains("ALLOCATE processed, success"),
        "coturn allocated relays:\n{turn_log}"
    );
}

/// The node, signalling with its embedded media node, on a test host in a network
/// namespace of its own with a secret (not loopback: no dev mode); the browsers run
/// on another (`link.client`). Killed when dropped.
struct HostedNode {
    _process: netns::NodeProcess,
    url: String,
    secret: String,
}

impl HostedNode {
    fn start(link: &netns::LossyLink) -> HostedNode {
        let secret = control::secret::generate();
        let http = format!("{}:8080", netns::NODE_IP);
        let process = link.spawn_node(
            Path::new(env!("CARGO_BIN_EXE_signalling")),
            &[
                "--http",
                &http,
                "--secret",
                &secret,
                "--udp-bind",
                netns::NODE_IP,
                "--udp-port",
                "20000",
                "--shards",
                "1",
            ],
            "serving meetings",
        );
        HostedNode {
            _process: process,
            url: format!("http://{http}/"),
            secret,
        }
    }

    /// Join tokens for `names` in `room`, comma-separated (the scripts' TOKENS).
    fn tokens(&self, room: &str, names: &[&str]) -> String {
        let token = |name: &str| {
            let out = Command::new(env!("CARGO_BIN_EXE_signalling"))
                .args(["token", "--room", room, "--identity", name])
                .env("KNUDEPUNKT_SECRET", &self.secret)
                .output()
                .expect("signalling token");
            assert!(out.status.success(), "a token is minted");
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        names.iter().map(|n| token(n)).collect::<Vec<_>>().join(",")
    }
}

/// Firefox ESR and Chromium meet: on a test host of their own (Firefox sends no ICE
/// checks to a loopback candidate), a Firefox page and a Chromium page join one
/// room on the node's host and each plays the other's video. Then Firefox publishes
/// over WHIP and plays the stream back over WHEP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firefox_page_and_a_chromium_page_see_each_other() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scripts();
    let firefox = std::env::var("FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".into());
    assert!(
        Path::new(&firefox).exists(),
        "Firefox ESR not found at {firefox} (set FIREFOX, or run ./scripts/test.sh, which installs Debian's firefox-esr)"
    );
    let (out, whip) = tokio::task::spawn_blocking(move || {
        let link = netns::LossyLink::new(0);
        let node = HostedNode::start(&link);
        let url = node.url.clone();
        let tokens = node.tokens("fox-room", &["firefox", "chromium"]);
        let meet = link
            .client(
                "node",
                &[
                    dir.join("firefox_meets_chromium.mjs").to_str().unwrap(),
                    &url,
                    "fox-room",
                ],
            )
            .env("ORIGIN", url.trim_end_matches('/'))
            .env("FIREFOX", &firefox)
            .env("TOKENS", tokens)
            .env("BROWSER_TEST_TIMEOUT_MS", "60000")
            .output_within(SCRIPT_LIMIT)
            .expect("node runs (Node.js must be installed)");
        // The same node: WHIP and WHEP tokens of another room.
        let tokens = node.tokens("fox-whip", &["whip", "whep"]);
        let whip = link
            .client(
                "node",
                &[
                    dir.join("whip_whep.mjs").to_str().unwrap(),
                    &url,
                    "fox-whip",
                ],
            )
            .env("ORIGIN", url.trim_end_matches('/'))
            .env("BROWSER", "firefox")
            .env("FIREFOX", &firefox)
            .env("TOKENS", tokens)
            .output_within(SCRIPT_LIMIT)
            .expect("node runs (Node.js must be installed)");
        (meet, whip)
    })
    .await
    .unwrap();
    for (what, out) in [("page", &out), ("WHIP/WHEP", &whip)] {
        eprintln!(
            "{what} report:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        out.status.success(),
        "the Firefox page and the Chromium page play each other's video"
    );
    assert!(
        whip.status.success(),
        "Firefox publishes over WHIP and plays over WHEP"
    );
}

/// ICE-TCP: two Chromium pages in a network namespace whose link to the node's drops
/// every UDP datagram (nftables, both ways), as a hospital network that lets only
/// TCP out. They join through the node's HTTP address on the link and each plays
/// the other's video over ICE-TCP (the selected candidate pair is TCP on both ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_pages_meet_over_ice_tcp_when_udp_is_blocked() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scripts();
    let (out, dropped) = tokio::task::spawn_blocking(move || {
        let link = netns::LossyLink::without_udp();
        let node = HostedNode::start(&link);
        let url = node.url.clone();
        let tokens = node.tokens("tcp-room", &["alice", "bob"]);
        let out = link
            .client(
                "node",
                &[
                    dir.join("locked_down.mjs").to_str().unwrap(),
                    &url,
                    "tcp-room",
                    "tcp",
                ],
            )
            .env("ORIGIN", url.trim_end_matches('/'))
            .env("TOKENS", tokens)
            .env("BROWSER_TEST_TIMEOUT_MS", "45000")
            .output_within(SCRIPT_LIMIT)
            .expect("node runs (Node.js must be installed)");
        (out, link.dropped())
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "browser report:\n{report}\n{}\nUDP datagrams dropped (node side, client side): {dropped:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "both pages play each other's video over ICE-TCP"
    );
    // The pages did try UDP first: the link refused it.
    assert!(dropped.0 > 0, "Chromium's UDP checks were dropped");
}
