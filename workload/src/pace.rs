//! Paces a thread's calls to a steady rate for throughput benchmarks.

use std::time::{Duration, Instant};

/// How far ahead of schedule a thread may run before it sleeps: sleeping per call is too coarse
/// at tens of thousands of calls per second, so calls come in bursts of at most this long.
const MAX_LEAD: Duration = Duration::from_millis(1);

/// Schedules call k at `start + k / rate`.
#[derive(Clone, Copy, Debug)]
pub struct Pacer {
    start: Instant,
    seconds_per_call: f64,
}

impl Pacer {
    /// A schedule of `calls_per_second` from `start`.
    pub fn new(start: Instant, calls_per_second: f64) -> Self {
        Self {
            start,
            seconds_per_call: 1.0 / calls_per_second,
        }
    }

    /// Sleeps until call `k` is at most [`MAX_LEAD`] early.
    pub fn wait_turn(&self, k: u64) {
        let due = self.start + Duration::from_secs_f64(k as f64 * self.seconds_per_call);
        let now = Instant::now();
        if due > now + MAX_LEAD {
            std::thread::sleep(due - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_calls_to_the_rate() {
        let start = Instant::now();
        let pacer = Pacer::new(start, 2000.0);
        for k in 0..=100 {
            pacer.wait_turn(k);
        }
        // Call 100 is due at 50 ms and may run at most 1 ms early.
        assert!(
            start.elapsed() >= Duration::from_millis(49),
            "{:?}",
            start.elapsed()
        );
    }
}
