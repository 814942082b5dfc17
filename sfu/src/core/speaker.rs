//! Active (dominant) speaker detection from RFC 6464 audio levels.
//!
//! Levels arrive per packet in dBov (0 loudest, -127 silent). Each interval every
//! participant's mean loudness is folded into a smoothed score; a challenger takes
//! over only when it beats the current speaker by [`MARGIN_DB`] for
//! [`ROUNDS_TO_SWITCH`] intervals in a row, so short noises do not steal the floor.

use super::ParticipantId;

/// Loudness (127 - level) below which a participant counts as silent.
const SILENCE: f32 = 127.0 - 70.0;
pub const MARGIN_DB: f32 = 6.0;
pub const ROUNDS_TO_SWITCH: u8 = 2;

#[derive(Debug, Default)]
struct Voice {
    participant: Option<ParticipantId>,
    sum: u64,
    count: u32,
    score: f32,
}

#[derive(Debug, Default)]
pub struct SpeakerDetector {
    voices: Vec<Voice>,
    current: Option<ParticipantId>,
    challenger: Option<(ParticipantId, u8)>,
}

impl SpeakerDetector {
    pub fn current(&self) -> Option<ParticipantId> {
        self.current
    }

    /// Record one packet's audio level.
    pub fn on_level(&mut self, participant: ParticipantId, level: i8) {
        // str0m reports dBov as a negative number (-127..=0); accept either sign.
        let loudness = 127u64.saturating_sub(level.unsigned_abs().min(127) as u64);
        let v = match self
            .voices
            .iter_mut()
            .position(|v| v.participant == Some(participant))
        {
            Some(i) => &mut self.voices[i],
            None => {
                self.voices.push(Voice {
                    participant: Some(participant),
                    ..Default::default()
                });
                self.voices.last_mut().expect("just pushed")
            }
        };
        v.sum += loudness;
        v.count += 1;
    }

    pub fn remove(&mut self, participant: ParticipantId) {
        self.voices.retain(|v| v.participant != Some(participant));
        if self.current == Some(participant) {
            self.current = None;
        }
    }

    /// Close an interval; returns the new dominant speaker when it changed.
    pub fn tick(&mut self) -> Option<ParticipantId> {
        for v in &mut self.voices {
            let mean = if v.count > 0 {
                v.sum as f32 / v.count as f32
            } else {
                0.0
            };
            v.score = v.score * 0.5 + mean * 0.5;
            v.sum = 0;
            v.count = 0;
        }
        let best = self
            .voices
            .iter()
            .filter(|v| v.score > SILENCE)
            .max_by(|a, b| a.score.total_cmp(&b.score))?;
        let best_id = best.participant?;
        if Some(best_id) == self.current {
            self.challenger = None;
            return None;
        }
        let current_score = self
            .voices
            .iter()
            .find(|v| v.participant == self.current && self.current.is_some())
            .map_or(0.0, |v| v.score);
        if self.current.is_some() && best.score < current_score + MARGIN_DB {
            self.challenger = None;
            return None;
        }
        let rounds = match self.challenger {
            Some((id, n)) if id == best_id => n + 1,
            _ => 1,
        };
        if rounds >= ROUNDS_TO_SWITCH || self.current.is_none() {
            self.current = Some(best_id);
            self.challenger = None;
            Some(best_id)
        } else {
            self.challenger = Some((best_id, rounds));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ParticipantId = ParticipantId(1);
    const B: ParticipantId = ParticipantId(2);

    fn round(d: &mut SpeakerDetector, a: i8, b: i8) -> Option<ParticipantId> {
        for _ in 0..10 {
            d.on_level(A, a);
            d.on_level(B, b);
        }
        d.tick()
    }

    #[test]
    fn loudest_becomes_speaker_with_hysteresis() {
        let mut d = SpeakerDetector::default();
        assert_eq!(round(&mut d, 127, 127), None, "silence elects nobody");
        // The smoothed score needs a couple of rounds to rise above silence.
        let elected: Vec<_> = (0..3).filter_map(|_| round(&mut d, 20, 100)).collect();
        assert_eq!(elected, [A]);
        // B gets slightly louder than A: within the margin, no switch.
        assert_eq!(round(&mut d, 20, 18), None);
        assert_eq!(round(&mut d, 20, 18), None);
        // B clearly louder: it takes over only after consecutive rounds.
        let mut switched = None;
        for _ in 0..5 {
            if let Some(p) = round(&mut d, 60, 10) {
                switched = Some(p);
                break;
            }
        }
        assert_eq!(switched, Some(B));
        assert_eq!(d.current(), Some(B));
    }

    #[test]
    fn one_loud_blip_does_not_switch() {
        let mut d = SpeakerDetector::default();
        for _ in 0..4 {
            round(&mut d, 20, 100);
        }
        assert_eq!(d.current(), Some(A));
        assert_eq!(round(&mut d, 20, 0), None);
        assert_eq!(round(&mut d, 20, 100), None);
        assert_eq!(d.current(), Some(A));
    }
}
