//! The media nodes the signalling node places rooms on: the embedded one and those
//! registered over QUIC, each driven through `control::MediaNode`. Where each room and
//! participant is lives in the [`Directory`]; this module holds the nodes themselves,
//! the admission queue, and the requests that follow from membership.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control::{
    ControlError, MediaNode, NodeLoad, ParticipantId, Preference, Request, RoomFigures, TrackId,
};

use crate::directory::{Candidate, Directory, Joiner, Membership, NodeId};

/// A media node the signalling node places rooms on.
pub struct NodeEntry {
    pub id: NodeId,
    pub name: String,
    pub capacity: usize,
    pub node: Arc<dyn MediaNode>,
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

pub struct Cluster {
    nodes: Mutex<Vec<Arc<NodeEntry>>>,
    directory: Arc<dyn Directory>,
    /// Where this run's participant ids start: ids up to it are an earlier run's.
    first_participant: u64,
    next_participant: AtomicU64,
    next_node: AtomicUsize,
    pub admission: Admission,
    /// This signalling node drains: it places no new rooms (see `Server::drain`).
    draining: std::sync::atomic::AtomicBool,
    /// The state shared with other signalling nodes, which places rooms (`--redis`).
    shared: Option<Arc<crate::shared::Shared>>,
    /// Ids are `first + 1 + n * IDS_STRIDE + residue` with other signalling nodes,
    /// so that two started in the same second give out none alike.
    residue: u64,
    stride: u64,
    /// Rooms with a join between its placement in Redis and its entry here (the
    /// mirror's clean-up leaves their counts alone).
    placing: Mutex<std::collections::HashMap<String, usize>>,
}

/// A join in flight in its room, until dropped.
struct Placing<'a>(&'a Cluster, String);

impl Drop for Placing<'_> {
    fn drop(&mut self) {
        let mut placing = self.0.placing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = placing.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                placing.remove(&self.1);
            }
        }
    }
}

/// With other signalling nodes: the residues of ids their instance numbers give.
const IDS_STRIDE: u64 = 256;

/// A live node as the admin API shows it (a lost node leaves the list).
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeStatus {
    pub name: String,
    /// Participants placed on it by this signalling node.
    pub participants: usize,
    pub capacity: usize,
    /// What the node itself last reported.
    pub load: NodeLoad,
}

/// A successful join.
#[derive(Clone, Debug)]
pub struct Joined {
    pub answer: String,
    /// The node's name (a metric label: node names are the operator's, not people's).
    pub node: String,
    /// The room was placed on the node by this join.
    pub new_room: bool,
}

/// Where participant ids start: the start time in seconds, shifted past any id an
/// earlier run of this node could have given (2^24 joins a second), so that a
/// restarted node never gives a new participant the id of one its media nodes still
/// carry, and tells the sessions of an earlier run (ids up to it) from its own.
/// Below the ids embedded nodes give themselves (the top bit). A clock set back
/// between two runs only makes the earlier run's sessions rejoin instead of resuming.
fn first_participant_id() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs << 24) & !(1 << 63)
}

