//! Calls waiting for delivery while the destination is unreachable: bounded, oldest first,
//! and every call pushed out is handed back so it can be counted.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use kspan_decode::Call;

/// Where one signal (spans, or log records) of a batch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Not acknowledged, and no attempt has ended without an answer.
    Pending,
    /// Not acknowledged, but an attempt was sent and got no answer in time: the destination
    /// may have it. Retried; if never acknowledged, counted as possibly delivered.
    Unanswered,
    /// Counted and owed no more: acknowledged, refused, or not sent by this sink.
    Done,
}

/// A batch and where each of its signals stands.
#[derive(Debug)]
pub struct PendingBatch {
    /// The calls, in capture order (shared with the request in flight). The batch's own Vec,
    /// not an `Arc<[Call]>`: making one would copy the whole batch.
    pub calls: Arc<Vec<Call>>,
    /// The spans.
    pub spans: Delivery,
    /// The log records.
    pub logs: Delivery,
}

/// Batches not yet fully delivered, holding at most `capacity` calls.
#[derive(Debug)]
pub struct Backlog {
    batches: VecDeque<PendingBatch>,
    calls: usize,
    capacity: usize,
}

impl Backlog {
    /// An empty backlog for at most `capacity` calls.
    pub fn new(capacity: usize) -> Self {
        Self {
            batches: VecDeque::new(),
            calls: 0,
            capacity,
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Calls waiting.
    pub fn len(&self) -> usize {
        self.calls
    }

    /// Adds a batch; returns the oldest batches pushed out to stay within capacity.
    pub fn push(&mut self, batch: PendingBatch) -> Vec<PendingBatch> {
        self.calls += batch.calls.len();
        self.batches.push_back(batch);
        let mut evicted = Vec::new();
        while self.calls > self.capacity {
            match self.batches.pop_front() {
                Some(oldest) => {
                    self.calls -= oldest.calls.len();
                    evicted.push(oldest);
                }
                None => break,
            }
        }
        evicted
    }

    /// Puts back a batch whose delivery failed, ahead of the others; returns the batches pushed
    /// out (the newest ones: the oldest is the one being retried).
    pub fn push_front(&mut self, batch: PendingBatch) -> Vec<PendingBatch> {
        self.calls += batch.calls.len();
        self.batches.push_front(batch);
        let mut evicted = Vec::new();
        while self.calls > self.capacity && self.batches.len() > 1 {
            if let Some(newest) = self.batches.pop_back() {
                self.calls -= newest.calls.len();
                evicted.push(newest);
            }
        }
        evicted
    }

    /// Removes the oldest batch.
    pub fn pop_front(&mut self) -> Option<PendingBatch> {
        let batch = self.batches.pop_front()?;
        self.calls -= batch.calls.len();
        Some(batch)
    }
}

/// Exponential backoff between delivery attempts, with jitter.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
        }
    }

    /// The current step: doubles after each failure, up to the limit.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// The wait before the next attempt: the current step less a random part of up to half of
    /// it, so agents that lost the same collector at the same moment do not all come back at
    /// the same moment.
    pub fn wait(&self) -> Duration {
        jittered(self.current, rand::random::<f64>())
    }

    /// After a failure: wait longer next time.
    pub fn increase(&mut self) {
        self.current = (self.current * 2).min(self.max);
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// `step` less `unit` (0 to 1) times half of it ("equal jitter": never under half the step).
fn jittered(step: Duration, unit: f64) -> Duration {
    step.mul_f64(1.0 - 0.5 * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kspan_decode::test_support::sample_call;

    fn batch(size: usize) -> PendingBatch {
        PendingBatch {
            calls: vec![sample_call(); size].into(),
            spans: Delivery::Pending,
            logs: Delivery::Pending,
        }
    }

    #[test]
    fn evicts_oldest_batches_beyond_capacity() {
        let mut backlog = Backlog::new(10);
        assert!(backlog.push(batch(4)).is_empty());
        assert!(backlog.push(batch(4)).is_empty());
        let evicted = backlog.push(batch(4));
        assert_eq!(evicted.len(), 1);
        assert_eq!(backlog.len(), 8);
        assert_eq!(backlog.pop_front().map(|b| b.calls.len()), Some(4));
        assert_eq!(backlog.len(), 4);
    }

    #[test]
    fn a_batch_larger_than_capacity_is_evicted_whole() {
        let mut backlog = Backlog::new(3);
        assert_eq!(backlog.push(batch(5)).len(), 1);
        assert!(backlog.is_empty());
        assert_eq!(backlog.len(), 0);
    }

    #[test]
    fn backoff_doubles_up_to_the_limit_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        backoff.increase();
        assert_eq!(backoff.current(), Duration::from_millis(200));
        backoff.increase();
        backoff.increase();
        assert_eq!(backoff.current(), Duration::from_millis(350));
        backoff.reset();
        assert_eq!(backoff.current(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_takes_up_to_half_of_the_step() {
        let step = Duration::from_millis(400);
        assert_eq!(jittered(step, 0.0), step);
        assert_eq!(jittered(step, 0.5), Duration::from_millis(300));
        assert_eq!(jittered(step, 1.0), Duration::from_millis(200));
        let backoff = Backoff::new(step, step);
        let waits: std::collections::BTreeSet<Duration> =
            (0..100).map(|_| backoff.wait()).collect();
        assert!(
            waits.iter().all(|wait| (step / 2..=step).contains(wait)),
            "{waits:?}"
        );
        // 100 draws of a uniform f64 that all land on one duration: the jitter is not random.
        assert!(waits.len() > 1, "{waits:?}");
    }
}
