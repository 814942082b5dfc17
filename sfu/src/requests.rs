//! The control API carried out on this node: one function for each request, whether
//! it came in-process (the signalling node's embedded node) or over QUIC (`remote`).

use control::{MediaNode, NodeLoad, Pending, Reply, Request, Response};

use crate::node::Node;

impl Node {
    /// Carry out one control request. Blocking: a join builds and answers a
    /// participant's `Rtc` (about a millisecond), so async callers use
    /// [`MediaNode::call`], which runs it on tokio's blocking pool.
    pub fn execute(&self, request: Request) -> Reply {
        Ok(match request {
            Request::AddParticipant {
                participant,
                room,
                identity,
                offer,
                kind,
                video,
                screen,
            } => {
                let media = control::JoinMedia {
                    kind,
                    video,
                    screen,
                };
                let joined =
                    self.add_participant_with(participant, &room, &identity, &offer, media);
                Response::Joined {
                    answer: joined?.answer,
                }
            }
            Request::Answer { participant, sdp } => {
                self.answer(participant, &sdp)?;
                Response::Done
            }
            Request::RemoveParticipant { participant } => {
                self.remove_participant(participant)?;
                Response::Done
            }
            Request::SetPreference {
                participant,
                track,
                pref,
            } => {
                self.set_preference(participant, track, pref)?;
                Response::Done
            }
            Request::Screen { participant, on } => {
                self.screen(participant, on)?;
                Response::Done
            }
            Request::HoldAudio { participant, held } => {
                self.hold_audio(participant, held)?;
                Response::Done
            }
            Request::RoomStats { room } => Response::RoomStats(self.room_stats(&room)?.figures),
        })
    }
}

impl MediaNode for Node {
    fn call(&self, request: Request) -> Pending<'_> {
        let node = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || node.execute(request))
                .await
                .unwrap_or(Err(control::ControlError::ShuttingDown))
        })
    }

    fn load(&self) -> NodeLoad {
        Node::load(self)
    }

    fn metrics(&self) -> Option<String> {
        Some(self.metrics().render())
    }
}
