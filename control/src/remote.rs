//! A media node on another machine, as the signalling node drives it: each request on
//! a bidirectional stream of its own, answered within [`REQUEST_TIMEOUT`].

use std::sync::Mutex;
use std::time::Duration;

use crate::error::ControlError;
use crate::ids::NodeLoad;
use crate::node::{MediaNode, Pending, Request};
use crate::wire::{read_frame, write_frame, Reply};

/// How long a request to a remote node may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A registered remote node.
pub struct RemoteNode {
    conn: quinn::Connection,
    load: Mutex<NodeLoad>,
}

impl RemoteNode {
    pub fn new(conn: quinn::Connection) -> Self {
        RemoteNode {
            conn,
            load: Mutex::default(),
        }
    }

    /// The node's latest heartbeat.
    pub fn set_load(&self, load: NodeLoad) {
        *self.load.lock().unwrap_or_else(|e| e.into_inner()) = load;
    }

    async fn request(&self, request: Request) -> Reply {
        let exchange = async {
            let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| e.to_string())?;
            write_frame(&mut send, &request)
                .await
                .map_err(|e| e.to_string())?;
            let _ = send.finish();
            read_frame::<Reply>(&mut recv)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "no response".to_owned())
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => Err(ControlError::Unavailable(e)),
            Err(_) => Err(ControlError::Unavailable(
                "media node did not answer in time".into(),
            )),
        }
    }
}

impl MediaNode for RemoteNode {
    fn call(&self, request: Request) -> Pending<'_> {
        Box::pin(self.request(request))
    }

    fn load(&self) -> NodeLoad {
        self.load.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
