//! The alerts and the dashboard, proven on a real Prometheus (Debian's `prometheus`)
//! with deploy/prometheus's own configuration and rules: a signalling node with its
//! SIP gateway, two `sfu` nodes over QUIC, a smoke load with SIP legs; every Grafana
//! panel query is asked of Prometheus (those that need traffic a smoke run does not
//! make are listed, not skipped silently), then one media node is killed and its
//! alerts must fire. The rules' `for:` durations are shortened to 5 s and the scrape
//! and evaluation intervals to 1 s; nothing else of them is changed.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, free_sip_port, loadtest, signalling_binary, Server};

/// Panels whose queries may have no data after a healthy smoke run (series that
/// appear with their first refusal, drop or failure, or need loss on the link):
/// refusals and drops, nodes lost or refused (before the kill), NACKs and layer
/// switches on a clean loopback link, datagrams a SIP leg ignores. Listed with their
/// state, not judged; every other panel must have data.
const TRAFFIC_THEY_NEED: [&str; 11] = [
    "signalling_token_rejections_total",
    "signalling_bad_messages_total",
    "sfu_datagrams_dropped_total",
    "sfu_udp_send_failed_total",
    "sfu_events_dropped_total",
    "sfu_peer_failures_total",
    "signalling_media_nodes_lost_total",
    "signalling_media_nodes_refused_total",
    "sfu_nacks_",
    "sfu_layer_switches_total",
    "gateway_leg_datagrams_ignored_total",
];

fn prometheus() -> PathBuf {
    let bin = PathBuf::from(std::env::var("PROMETHEUS").unwrap_or("/usr/bin/prometheus".into()));
    assert!(
        bin.exists(),
        "Prometheus not found at {} (Debian package prometheus; ./scripts/test.sh installs it)",
        bin.display()
    );
    bin
}

fn sfu_binary() -> PathBuf {
    let bin = signalling_binary().with_file_name("sfu");
    assert!(
        bin.exists(),
        "{} missing: `cargo build -p sfu`",
        bin.display()
    );
    bin
}

/// deploy/prometheus's configuration and rules, aimed at these processes, with the
/// intervals and `for:` durations shortened.
fn configure(dir: &Path, signalling: &str, sfus: &[String]) {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let config = std::fs::read_to_string(deploy.join("prometheus.yml")).unwrap();
    let targets = sfus
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = config
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("[\"127.0.0.1:8080\"]", &format!("[\"{signalling}\"]"))
        .replace(
            "[\"127.0.0.1:9101\", \"127.0.0.1:9102\"]",
            &format!("[{targets}]"),
        );
    assert!(
        config.contains(signalling) && config.contains(&sfus[1]),
        "targets replaced:\n{config}"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let rules = std::fs::read_to_string(deploy.join("rules.yml")).unwrap();
    let mut shortened = String::new();
    for line in rules.lines() {
        match line.trim_start().strip_prefix("for: ") {
            Some(_) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                shortened.push_str(&format!("{indent}for: 5s\n"));
            }
            None => {
                shortened.push_str(line);
                shortened.push('\n');
            }
        }
    }
    std::fs::write(dir.join("rules.yml"), shortened).unwrap();
}

/// Each Grafana panel query with the dashboard's variables filled in: (panel, query).
fn dashboard_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/knudepunkt.json");
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                let q = expr
                    .replace("$signalling", ".*")
                    .replace("$media", ".*")
                    .replace("$__rate_interval", "1m");
                out.push((p["title"].as_str().unwrap_or("").to_owned(), q));
            }
        }
    }
    out
}

