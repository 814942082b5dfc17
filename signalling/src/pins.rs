//! Room PINs: what a SIP caller enters to join a room (a phone has no token). A room
//! gets one when it is created (`POST /api/rooms {"name", "pin"}`); the SIP gateway
//! passes what the caller dialled or keyed in with its join, and the join is refused
//! unless it matches. PINs are compared in constant time, never logged, and a room
//! takes a few wrong ones a minute at most (then it is locked for the rest of it), so
//! that a PIN cannot be guessed by trying. Wrong PINs count per room and caller (the
//! gateway names the caller's address in its token), so that one caller guessing
//! locks out that caller; a room as a whole takes more before it locks for everyone
//! (guessing from many addresses at once).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest and longest PIN.
pub const PIN_DIGITS: std::ops::RangeInclusive<usize> = 6..=16;
/// Wrong PINs one caller may give a room in [`FAILURE_WINDOW`]; then that caller's
/// attempts are refused until they age out.
pub const MAX_FAILURES: usize = 5;
/// Wrong PINs a room takes in [`FAILURE_WINDOW`] from everyone together before it
/// refuses every attempt.
pub const MAX_ROOM_FAILURES: usize = 30;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// What a PIN rule says of one join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The room has a PIN and none was given.
    PinRequired,
    PinWrong,
    /// Too many wrong PINs lately: no attempt is checked until they age out.
    Locked,
    /// The room has no PIN: it takes no callers who need one.
    NoPin,
}

impl Admission {
    /// The WebSocket error code a refused join gets.
    pub fn code(self) -> &'static str {
        match self {
            Admission::Admitted => "ok",
            Admission::PinRequired => "pin_required",
            Admission::PinWrong => "pin_wrong",
            Admission::Locked => "pin_locked",
            Admission::NoPin => "no_pin",
        }
    }
}

struct RoomPin {
    digits: Vec<u8>,
    /// When, and from which caller (an address, if the gateway named one).
    failures: VecDeque<(Instant, Option<String>)>,
}

#[derive(Default)]
pub struct Pins {
    rooms: Mutex<HashMap<String, RoomPin>>,
}

/// A PIN is 6 to 16 digits.
pub fn valid_pin(pin: &str) -> bool {
    PIN_DIGITS.contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit())
}

/// Equal, in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

impl Pins {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomPin>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Give `room` this PIN (it must be [`valid_pin`]), or take its PIN away.
    pub fn set(&self, room: &str, pin: Option<&str>) {
        let mut rooms = self.lock();
        match pin {
            Some(p) => {
                rooms.insert(
                    room.to_owned(),
                    RoomPin {
                        digits: p.as_bytes().to_vec(),
                        failures: VecDeque::new(),
                    },
                );
            }
            None => {
                rooms.remove(room);
            }
        }
    }

    pub fn has(&self, room: &str) -> bool {
        self.lock().contains_key(room)
    }

    /// The room's PIN (shared with other signalling nodes' through Redis).
    pub fn get(&self, room: &str) -> Option<String> {
        let rooms = self.lock();
        let pin = rooms.get(room)?;
        Some(String::from_utf8_lossy(&pin.digits).into_owned())
    }

    /// Whether `pin` from `caller` admits to `room` at `now`; a wrong one counts
    /// against the caller there, and the room.
    pub fn check(
        &self,
        room: &str,
        pin: Option<&str>,
        caller: Option<&str>,
        now: Instant,
    ) -> Admission {
        let mut rooms = self.lock();
        let Some(r) = rooms.get_mut(room) else {
            return Admission::NoPin;
        };
        while r
            .failures
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= FAILURE_WINDOW)
        {
            r.failures.pop_front();
        }
        let by_caller = r
            .failures
            .iter()
            .filter(|(_, c)| c.as_deref() == caller)
            .count();
        if by_caller >= MAX_FAILURES || r.failures.len() >= MAX_ROOM_FAILURES {
            return Admission::Locked;
        }
        let Some(pin) = pin else {
            return Admission::PinRequired;
        };
        if same(pin.as_bytes(), &r.digits) {
            Admission::Admitted
        } else {
            r.failures.push_back((now, caller.map(str::to_owned)));
            Admission::PinWrong
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_six_to_sixteen_digits() {
        assert!(valid_pin("123456"));
        assert!(valid_pin("1234567890123456"));
        assert!(!valid_pin("12345"));
        assert!(!valid_pin("12345678901234567"));
        assert!(!valid_pin("12345a"));
        assert!(
            !valid_pin("١٢٣٤٥٦"),
            "digits of other scripts are not keypad digits"
        );
    }

    #[test]
    fn the_right_pin_admits_and_wrong_ones_lock_the_caller_then_the_room() {
        let pins = Pins::default();
        let t0 = Instant::now();
        let a = Some("10.0.0.1");
        assert_eq!(pins.check("r", Some("123456"), a, t0), Admission::NoPin);
        pins.set("r", Some("123456"));
        assert!(pins.has("r"));
        assert_eq!(pins.check("r", None, a, t0), Admission::PinRequired);
        assert_eq!(pins.check("r", Some("123456"), a, t0), Admission::Admitted);
        assert_eq!(pins.check("r", Some("1234567"), a, t0), Admission::PinWrong);
        assert_eq!(pins.check("r", Some("12345"), a, t0), Admission::PinWrong);
        for _ in 2..MAX_FAILURES {
            assert_eq!(pins.check("r", Some("000000"), a, t0), Admission::PinWrong);
        }
        // That caller is locked out: even the right PIN is not checked. Another
        // caller is not.
        assert_eq!(pins.check("r", Some("123456"), a, t0), Admission::Locked);
        let b = Some("10.0.0.2");
        assert_eq!(pins.check("r", Some("123456"), b, t0), Admission::Admitted);
        let later = t0 + FAILURE_WINDOW;
        assert_eq!(
            pins.check("r", Some("123456"), a, later),
            Admission::Admitted
        );
        // Guessing from many addresses locks the room for everyone, for a while.
        for i in 0..MAX_ROOM_FAILURES {
            let who = format!("10.1.0.{i}");
            assert_eq!(
                pins.check("r", Some("999999"), Some(&who), later),
                Admission::PinWrong
            );
        }
        assert_eq!(pins.check("r", Some("123456"), b, later), Admission::Locked);
        pins.set("r", None);
        assert_eq!(pins.check("r", Some("123456"), a, later), Admission::NoPin);
    }

    #[test]
    fn comparison_looks_at_every_byte() {
        assert!(same(b"123456", b"123456"));
        assert!(!same(b"123456", b"123457"));
        assert!(!same(b"123456", b"1234567"));
        assert!(!same(b"", b"\xff"));
        assert!(same(b"", b""));
    }
}
