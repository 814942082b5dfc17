//! knudepunkt's signalling node: rooms, join tokens, the WebSocket API, the browser
//! client, and the media nodes it places rooms on. It drives them through the
//! `control` crate only (`control::MediaNode`): the embedded node in-process (cargo
//! feature `embedded-node`, on by default) and nodes registered over QUIC. Built
//! without the feature it compiles no media path at all (no str0m).

pub mod api;
pub mod caller;
pub mod check;
pub mod cluster;
pub mod directory;
#[cfg(feature = "embedded-node")]
pub mod embedded;
pub mod gateways;
pub mod hub;
pub mod ice;
pub mod limiter;
pub mod lobby;
pub mod messages;
pub mod metrics;
pub mod pins;
pub mod quic;
pub mod records;
pub mod redact;
pub mod shared;
pub mod state;
pub mod token;
pub mod whip;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use state::AppState;
use token::Keys;

#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP listen address.
    pub http: SocketAddr,
    /// HS256 secret for join tokens; `None` (and no `token_public_key`) is dev mode
    /// (loopback only).
    pub secret: Option<String>,
    /// The token service's Ed25519 public key (PEM), in place of `secret`: join
    /// tokens are EdDSA, and the node holds no key that mints lasting ones.
    pub token_public_key: Option<String>,
    /// The media node run in-process (the default set-up); `None` runs none, and
    /// rooms go to nodes registered over QUIC.
    #[cfg(feature = "embedded-node")]
    pub embedded: Option<sfu::NodeConfig>,
    /// Where media nodes register over QUIC, if anywhere.
    pub quic: Option<SocketAddr>,
    /// The secret media nodes prove (needed with `quic`).
    pub node_secret: Option<String>,
    /// Joins per second allowed from one address (burst: 10x).
    pub joins_per_second: f64,
    /// Rooms come into being with their first join; when false, only rooms created
    /// with `POST /api/rooms` can be joined.
    pub rooms_on_join: bool,
    /// Also log room names and identities, at DEBUG only (`--log-pii`).
    pub log_pii: bool,
    /// Proxies whose forwarding headers name the client (`--trusted-proxy`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve `/metrics` on this address only, off the public port (`--metrics-listen`).
    pub metrics: Option<SocketAddr>,
    /// Tokens must carry this `iss` (`--token-issuer`).
    pub token_issuer: Option<String>,
    /// Tokens must carry this `aud` (`--token-audience`).
    pub token_audience: Option<String>,
    /// STUN/TURN servers handed to clients (`--ice-server`).
    pub ice_servers: Vec<String>,
    /// The TURN servers' REST API secret (`--turn-secret`), and how long the
    /// credentials made with it last (`--turn-ttl`).
    pub turn_secret: Option<String>,
    pub turn_ttl: std::time::Duration,
    /// Where meeting records go (`--records`), and how many days they are kept.
    pub records: Option<std::path::PathBuf>,
    pub records_retention_days: u32,
    /// Where meetings started and ended are told, and the secret their notices are
    /// signed with (`--webhook`, `--webhook-secret`).
    pub webhook: Option<(String, String)>,
    /// Share the cluster state with other signalling nodes in this Redis (`--redis`).
    pub redis: Option<String>,
}

impl Config {
    /// Loopback HTTP on a free port, dev mode, an embedded node of `shards` shards
    /// (when built with one): for tests.
    pub fn local(#[allow(unused_variables)] shards: usize) -> Self {
        Config {
            http: "127.0.0.1:0".parse().expect("valid address"),
            secret: None,
            token_public_key: None,
            #[cfg(feature = "embedded-node")]
            embedded: Some(sfu::NodeConfig {
                shards,
                ..sfu::NodeConfig::default()
            }),
            quic: None,
            node_secret: None,
            joins_per_second: 1000.0,
            rooms_on_join: true,
            log_pii: false,
            trusted_proxies: Vec::new(),
            metrics: None,
            token_issuer: None,
            token_audience: None,
            ice_servers: Vec::new(),
            turn_secret: None,
            turn_ttl: ice::DEFAULT_TTL,
            records: None,
            records_retention_days: records::file::DEFAULT_RETENTION_DAYS,
            webhook: None,
            redis: None,
        }
    }
}