impl Cluster {
    pub fn new(directory: Arc<dyn Directory>, shared: Option<Arc<crate::shared::Shared>>) -> Self {
        let first = first_participant_id();
        let (stride, residue) = match &shared {
            Some(s) => (IDS_STRIDE, s.instance % IDS_STRIDE),
            None => (1, 0),
        };
        Cluster {
            shared,
            stride,
            residue,
            placing: Mutex::default(),
            nodes: Mutex::default(),
            directory,
            first_participant: first,
            next_participant: AtomicU64::new(0),
            next_node: AtomicUsize::new(0),
            admission: Admission::default(),
            draining: Default::default(),
        }
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
        });
        self.nodes_lock().push(entry.clone());
        entry
    }

    /// The name of node `id`, while it is registered.
    pub fn name_of(&self, id: NodeId) -> Option<String> {
        self.nodes_lock()
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.name.clone())
    }

    /// The id of the node registered as `name`.
    pub fn id_of(&self, name: &str) -> Option<NodeId> {
        self.nodes_lock()
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.id)
    }

    pub fn allocate_participant(&self) -> ParticipantId {
        let n = self.next_participant.fetch_add(1, Ordering::Relaxed);
        ParticipantId(self.first_participant + 1 + n * self.stride + self.residue)
    }

    /// Whether this run of the signalling node gave the id out. A media node that
    /// hands back such a session lost its control connection while this node ran on:
    /// the participant was told to rejoin (`failed`), and its session is over.
    pub fn gave_out(&self, participant: ParticipantId) -> bool {
        participant.0 > self.first_participant
            && (participant.0 - self.first_participant - 1) % self.stride == self.residue
    }

    /// The node registered under `id`.
    pub fn node_entry(&self, id: NodeId) -> Option<Arc<NodeEntry>> {
        self.node(id)
    }

    fn node(&self, id: NodeId) -> Option<Arc<NodeEntry>> {
        self.nodes_lock().iter().find(|n| n.id == id).cloned()
    }

    /// The nodes a room may be on. One that drains (or all, while this signalling
    /// node drains) takes no new room: its room for them is none. Its rooms stay
    /// where they are, and their late joiners come in.
    fn candidates(&self) -> Vec<Candidate> {
        let draining = self.is_draining();
        // A node's load is asked outside the list's lock (the embedded one takes
        // its own locks).
        let nodes: Vec<Arc<NodeEntry>> = self.nodes_lock().clone();
        nodes
            .iter()
            .map(|n| Candidate {
                node: n.id,
                capacity: if draining || n.node.load().draining {
                    0
                } else {
                    n.capacity
                },
            })
            .collect()
    }

    /// Stop placing new rooms (this signalling node is stopping).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether a join into the room is between its placement and its entry.
    pub fn placing(&self, room: &str) -> bool {
        let placing = self.placing.lock().unwrap_or_else(|e| e.into_inner());
        placing.contains_key(room)
    }

    /// Other signalling nodes share the cluster state (`--redis`).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    pub fn shared(&self) -> Option<&Arc<crate::shared::Shared>> {
        self.shared.as_ref()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Join: wait for an admission slot, enter the participant in the directory
    /// (which places a new room), then ask the room's node.
    pub async fn join(
        &self,
        participant: ParticipantId,
        room: &str,
        who: Joiner,
        offer: &str,
        media: control::JoinMedia,
    ) -> Result<Joined, ControlError> {
        let waiting = self.admission.waiting.fetch_add(1, Ordering::Relaxed);
        let turn = tokio::time::timeout(ADMISSION_WAIT, self.admission.slots.acquire()).await;
        self.admission.waiting.fetch_sub(1, Ordering::Relaxed);
        let Ok(Ok(_turn)) = turn else {
            return Err(ControlError::Busy(waiting));
        };
        let identity = who.identity.clone();
        let member = Membership {
            participant,
            room: room.into(),
            identity: who.identity,
            via: who.via,
            node: NodeId::default(),
            sip: who.sip,
            org: who.org,
        };
        let candidates = self.candidates();
        let _placing = self.shared.is_some().then(|| {
            let mut placing = self.placing.lock().unwrap_or_else(|e| e.into_inner());
            *placing.entry(room.to_owned()).or_default() += 1;
            Placing(self, room.to_owned())
        });
        let (candidates, shared_new) = match &self.shared {
            Some(shared) => {
                let (placed, new) = self.place_shared(shared, room, &candidates).await?;
                (placed, Some(new))
            }
            None => (candidates, None),
        };
        let (id, new_room) = self.directory.admit(member, &candidates)?;
        let new_room = shared_new.unwrap_or(new_room);
        let joined = match self.node(id) {
            Some(entry) => entry
                .node
                .add_participant(participant, room, &identity, offer, media)
                .await
                .map(|answer| Joined {
                    answer,
                    node: entry.name.clone(),
                    new_room,
                }),
            None => Err(ControlError::Unavailable(
                "the room's media node is gone".into(),
            )),
        };
        if joined.is_err() {
            self.directory.remove(participant);
            return joined;
        }
        // Its room may have closed, or its node been lost, while the node set it up:
        // then it must not stay on the node with no entry to reach it by.
        if self
            .directory
            .member(participant)
            .is_none_or(|m| m.node != id)
        {
            if let Some(entry) = self.node(id) {
                let _ = entry
                    .node
                    .done(Request::RemoveParticipant { participant })
                    .await;
            }
            return Err(ControlError::NoSuchRoom);
        }
        joined
    }

    /// Where the room lives, as the signalling nodes decide together: the one
    /// candidate to admit on.
    async fn place_shared(
        &self,
        shared: &crate::shared::Shared,
        room: &str,
        candidates: &[Candidate],
    ) -> Result<(Vec<Candidate>, bool), ControlError> {
        let offered: Vec<(String, usize, usize)> = candidates
            .iter()
            .filter_map(|c| {
                let entry = self.node(c.node)?;
                // What the node last said, or what this signalling node put on it
                // since (the node says once a second).
                let load = entry
                    .node
                    .load()
                    .participants
                    .max(self.directory.placed_on(c.node));
                Some((entry.name.clone(), c.capacity, load))
            })
            .collect();
        let placed = shared.place(room, &offered).await.map_err(|e| {
            tracing::warn!("Redis: placing a room: {e}");
            ControlError::Unavailable("the cluster's shared state is unavailable".into())
        })?;
        let (name, new_room) =
            match placed {
                crate::shared::Placed::On { node, new_room } => (node, new_room),
                crate::shared::Placed::Elsewhere(_) => return Err(ControlError::Unavailable(
                    "the room's media node is not reachable from this signalling node: try again"
                        .into(),
                )),
                crate::shared::Placed::Full => {
                    return Err(ControlError::Unavailable(
                        "no media node has capacity left".into(),
                    ))
                }
            };
        let node = self
            .id_of(&name)
            .ok_or_else(|| ControlError::Unavailable("the room's media node is gone".into()))?;
        let only = Candidate {
            node,
            capacity: usize::MAX,
        };
        Ok((vec![only], new_room))
    }

    fn node_of(&self, participant: ParticipantId) -> Result<Arc<NodeEntry>, ControlError> {
        let member = self
            .directory
            .member(participant)
            .ok_or(ControlError::NoSuchParticipant)?;
        self.node(member.node)
            .ok_or(ControlError::NoSuchParticipant)
    }

    fn node_of_room(&self, room: &str) -> Result<Arc<NodeEntry>, ControlError> {
        let id = self
            .directory
            .node_of_room(room)
            .ok_or(ControlError::NoSuchRoom)?;
        self.node(id).ok_or(ControlError::NoSuchRoom)
    }

    pub async fn answer(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<(), ControlError> {
        self.ask(participant, Request::Answer { participant, sdp })
            .await
    }

    /// The participant leaves: out of the directory, then off its node.
    pub async fn remove(&self, participant: ParticipantId) -> Result<(), ControlError> {
        let entry = self.node_of(participant);
        self.directory.remove(participant);
        entry?
            .node
            .done(Request::RemoveParticipant { participant })
            .await
    }

    pub async fn set_preference(
        &self,
        participant: ParticipantId,
        track: TrackId,
        pref: Preference,
    ) -> Result<(), ControlError> {
        let entry = self.node_of(participant)?;
        let request = Request::SetPreference {
            participant,
            track,
            pref,
        };
        entry.node.done(request).await
    }

    /// The participant starts or stops sharing its screen.
    pub async fn screen(&self, participant: ParticipantId, on: bool) -> Result<(), ControlError> {
        self.ask(participant, Request::Screen { participant, on })
            .await
    }

    /// A request to the room's node, answered with `Done` (about a participant of
    /// the room that may have come through another signalling node).
    pub async fn ask_room(&self, room: &str, request: Request) -> Result<(), ControlError> {
        self.node_of_room(room)?.node.done(request).await
    }

    /// A request about `participant` to the node it is on, answered with `Done`.
    pub async fn ask(
        &self,
        participant: ParticipantId,
        request: Request,
    ) -> Result<(), ControlError> {
        self.node_of(participant)?.node.done(request).await
    }

    /// Close the room; returns who was in it (to be told). Its members leave one by
    /// one rather than the room by name: a newcomer admitted while they go (the room
    /// is placed anew, maybe on the same node) must not be closed out with them.
    pub async fn close_room(&self, room: &str) -> Result<Vec<Membership>, ControlError> {
        self.node_of_room(room)?;
        let members = self.directory.close_room(room);
        // Each to its own node: while a room is placed anew, members differ.
        let leaving = members.iter().filter_map(|m| {
            let entry = self.node(m.node)?;
            Some(async move {
                entry
                    .node
                    .done(Request::RemoveParticipant {
                        participant: m.participant,
                    })
                    .await
            })
        });
        // One may already be gone (it failed, or left meanwhile): nothing to undo.
        futures_util::future::join_all(leaving).await;
        Ok(members)
    }

    pub async fn room_stats(&self, room: &str) -> Result<(RoomFigures, String), ControlError> {
        let entry = self.node_of_room(room)?;
        let figures = entry.node.room_stats(room).await?;
        Ok((figures, entry.name.clone()))
    }

    /// A node is lost: it leaves the list; returns the participants it carried (their
    /// clients must rejoin), now out of the directory with their rooms unplaced.
    pub fn node_lost(&self, id: NodeId) -> Vec<Membership> {
        self.nodes_lock().retain(|n| n.id != id);
        self.directory.node_lost(id)
    }

    pub fn nodes(&self) -> Vec<NodeStatus> {
        let nodes: Vec<Arc<NodeEntry>> = self.nodes_lock().clone();
        nodes
            .iter()
            .map(|n| NodeStatus {
                name: n.name.clone(),
                participants: self.directory.placed_on(n.id),
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
        self.nodes_lock().len()
    }
}
