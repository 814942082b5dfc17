//! WHIP-style publishers (publish only) and WHEP-style viewers (fixed receive-only
//! slots the node fills) on a running node, with real str0m peers.

mod common;

use std::time::Duration;

use common::{Client, Net, VideoCodec};
use sfu::{JoinKind, NodeEvent};

#[test]
fn viewer_slots_are_filled_and_refilled_with_one_continuous_stream() {
    let mut net = Net::new(1);
    let mut publisher = Client::new(1, VideoCodec::Vp8, 3);
    publisher.join_as(&net.node, "stage", JoinKind::PublishOnly);
    net.clients.push(publisher);
    let mut viewer = Client::new(9, VideoCodec::Vp8, 1);
    viewer.join_as(&net.node, "stage", JoinKind::ViewOnly);
    net.clients.push(viewer);

    let ok = net.run_until(Duration::from_secs(20), |n| {
        n.clients[1].video_from(1).is_some_and(|r| r.frames > 30)
            && n.clients[1].audio_packets() > 30
    });
    assert!(
        ok,
        "the viewer's slots carry the publisher's audio and video"
    );
    let offers_to_publisher = net
        .log
        .iter()
        .filter(|e| matches!(e, NodeEvent::Offer { participant, .. } if *participant == net.clients[0].participant))
        .count();
    assert_eq!(
        offers_to_publisher, 0,
        "a publish-only participant is never renegotiated"
    );
    let slot_mid = net.clients[1].video_from(1).unwrap().mid;

    // The publisher leaves and another starts: the same slot now shows the new one.
    let gone = net.clients[0].participant;
    net.node.remove_participant(gone).unwrap();
    net.clients[0].peer.stop_sending();
    let mut second = Client::new(2, VideoCodec::Vp8, 3);
    second.join_as(&net.node, "stage", JoinKind::PublishOnly);
    net.clients.push(second);
    let ok = net.run_until(Duration::from_secs(20), |n| {
        n.clients[1]
            .received()
            .iter()
            .any(|r| r.mid == slot_mid && r.from == Some(2) && r.frames > 60)
    });
    assert!(
        ok,
        "the freed slot is refilled with the next publisher's video: {:?}",
        net.clients[1].received()
    );
    net.node.shutdown();
}
