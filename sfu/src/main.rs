//! `sfu`: run a media node on its own machine. With `--signalling` it registers with
//! a signalling node over QUIC and serves the rooms placed on it; it always serves its
//! metrics. The signalling node embeds the same [`sfu::Node`] in-process by default.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::{routing::get, Router};
use clap::Parser;
use sfu::{Node, NodeConfig};

#[derive(Parser, Debug)]
#[command(version, about = "knudepunkt media node (WebRTC SFU)")]
struct Args {
    /// Read settings from this TOML file: its keys are these flags' names; a flag
    /// given here, or its environment variable, wins over the file.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Print the effective settings (secrets masked, each value's source named) as a
    /// config file, and exit.
    #[arg(long)]
    print_config: bool,
    /// Packet shards (one OS thread each); 0 = one per core.
    #[arg(long, default_value_t = 0)]
    shards: usize,
    /// IP the shards' UDP sockets (and ICE-TCP listeners) bind to; give it twice
    /// for one IPv4 and one IPv6 address (clients get a host candidate of each).
    #[arg(long, default_value = "127.0.0.1")]
    bind: Vec<IpAddr>,
    /// UDP port of the first shard (the others follow); 0 picks free ports.
    #[arg(long, default_value_t = 20000)]
    port: u16,
    /// TCP port of the first shard's ICE-TCP listener (for clients whose network
    /// blocks UDP; the others follow); by default the --port numbers.
    #[arg(long)]
    tcp_port: Option<u16>,
    /// Offer no ICE-TCP candidates (UDP only).
    #[arg(long)]
    no_ice_tcp: bool,
    /// IP announced to clients as the host candidate (NAT, Kubernetes), in place
    /// of the --bind address of its family; at most one per family.
    #[arg(long)]
    announce_ip: Vec<IpAddr>,
    /// Where to serve Prometheus metrics (`/metrics`).
    #[arg(long, default_value = "127.0.0.1:9100")]
    metrics: SocketAddr,
    /// Most participants in one room.
    #[arg(long, default_value_t = 100)]
    max_room_size: usize,
    /// Register with this signalling node (its `--quic` address: IP:PORT, or
    /// HOST:PORT looked up at each connection) and take its commands over QUIC;
    /// several (repeated, or comma-separated) when signalling nodes share their state
    /// in Redis: the node serves each. Without it the node waits for an in-process
    /// control plane.
    #[arg(long, value_delimiter = ',', value_parser = control_address)]
    signalling: Vec<String>,
    /// Shared secret proving this node to the signalling node (and it to us).
    #[arg(long, env = "KNUDEPUNKT_NODE_SECRET", hide_env_values = true)]
    node_secret: Option<String>,
    /// Name of this node, shown by the signalling node.
    #[arg(long)]
    name: Option<String>,
    /// On SIGTERM (or SIGINT) the node drains: no new rooms, its meetings go on until
    /// they end or this many seconds pass; a second signal stops it at once.
    #[arg(long, default_value_t = 3600)]
    drain_timeout: u64,
    /// Most participants this node takes.
    #[arg(long, default_value_t = 1000)]
    capacity: usize,
    /// Seconds the node keeps its participants (and their media flowing) without a
    /// signalling node: one that restarts within it takes them back, and their
    /// clients resume. After it they are let go.
    #[arg(long, default_value_t = 60)]
    control_grace: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,str0m=warn".into()),
        )
        .init();
    let args: Args = settings::parse();
    if args.max_room_size < 2 {
        eprintln!("error: --max-room-size must be at least 2");
        return std::process::ExitCode::from(2);
    }
    let config = NodeConfig {
        shards: args.shards,
        bind_ips: args.bind.clone(),
        port: args.port,
        ice_tcp: !args.no_ice_tcp,
        tcp_port: args.tcp_port,
        announce_ips: args.announce_ip.clone(),
        max_room_size: args.max_room_size,
        // An offer made just before a signalling restart waits through it: the grace,
        // then the time a client has to resume, then some.
        offer_give_up: Duration::from_secs(args.control_grace) + Duration::from_secs(45),
        ..NodeConfig::default()
    };
    let (node, mut events) = match Node::start(config) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: cannot start the media node: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.metrics).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot serve metrics on {}: {e}", args.metrics);
            return std::process::ExitCode::from(2);
        }
    };
    let m = node.metrics().clone();
    let app = Router::new().route("/metrics", get(move || async move { m.render() }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    tracing::info!("metrics on http://{}/metrics", args.metrics);
    if !args.signalling.is_empty() {
        let signalling = args.signalling;
        if signalling.len() > 16 {
            eprintln!("error: at most 16 --signalling nodes");
            return std::process::ExitCode::from(2);
        }
        let Some(secret) = args.node_secret.filter(|s| !s.is_empty()) else {
            eprintln!("error: --signalling needs --node-secret (or KNUDEPUNKT_NODE_SECRET)");
            return std::process::ExitCode::from(2);
        };
        if let Err(why) = control::secret::check(&secret) {
            let how = control::secret::HOW_TO_MAKE_ONE;
            eprintln!("error: refusing the node secret: {why}; {how}");
            return std::process::ExitCode::from(2);
        }
        let cfg = sfu::remote::RemoteConfig {
            signalling,
            secret: secret.into_bytes(),
            name: args
                .name
                .unwrap_or_else(|| format!("sfu-{}", std::process::id())),
            capacity: args.capacity,
            grace: Duration::from_secs(args.control_grace),
        };
        tokio::spawn(sfu::remote::run(node.clone(), events, cfg));
    } else {
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                tracing::debug!(?ev, "event");
            }
        });
    }
    let mut stop = Stops::new();
    // SIGTERM (an upgrade, a scale-down) drains; Ctrl-C stops at once.
    if !stop.next().await {
        node.shutdown();
        return std::process::ExitCode::SUCCESS;
    }
    node.drain();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.drain_timeout);
    let here = node.load().participants;
    tracing::info!(
        participants = here,
        "draining: no new rooms; stopping when the meetings here end (a second signal stops at once)"
    );
    let ended = async {
        // A join the signalling node sent before it heard of the drain lands first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        while node.load().participants > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        _ = ended => tracing::info!("drained: stopping"),
        _ = stop.next() => tracing::info!("stopping at once"),
    }
    node.shutdown();
    std::process::ExitCode::SUCCESS
}