async fn query(prom: &str, q: &str) -> Vec<serde_json::Value> {
    let r: serde_json::Value = reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .expect("Prometheus answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(r["status"], "success", "{q}: {r}");
    r["data"]["result"].as_array().cloned().unwrap_or_default()
}

async fn firing(prom: &str) -> Vec<String> {
    let r: serde_json::Value = reqwest::get(format!("{prom}/api/v1/alerts"))
        .await
        .expect("Prometheus answers")
        .json()
        .await
        .expect("JSON");
    r["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_have_data_and_a_lost_media_node_fires_its_alerts() {
    let prometheus = prometheus();
    let dir = std::env::temp_dir().join(format!("knudepunkt-alerts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let secret: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();

    // The signalling node (its SIP gateway in-process), without an embedded node.
    let http = format!("127.0.0.1:{}", free_port());
    let quic = format!(
        "127.0.0.1:{}",
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let sip = format!("127.0.0.1:{}", free_sip_port());
    let signalling = Server(
        Command::new(signalling_binary())
            .args([
                "--http",
                &http,
                "--no-embedded-sfu",
                "--quic",
                &quic,
                "--sip",
                &sip,
            ])
            .args(["--joins-per-second", "500"])
            .env("KNUDEPUNKT_NODE_SECRET", &secret)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("signalling starts"),
        format!("http://{http}"),
    );
    let sfus: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut nodes: Vec<Server> = sfus
        .iter()
        .enumerate()
        .map(|(i, metrics)| {
            Server(
                Command::new(sfu_binary())
                    .args(["--signalling", &quic, "--name", &format!("node-{i}")])
                    .args(["--port", "0", "--shards", "1", "--metrics", metrics])
                    .env("KNUDEPUNKT_NODE_SECRET", &secret)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("sfu starts"),
                metrics.clone(),
            )
        })
        .collect();
    configure(&dir, &http, &sfus);
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let _prometheus = Server(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
        String::new(),
    );
    let prom = format!("http://{prom_addr}");
    // Prometheus listening first (the signalling node may be ready before it).
    let end = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("{prom}/-/ready"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < end, "Prometheus did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Ready: both nodes registered, Prometheus scraping all three.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = reqwest::get(format!("{}/readyz", signalling.1)).await;
        let ready = ready.is_ok_and(|r| r.status().is_success());
        let up = if ready {
            query(&prom, "sum(up)").await
        } else {
            Vec::new()
        };
        if up.first().and_then(|u| u["value"][1].as_str()) == Some("3") {
            let nodes = query(&prom, "signalling_media_nodes{state=\"ready\"}").await;
            if nodes.first().and_then(|n| n["value"][1].as_str()) == Some("2") {
                break;
            }
        }
        assert!(
            Instant::now() < end,
            "the nodes and Prometheus did not come up"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A smoke load with SIP legs.
    let (target, sip_addr) = (signalling.1.clone(), sip.clone());
    let report = dir.join("smoke.json");
    let report_arg = report.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        loadtest(&[
            "smoke",
            "--target",
            &target,
            "--sip",
            &sip_addr,
            "--sip-share",
            "30",
            "--report",
            &report_arg,
        ])
    })
    .await
    .unwrap();
    eprintln!(
        "smoke: exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.exists(), "the smoke run wrote its report");
    // Two scrapes after the load, so that rates over the last minute see all of it.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut empty = Vec::new();
    let mut listed = Vec::new();
    let queries = dashboard_queries();
    assert!(queries.len() > 40, "{} queries", queries.len());
    for (panel, q) in &queries {
        let has_data = !query(&prom, q).await.is_empty();
        if TRAFFIC_THEY_NEED.iter().any(|m| q.contains(m)) {
            listed.push(format!(
                "{panel}: {q} -> {}",
                if has_data { "data" } else { "no data" }
            ));
        } else if !has_data {
            empty.push(format!("{panel}: {q}"));
        }
    }
    eprintln!(
        "panels that need traffic a smoke run does not make:\n  {}",
        listed.join("\n  ")
    );
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n  {}",
        empty.join("\n  ")
    );

    // A media node dies: its target goes down and the signalling node loses it.
    assert!(
        firing(&prom).await.is_empty(),
        "no alert before: {:?}",
        firing(&prom).await
    );
    let _ = nodes[1].0.kill();
    let _ = nodes[1].0.wait();
    let want = ["KnudepunktTargetDown", "KnudepunktMediaNodeLost"];
    let end = Instant::now() + Duration::from_secs(40);
    let fired = loop {
        let now = firing(&prom).await;
        if want.iter().all(|w| now.iter().any(|f| f == w)) {
            break now;
        }
        assert!(
            Instant::now() < end,
            "alerts firing after the kill: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("firing after the kill: {fired:?}");
    nodes.clear();
    let _ = std::fs::remove_dir_all(&dir);
}
