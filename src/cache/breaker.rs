//! A circuit breaker in front of the cache backend. After `threshold` failures in a row it
//! opens: every request skips the backend for `cooldown`, so a dead Redis costs nothing but a
//! flag check instead of a timeout per request. Then one request probes; success closes it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    epoch: Instant,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which the breaker stays open; 0 when closed.
    open_until_ms: AtomicU64,
    probing: AtomicBool,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            epoch: Instant::now(),
            consecutive_failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// May this request use the backend? While open, no; once the cool-down is over, exactly
    /// one caller at a time gets `true` as the probe.
    pub(crate) fn allow(&self) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if self.now_ms() < until {
            return false;
        }
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        if self.open_until_ms.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("cache backend answered again; circuit closed");
        }
        self.probing.store(false, Ordering::Release);
    }

    pub(crate) fn record_failure(&self) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let was_probe = self.probing.swap(false, Ordering::AcqRel);
        if failures >= self.threshold || was_probe {
            let until = self.now_ms() + self.cooldown.as_millis() as u64;
            if self.open_until_ms.swap(until.max(1), Ordering::AcqRel) == 0 {
                tracing::warn!(
                    failures,
                    cooldown_ms = self.cooldown.as_millis() as u64,
                    "cache backend failing; circuit opened"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_repeated_failures_and_lets_one_probe_through_after_the_cooldown() {
        let b = Breaker::new(3, Duration::from_millis(20));
        b.record_failure();
        b.record_failure();
        assert!(b.allow(), "still closed below the threshold");
        b.record_failure();
        assert!(!b.allow(), "open");
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow(), "the probe");
        assert!(!b.allow(), "only one probe at a time");
        b.record_success();
        assert!(b.allow() && b.allow(), "closed again");
    }

    #[test]
    fn a_failed_probe_reopens_at_once() {
        let b = Breaker::new(3, Duration::from_millis(20));
        for _ in 0..3 {
            b.record_failure();
        }
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow());
        b.record_failure();
        assert!(!b.allow());
    }
}
