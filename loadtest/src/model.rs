//! The load model (ARCHITECTURE.md): meeting sizes, arrivals over a quarter's working
//! days and hours, durations, and what a measured concurrency means per quarter.

use rand::Rng;

/// Meeting sizes and their shares: mostly 1:1 consultations, some with a relative or
/// an interpreter, a few case conferences. Mean 2.80 participants (VDX's busiest day:
/// 19,187 participants in 6,835 meetings).
pub const SIZE_MIX: [(usize, f64); 6] = [
    (2, 0.56),
    (3, 0.25),
    (4, 0.10),
    (5, 0.05),
    (6, 0.02),
    (8, 0.02),
];

/// Mean meeting length in the model (389,400 participant-minutes / 19,187).
pub const MEETING_MINUTES: f64 = 20.0;

/// Working days replayed for a quarter, and the working window of a day.
pub const QUARTER_DAYS: usize = 65;
pub const DAY_HOURS: usize = 8;

/// Relative load of each working hour (08-16); mean 1.0, busiest hour 1.5x.
pub const HOUR_WEIGHTS: [f64; DAY_HOURS] = [0.7, 1.2, 1.5, 1.3, 0.9, 1.1, 0.8, 0.5];
/// Relative load of the weekdays, Monday first; mean 1.0.
pub const WEEKDAY_WEIGHTS: [f64; 5] = [1.1, 1.05, 1.0, 1.0, 0.85];

/// Meetings a quarter per meeting sustained concurrently in the busy hour.
///
/// The load model (ARCHITECTURE.md) pairs 140,000 meetings a quarter with about 140 concurrent meetings in
/// the busy hour: a quarter's M meetings of T = 20 minutes, 80 % of their minutes in
/// an 8-hour working window, a busy hour at 1.5x the window's mean, over about 50
/// effective working days, give C = 1.5 * 0.8 * M * T / (50 * 480 min) = M / 1000.
pub const MEETINGS_PER_CONCURRENT: f64 = 1000.0;

/// What a sustained concurrency (meetings passing the thresholds together) supports.
pub fn quarter_equivalent_meetings(concurrent_meetings: f64) -> f64 {
    concurrent_meetings * MEETINGS_PER_CONCURRENT
}

pub fn mean_size() -> f64 {
    SIZE_MIX.iter().map(|(n, p)| *n as f64 * p).sum()
}

/// Draw a meeting size from the mix.
pub fn draw_size(rng: &mut impl Rng) -> usize {
    let mut x: f64 = rng.random();
    for (n, p) in SIZE_MIX {
        if x < p {
            return n;
        }
        x -= p;
    }
    SIZE_MIX[0].0
}

/// Sizes for `meetings` meetings whose mix matches the model as closely as whole
/// numbers allow (largest remainders), in an order that spreads the sizes out.
pub fn sizes_for(meetings: usize) -> Vec<usize> {
    let mut counts: Vec<(usize, usize, f64)> = SIZE_MIX
        .iter()
        .map(|(n, p)| {
            let exact = p * meetings as f64;
            (*n, exact.floor() as usize, exact - exact.floor())
        })
        .collect();
    let mut left = meetings - counts.iter().map(|c| c.1).sum::<usize>();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|a, b| counts[*b].2.total_cmp(&counts[*a].2));
    for i in order {
        if left == 0 {
            break;
        }
        counts[i].1 += 1;
        left -= 1;
    }
    // Interleave: round-robin over sizes so that a short run still has a mix.
    let mut out = Vec::with_capacity(meetings);
    while out.len() < meetings {
        for c in counts.iter_mut() {
            if c.1 > 0 {
                out.push(c.0);
                c.1 -= 1;
            }
        }
    }
    out
}

/// One meeting of a replay: when it starts and how long it exchanges media,
/// both in replay (compressed) seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arrival {
    pub start_s: f64,
    pub duration_s: f64,
    pub size: usize,
}

/// A quarter of `meetings` meetings in the model's shape, compressed `speedup`
/// times: the working hours of the quarter's working days are replayed back to back
/// (nights and weekends carry no meetings in the model), durations shrink by the same
/// factor but never below `min_media_s`, so that every meeting is really measured.
pub fn quarter(
    meetings: usize,
    speedup: f64,
    min_media_s: f64,
    rng: &mut impl Rng,
) -> Vec<Arrival> {
    let day_s = (DAY_HOURS * 3600) as f64;
    let mut day_weights = Vec::with_capacity(QUARTER_DAYS);
    for d in 0..QUARTER_DAYS {
        day_weights.push(WEEKDAY_WEIGHTS[d % 5]);
    }
    let day_total: f64 = day_weights.iter().sum();
    let hour_total: f64 = HOUR_WEIGHTS.iter().sum();
    let sizes = sizes_for(meetings);
    let mut out: Vec<Arrival> = sizes
        .into_iter()
        .map(|size| {
            let day = pick(&day_weights, day_total, rng);
            let hour = pick(&HOUR_WEIGHTS, hour_total, rng);
            let within: f64 = rng.random::<f64>() * 3600.0;
            let t = day as f64 * day_s + hour as f64 * 3600.0 + within;
            // Durations vary around the mean (exponential-ish, clipped to 2-90 min).
            let u: f64 = rng.random::<f64>().max(1e-9);
            let minutes = (-u.ln() * MEETING_MINUTES).clamp(2.0, 90.0);
            Arrival {
                start_s: t / speedup,
                duration_s: (minutes * 60.0 / speedup).max(min_media_s),
                size,
            }
        })
        .collect();
    out.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    out
}

