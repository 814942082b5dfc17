//! The layer allocator: fits one subscriber's bandwidth estimate to the video tracks it
//! receives. Audio is served first; then every track gets its lowest layer, in order
//! of [`Rank`] (shared screens, then the active speaker, then other cameras); then
//! shared screens are upgraded as far as the estimate allows (a scan or a care plan
//! must be readable before faces are sharp), then the other tracks one layer at a
//! time, in rank order. A track that cannot get even its lowest layer is paused
//! (`None`), unless it just started (`Demand::keep_lowest`: an early estimate is not
//! trusted to pause a video; what it takes is then not given to others).
//!
//! Hysteresis has two parts: an upgrade must fit with [`UPGRADE_HEADROOM`] to spare
//! (keeping a layer needs only that it fits), and the subscription takes an upgrade only
//! after it was proposed in consecutive rounds (see `Subscription::propose`).

use super::{Layer, MAX_LAYERS};

/// An upgrade must fit this many times its bitrate into what is left.
pub const UPGRADE_HEADROOM: f64 = 1.25;

/// Which tracks a subscriber's estimate serves first, highest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// Another participant's camera.
    #[default]
    Other,
    /// The active speaker's camera.
    Speaker,
    /// A shared screen.
    Screen,
}

/// One video track as the allocator sees it for one subscriber.
#[derive(Clone, Copy, Debug, Default)]
pub struct Demand {
    /// Measured bitrate of each layer being received from the publisher.
    pub bitrates: [Option<u64>; MAX_LAYERS],
    /// Highest layer the subscriber wants; `None` when it paused the track.
    pub max_layer: Option<Layer>,
    /// The layer allocated now.
    pub allocated: Option<Layer>,
    /// Served before tracks of lower rank.
    pub rank: Rank,
    /// Keeps its lowest layer even when the estimate has no room for it (a video
    /// that just started: see `subscription::SETTLING`).
    pub keep_lowest: bool,
}

impl Demand {
    fn layers(&self) -> impl Iterator<Item = (Layer, u64)> + '_ {
        let max = self.max_layer;
        self.bitrates
            .iter()
            .enumerate()
            .filter_map(move |(i, b)| Some((i as Layer, (*b)?)))
            .filter(move |(i, _)| max.is_some_and(|m| *i <= m))
    }

    fn cost(&self, layer: Layer, bps: u64) -> u64 {
        let keeps = self.allocated.is_some_and(|a| layer <= a);
        if keeps {
            bps
        } else {
            (bps as f64 * UPGRADE_HEADROOM) as u64
        }
    }
}

/// Propose a layer for each demand (same order) into `out`.
pub fn allocate(
    estimate_bps: u64,
    audio_bps: u64,
    demands: &[Demand],
    out: &mut Vec<Option<Layer>>,
) {
    out.clear();
    out.resize(demands.len(), None);
    let mut remaining = estimate_bps.saturating_sub(audio_bps);
    let mut spent = vec![0u64; demands.len()];

    // Higher ranks first, otherwise in the given order (the sort is stable).
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(demands[i].rank));

    // Round 1: the lowest layer for as many tracks as fit.
    for &i in &order {
        let d = &demands[i];
        if let Some((layer, bps)) = d.layers().next() {
            let cost = d.cost(layer, bps);
            if cost <= remaining || d.keep_lowest {
                remaining = remaining.saturating_sub(cost);
                spent[i] = cost;
                out[i] = Some(layer);
            }
        }
    }

    // Further rounds: one layer up at a time, in rank order, while it fits; shared
    // screens to the top they may have before any other track is upgraded.
    let screens = order.partition_point(|&i| demands[i].rank == Rank::Screen);
    for upgrading in [&order[..screens], &order[..]] {
        upgrade(demands, upgrading, &mut remaining, &mut spent, out);
    }
}