/// A running signalling node.
pub struct Server {
    pub addr: SocketAddr,
    /// The in-process media node, when embedded.
    #[cfg(feature = "embedded-node")]
    pub node: Option<sfu::Node>,
    /// Where media nodes register, when listening for them.
    pub quic_addr: Option<SocketAddr>,
    /// Where `/metrics` is served, when not on the public port.
    pub metrics_addr: Option<SocketAddr>,
    pub dev_mode: bool,
    pub state: Arc<AppState>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Drain: `/readyz` answers 503 and no new meeting starts here (late joiners of
    /// the running ones still come in); returns when the meetings have ended, or after
    /// `timeout`, when those still here are told to join again (a load balancer sends
    /// them to another node) and let go.
    ///
    /// A signalling node without its embedded media node carries no media: its
    /// meetings go on on their `sfu` nodes through its restart (their clients resume
    /// with the next one), so it drains nothing and returns at once.
    pub async fn drain(&self, timeout: std::time::Duration) {
        let state = &self.state;
        state.cluster.drain();
        // The meetings this process carries: the embedded node's. Those on remote
        // nodes go on through its restart (their clients resume with the next one).
        #[cfg(feature = "embedded-node")]
        let embedded = self
            .node
            .as_ref()
            .and_then(|_| state.cluster.id_of("embedded"));
        #[cfg(not(feature = "embedded-node"))]
        let embedded: Option<directory::NodeId> = None;
        let Some(embedded) = embedded else {
            return;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let here = || -> Vec<directory::Membership> {
            let rooms = state.directory.rooms();
            rooms
                .iter()
                .flat_map(|r| state.directory.members(r))
                .filter(|m| m.node == embedded)
                .collect()
        };
        while !here().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let left = here();
        if left.is_empty() {
            return;
        }
        tracing::info!(
            participants = left.len(),
            "drain timed out: telling the rest to join again"
        );
        let failed = messages::ServerMsg::Failed {
            reason: "this node is stopping: join again".into(),
        };
        state.hub.tell(&left, &failed);
        for m in &left {
            let _ = state.cluster.remove(m.participant).await;
        }
        // Their sessions send the news before they close.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }

    /// Stop serving and stop the embedded media node.
    pub fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        #[cfg(feature = "embedded-node")]
        if let Some(n) = &self.node {
            n.shutdown();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("refusing to listen on {0} without a token secret: set --secret (or KNUDEPUNKT_SECRET) or --token-public-key, or listen on loopback for dev mode")]
    NoSecret(SocketAddr),
    #[error("a token secret and a token public key: give one (with the public key, the node must hold no secret that mints tokens)")]
    TwoTokenKeys,
    #[error("the token public key (--token-public-key): {0}")]
    TokenKey(token::KeyError),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("refusing the {what}: {why}; {how}", how = control::secret::HOW_TO_MAKE_ONE)]
    WeakSecret {
        what: &'static str,
        why: control::secret::WeakSecret,
    },
    #[error("cannot start the media node: {0}")]
    Node(std::io::Error),
    #[error("listening for media nodes needs --node-secret (or KNUDEPUNKT_NODE_SECRET)")]
    NoNodeSecret,
    #[error("no media node: run the embedded one (a build with the `embedded-node` feature) or listen for others with --quic")]
    NoMediaNode,
    #[error("cannot listen for media nodes on {0}: {1}")]
    Quic(SocketAddr, String),
    #[error("{0}")]
    Ice(String),
    #[error("meeting records in {0}: {1}")]
    Records(std::path::PathBuf, std::io::Error),
    #[error("the webhook (--webhook) is no http:// or https:// URL")]
    Webhook,
    #[error("shared state (--redis): {0}")]
    Redis(String),
}

/// WebSockets one address may hold open before they join, at least (a clinic behind
/// one NAT joining at once fits; a flood of idle sockets does not); more when the
/// join rate allows a larger burst.
const PREJOIN_PER_ADDRESS: usize = 16;

/// Start serving on the current tokio runtime.
pub async fn start(config: Config) -> Result<Server, StartError> {
    let dev_mode = config.secret.is_none() && config.token_public_key.is_none();
    if dev_mode && !config.http.ip().is_loopback() {
        return Err(StartError::NoSecret(config.http));
    }
    if config.secret.is_some() && config.token_public_key.is_some() {
        return Err(StartError::TwoTokenKeys);
    }
    let weak = |what| move |why| StartError::WeakSecret { what, why };
    let secret = match &config.secret {
        Some(s) => {
            control::secret::check(s).map_err(weak("token secret (--secret)"))?;
            Some(s.as_bytes().to_vec())
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .map_err(|e| StartError::Listen(config.http, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen(config.http, e))?;
    #[cfg(feature = "embedded-node")]
    let has_embedded = config.embedded.is_some();
    #[cfg(not(feature = "embedded-node"))]
    let has_embedded = false;
    if !has_embedded && config.quic.is_none() {
        return Err(StartError::NoMediaNode);
    }
    let node_secret = match (&config.quic, &config.node_secret) {
        (Some(_), Some(s)) if !s.is_empty() => {
            control::secret::check(s).map_err(weak("node secret (--node-secret)"))?;
            Some(s.as_bytes().to_vec())
        }
        (Some(_), _) => return Err(StartError::NoNodeSecret),
        (None, _) => None,
    };
    if let Some(s) = &config.turn_secret {
        control::secret::check(s).map_err(weak("TURN secret (--turn-secret)"))?;
    }
    if let Some((url, s)) = &config.webhook {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(StartError::Webhook);
        }
        control::secret::check(s).map_err(weak("webhook secret (--webhook-secret)"))?;
    }
    let ice = ice::IceServers::new(
        &config.ice_servers,
        config.turn_secret.as_deref(),
        config.turn_ttl,
    )
    .map_err(StartError::Ice)?;
    // Log references are keyed by a secret the node keeps across restarts: the token
    // secret, else the node secret; in dev mode (or with neither) one of this process.
    let log_key = secret
        .clone()
        .or_else(|| node_secret.clone())
        .unwrap_or_else(|| control::secret::generate().into_bytes());
    let keys = match (&secret, &config.token_public_key) {
        (Some(s), _) => Keys::new(s),
        (None, Some(pem)) => Keys::from_public_key(pem.as_bytes(), node_secret.as_deref())
            .map_err(StartError::TokenKey)?,
        // Dev mode: tokens live as long as the process.
        (None, None) => Keys::new(control::secret::generate().as_bytes()),
    };
    // Meeting records: in files with --records (the journal a crash left read now),
    // counted in any case; the directory's admissions and leaves are their source.
    let mut crashed_meetings = Vec::new();
    let record_files = match &config.records {
        Some(dir) => {
            let (files, crashed) =
                records::file::RecordFiles::open(dir, config.records_retention_days)
                    .map_err(|e| StartError::Records(dir.clone(), e))?;
            if !crashed.is_empty() {
                tracing::warn!(
                    meetings = crashed.len(),
                    "meetings in progress when this node last stopped recorded as ended by a crash"
                );
            }
            crashed_meetings = crashed;
            Some(files)
        }
        None => None,
    };
    let (record_events, recorded) = tokio::sync::mpsc::unbounded_channel();
    // Several signalling nodes: this one's directory is mirrored to Redis.
    let local: Arc<dyn directory::Directory> = Arc::new(directory::MemoryDirectory::default());
    let shared = match &config.redis {
        Some(url) => {
            #[cfg(feature = "embedded-node")]
            if config.embedded.is_some() {
                return Err(StartError::Redis(
                    "--redis needs --no-embedded-sfu: an embedded media node is reachable by its own signalling node alone; run sfu nodes that register with every signalling node".into(),
                ));
            }
            let shared = Arc::new(
                shared::Shared::connect(url)
                    .await
                    .map_err(StartError::Redis)?,
            );
            tracing::info!(
                instance = shared.instance,
                "sharing the cluster state in Redis"
            );
            Some(shared)
        }
        None => None,
    };
    let mut watched = records::directory::Watched::new(local, record_events);
    let mut mirrored = None;
    if shared.is_some() {
        let (changes, receiver) = tokio::sync::mpsc::unbounded_channel();
        watched = watched.mirrored(changes);
        mirrored = Some(receiver);
    }
    let record_events = watched.events();
    let directory: Arc<dyn directory::Directory> = Arc::new(watched);
    let cluster = cluster::Cluster::new(directory.clone(), shared.clone());
    let mut tasks = Vec::new();
    #[cfg(feature = "embedded-node")]
    let embedded = match config.embedded {
        Some(node_config) => {
            Some(embedded::start(&cluster, node_config).map_err(StartError::Node)?)
        }
        None => None,
    };
    let state = Arc::new(AppState {
        cluster,
        keys: keys.expecting(config.token_issuer.clone(), config.token_audience.clone()),
        redact: redact::Redactor::new(&log_key, config.log_pii),
        dev_mode,
        hub: hub::Hub::new(directory.clone()),
        directory,
        metrics: metrics::Metrics::new(),
        limiter: limiter::AddressLimiter::new(
            config.joins_per_second,
            config.joins_per_second * 10.0,
        ),
        proxies: caller::TrustedProxies(config.trusted_proxies.clone()),
        // An address allowed a burst of joins may have that many sockets waiting.
        prejoin: limiter::PreJoinCap::new(
            PREJOIN_PER_ADDRESS.max((config.joins_per_second * 10.0) as usize),
        ),
        rooms_on_join: config.rooms_on_join,
        ice,
        pins: pins::Pins::default(),
        videos: state::RoomVideos::default(),
        aliases: state::Aliases::default(),
        lobby: lobby::Lobby::default(),
        checks: check::Checks::default(),
        dial_out: std::sync::OnceLock::new(),
        gateways: gateways::Gateways::default(),
        record_events,
        dials: limiter::KeyedLimiter::new(0.1, 3.0),
    });
    if let (Some(shared), Some(mirrored)) = (shared, mirrored) {
        // Rooms created through the other signalling nodes, as they set them.
        let rooms = shared
            .all_settings()
            .await
            .map_err(|e| StartError::Redis(e.to_string()))?;
        for (room, settings) in rooms {
            state.apply_settings(&room, Some(settings));
        }
        let weak = Arc::downgrade(&state);
        tasks.push(tokio::spawn(shared::mirror(
            shared.clone(),
            mirrored,
            weak.clone(),
        )));
        tasks.push(tokio::spawn(shared::heartbeat(
            shared.clone(),
            weak.clone(),
        )));
        tasks.push(tokio::spawn(shared::publisher(
            shared.clone(),
            weak.clone(),
        )));
        tasks.push(tokio::spawn(shared::relay(shared, weak)));
    }
    state.update_node_gauges();
    let webhook = config.webhook.as_ref().map(|(url, secret)| {
        records::webhook::Webhook::start(
            url.clone(),
            secret.as_bytes(),
            state.metrics.webhooks.clone(),
        )
    });
    // Meetings a stop or crash cut short end for the webhook too.
    if let Some(w) = &webhook {
        for r in crashed_meetings {
            w.tell(records::webhook::Notice::MeetingEnded(r));
        }
    }
    tasks.push(tokio::spawn(records::recorder::run(
        recorded,
        Arc::downgrade(&state),
        records::recorder::Outlets {
            files: record_files.map(records::file::Writer::spawn),
            webhook,
        },
    )));
    #[cfg(feature = "embedded-node")]
    let embedded = embedded.map(|(node, events)| {
        tasks.push(tokio::spawn(embedded::forward_events(
            events,
            state.clone(),
        )));
        node
    });
    let mut quic_addr = None;
    if let (Some(addr), Some(secret)) = (config.quic, node_secret) {
        let endpoint = quic::endpoint(addr).map_err(|e| StartError::Quic(addr, e))?;
        quic_addr = endpoint.local_addr().ok();
        tasks.push(tokio::spawn(quic::serve(endpoint, secret, state.clone())));
    }
    let mut metrics_addr = None;
    if let Some(at) = config.metrics {
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .map_err(|e| StartError::Listen(at, e))?;
        metrics_addr = listener.local_addr().ok();
        let app = api::metrics_router(state.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("metrics server: {e}");
            }
        }));
    }
    let app = api::router(state.clone(), config.metrics.is_none())
        .into_make_service_with_connect_info::<SocketAddr>();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("http server: {e}");
        }
    }));
    Ok(Server {
        addr,
        #[cfg(feature = "embedded-node")]
        node: embedded,
        quic_addr,
        metrics_addr,
        dev_mode,
        state,
        tasks,
    })
}
