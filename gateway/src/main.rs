//! `gateway`: the SIP gateway on its own machine, near the room systems' network.
//! Calls join rooms through the signalling node at `--signalling`, with join tokens
//! minted with the node's token secret (or, for a node in dev mode, asked of its
//! dev-token endpoint).

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use gateway::driver::{RoomApi, Tokens};
use gateway::sip::{self, SipConfig};

#[derive(Parser, Debug)]
#[command(about = "knudepunkt's SIP gateway: room systems and phones dial sip:ROOM@host")]
struct Args {
    /// The signalling node's HTTP address, e.g. http://10.0.0.2:8080.
    #[arg(long)]
    signalling: String,
    /// SIP over UDP and TCP on this address (a specific IP: it is named in answers).
    #[arg(long, default_value = "127.0.0.1:5060")]
    sip: SocketAddr,
    /// The signalling node's token secret (mints the calls' join tokens); without it
    /// the node must be in dev mode.
    #[arg(long, env = "KNUDEPUNKT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The address the calls' WebRTC peers use towards the media node; by default the
    /// --sip address's IP.
    #[arg(long)]
    media_ip: Option<IpAddr>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(log_filter())
        .init();
    let args = Args::parse();
    if args.sip.ip().is_unspecified() {
        eprintln!("error: --sip needs a specific IP address: the calls' SDP names it");
        return ExitCode::from(2);
    }
    if !(args.signalling.starts_with("http://") || args.signalling.starts_with("https://")) {
        eprintln!("error: --signalling must be an http:// or https:// URL");
        return ExitCode::from(2);
    }
    let tokens = match &args.secret {
        Some(s) => Tokens::Secret(Arc::new(jsonwebtoken::EncodingKey::from_secret(
            s.as_bytes(),
        ))),
        None => Tokens::Dev,
    };
    let media_ip = args.media_ip.unwrap_or(args.sip.ip());
    let config = SipConfig {
        bind: args.sip,
        media_ip: args.sip.ip(),
        api: RoomApi::new(&args.signalling, tokens, media_ip),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        match sip::spawn(config, stop.clone()).await {
            Ok((addr, _)) => println!("knudepunkt's SIP gateway is listening on {addr} (UDP, TCP)"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
        ExitCode::SUCCESS
    })
}

/// RUST_LOG, or INFO by default. rsipstack logs whole SIP messages (room names in
/// request URIs, callers' numbers and addresses) at INFO: it stays at WARN unless
/// RUST_LOG names it.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let env = std::env::var("RUST_LOG").unwrap_or_default();
    let base = if env.is_empty() {
        "info,str0m=warn"
    } else {
        &env
    };
    let mut filter = tracing_subscriber::EnvFilter::new(base);
    if !env.contains("rsipstack") {
        filter = filter.add_directive("rsipstack=warn".parse().expect("a valid directive"));
    }
    filter
}
