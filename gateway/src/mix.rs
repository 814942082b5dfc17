//! The leg's audio mix: of the room's voices in one 20 ms frame (the caller's own is
//! never among them), the [`VOICES`] loudest are summed and passed through a soft
//! limiter, so that three people talking at once do not clip into noise.

/// How many voices are mixed at once: more adds mostly noise, and a phone call
/// cannot follow more than two or three speakers anyway.
pub const VOICES: usize = 3;

/// Above this share of full scale the limiter starts to bend the curve.
const KNEE: f32 = 0.6;

/// Mix `sources` (frames of the same length as `out`) into `out`.
pub fn mix(sources: &[&[i16]], out: &mut [i16]) {
    let mut loudest: [Option<(u64, usize)>; VOICES] = [None; VOICES];
    for (i, s) in sources.iter().enumerate() {
        let energy: u64 = s.iter().map(|&x| (x as i64 * x as i64) as u64).sum();
        // Insert into the sorted top list (largest first).
        let mut cand = Some((energy, i));
        for slot in loudest.iter_mut() {
            match (*slot, cand) {
                (None, c) => {
                    *slot = c;
                    cand = None;
                }
                (Some(have), Some(c)) if c.0 > have.0 => {
                    *slot = Some(c);
                    cand = Some(have);
                }
                _ => {}
            }
        }
    }
    for (n, o) in out.iter_mut().enumerate() {
        let sum: i32 = loudest
            .iter()
            .flatten()
            .filter_map(|&(_, i)| sources[i].get(n))
            .map(|&x| x as i32)
            .sum();
        *o = limit(sum);
    }
}

/// Soft limiter: linear below [`KNEE`] of full scale, then a tanh curve that
/// approaches full scale without reaching past it.
fn limit(x: i32) -> i16 {
    let full = i16::MAX as f32;
    let v = x as f32 / full;
    let a = v.abs();
    if a <= KNEE {
        return x as i16;
    }
    let bent = KNEE + (1.0 - KNEE) * ((a - KNEE) / (1.0 - KNEE)).tanh();
    (v.signum() * bent * full) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_voices_add_up_unchanged() {
        let a = [100i16; 4];
        let b = [-30i16; 4];
        let mut out = [0i16; 4];
        mix(&[&a, &b], &mut out);
        assert_eq!(out, [70; 4]);
        mix(&[], &mut out);
        assert_eq!(out, [0; 4]);
    }

    #[test]
    fn only_the_three_loudest_are_mixed() {
        let frames: Vec<[i16; 2]> = [1i16, 1000, 5, 2000, 3000]
            .iter()
            .map(|&v| [v; 2])
            .collect();
        let refs: Vec<&[i16]> = frames.iter().map(|f| &f[..]).collect();
        let mut out = [0i16; 2];
        mix(&refs, &mut out);
        assert_eq!(out, [6000; 2]);
    }

    #[test]
    fn loud_sums_bend_and_never_wrap() {
        let loud = [30_000i16; 8];
        let mut out = [0i16; 8];
        mix(&[&loud, &loud, &loud], &mut out);
        assert!(out[0] > 30_000, "{}", out[0]);
        let neg = [-30_000i16; 8];
        mix(&[&neg, &neg], &mut out);
        assert!(out[0] < -30_000, "{}", out[0]);
        // Monotonic through the knee.
        let mut last = i16::MIN;
        for x in (-100_000..100_000).step_by(97) {
            let y = limit(x);
            assert!(y >= last, "{x}");
            last = y;
        }
    }
}
