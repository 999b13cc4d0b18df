//! The token buckets behind rate limiting (`http::rate_limit` answers 429 from them): one per API
//! key, or per client address for requests without a token.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    Key([u8; 32]),
    Address(IpAddr),
}

pub(crate) struct RateLimiter {
    limiter: DefaultKeyedRateLimiter<Client>,
    clock: DefaultClock,
}

impl RateLimiter {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(per_second);
        Self {
            limiter: governor::RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(seconds to wait)` when the client has used up its bucket.
    pub(crate) fn check(&self, client: &Client) -> Result<(), u64> {
        self.limiter
            .check_key(client)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()).as_secs().max(1))
    }

    /// Drops buckets that are full again, so memory does not grow with every client seen.
    pub(crate) fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}
