//! The per-connection frame rate limit.
//!
//! A token bucket of our own rather than a crate: `governor`, the well-kept one, gets
//! its clock only with its `std` feature, which also brings its async parts
//! (`futures-timer`, `futures-util`); and its limiter is an atomic, shareable state
//! where this one is touched only by the job that holds the connection. What the
//! transport needs from it is one number, how long until the next frame may pass, so
//! that it can stop reading the connection until then (a sans-thread design: no timer
//! or thread per connection).

use std::time::{Duration, Instant};

/// A token bucket: `rate` frames a second on average, bursts of twice that.
pub(crate) struct FrameLimiter {
    /// Frames a second; 0 admits everything.
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl FrameLimiter {
    pub(crate) fn new(rate: u32) -> FrameLimiter {
        FrameLimiter {
            rate: f64::from(rate),
            tokens: f64::from(rate) * 2.0,
            last: Instant::now(),
        }
    }

    /// Takes a token for one line, if there is one; else says how long until there
    /// is (the line must wait that long).
    pub(crate) fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate * 2.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_twice_the_rate_passes_then_the_wait_is_one_token() {
        let start = Instant::now();
        let mut limiter = FrameLimiter::new(10);
        for _ in 0..20 {
            assert_eq!(limiter.admit(start), Ok(()));
        }
        let wait = limiter.admit(start).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        assert_eq!(
            limiter.admit(start + wait + Duration::from_millis(1)),
            Ok(())
        );
    }

    #[test]
    fn rate_zero_admits_everything() {
        let mut limiter = FrameLimiter::new(0);
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.admit(now).is_ok()));
    }
}
