//! The directory, mirrored to Redis: every admission and leave of this signalling
//! node's directory goes to the mirror's task over a channel (no I/O on the way), in
//! the order of the steps.

use std::sync::{Arc, Mutex};

use control::{ControlError, ParticipantId};
use tokio::sync::mpsc;

use super::Change;
use crate::directory::{Candidate, Directory, Membership, NodeId};

pub struct Mirrored {
    inner: Arc<dyn Directory>,
    changes: mpsc::UnboundedSender<Change>,
    /// Held across a step and its change: changes come in the order of the steps.
    order: Mutex<()>,
}

impl Mirrored {
    pub fn new(inner: Arc<dyn Directory>, changes: mpsc::UnboundedSender<Change>) -> Mirrored {
        Mirrored {
            inner,
            changes,
            order: Mutex::default(),
        }
    }

    fn out(&self, gone: &[Membership]) {
        for m in gone {
            let _ = self.changes.send(Change::Out(m.clone()));
        }
    }

    fn step<T>(&self, f: impl FnOnce() -> T) -> T {
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        f()
    }
}

impl Directory for Mirrored {
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
        self.step(|| {
            let admitted = self.inner.admit(member.clone(), candidates)?;
            let member = Membership {
                node: admitted.0,
                ..member
            };
            let _ = self.changes.send(Change::In(member));
            Ok(admitted)
        })
    }

    fn remove(&self, participant: ParticipantId) -> Option<Membership> {
        self.step(|| {
            let gone = self.inner.remove(participant)?;
            self.out(std::slice::from_ref(&gone));
            Some(gone)
        })
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
        self.step(|| {
            let gone = self.inner.close_room(room);
            self.out(&gone);
            gone
        })
    }

    fn node_lost(&self, node: NodeId) -> Vec<Membership> {
        self.step(|| {
            let gone = self.inner.node_lost(node);
            self.out(&gone);
            gone
        })
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