/// Raise the tracks `order` names one layer at a time, in that order, while the next
/// layer fits into `remaining`.
fn upgrade(
    demands: &[Demand],
    order: &[usize],
    remaining: &mut u64,
    spent: &mut [u64],
    out: &mut [Option<Layer>],
) {
    loop {
        let mut changed = false;
        for &i in order {
            let d = &demands[i];
            let Some(cur) = out[i] else { continue };
            let Some((layer, bps)) = d.layers().find(|(l, _)| *l > cur) else {
                continue;
            };
            let cost = d.cost(layer, bps);
            if cost.saturating_sub(spent[i]) <= *remaining {
                *remaining -= cost.saturating_sub(spent[i]);
                spent[i] = cost;
                out[i] = Some(layer);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// What to probe for: enough for every track's best wanted layer, with the headroom
/// an upgrade to it needs. Probing only up to the layers' bare bitrates would leave
/// the estimate short of what [`allocate`] asks before it upgrades, and a subscriber
/// that fell to a lower layer could stay there with room to spare.
pub fn desired_bitrate(audio_bps: u64, demands: &[Demand]) -> u64 {
    audio_bps
        + demands
            .iter()
            .filter_map(|d| d.layers().last().map(|(l, b)| d.cost(l, b)))
            .sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_layers() -> Demand {
        Demand {
            bitrates: [Some(150_000), Some(500_000), Some(1_200_000)],
            max_layer: Some(2),
            allocated: None,
            rank: Rank::Other,
            keep_lowest: false,
        }
    }

    fn run(estimate: u64, demands: &[Demand]) -> Vec<Option<Layer>> {
        let mut out = Vec::new();
        allocate(estimate, 40_000, demands, &mut out);
        out
    }

    #[test]
    fn fits_highest_layers() {
        assert_eq!(
            run(5_000_000, &[three_layers(), three_layers()]),
            [Some(2), Some(2)]
        );
        assert_eq!(run(1_000_000, &[three_layers()]), [Some(1)]);
        assert_eq!(run(250_000, &[three_layers()]), [Some(0)]);
    }

    #[test]
    fn pauses_when_lowest_does_not_fit() {
        assert_eq!(run(100_000, &[three_layers()]), [None]);
        // Two tracks, room for one lowest layer: the speaker's gets it.
        let mut speaker = three_layers();
        speaker.rank = Rank::Speaker;
        assert_eq!(run(260_000, &[three_layers(), speaker]), [None, Some(0)]);
    }

    #[test]
    fn a_shared_screen_is_served_first() {
        let mut speaker = three_layers();
        speaker.rank = Rank::Speaker;
        let mut screen = three_layers();
        screen.rank = Rank::Screen;
        // Room for one video: the screen gets it, not the speaker nor the older camera.
        assert_eq!(
            run(260_000, &[three_layers(), speaker, screen]),
            [None, None, Some(0)]
        );
        // Room for the screen's top layer (1.2M, 1.5M with the upgrade's headroom)
        // and the cameras' lowest (150k, 187.5k): the screen goes to the top before
        // any camera goes up (taking turns would leave all three at layer 1).
        let full = 40_000 + 2 * 187_500 + 1_500_000;
        assert_eq!(
            run(full, &[three_layers(), speaker, screen]),
            [Some(0), Some(0), Some(2)]
        );
        // With plenty, everyone gets their best.
        assert_eq!(
            run(10_000_000, &[three_layers(), speaker, screen]),
            [Some(2), Some(2), Some(2)]
        );
    }

    #[test]
    fn a_video_that_just_started_keeps_its_lowest_layer() {
        let mut started = three_layers();
        started.allocated = Some(0);
        started.keep_lowest = true;
        assert_eq!(run(100_000, &[started]), [Some(0)]);
        // What it takes is not given to others: the older video gets nothing more.
        let mut older = three_layers();
        older.allocated = Some(0);
        assert_eq!(run(300_000, &[started, older]), [Some(0), None]);
    }

    #[test]
    fn keeping_needs_less_than_upgrading() {
        // 700 kbit/s: layer 1 (500k) needs 625k with headroom to be taken, fits.
        // At 640k - audio = 600k it does not fit as an upgrade ...
        assert_eq!(run(640_000, &[three_layers()]), [Some(0)]);
        // ... but is kept when already allocated.
        let mut d = three_layers();
        d.allocated = Some(1);
        assert_eq!(run(640_000, &[d]), [Some(1)]);
    }

    #[test]
    fn respects_cap_and_missing_layers() {
        let mut d = three_layers();
        d.max_layer = Some(0);
        assert_eq!(run(5_000_000, &[d]), [Some(0)]);
        d.max_layer = None;
        assert_eq!(run(5_000_000, &[d]), [None]);
        let mut only_top = three_layers();
        only_top.bitrates = [None, None, Some(1_200_000)];
        assert_eq!(run(5_000_000, &[only_top]), [Some(2)]);
    }

    #[test]
    fn desired_covers_top_layers_with_the_upgrade_headroom() {
        // Not at the top yet: enough to upgrade to it (1.2M x 1.25).
        let mut d = three_layers();
        assert_eq!(desired_bitrate(40_000, &[d]), 1_540_000);
        assert_eq!(run(1_540_000, &[d]), [Some(2)]);
        // At the top: enough to keep it.
        d.allocated = Some(2);
        assert_eq!(desired_bitrate(40_000, &[d]), 1_240_000);
    }
}
