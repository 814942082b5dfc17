//! Limits per source address: rates (joins, media-node connection attempts) on
//! governor's GCRA, and a cap on WebSockets that have not joined yet. An IPv6 address
//! counts by its /64: one host is routinely given a whole /64 and could otherwise take
//! a fresh address for every request. The same rates per room (dial-outs).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How often addresses that are back to a full budget are forgotten: a sweep is O(n),
/// so it runs at most this often, never per request.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A rate per address.
pub struct AddressLimiter(KeyedLimiter<IpAddr>);

impl AddressLimiter {
    /// `per_second` on average per address, bursts of `burst`. Rates that are not
    /// positive and finite fall back to one a second.
    pub fn new(per_second: f64, burst: f64) -> Self {
        AddressLimiter(KeyedLimiter::new(per_second, burst))
    }

    /// Whether `ip` may go ahead now (and if so, it is counted).
    pub fn allow(&self, ip: IpAddr) -> bool {
        self.0.allow(&aggregate(ip))
    }
}

/// A rate per key (an address, a room), forgetting keys back at a full budget.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    started: Instant,
    /// Milliseconds after `started` of the last sweep.
    last_sweep_ms: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `per_second` on average per key, bursts of `burst`. Rates that are not
    /// positive and finite fall back to one a second.
    pub fn new(per_second: f64, burst: f64) -> Self {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            1.0
        };
        let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
        let burst =
            NonZeroU32::new(burst.clamp(1.0, u32::MAX as f64) as u32).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(burst);
        KeyedLimiter {
            limiter: RateLimiter::keyed(quota),
            started: Instant::now(),
            last_sweep_ms: AtomicU64::new(0),
        }
    }

    /// Whether `key` may go ahead now (and if so, it is counted).
    pub fn allow(&self, key: &K) -> bool {
        let allowed = self.limiter.check_key(key).is_ok();
        self.sweep();
        allowed
    }

    fn sweep(&self) {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        let due = now_ms.saturating_sub(last) >= SWEEP_EVERY.as_millis() as u64;
        // One caller wins the sweep; the others go on at once.
        if due
            && self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

/// WebSockets open but not joined yet, per address: each holds a task and a socket
/// for up to the join timeout, so one address may not hold many.
#[derive(Clone)]
pub struct PreJoinCap {
    most: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One pre-join place; given back when dropped.
pub struct PreJoinSlot {
    key: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PreJoinCap {
    pub fn new(most: usize) -> Self {
        PreJoinCap {
            most,
            open: Arc::default(),
        }
    }

    /// A place for `ip`, unless it already holds the most allowed.
    pub fn take(&self, ip: IpAddr) -> Option<PreJoinSlot> {
        let key = aggregate(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.most {
            return None;
        }
        *n += 1;
        Some(PreJoinSlot {
            key,
            open: self.open.clone(),
        })
    }
}

impl Drop for PreJoinSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64.
fn aggregate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_ipv6_counts_by_its_64() {
        let l = AddressLimiter::new(1.0, 10.0);
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "203.0.113.8".parse().unwrap();
        let allowed = (0..15).filter(|_| l.allow(a)).count();
        assert_eq!(
            allowed, 10,
            "the burst, then nothing within the same second"
        );
        assert!(l.allow(b), "another address has its own budget");

        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!((0..10).filter(|_| l.allow(one)).count(), 10);
        assert!(
            !l.allow(same_64),
            "a neighbour in the same /64 shares the budget"
        );
        assert!(l.allow(other_64));
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert!(
            !l.allow(mapped),
            "an IPv4-mapped address is its IPv4 address"
        );
        assert_eq!(l.0.limiter.len(), 4, "addresses tracked");
    }

    #[test]
    fn pre_join_places_are_capped_per_address_and_given_back() {
        let cap = PreJoinCap::new(2);
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let (one, two) = (cap.take(a).unwrap(), cap.take(a).unwrap());
        assert!(cap.take(a).is_none());
        assert!(cap.take("203.0.113.8".parse().unwrap()).is_some());
        drop(one);
        let three = cap.take(a).expect("a place given back is free again");
        drop((two, three));
        assert!(
            cap.open.lock().unwrap().is_empty(),
            "nothing kept for quiet addresses"
        );
    }
}
