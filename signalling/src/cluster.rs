//! The media nodes the signalling node places rooms on: the embedded one and those
//! registered over QUIC. A room lives on one node; a new room goes to the
//! least-loaded live node with capacity left. A lost node's participants are told
//! to rejoin, and their rooms are placed anew.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control::{
    ControlError, JoinKind, MediaNode, NodeLoad, ParticipantId, Preference, Request, RoomFigures,
    TrackId,
};

/// A media node the signalling node places rooms on.
pub struct NodeEntry {
    pub id: usize,
    pub name: String,
    pub capacity: usize,
    pub node: Arc<dyn MediaNode>,
    pub lost: AtomicBool,
}

/// Which media node each room lives on, and each participant's room and node (the
/// node's own `ShardPlacement` then picks a shard).
#[derive(Default)]
struct NodePlacement {
    rooms: HashMap<String, usize>,
    participants: HashMap<ParticipantId, (String, usize)>,
}

/// Joins set up at once. Building a participant's `Rtc` and answering its offer costs
/// about a millisecond of CPU: in a join storm, more at once only crowd the cores the
/// media shards need, so the others wait their turn (first come, first served).
const JOINS_IN_FLIGHT: usize = 4;
/// How long a join may wait for its turn before it is refused as busy.
const ADMISSION_WAIT: Duration = Duration::from_secs(10);

/// Admission control: a queue for joins rather than refusals.
pub struct Admission {
    slots: tokio::sync::Semaphore,
    waiting: AtomicUsize,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            slots: tokio::sync::Semaphore::new(JOINS_IN_FLIGHT),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl Admission {
    /// Joins waiting for their turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Cluster {
    nodes: Mutex<Vec<Arc<NodeEntry>>>,
    placement: Mutex<NodePlacement>,
    next_participant: AtomicU64,
    next_node: AtomicUsize,
    pub admission: Admission,
}

/// A node as the admin API shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub state: &'static str,
    /// Participants placed on it by this signalling node.
    pub participants: usize,
    pub capacity: usize,
    /// What the node itself last reported.
    pub load: NodeLoad,
}

impl Cluster {
    fn place_lock(&self) -> std::sync::MutexGuard<'_, NodePlacement> {
        self.placement.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nodes_lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<NodeEntry>>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add_node(
        &self,
        name: String,
        capacity: usize,
        node: Arc<dyn MediaNode>,
    ) -> Arc<NodeEntry> {
        let entry = Arc::new(NodeEntry {
            id: self.next_node.fetch_add(1, Ordering::Relaxed),
            name,
            capacity,
            node,
            lost: AtomicBool::new(false),
        });
        self.nodes_lock().push(entry.clone());
        entry
    }

