//! Room PINs: what a SIP caller enters to join a room (a phone has no token). A room
//! gets one when it is created (`POST /api/rooms {"name", "pin"}`); the SIP gateway
//! passes what the caller dialled or keyed in with its join, and the join is refused
//! unless it matches. PINs are compared in constant time, never logged, and a room
//! takes a few wrong ones a minute at most (then it is locked for the rest of it), so
//! that a PIN cannot be guessed by trying.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest and longest PIN.
pub const PIN_DIGITS: std::ops::RangeInclusive<usize> = 6..=16;
/// Wrong PINs a room takes in [`FAILURE_WINDOW`] before it refuses every attempt.
pub const MAX_FAILURES: usize = 5;
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
    failures: VecDeque<Instant>,
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

    /// Whether `pin` admits to `room` at `now`; a wrong one counts against the room.
    pub fn check(&self, room: &str, pin: Option<&str>, now: Instant) -> Admission {
        let mut rooms = self.lock();
        let Some(r) = rooms.get_mut(room) else {
            return Admission::NoPin;
        };
        while r
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= FAILURE_WINDOW)
        {
            r.failures.pop_front();
        }
        if r.failures.len() >= MAX_FAILURES {
            return Admission::Locked;
        }
        let Some(pin) = pin else {
            return Admission::PinRequired;
        };
        if same(pin.as_bytes(), &r.digits) {
            Admission::Admitted
        } else {
            r.failures.push_back(now);
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
    fn the_right_pin_admits_and_wrong_ones_lock_the_room_for_a_while() {
        let pins = Pins::default();
        let t0 = Instant::now();
        assert_eq!(pins.check("r", Some("123456"), t0), Admission::NoPin);
        pins.set("r", Some("123456"));
        assert!(pins.has("r"));
        assert_eq!(pins.check("r", None, t0), Admission::PinRequired);
        assert_eq!(pins.check("r", Some("123456"), t0), Admission::Admitted);
        assert_eq!(pins.check("r", Some("1234567"), t0), Admission::PinWrong);
        assert_eq!(pins.check("r", Some("12345"), t0), Admission::PinWrong);
        for _ in 2..MAX_FAILURES {
            assert_eq!(pins.check("r", Some("000000"), t0), Admission::PinWrong);
        }
        // Locked: even the right PIN is not checked.
        assert_eq!(pins.check("r", Some("123456"), t0), Admission::Locked);
        let later = t0 + FAILURE_WINDOW;
        assert_eq!(pins.check("r", Some("123456"), later), Admission::Admitted);
        pins.set("r", None);
        assert_eq!(pins.check("r", Some("123456"), later), Admission::NoPin);
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
