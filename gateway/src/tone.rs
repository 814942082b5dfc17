//! Tones: a sine to send, and the Goertzel filter that finds one in received audio
//! (how the tests, and anyone checking a leg by ear without ears, tell that the
//! right sound came through).

/// `n` samples of a sine of `freq` Hz at `rate`, amplitude `amp`, from sample `from`.
pub fn sine(freq: f64, rate: u32, amp: f64, from: u64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = (from + i as u64) as f64 / rate as f64;
            (amp * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

/// The share of `samples`' power at `freq` Hz (Goertzel), 0 to about 1: a clean tone
/// scores near 1, other tones and noise near 0.
pub fn share_at(samples: &[i16], rate: u32, freq: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / rate as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut total = 0.0;
    for &x in samples {
        let x = x as f64;
        total += x * x;
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    if total == 0.0 {
        return 0.0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // A pure tone of N samples gives power = N * total / 2.
    2.0 * power / (samples.len() as f64 * total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_is_found_and_another_is_not() {
        let s = sine(440.0, 8000, 8000.0, 0, 8000);
        assert!(share_at(&s, 8000, 440.0) > 0.9);
        assert!(share_at(&s, 8000, 660.0) < 0.01);
        assert_eq!(share_at(&[0; 100], 8000, 440.0), 0.0);
    }
}