/// SIGTERM (systemd, Kubernetes: drain) and SIGINT (Ctrl-C: stop), one after the
/// other.
/// Both are registered once, so that none is lost between two waits.
struct Stops(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Stops {
    fn new() -> Stops {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        Stops(term.and_then(|t| Ok((t, int?))).ok())
    }

    /// The next signal: true for SIGTERM.
    async fn next(&mut self) -> bool {
        match &mut self.0 {
            Some((term, int)) => tokio::select! {
                _ = term.recv() => true,
                _ = int.recv() => false,
            },
            None => {
                let _ = tokio::signal::ctrl_c().await;
                false
            }
        }
    }
}

/// A signalling node's QUIC address: IP:PORT, or HOST:PORT (looked up at each
/// connection, so that a replaced pod's new address is found).
fn control_address(s: &str) -> Result<String, String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    match s.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && port.parse::<u16>().is_ok_and(|p| p > 0)
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) =>
        {
            Ok(s.to_owned())
        }
        _ => Err(format!("{s:?} is no IP:PORT or HOST:PORT")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signalling_addresses_are_ip_or_host_and_port() {
        for ok in [
            "127.0.0.1:7000",
            "[::1]:7000",
            "signalling-0.signalling:4433",
        ] {
            assert_eq!(super::control_address(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "127.0.0.1",
            "host:",
            ":7000",
            "host:0",
            "host:99999",
            "a b:1",
            "x/y:1",
        ] {
            assert!(super::control_address(bad).is_err(), "{bad}");
        }
    }
}
