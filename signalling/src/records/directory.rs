//! The directory, watched for meetings: every admission and every leave (however it
//! comes: a goodbye, a closed room, a lost media node, a failed join) passes through
//! [`Directory`], so the meetings are counted there, from its own steps. The events
//! go to the recorder's task over a channel: no lock and no I/O on the way.

use std::sync::Arc;

use control::{ControlError, ParticipantId};
use tokio::sync::mpsc;

use super::{now_ms, Ended};
use crate::directory::{Candidate, Directory, Membership, NodeId};

/// What the recorder hears.
#[derive(Debug)]
pub enum Event {
    /// Admitted on a node (Unix ms).
    Joined(Membership, NodeId, u64),
    /// Gone (Unix ms), and why, were it the last.
    Left(ParticipantId, u64, Ended),
    /// The media node switched a subscriber's layer.
    LayerChanged(ParticipantId),
    /// A subscriber's receiver reports lately: loss per mille (mean, worst), how
    /// many loss figures, worst jitter (ms).
    Received(ParticipantId, (u32, u32, u32, u32)),
    /// The media node paused (true) or resumed a video for a subscriber (Unix ms).
    VideoPaused(ParticipantId, control::TrackId, bool, u64),
    /// What another signalling node saw of a meeting this node records (`--redis`).
    Forwarded(Step),
}

/// One step of a meeting, as the recorder takes it (and hands it to the signalling
/// node that records the room's meeting, when that is another).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Step {
    /// Came in (Unix ms).
    Joined(super::Arrival, u64),
    /// Gone (Unix ms), and why, were it the last.
    Left(ParticipantId, u64, Ended),
    LayerChanged(ParticipantId),
    Received(ParticipantId, (u32, u32, u32, u32)),
    VideoPaused(ParticipantId, control::TrackId, bool, u64),
}

impl Step {
    /// The participant it is about.
    pub fn participant(&self) -> ParticipantId {
        match self {
            Step::Joined(a, _) => a.participant,
            Step::Left(p, ..)
            | Step::LayerChanged(p)
            | Step::Received(p, _)
            | Step::VideoPaused(p, ..) => *p,
        }
    }
}

/// A directory whose admissions and leaves are heard by the recorder (and, with
/// other signalling nodes, by the mirror that keeps Redis in step: `shared`).
pub struct Watched {
    inner: Arc<dyn Directory>,
    events: mpsc::UnboundedSender<Event>,
    mirror: Option<mpsc::UnboundedSender<crate::shared::Change>>,
    /// Held across a step and its event, so that events come in the order of the
    /// steps (a leave never before the admission it undoes).
    order: std::sync::Mutex<()>,
}

impl Watched {
    /// The events' sender: the media nodes' quality events join them.
    pub fn events(&self) -> mpsc::UnboundedSender<Event> {
        self.events.clone()
    }

    pub fn new(inner: Arc<dyn Directory>, events: mpsc::UnboundedSender<Event>) -> Watched {
        Watched {
            inner,
            events,
            mirror: None,
            order: std::sync::Mutex::default(),
        }
    }

    /// The mirror hears each admission and leave too.
    pub fn mirrored(self, mirror: mpsc::UnboundedSender<crate::shared::Change>) -> Watched {
        Watched {
            mirror: Some(mirror),
            ..self
        }
    }

    fn left(&self, gone: &[Membership], why: Ended) {
        let now = now_ms();
        for m in gone {
            let _ = self.events.send(Event::Left(m.participant, now, why));
            if let Some(mirror) = &self.mirror {
                let _ = mirror.send(crate::shared::Change::Out(m.clone()));
            }
        }
    }
}

impl Directory for Watched {
    fn declare(&self, room: &str) -> bool {
        self.inner.declare(room)
    }
    fn is_declared(&self, room: &str) -> bool {
        self.inner.is_declared(room)
    }
    fn undeclare(&self, room: &str) -> bool {
        self.inner.undeclare(room)
    }

    fn admit(
        &self,
        member: Membership,
        candidates: &[Candidate],
    ) -> Result<(NodeId, bool), ControlError> {
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let admitted = self.inner.admit(member.clone(), candidates)?;
        if let Some(mirror) = &self.mirror {
            let placed = Membership {
                node: admitted.0,
                ..member.clone()
            };
            let _ = mirror.send(crate::shared::Change::In(placed));
        }
        let _ = self
            .events
            .send(Event::Joined(member, admitted.0, now_ms()));
        Ok(admitted)
    }

    fn remove(&self, participant: ParticipantId) -> Option<Membership> {
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let gone = self.inner.remove(participant)?;
        self.left(std::slice::from_ref(&gone), Ended::Empty);
        Some(gone)
    }

    fn member(&self, participant: ParticipantId) -> Option<Membership> {
        self.inner.member(participant)
    }
    fn by_resource(&self, resource: &str) -> Option<Membership> {
        self.inner.by_resource(resource)
    }
    fn members(&self, room: &str) -> Vec<Membership> {
        self.inner.members(room)
    }
    fn node_of_room(&self, room: &str) -> Option<NodeId> {
        self.inner.node_of_room(room)
    }

    fn close_room(&self, room: &str) -> Vec<Membership> {
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let gone = self.inner.close_room(room);
        self.left(&gone, Ended::Closed);
        gone
    }

    fn node_lost(&self, node: NodeId) -> Vec<Membership> {
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let gone = self.inner.node_lost(node);
        self.left(&gone, Ended::NodeLost);
        gone
    }

    fn rooms(&self) -> Vec<String> {
        self.inner.rooms()
    }
    fn occupied_rooms(&self) -> usize {
        self.inner.occupied_rooms()
    }
    fn placed_on(&self, node: NodeId) -> usize {
        self.inner.placed_on(node)
    }
    fn left_lately(&self, participant: ParticipantId) -> bool {
        self.inner.left_lately(participant)
    }
}