    pub fn allocate_participant(&self) -> ParticipantId {
        ParticipantId(self.next_participant.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn node(&self, id: usize) -> Option<Arc<NodeEntry>> {
        self.nodes_lock()
            .iter()
            .find(|n| n.id == id && !n.lost.load(Ordering::Relaxed))
            .cloned()
    }

    /// Reserve the participant's place; a new room goes to the least-loaded live
    /// node with capacity left. Returns the node and whether the room is new there.
    fn reserve(
        &self,
        participant: ParticipantId,
        room: &str,
    ) -> Result<(Arc<NodeEntry>, bool), ControlError> {
        let nodes: Vec<Arc<NodeEntry>> = self
            .nodes_lock()
            .iter()
            .filter(|n| !n.lost.load(Ordering::Relaxed))
            .cloned()
            .collect();
        let mut p = self.place_lock();
        let count = |p: &NodePlacement, id: usize| {
            p.participants.values().filter(|(_, n)| *n == id).count()
        };
        let existing = p
            .rooms
            .get(room)
            .and_then(|id| nodes.iter().find(|n| n.id == *id))
            .cloned();
        let (node, new) = match existing {
            Some(n) => (n, false),
            None => {
                let n = nodes
                    .iter()
                    .filter(|n| count(&p, n.id) < n.capacity)
                    .min_by_key(|n| count(&p, n.id) * 1000 / n.capacity.max(1))
                    .cloned()
                    .ok_or_else(|| {
                        ControlError::Unavailable("no media node has capacity left".into())
                    })?;
                p.rooms.insert(room.to_owned(), n.id);
                (n, true)
            }
        };
        p.participants
            .insert(participant, (room.to_owned(), node.id));
        Ok((node, new))
    }

    /// The participant is gone (left, failed, or its node was lost).
    pub fn forget(&self, participant: ParticipantId) {
        let mut p = self.place_lock();
        if let Some((room, _)) = p.participants.remove(&participant) {
            if !p.participants.values().any(|(r, _)| *r == room) {
                p.rooms.remove(&room);
            }
        }
    }

    /// Join: place, then ask the node. Returns the SDP answer and the node's name.
    pub async fn join(
        &self,
        participant: ParticipantId,
        room: &str,
        identity: &str,
        offer: &str,
        kind: JoinKind,
    ) -> Result<(String, String, bool), ControlError> {
        let waiting = self.admission.waiting.fetch_add(1, Ordering::Relaxed);
        let turn = tokio::time::timeout(ADMISSION_WAIT, self.admission.slots.acquire()).await;
        self.admission.waiting.fetch_sub(1, Ordering::Relaxed);
        let Ok(Ok(_turn)) = turn else {
            return Err(ControlError::Busy(waiting));
        };
        let (entry, new_room) = self.reserve(participant, room)?;
        let joined = entry
            .node
            .add_participant(participant, room, identity, offer, kind)
            .await;
        match joined {
            Ok(answer) => Ok((answer, entry.name.clone(), new_room)),
            Err(e) => {
                self.forget(participant);
                Err(e)
            }
        }
    }

    fn node_of(&self, participant: ParticipantId) -> Result<Arc<NodeEntry>, ControlError> {
        let id = self
            .place_lock()
            .participants
            .get(&participant)
            .map(|(_, n)| *n)
            .ok_or(ControlError::NoSuchParticipant)?;
        self.node(id).ok_or(ControlError::NoSuchParticipant)
    }

    fn node_of_room(&self, room: &str) -> Result<Arc<NodeEntry>, ControlError> {
        let id = *self
            .place_lock()
            .rooms
            .get(room)
            .ok_or(ControlError::NoSuchRoom)?;
        self.node(id).ok_or(ControlError::NoSuchRoom)
    }

    async fn done(&self, entry: Arc<NodeEntry>, req: Request) -> Result<(), ControlError> {
        entry.node.done(req).await
    }

    pub async fn answer(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<(), ControlError> {
        let node = self.node_of(participant)?;
        self.done(node, Request::Answer { participant, sdp }).await
    }

    pub async fn remove(&self, participant: ParticipantId) -> Result<(), ControlError> {
        let node = self.node_of(participant);
        self.forget(participant);
        self.done(node?, Request::RemoveParticipant { participant })
            .await
    }

    pub async fn set_preference(
        &self,
        participant: ParticipantId,
        track: TrackId,
        pref: Preference,
    ) -> Result<(), ControlError> {
        let node = self.node_of(participant)?;
        self.done(
            node,
            Request::SetPreference {
                participant,
                track,
                pref,
            },
        )
        .await
    }

    pub async fn close_room(&self, room: &str) -> Result<(), ControlError> {
        let node = self.node_of_room(room)?;
        {
            let mut p = self.place_lock();
            p.rooms.remove(room);
            p.participants.retain(|_, (r, _)| r != room);
        }
        self.done(
            node,
            Request::CloseRoom {
                room: room.to_owned(),
            },
        )
        .await
    }

    pub async fn room_stats(&self, room: &str) -> Result<(RoomFigures, String), ControlError> {
        let entry = self.node_of_room(room)?;
        let figures = entry.node.room_stats(room).await?;
        Ok((figures, entry.name.clone()))
    }

    pub fn has_room(&self, room: &str) -> bool {
        self.place_lock().rooms.contains_key(room)
    }

    pub fn rooms(&self) -> Vec<String> {
        let mut v: Vec<String> = self.place_lock().rooms.keys().cloned().collect();
        v.sort();
        v
    }

    /// Mark a node lost; returns the participants it carried (their clients must
    /// rejoin) after forgetting them and their rooms' placement.
    pub fn node_lost(&self, id: usize) -> Vec<ParticipantId> {
        if let Some(n) = self.nodes_lock().iter().find(|n| n.id == id) {
            n.lost.store(true, Ordering::Relaxed);
        }
        self.nodes_lock().retain(|n| n.id != id);
        let mut p = self.place_lock();
        p.rooms.retain(|_, n| *n != id);
        let gone: Vec<ParticipantId> = p
            .participants
            .iter()
            .filter(|(_, (_, n))| *n == id)
            .map(|(pid, _)| *pid)
            .collect();
        p.participants.retain(|_, (_, n)| *n != id);
        gone
    }

    pub fn nodes(&self) -> Vec<NodeStatus> {
        let p = self.place_lock();
        self.nodes_lock()
            .iter()
            .map(|n| NodeStatus {
                name: n.name.clone(),
                state: if n.lost.load(Ordering::Relaxed) {
                    "lost"
                } else {
                    "ready"
                },
                participants: p
                    .participants
                    .values()
                    .filter(|(_, id)| *id == n.id)
                    .count(),
                capacity: n.capacity,
                load: n.node.load(),
            })
            .collect()
    }

    /// What the nodes add to the signalling node's `/metrics` (the embedded node's
    /// series; remote nodes serve their own).
    pub fn node_metrics(&self) -> String {
        let nodes: Vec<Arc<NodeEntry>> = self.nodes_lock().clone();
        nodes.iter().filter_map(|n| n.node.metrics()).collect()
    }

    pub fn ready_nodes(&self) -> usize {
        self.nodes_lock()
            .iter()
            .filter(|n| !n.lost.load(Ordering::Relaxed))
            .count()
    }
}