/// The most meetings of a replay exchanging media at once, by its plan (joining and
/// leaving add a little). A full quarter cannot be replayed below its busy hour's
/// concurrency, whatever the speed-up: compressing time compresses durations too,
/// and where the media floor lengthens them, concurrency only rises.
pub fn peak_concurrency(arrivals: &[Arrival]) -> usize {
    let mut ends: std::collections::BinaryHeap<std::cmp::Reverse<u64>> = Default::default();
    let mut peak = 0;
    // Arrivals are sorted by start; integer microseconds order the ends.
    for a in arrivals {
        let start = (a.start_s * 1e6) as u64;
        while ends.peek().is_some_and(|e| e.0 <= start) {
            ends.pop();
        }
        ends.push(std::cmp::Reverse(((a.start_s + a.duration_s) * 1e6) as u64));
        peak = peak.max(ends.len());
    }
    peak
}

fn pick(weights: &[f64], total: f64, rng: &mut impl Rng) -> usize {
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// Replay length of a quarter at `speedup`, in seconds (before the last meetings end).
pub fn quarter_span_s(speedup: f64) -> f64 {
    (QUARTER_DAYS * DAY_HOURS * 3600) as f64 / speedup
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn size_mix_has_the_model_mean() {
        assert!((mean_size() - 2.80).abs() < 0.005, "{}", mean_size());
        let total: f64 = SIZE_MIX.iter().map(|(_, p)| p).sum();
        assert!((total - 1.0).abs() < 1e-9);
        let s = sizes_for(1000);
        assert_eq!(s.len(), 1000);
        let mean = s.iter().sum::<usize>() as f64 / 1000.0;
        assert!((mean - 2.80).abs() < 0.01, "{mean}");
        // A short run keeps a mix (largest remainders) rather than only the commonest size.
        assert_eq!(&sizes_for(3)[..], &[2, 3, 2]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let drawn: f64 = (0..20_000).map(|_| draw_size(&mut rng) as f64).sum::<f64>() / 20_000.0;
        assert!((drawn - 2.80).abs() < 0.03, "{drawn}");
    }

    #[test]
    fn weights_have_mean_one_and_a_busy_hour_of_one_and_a_half() {
        let hm = HOUR_WEIGHTS.iter().sum::<f64>() / HOUR_WEIGHTS.len() as f64;
        assert!((hm - 1.0).abs() < 1e-9);
        assert!((HOUR_WEIGHTS.iter().cloned().fold(0.0, f64::max) - 1.5).abs() < 1e-9);
        let wm = WEEKDAY_WEIGHTS.iter().sum::<f64>() / 5.0;
        assert!((wm - 1.0).abs() < 1e-9);
    }

    #[test]
    fn quarter_arrivals_follow_the_shape() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let speedup = 1000.0;
        let a = quarter(50_000, speedup, 5.0, &mut rng);
        assert_eq!(a.len(), 50_000);
        assert!(a.windows(2).all(|w| w[0].start_s <= w[1].start_s));
        let span = quarter_span_s(speedup);
        assert!(a.last().unwrap().start_s <= span);
        // The busiest hour of the day gets ~1.5/8 of the meetings, the last ~0.5/8.
        let day_s = (DAY_HOURS * 3600) as f64 / speedup;
        let hour_of = |t: f64| ((t % day_s) / (3600.0 / speedup)) as usize;
        let mut per_hour = [0usize; DAY_HOURS];
        for m in &a {
            per_hour[hour_of(m.start_s).min(DAY_HOURS - 1)] += 1;
        }
        let share = |h: usize| per_hour[h] as f64 / a.len() as f64;
        assert!((share(2) - 1.5 / 8.0).abs() < 0.01, "{per_hour:?}");
        assert!((share(7) - 0.5 / 8.0).abs() < 0.01, "{per_hour:?}");
        // Durations are compressed but never below the floor; the mean compressed
        // length is the model's 20 minutes (clipped), when the floor does not bite.
        assert!(a.iter().all(|m| m.duration_s >= 5.0));
        let slow = quarter(20_000, 1.0, 5.0, &mut rng);
        let mean_min = slow.iter().map(|m| m.duration_s).sum::<f64>() / slow.len() as f64 / 60.0;
        assert!((mean_min - 19.5).abs() < 1.0, "{mean_min}");
    }

    #[test]
    fn peak_concurrency_of_a_plan() {
        let a = |start_s, duration_s| Arrival {
            start_s,
            duration_s,
            size: 2,
        };
        // 0-10 and 5-15 overlap; 10-12 starts as the first ends; 20-21 is alone.
        let plan = [a(0.0, 10.0), a(5.0, 10.0), a(10.0, 2.0), a(20.0, 1.0)];
        assert_eq!(peak_concurrency(&plan), 2);
        assert_eq!(peak_concurrency(&[]), 0);
        // A full quarter holds its busy hour's ~150-180 meetings at any speed-up,
        // and more once the 3 s media floor lengthens the compressed meetings.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let slow = peak_concurrency(&quarter(140_000, 100.0, 3.0, &mut rng));
        let fast = peak_concurrency(&quarter(140_000, 1000.0, 3.0, &mut rng));
        assert!((150..230).contains(&slow), "{slow}");
        assert!(fast > 2 * slow, "{fast} vs {slow}");
    }

    #[test]
    fn quarter_equivalent_matches_the_design_figures() {
        assert_eq!(quarter_equivalent_meetings(140.0), 140_000.0);
        // The busiest day's ~350 concurrent meetings would carry 350,000 a quarter.
        assert_eq!(quarter_equivalent_meetings(350.0), 350_000.0);
    }
}
