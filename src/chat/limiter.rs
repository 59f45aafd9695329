//! The per-connection frame rate limit.

use std::time::Instant;

/// A token bucket: `rate` frames a second on average, bursts of twice that.
pub(crate) struct FrameLimiter {
    /// Frames a second; 0 admits everything.
    rate: f64,
    tokens: f64,
    last: Instant,
    /// Frames refused in a row.
    refused: u32,
}

impl FrameLimiter {
    pub(crate) fn new(rate: u32) -> FrameLimiter {
        FrameLimiter {
            rate: f64::from(rate),
            tokens: f64::from(rate) * 2.0,
            last: Instant::now(),
            refused: 0,
        }
    }

    /// Takes a token for one frame, if there is one.
    pub(crate) fn admit(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate * 2.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused = 0;
            true
        } else {
            self.refused += 1;
            false
        }
    }

    /// A client that goes on after a whole burst's worth of refusals is not going to
    /// slow down.
    pub(crate) fn flooding(&self) -> bool {
        f64::from(self.refused) > self.rate * 2.0
    }
}
