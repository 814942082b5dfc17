//! Renegotiation over a long meeting, with real str0m peers over loopback UDP: one
//! participant stays while 50 others come and go.

mod common;

use std::time::Duration;

use common::{Client, Net, VideoCodec};
use sfu::NodeEvent;

/// The sizes of the offers the node sent to `participant`, oldest first.
fn offers_to(net: &Net, participant: sfu::core::ParticipantId) -> Vec<usize> {
    net.log
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Offer {
                participant: p,
                sdp,
                ..
            } if *p == participant => Some(sdp.len()),
            _ => None,
        })
        .collect()
}

/// The node reuses the m-lines of tracks that ended for the next tracks of their
/// kind: the staying participant's SDP stays within 2x of its size with one other
/// participant (without reuse it gains two m-lines a visit), and the newcomers'
/// media reaches it over the reused m-lines.
#[test]
fn sdp_stays_bounded_as_fifty_participants_come_and_go() {
    let mut net = Net::new(1);
    net.join(Client::new(1, VideoCodec::Vp8, 1), "room-r");
    let stays = net.clients[0].participant;
    let mut first = None;
    for id in 2..52u8 {
        let before = offers_to(&net, stays).len();
        let idx = net.join(Client::new(id, VideoCodec::Vp8, 1), "room-r");
        // The newcomer's audio and video offered to the staying client (and
        // answered: the harness answers at once); every tenth newcomer's video
        // must be seen arriving.
        let watch = id % 10 == 1;
        // A reused m-line keeps its SSRC: frames count from the join on.
        let video = |n: &Net| -> u64 {
            n.clients[0]
                .received()
                .iter()
                .filter(|r| r.kind == client::stats::StreamKind::Video)
                .map(|r| r.frames)
                .sum()
        };
        let base = video(&net);
        let offered = net.run_until(Duration::from_secs(20), |n| {
            offers_to(n, stays).len() > before
                && (!watch || (n.clients[0].video_from(id).is_some() && video(n) > base + 5))
        });
        assert!(
            offered,
            "newcomer {id}: offered to the staying client{}",
            if watch { " and its video received" } else { "" }
        );
        net.run(Duration::from_millis(100));
        first.get_or_insert_with(|| *offers_to(&net, stays).last().unwrap());
        // It leaves: its m-lines go inactive, and once that is answered they are
        // free for the next newcomer.
        let gone = net.clients.remove(idx);
        let before = offers_to(&net, stays).len();
        net.node.remove_participant(gone.participant).unwrap();
        let retired = net.run_until(Duration::from_secs(10), |n| {
            offers_to(n, stays).len() > before
        });
        assert!(retired, "newcomer {id}'s m-lines retired");
        net.run(Duration::from_millis(100));
    }
    let sizes = offers_to(&net, stays);
    let (first, last) = (first.unwrap(), *sizes.last().unwrap());
    let largest = *sizes.iter().max().unwrap();
    eprintln!(
        "{} offers to the staying client: {first} bytes with one other participant, \
         {last} bytes after 50 came and went, {largest} at most",
        sizes.len()
    );
    assert!(
        largest <= 2 * first,
        "SDP within 2x of its size with one other participant: {first} -> at most {largest}"
    );
    // An answer given again (its offer was re-sent after the answer was lost with a
    // signalling node) is taken as the one the node had; an answer to no offer is
    // refused.
    let last = net.clients[0].last_answer.clone().unwrap();
    assert!(net.node.answer(stays, &last).is_ok());
    let other = last.replacen("a=", "a=x-other:1\r\na=", 1);
    assert!(net.node.answer(stays, &other).is_err());
    net.node.shutdown();
}
