//! knudepunkt's signalling node: rooms, join tokens, the WebSocket API, the browser
//! client, and the media node it places rooms on (embedded in-process by default).

pub mod api;
pub mod hub;
pub mod messages;
pub mod metrics;
pub mod state;
pub mod token;
pub mod whip;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use state::{AppState, JoinLimiter};
use token::Keys;

#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP listen address.
    pub http: SocketAddr,
    /// HS256 secret for join tokens; `None` is dev mode (loopback only).
    pub secret: Option<String>,
    pub node: sfu::NodeConfig,
    /// Joins per second allowed from one address (burst: 10x).
    pub joins_per_second: f64,
}

/// A running signalling node.
pub struct Server {
    pub addr: SocketAddr,
    pub node: sfu::Node,
    pub dev_mode: bool,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stop serving and stop the media node.
    pub fn shutdown(self) {
        self.task.abort();
        self.node.shutdown();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("refusing to listen on {0} without a token secret: set --secret (or KNUDEPUNKT_SECRET), or listen on loopback for dev mode")]
    NoSecret(SocketAddr),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("cannot start the media node: {0}")]
    Node(std::io::Error),
}

/// Start serving on the current tokio runtime.
pub async fn start(config: Config) -> Result<Server, StartError> {
    let dev_mode = config.secret.is_none();
    if dev_mode && !config.http.ip().is_loopback() {
        return Err(StartError::NoSecret(config.http));
    }
    let secret = match &config.secret {
        Some(s) => s.as_bytes().to_vec(),
        None => random_secret(),
    };
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .map_err(|e| StartError::Listen(config.http, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen(config.http, e))?;
    let (node, mut events) = sfu::Node::start(config.node).map_err(StartError::Node)?;
    let state = Arc::new(AppState {
        node: node.clone(),
        keys: Keys::new(&secret),
        dev_mode,
        hub: hub::Hub::default(),
        metrics: metrics::Metrics::new(),
        limiter: JoinLimiter::new(config.joins_per_second, config.joins_per_second * 10.0),
        resources: whip::Resources::default(),
    });
    state
        .metrics
        .media_nodes
        .with_label_values(&["ready"])
        .set(1);
    let s = state.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let sfu::NodeEvent::ParticipantLeft { participant, .. } = &ev {
                s.resources.forget(*participant);
            }
            s.hub.dispatch(ev);
        }
    });
    let app = api::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("http server: {e}");
        }
    });
    Ok(Server {
        addr,
        node,
        dev_mode,
        task,
    })
}

fn random_secret() -> Vec<u8> {
    // Dev mode only: tokens live as long as the process. Good enough entropy from
    // the OS-seeded hasher and the clock, without another dependency.
    use std::hash::{BuildHasher, Hasher};
    let mut out = Vec::new();
    for i in 0..4u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        out.extend_from_slice(&h.finish().to_le_bytes());
    }
    out
}
