//! The media node in the signalling node's own process (cargo feature
//! `embedded-node`, on by default): one command serves everything. It is driven like
//! any other node, through `control::MediaNode`; only starting it and carrying its
//! events off its channel are particular to it.

use std::sync::Arc;

use control::NodeEvent;
use tokio::sync::mpsc;

use crate::cluster::Cluster;
use crate::state::AppState;

/// Start the node's shards and place rooms on it from now on.
pub fn start(
    cluster: &Cluster,
    config: sfu::NodeConfig,
) -> std::io::Result<(sfu::Node, mpsc::Receiver<NodeEvent>)> {
    // Placement counts participants against capacity; the embedded node's real limit
    // is its cores, which the admission queue and the load generator measure.
    let capacity = config.max_room_size.max(1) * 1000;
    let (node, events) = sfu::Node::start(config)?;
    cluster.add_node("embedded".into(), capacity, Arc::new(node.clone()));
    Ok((node, events))
}

/// Hand the node's events to the signalling node, in order, for as long as it runs.
pub async fn forward_events(mut events: mpsc::Receiver<NodeEvent>, state: Arc<AppState>) {
    while let Some(ev) = events.recv().await {
        state.on_node_event(ev);
    }
}
