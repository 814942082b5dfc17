//! `signalling`: serve meetings (with an embedded media node unless built without the
//! `embedded-node` feature), or mint join tokens.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use signalling::token::{parse_ttl, Keys, Role};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "knudepunkt signalling node: rooms, tokens, WebSocket API, browser client"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Read settings from this TOML file: its keys are these flags' names
    /// (`http = "0.0.0.0:8080"`, `udp-bind = ["10.0.0.5"]`); a flag given here, or
    /// its environment variable, wins over the file.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Print the effective configuration (secrets masked, each value's source
    /// named) as a config file, and exit.
    #[arg(long)]
    print_config: bool,
    /// HTTP listen address (API, browser client, /metrics, /healthz, /readyz).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// HS256 secret for join tokens. Without it (or --token-public-key) the node runs
    /// in dev mode, which is allowed on loopback only.
    #[arg(long, env = "KNUDEPUNKT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// In place of --secret: join tokens are EdDSA, signed by your token service,
    /// whose Ed25519 public key (PEM) is in this file; the node then holds no key
    /// that mints them (`signalling keypair` makes a pair).
    #[arg(
        long,
        value_name = "FILE",
        env = "KNUDEPUNKT_TOKEN_PUBLIC_KEY",
        conflicts_with = "secret"
    )]
    token_public_key: Option<std::path::PathBuf>,
    /// Packet shards of the embedded media node; 0 = one per core.
    #[cfg(feature = "embedded-node")]
    #[arg(long, default_value_t = 0)]
    shards: usize,
    /// IP the embedded media node's UDP sockets (and ICE-TCP listeners) bind to;
    /// give it twice for one IPv4 and one IPv6 address (clients get a host
    /// candidate of each).
    #[cfg(feature = "embedded-node")]
    #[arg(long, default_value = "127.0.0.1")]
    udp_bind: Vec<std::net::IpAddr>,
    /// UDP port of the first shard (others follow); 0 picks free ports.
    #[cfg(feature = "embedded-node")]
    #[arg(long, default_value_t = 20000)]
    udp_port: u16,
    /// TCP port of the first shard's ICE-TCP listener (for clients whose network
    /// blocks UDP; the others follow); by default the --udp-port numbers.
    #[cfg(feature = "embedded-node")]
    #[arg(long)]
    tcp_port: Option<u16>,
    /// Offer no ICE-TCP candidates (UDP only).
    #[cfg(feature = "embedded-node")]
    #[arg(long)]
    no_ice_tcp: bool,
    /// IP announced to clients for media (NAT, Kubernetes), in place of the
    /// --udp-bind address of its family; at most one per family.
    #[cfg(feature = "embedded-node")]
    #[arg(long)]
    announce_ip: Vec<std::net::IpAddr>,
    /// Most participants in one room.
    #[cfg(feature = "embedded-node")]
    #[arg(long, default_value_t = 100)]
    max_room_size: usize,
    /// Joins per second allowed from one address.
    #[arg(long, default_value_t = 20.0)]
    joins_per_second: f64,
    /// Run no media node in-process: rooms go to `sfu --signalling` nodes only.
    #[cfg(feature = "embedded-node")]
    #[arg(long)]
    no_embedded_sfu: bool,
    /// Where media nodes register over QUIC (UDP), e.g. 127.0.0.1:7000.
    #[arg(long)]
    quic: Option<SocketAddr>,
    /// Only rooms created with `POST /api/rooms` (admin) can be joined; by default a
    /// room comes into being with its first join.
    #[arg(long)]
    rooms_must_exist: bool,
    /// Also log room names and identities, at DEBUG only (RUST_LOG=signalling=debug):
    /// for troubleshooting. At INFO and above rooms appear as opaque references.
    #[arg(long)]
    log_pii: bool,
    /// On SIGTERM (or SIGINT) the node drains: /readyz answers 503, no new meeting
    /// starts here, the running ones go on until they end or this many seconds pass
    /// (then their clients are told to join again); a second signal stops at once.
    #[arg(long, default_value_t = 3600)]
    drain_timeout: u64,
    /// A reverse proxy whose X-Forwarded-For / Forwarded / X-Real-IP headers name the
    /// client (for per-address limits), as an address or CIDR; repeat for several.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = parse_net)]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Tokens must carry this issuer (`iss`); tokens minted here carry it.
    #[arg(long, env = "KNUDEPUNKT_TOKEN_ISSUER")]
    token_issuer: Option<String>,
    /// Tokens must carry this audience (`aud`); tokens minted here carry it.
    #[arg(long, env = "KNUDEPUNKT_TOKEN_AUDIENCE")]
    token_audience: Option<String>,
    /// Serve /metrics on this address only (e.g. 127.0.0.1:9100), not on --http.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// A STUN or TURN server for clients (`stun:HOST[:PORT]`,
    /// `turn:HOST[:PORT]?transport=udp|tcp`, `turns:HOST[:PORT]`), repeatable: clients
    /// on networks that block UDP or the node's ports reach it through TURN.
    #[arg(long = "ice-server", value_name = "URL")]
    ice_servers: Vec<String>,
    /// The TURN servers' REST API secret (coturn: `static-auth-secret`): clients get
    /// credentials made with it, valid for --turn-ttl.
    #[arg(long, env = "KNUDEPUNKT_TURN_SECRET", hide_env_values = true)]
    turn_secret: Option<String>,
    /// How long TURN credentials last ("12h", "90m", seconds).
    #[arg(long, default_value = "12h", value_parser = parse_ttl)]
    turn_ttl: std::time::Duration,
    /// Append a record of each ended meeting (no names: the room's log reference,
    /// counts, times) to DIR/meetings-YYYY-MM-DD.jsonl (`signalling records` reads
    /// them).
    #[arg(long, value_name = "DIR")]
    records: Option<std::path::PathBuf>,
    /// Days meeting records are kept (older day files are removed): 400 by default,
    /// so that a month compares with the same month a year before.
    #[arg(long, default_value_t = signalling::records::file::DEFAULT_RETENTION_DAYS, value_parser = clap::value_parser!(u32).range(1..))]
    records_retention_days: u32,
    /// POST a signed notice (JSON; HMAC-SHA256 in X-Knudepunkt-Signature) for each
    /// meeting started and ended to this URL (deploy/README.md, "Meeting records").
    #[arg(long, value_name = "URL", requires = "webhook_secret")]
    webhook: Option<String>,
    /// The webhook's signing secret (at least 32 bytes of key material).
    #[arg(
        long,
        env = "KNUDEPUNKT_WEBHOOK_SECRET",
        hide_env_values = true,
        requires = "webhook"
    )]
    webhook_secret: Option<String>,
    /// Share the cluster state with other signalling nodes in this Redis
    /// (`redis://[:PASSWORD@]HOST[:PORT][/DB]`, `rediss://` for TLS): room
    /// placement, who is where, room messages. Needs --no-embedded-sfu and sfu nodes
    /// that register with every signalling node (`sfu --signalling A,B`).
    #[arg(
        long,
        value_name = "URL",
        env = "KNUDEPUNKT_REDIS",
        hide_env_values = true
    )]
    redis: Option<String>,
    /// The secret media nodes must prove when they register.
    #[arg(long, env = "KNUDEPUNKT_NODE_SECRET", hide_env_values = true)]
    node_secret: Option<String>,
    /// Run the SIP gateway in-process on this address (UDP and TCP; a specific IP,
    /// named in the calls' SDP): phones and room systems dial sip:ROOM@ADDR.
    #[cfg(feature = "sip")]
    #[arg(long, value_name = "ADDR")]
    sip: Option<SocketAddr>,
    /// SIP over TLS on the --sip port + 1 with this PEM certificate chain (and
    /// --sip-tls-key); calls over TLS must encrypt their media (SDES-SRTP).
    #[cfg(feature = "sip")]
    #[arg(long, requires = "sip_tls_key")]
    sip_tls_cert: Option<std::path::PathBuf>,
    #[cfg(feature = "sip")]
    #[arg(long, requires = "sip_tls_cert")]
    sip_tls_key: Option<std::path::PathBuf>,
    /// Place calls over TLS (`sips:` dial-out) and check the far ends' certificates
    /// against these trust anchors (PEM; your hospital's CA, or the public CAs'
    /// bundle, /etc/ssl/certs/ca-certificates.crt). Their media is SDES-SRTP. Needs
    /// --sip-tls-cert: the far end's requests come to the gateway's TLS listener.
    #[cfg(feature = "sip")]
    #[arg(long, value_name = "FILE", requires_all = ["sip", "sip_tls_cert"])]
    sip_tls_ca: Option<std::path::PathBuf>,
    /// Let SIP calls over UDP and TCP carry plain RTP (unencrypted audio): on a
    /// trusted network only. The default in dev mode.
    #[cfg(feature = "sip")]
    #[arg(long)]
    sip_allow_plain_rtp: bool,
    /// A network (address or CIDR) whose SIP calls need no room PIN: a hospital's
    /// own SBC or PBX. Repeatable. Other callers dial ROOM*PIN (outside dev mode).
    #[cfg(feature = "sip")]
    #[arg(long = "sip-trust", value_name = "CIDR", value_parser = parse_net)]
    sip_trust: Vec<ipnet::IpNet>,
    /// A trunk or SBC that authenticates (digest, RFC 3261 §22) instead of coming
    /// from a --sip-trust network: callers whose From user is this name are
    /// challenged for the password (--sip-auth-password), and trusted (no room PIN)
    /// when they answer it. Other callers are not asked.
    /// Register a number with a SIP trunk or registrar (`sip:NUMBER@HOST[:PORT]`), so
    /// that calls to the number reach the room whose alias it is. Its password (if
    /// the registrar challenges) in --sip-register-password.
    #[cfg(feature = "sip")]
    #[arg(long, value_name = "URI")]
    sip_register: Option<String>,
    #[cfg(feature = "sip")]
    #[arg(
        long,
        env = "KNUDEPUNKT_SIP_REGISTER_PASSWORD",
        hide_env_values = true,
        requires = "sip_register"
    )]
    sip_register_password: Option<String>,
    /// The SIP registration's expiry asked for, seconds.
    #[cfg(feature = "sip")]
    #[arg(long, default_value_t = gateway::register::DEFAULT_EXPIRES, requires = "sip_register")]
    sip_register_expires: u32,
    #[cfg(feature = "sip")]
    #[arg(long, value_name = "NAME", requires = "sip_auth_password")]
    sip_auth_user: Option<String>,
    /// The SIP trunk's password (at least 16 characters; `signalling secret` makes one).
    #[cfg(feature = "sip")]
    #[arg(
        long,
        env = "KNUDEPUNKT_SIP_AUTH_PASSWORD",
        hide_env_values = true,
        requires = "sip_auth_user"
    )]
    sip_auth_password: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Mint a token (with --secret or KNUDEPUNKT_SECRET, or an Ed25519 private key):
    /// a join token, an admin's (`--room '*' --role admin`), or a SIP gateway's of its
    /// own (`--room '*' --role service --ttl 30d`: it asks this node for its calls'
    /// join tokens).
    Token {
        #[arg(long)]
        room: String,
        #[arg(long)]
        identity: String,
        /// How long it admits joins (a join in progress is not cut off by expiry).
        #[arg(long, default_value = "10m", value_parser = parse_ttl)]
        ttl: std::time::Duration,
        #[arg(long, value_enum, default_value = "publisher")]
        role: RoleArg,
        /// Sign with this Ed25519 private key (PKCS#8 PEM) for nodes started with
        /// --token-public-key, instead of the token secret.
        #[arg(long, value_name = "FILE")]
        token_private_key: Option<std::path::PathBuf>,
    },
    /// Print a fresh random secret (32 bytes, hex) for --secret or --node-secret.
    Secret,
    /// Usage statistics from meeting records (`--records DIR`): meetings,
    /// participants, participant-minutes, the most meetings at once, per day or per
    /// organisation.
    Records {
        /// The records' directory; repeated, several signalling nodes' together
        /// (each meeting is recorded by one of them).
        #[arg(long, required = true)]
        dir: Vec<std::path::PathBuf>,
        /// First day (YYYY-MM-DD, UTC), inclusive.
        #[arg(long, value_parser = parse_day)]
        from: Option<String>,
        /// Last day (YYYY-MM-DD, UTC), inclusive.
        #[arg(long, value_parser = parse_day)]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "day")]
        by: ByArg,
        #[arg(long, value_enum, default_value = "table")]
        format: FormatArg,
    },
    /// Make an Ed25519 key pair for EdDSA join tokens: the private key for the
    /// service that mints them (`signalling token --token-private-key`, or any JWT
    /// library), the public key for the nodes (--token-public-key).
    Keypair {
        /// Where to write the private key (created, readable by its owner only).
        #[arg(long, value_name = "FILE")]
        private_key: std::path::PathBuf,
        /// Where to write the public key.
        #[arg(long, value_name = "FILE")]
        public_key: std::path::PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ByArg {
    Day,
    Org,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum FormatArg {
    Table,
    Csv,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum RoleArg {
    Publisher,
    Host,
    Guest,
    Viewer,
    Admin,
    Service,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(log_filter())
        .init();
    let args: Args = settings::parse();
    if let Some(Cmd::Secret) = &args.command {
        println!("{}", control::secret::generate());
        return ExitCode::SUCCESS;
    }
    if let Some(Cmd::Records {
        dir,
        from,
        to,
        by,
        format,
    }) = &args.command
    {
        return print_usage(dir, (from.as_deref(), to.as_deref()), *by, *format);
    }
    if let Some(Cmd::Keypair {
        private_key,
        public_key,
    }) = &args.command
    {
        return match write_keypair(private_key, public_key) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Cmd::Token {
        room,
        identity,
        ttl,
        role,
        token_private_key,
    }) = &args.command
    {
        let keys = match token_keys(args.secret.as_deref(), token_private_key.as_deref()) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let role = match role {
            RoleArg::Publisher => Role::Publisher,
            RoleArg::Host => Role::Host,
            RoleArg::Guest => Role::Guest,
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Admin => Role::Admin,
            RoleArg::Service => Role::Service,
        };
        if role == Role::Service && room != "*" {
            eprintln!("error: a service token is for room '*' (--room '*')");
            return ExitCode::from(2);
        }
        println!(
            "{}",
            keys.expecting(args.token_issuer.clone(), args.token_audience.clone())
                .mint(room, identity, role, *ttl)
        );
        return ExitCode::SUCCESS;
    }
    if !(args.joins_per_second.is_finite() && args.joins_per_second > 0.0) {
        eprintln!("error: --joins-per-second must be > 0");
        return ExitCode::from(2);
    }
    #[cfg(feature = "embedded-node")]
    if args.max_room_size < 2 {
        eprintln!("error: --max-room-size must be >= 2");
        return ExitCode::from(2);
    }
    #[cfg(feature = "sip")]
    if args.sip.is_some_and(|a| a.ip().is_unspecified()) {
        eprintln!("error: --sip needs a specific IP address: the calls' SDP names it");
        return ExitCode::from(2);
    }
    #[cfg(feature = "sip")]
    if args.sip.is_none() && (args.sip_auth_user.is_some() || args.sip_register.is_some()) {
        eprintln!(
            "error: --sip-auth-user and --sip-register are for the SIP gateway: add --sip ADDR"
        );
        return ExitCode::from(2);
    }
    #[cfg(feature = "sip")]
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
    #[cfg(feature = "sip")]
    let (digest, register) = match trunk {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    #[cfg(feature = "sip")]
    let sip = args
        .sip
        .map(|bind| sip_config(&args, bind, (digest, register)));
    let token_public_key = match &args.token_public_key {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(pem) => Some(pem),
            Err(e) => {
                eprintln!("error: --token-public-key {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let config = signalling::Config {
        http: args.http,
        secret: args.secret.clone(),
        token_public_key,
        #[cfg(feature = "embedded-node")]
        embedded: (!args.no_embedded_sfu).then(|| sfu::NodeConfig {
            shards: args.shards,
            bind_ips: args.udp_bind.clone(),
            port: args.udp_port,
            ice_tcp: !args.no_ice_tcp,
            tcp_port: args.tcp_port,
            announce_ips: args.announce_ip.clone(),
            max_room_size: args.max_room_size,
            ..sfu::NodeConfig::default()
        }),
        joins_per_second: args.joins_per_second,
        quic: args.quic,
        node_secret: args.node_secret.clone(),
        rooms_on_join: !args.rooms_must_exist,
        log_pii: args.log_pii,
        trusted_proxies: args.trusted_proxies.clone(),
        metrics: args.metrics_listen,
        token_issuer: args.token_issuer.clone(),
        token_audience: args.token_audience.clone(),
        ice_servers: args.ice_servers.clone(),
        turn_secret: args.turn_secret.clone(),
        turn_ttl: args.turn_ttl,
        records: args.records.clone(),
        records_retention_days: args.records_retention_days,
        webhook: args.webhook.clone().zip(args.webhook_secret.clone()),
        redis: args.redis.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let server = match signalling::start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        if server.dev_mode {
            eprintln!("!! DEV MODE: no token secret configured. Anyone who can reach {} may join;", server.addr);
            eprintln!("!! the page gets tokens from /api/dev-token (loopback only). Set --secret (or --token-public-key) for real use.");
        }
        if let Some(m) = server.metrics_addr {
            eprintln!("metrics at http://{m}/metrics");
        }
        if let Some(q) = server.quic_addr {
            eprintln!("media nodes register at {q} (QUIC): sfu --signalling {q} --node-secret ...");
        }
        #[cfg(feature = "sip")]
        let sip_stop = gateway::CancellationToken::new();
        #[cfg(feature = "sip")]
        let mut sip_stopped = None;
        #[cfg(feature = "sip")]
        if let Some(sip) = sip {
            let keys = (!server.dev_mode).then(|| server.state.keys.clone());
            let sip = sip(server.addr, keys);
            let metrics = std::sync::Arc::new(gateway::metrics::Metrics::new(
                &server.state.metrics.registry,
            ));
            match gateway::sip::spawn(sip, metrics, sip_stop.clone()).await {
                Ok(s) => {
                    let a = s.addr;
                    eprintln!("SIP gateway on {a} (UDP, TCP): dial sip:ROOM@{a}");
                    let dialer = s.dialer;
                    let _ = server.state.dial_out.set(Box::new(move |room: &str, uri: &str| {
                        dialer.dial(room, uri)
                    }));
                    sip_stopped = Some(s.stopped);
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        println!("knudepunkt is serving meetings. Open {}?room=NAME in a browser.", server.url());
        let mut stop = Stops::new();
        #[cfg(feature = "sip")]
        let term = if let Some(stopped) = sip_stopped.as_mut() {
            tokio::select! {
                term = stop.next() => term,
                _ = stopped => {
                    eprintln!("error: the SIP gateway stopped by itself");
                    server.shutdown();
                    return ExitCode::from(1);
                }
            }
        } else {
            stop.next().await
        };
        #[cfg(not(feature = "sip"))]
        let term = stop.next().await;
        // SIGTERM (an upgrade, a scale-down) drains; Ctrl-C stops at once.
        if term {
            eprintln!("draining: no new meetings; stopping when those here end (a second signal stops at once)");
            let timeout = std::time::Duration::from_secs(args.drain_timeout);
            tokio::select! {
                _ = server.drain(timeout) => eprintln!("drained: stopping"),
                _ = stop.next() => eprintln!("stopping at once"),
            }
        }
        // SIP callers are told (a BYE each) before the node goes.
        #[cfg(feature = "sip")]
        {
            sip_stop.cancel();
            if let Some(stopped) = sip_stopped {
                let _ = stopped.await;
            }
        }
        server.shutdown();
        ExitCode::SUCCESS
    })
}

/// The in-process gateway's configuration, once the HTTP address and the node's
/// token keys are known: its calls join through this node's own API (on loopback
/// when it listens on all addresses), with tokens minted by this node's keys (dev
/// tokens in dev mode, where `keys` is `None`).
#[cfg(feature = "sip")]
fn sip_config(
    args: &Args,
    bind: SocketAddr,
    (digest, register): (
        Option<std::sync::Arc<gateway::digest::Digest>>,
        Option<gateway::register::Register>,
    ),
) -> impl FnOnce(SocketAddr, Option<Keys>) -> gateway::sip::SipConfig {
    use gateway::room::{CallClaims, RoomApi, Tokens};
    let tokens = |keys: Option<Keys>| match keys {
        None => Tokens::Dev,
        Some(keys) => {
            let ttl = std::time::Duration::from_secs(600);
            let mint = move |room: &str, who: &str, sip: Option<CallClaims>| match sip {
                Some(c) => {
                    let call = signalling::token::SipCall {
                        trusted: c.trusted,
                        source: c.source.map(|ip| ip.to_string()),
                    };
                    keys.mint_sip(room, who, call, ttl)
                }
                None => keys.mint(room, who, Role::Publisher, ttl),
            };
            Tokens::Mint(std::sync::Arc::new(mint))
        }
    };
    // The calls' peers reach the embedded media node from its own address.
    #[cfg(feature = "embedded-node")]
    let media_ip = args
        .udp_bind
        .first()
        .copied()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(bind.ip());
    #[cfg(not(feature = "embedded-node"))]
    let media_ip = bind.ip();
    let tls = match (&args.sip_tls_cert, &args.sip_tls_key) {
        (Some(cert), Some(key)) => Some(gateway::sip::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let dev_mode = args.secret.is_none() && args.token_public_key.is_none();
    let allow_plain_rtp = args.sip_allow_plain_rtp || dev_mode;
    let trust = args.sip_trust.clone();
    let tls_ca = args.sip_tls_ca.clone();
    move |http: SocketAddr, keys: Option<Keys>| {
        let host = if http.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), http.port())
        } else {
            http
        };
        gateway::sip::SipConfig {
            bind,
            media_ip: bind.ip(),
            api: RoomApi::new(&format!("http://{host}"), tokens(keys), media_ip),
            tls,
            tls_ca,
            allow_plain_rtp,
            trust,
            digest,
            register,
        }
    }
}

/// `signalling records`: the usage statistics of the records in `dirs`.
fn print_usage(
    dirs: &[std::path::PathBuf],
    (from, to): (Option<&str>, Option<&str>),
    by: ByArg,
    format: FormatArg,
) -> ExitCode {
    use signalling::records::usage;
    let (mut records, mut bad) = (Vec::new(), 0);
    for dir in dirs {
        match usage::read(dir, from, to) {
            Ok((r, b)) => {
                records.extend(r);
                bad += b;
            }
            Err(e) => {
                eprintln!("error: meeting records in {}: {e}", dir.display());
                return ExitCode::from(2);
            }
        }
    }
    if bad > 0 {
        eprintln!("warning: {bad} lines that are no meeting record were left out");
    }
    let by = match by {
        ByArg::Day => usage::By::Day,
        ByArg::Org => usage::By::Org,
    };
    let rows = usage::rows(&records, by);
    match format {
        FormatArg::Table => print!("{}", usage::table(&rows, by)),
        FormatArg::Csv => print!("{}", usage::csv(&rows)),
        FormatArg::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        ),
    }
    ExitCode::SUCCESS
}

/// A day, `YYYY-MM-DD`.
fn parse_day(s: &str) -> Result<String, String> {
    let ok = s.len() == 10
        && signalling::records::file::day_of(&format!("meetings-{s}.jsonl")).is_some();
    ok.then(|| s.to_owned())
        .ok_or_else(|| format!("{s:?} is no day: use YYYY-MM-DD"))
}

/// The keys `signalling token` signs with: an Ed25519 private key's, or the token
/// secret's.
fn token_keys(secret: Option<&str>, private_key: Option<&std::path::Path>) -> Result<Keys, String> {
    if let Some(path) = private_key {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Keys::from_private_key(&pem).map_err(|e| format!("{}: {e}", path.display()));
    }
    let Some(secret) = secret else {
        return Err(
            "minting tokens needs --secret (or KNUDEPUNKT_SECRET) or --token-private-key".into(),
        );
    };
    control::secret::check(secret).map_err(|why| {
        let how = control::secret::HOW_TO_MAKE_ONE;
        format!("refusing the token secret: {why}; {how}")
    })?;
    Ok(Keys::new(secret.as_bytes()))
}

/// `signalling keypair`: a new Ed25519 pair in two files; the private one readable by
/// its owner only, and neither written over.
fn write_keypair(private: &std::path::Path, public: &std::path::Path) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(p) = [private, public].into_iter().find(|p| p.exists()) {
        return Err(format!("{}: exists (no key is written over)", p.display()));
    }
    let (private_pem, public_pem) = signalling::token::ed25519::generate();
    let create = |path: &std::path::Path, mode: u32, text: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    create(private, 0o600, &private_pem)?;
    create(public, 0o644, &public_pem)?;
    eprintln!(
        "wrote {} (keep it with the service that mints tokens) and {} (for the nodes: --token-public-key)",
        private.display(),
        public.display()
    );
    Ok(())
}

/// An address or a CIDR block: `10.0.0.5`, `10.0.0.0/8`, `fd00::/8`.
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR block"))
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
