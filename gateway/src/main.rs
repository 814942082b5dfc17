//! `gateway`: the SIP gateway on its own machine, near the room systems' network.
//! Calls join rooms through the signalling node at `--signalling`, with join tokens
//! the node hands it for each call against its service token (`--service-token`,
//! minted by `signalling token --room '*' --role service`); for a node in dev mode,
//! from its dev-token endpoint. The gateway holds no key that mints tokens.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use gateway::room::{RoomApi, Tokens};
use gateway::sip::{self, SipConfig};

#[derive(Parser, Debug)]
#[command(about = "knudepunkt's SIP gateway: room systems and phones dial sip:ROOM@host")]
struct Args {
    /// Read settings from this TOML file: its keys are these flags' names; a flag
    /// given here, or its environment variable, wins over the file.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Print the effective settings (secrets masked, each value's source named) as a
    /// config file, and exit.
    #[arg(long)]
    print_config: bool,
    /// The signalling node's HTTP address, e.g. http://10.0.0.2:8080.
    #[arg(long)]
    signalling: String,
    /// SIP over UDP and TCP on this address (a specific IP: it is named in answers).
    #[arg(long, default_value = "127.0.0.1:5060")]
    sip: SocketAddr,
    /// The gateway's service token (`signalling token --room '*' --role service
    /// --ttl 30d`): the signalling node hands it each call's join token. Without it
    /// the node must be in dev mode.
    #[arg(long, env = "KNUDEPUNKT_SERVICE_TOKEN", hide_env_values = true)]
    service_token: Option<String>,
    /// The address the calls' WebRTC peers use towards the media node; by default the
    /// --sip address's IP.
    #[arg(long)]
    media_ip: Option<IpAddr>,
    /// SIP over TLS on the --sip port + 1 with this PEM certificate chain (and
    /// --sip-tls-key); calls over TLS must encrypt their media (SDES-SRTP).
    #[arg(long, requires = "sip_tls_key")]
    sip_tls_cert: Option<std::path::PathBuf>,
    #[arg(long, requires = "sip_tls_cert")]
    sip_tls_key: Option<std::path::PathBuf>,
    /// Place calls over TLS (`sips:` dial-out) and check the far ends' certificates
    /// against these trust anchors (PEM; your hospital's CA, or the public CAs'
    /// bundle, /etc/ssl/certs/ca-certificates.crt). Their media is SDES-SRTP. Needs
    /// --sip-tls-cert: the far end's requests come to the gateway's TLS listener.
    #[arg(long, value_name = "FILE", requires = "sip_tls_cert")]
    sip_tls_ca: Option<std::path::PathBuf>,
    /// Let calls over UDP and TCP carry plain RTP (unencrypted audio): on a trusted
    /// network only. The default without --service-token (a node in dev mode).
    #[arg(long)]
    sip_allow_plain_rtp: bool,
    /// A network (address or CIDR) whose calls need no room PIN: a hospital's own SBC
    /// or PBX. Repeatable. Other callers dial ROOM*PIN.
    #[arg(long = "sip-trust", value_name = "CIDR", value_parser = parse_net)]
    sip_trust: Vec<ipnet::IpNet>,
    /// A trunk or SBC that authenticates (digest, RFC 3261 §22) instead of coming
    /// from a --sip-trust network: callers whose From user is this name are
    /// challenged for the password (--sip-auth-password), and trusted (no room PIN)
    /// when they answer it. Other callers are not asked.
    #[arg(long, value_name = "NAME", requires = "sip_auth_password")]
    sip_auth_user: Option<String>,
    /// The trunk's password (at least 16 characters; `signalling secret` makes one).
    #[arg(
        long,
        env = "KNUDEPUNKT_SIP_AUTH_PASSWORD",
        hide_env_values = true,
        requires = "sip_auth_user"
    )]
    sip_auth_password: Option<String>,
    /// Register a number with a SIP trunk or registrar (`sip:NUMBER@HOST[:PORT]`), so
    /// that calls to the number reach the room whose alias it is. Its password (if
    /// the registrar challenges) in --sip-register-password.
    #[arg(long, value_name = "URI")]
    sip_register: Option<String>,
    #[arg(
        long,
        env = "KNUDEPUNKT_SIP_REGISTER_PASSWORD",
        hide_env_values = true,
        requires = "sip_register"
    )]
    sip_register_password: Option<String>,
    /// The registration's expiry asked for, seconds.
    #[arg(long, default_value_t = gateway::register::DEFAULT_EXPIRES, requires = "sip_register")]
    sip_register_expires: u32,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(log_filter())
        .init();
    let args: Args = settings::parse();
    if args.sip.ip().is_unspecified() {
        eprintln!("error: --sip needs a specific IP address: the calls' SDP names it");
        return ExitCode::from(2);
    }
    if !args.signalling.starts_with("http://") {
        // It speaks no TLS to the node: its own address, not the public TLS proxy.
        eprintln!(
            "error: --signalling must be the node's own http:// URL (not through its TLS proxy)"
        );
        return ExitCode::from(2);
    }
    let tokens = match &args.service_token {
        Some(t) if t.trim().is_empty() => {
            eprintln!("error: --service-token is empty");
            return ExitCode::from(2);
        }
        Some(t) => Tokens::Service(t.trim().into()),
        None => Tokens::Dev,
    };
    let trunk = gateway::sip::trunk_options(
        (
            args.sip_auth_user.as_deref(),
            args.sip_auth_password.as_deref(),
        ),
        (
            args.sip_register.as_deref(),
            args.sip_register_password.clone(),
            args.sip_register_expires,
        ),
    );
    let (digest, register) = match trunk {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let media_ip = args.media_ip.unwrap_or(args.sip.ip());
    let tls = match (&args.sip_tls_cert, &args.sip_tls_key) {
        (Some(cert), Some(key)) => Some(sip::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let config = SipConfig {
        bind: args.sip,
        media_ip: args.sip.ip(),
        api: RoomApi::new(&args.signalling, tokens, media_ip),
        tls,
        tls_ca: args.sip_tls_ca.clone(),
        allow_plain_rtp: args.sip_allow_plain_rtp || args.service_token.is_none(),
        trust: args.sip_trust.clone(),
        digest,
        register,
    };
    let has_tls = config.tls.is_some();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let registry = prometheus::Registry::new();
        let metrics = Arc::new(gateway::metrics::Metrics::new(&registry));
        if let Some(addr) = args.metrics {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    eprintln!("metrics at http://{addr}/metrics");
                    tokio::spawn(serve_metrics(l, registry));
                }
                Err(e) => {
                    eprintln!("error: metrics on {addr}: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        // A wrong or expired service token is the operator's to fix: say so at start,
        // not with every call.
        if let Err(e) = config.api.check_service_token().await {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        let api = config.api.clone();
        let mut serving = match sip::spawn(config, metrics, stop.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        // The node's dial-outs (`POST /api/rooms/{room}/dial`) are placed here.
        let dialer = serving.dialer.clone();
        tokio::spawn(gateway::dials::take(api, dialer, stop.clone()));
        println!(
            "knudepunkt's SIP gateway is listening on {} (UDP, TCP{})",
            serving.addr,
            if has_tls {
                ", TLS on the next port"
            } else {
                ""
            }
        );
        tokio::select! {
            _ = gateway::stop_signal() => {}
            _ = &mut serving.stopped => {
                eprintln!("error: the SIP endpoint stopped by itself");
                return ExitCode::from(1);
            }
        }
        // Each caller is told (a BYE) before the gateway goes.
        stop.cancel();
        let _ = serving.stopped.await;
        ExitCode::SUCCESS
    })
}

/// RUST_LOG, or INFO by default. rsipstack logs whole SIP messages (room names in
/// request URIs, callers' numbers and addresses) at INFO, and addresses and Call-IDs
/// in its warnings: it stays at ERROR (it logs nothing there) unless RUST_LOG names it.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let env = std::env::var("RUST_LOG").unwrap_or_default();
    let base = if env.is_empty() {
        "info,str0m=warn"
    } else {
        &env
    };
    let mut filter = tracing_subscriber::EnvFilter::new(base);
    if !env.contains("rsipstack") {
        filter = filter.add_directive("rsipstack=error".parse().expect("a valid directive"));
    }
    filter
}

/// `GET /metrics` in Prometheus's text format.
async fn serve_metrics(listener: tokio::net::TcpListener, registry: prometheus::Registry) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut out = String::new();
                let _ = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out);
                out
            }
        }),
    );
    let _ = axum::serve(listener, app).await;
}

/// An address or a CIDR block: `10.0.0.5`, `10.0.0.0/8`, `fd00::/8`.
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR block"))
}
