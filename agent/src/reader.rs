//! Reads complete calls from the kernel ring buffer as they arrive and hands them to export.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError},
        Arc,
    },
    thread,
    time::Duration,
};

use anyhow::Context as _;

use aya::maps::{MapData, RingBuf};
use kspan_common::CallEvent;
use kspan_otel::export::Pipeline;

use kspan_decode::CallDecoder;

/// The probes never wake the reader (a wakeup would cost every traced call more than the
/// probe itself): it drains on a timer whose period follows the load, between these bounds.
/// The slowest bounds how long a call waits in the kernel.
const SLOWEST_DRAIN: Duration = Duration::from_millis(10);
const FASTEST_DRAIN: Duration = Duration::from_millis(1);

/// While drains find the ring empty, the period keeps doubling past [`SLOWEST_DRAIN`], up to
/// this: an idle agent then wakes about 30 times a second (default ring) rather than 100.
const IDLE_DRAIN: Duration = Duration::from_millis(50);

/// The fastest burst the idle period is sized for: the bench loop's ~500k calls/s. A burst that
/// starts just after an idle drain fills at most half the ring before the next one.
const BURST_CALLS_PER_SEC: u64 = 500_000;

/// Bytes a record takes in the ring buffer: the event and the kernel's 8-byte header.
const RECORD_BYTES: usize = size_of::<CallEvent>() + 8;

/// What the reader has seen so far.
#[derive(Debug, Default)]
pub struct ReaderCounts {
    /// Calls read and decoded.
    pub calls: AtomicU64,
    /// Records that were not valid events (dropped, and counted here).
    pub malformed: AtomicU64,
}

/// A running reader; [`EventReader::finish`] drains what is left and returns the pipeline.
///
/// It is a thread of its own that sleeps between drains: a tokio sleep costs an idle agent a
/// second wakeup whenever its deadline crosses one of the timer wheel's 64 ms blocks, and a
/// hand-off through the runtime's driver for each drain.
pub struct EventReader {
    stop: mpsc::Sender<()>,
    thread: thread::JoinHandle<Pipeline>,
    counts: Arc<ReaderCounts>,
}

impl EventReader {
    /// Starts reading `ring`, of `ring_bytes` bytes, on a thread of its own.
    pub fn start(
        ring: RingBuf<MapData>,
        ring_bytes: u32,
        decoder: CallDecoder,
        pipeline: Pipeline,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let counts = Arc::new(ReaderCounts::default());
        let reader = Reader {
            ring,
            pace: DrainPace::new(ring_bytes as usize / RECORD_BYTES),
            decoder,
            pipeline,
            counts: counts.clone(),
        };
        let thread = thread::Builder::new()
            .name("kspan-reader".into())
            .spawn(move || reader.read_until_stopped(&stopped))
            .context("starting the ring buffer reader thread")?;
        Ok(Self {
            stop,
            thread,
            counts,
        })
    }

    /// Counters shared with the reader.
    pub fn counts(&self) -> Arc<ReaderCounts> {
        self.counts.clone()
    }

    /// Stops after reading everything already in the ring buffer; returns the pipeline.
    pub async fn finish(self) -> anyhow::Result<Pipeline> {
        // The reader only ends when told to, or when it panicked: the join below reports that.
        let _ = self.stop.send(());
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the ring buffer reader thread panicked"))
    }
}

/// What the reader thread owns.
struct Reader {
    ring: RingBuf<MapData>,
    pace: DrainPace,
    decoder: CallDecoder,
    pipeline: Pipeline,
    counts: Arc<ReaderCounts>,
}

impl Reader {
    /// Drains at the pace's period until `stopped` says so (or its sender is gone), then once
    /// more.
    fn read_until_stopped(mut self, stopped: &mpsc::Receiver<()>) -> Pipeline {
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(self.pace.period()) {
            let drained = drain(
                &mut self.ring,
                &mut self.decoder,
                &self.pipeline,
                &self.counts,
            );
            self.pace.after_drain(drained);
        }
        drain(
            &mut self.ring,
            &mut self.decoder,
            &self.pipeline,
            &self.counts,
        );
        self.pipeline
    }
}

/// The drain period: halved while drains find the buffer over a quarter full, doubled back
/// while they find it under a sixteenth, so a burst gets drained before the buffer fills. While
/// drains find it empty the period keeps doubling, up to an idle period that a burst cannot
/// outrun (half the ring at [`BURST_CALLS_PER_SEC`], at most [`IDLE_DRAIN`]); the first drain
/// that finds records goes back to the fastest pace.
#[derive(Debug)]
struct DrainPace {
    capacity_records: usize,
    idle: Duration,
    period: Duration,
}

impl DrainPace {
    fn new(capacity_records: usize) -> Self {
        let half_ring =
            Duration::from_micros(capacity_records as u64 / 2 * 1_000_000 / BURST_CALLS_PER_SEC);
        Self {
            capacity_records,
            idle: half_ring.clamp(SLOWEST_DRAIN, IDLE_DRAIN),
            period: SLOWEST_DRAIN,
        }
    }

    fn period(&self) -> Duration {
        self.period
    }

    fn after_drain(&mut self, drained_records: usize) {
        if drained_records == 0 {
            self.period = (self.period * 2).min(self.idle.max(self.period));
        } else if self.period > SLOWEST_DRAIN {
            // Calls again after a quiet spell: perhaps the start of a burst.
            self.period = FASTEST_DRAIN;
        } else if drained_records * 4 > self.capacity_records {
            self.period = (self.period / 2).max(FASTEST_DRAIN);
        } else if drained_records * 16 < self.capacity_records {
            self.period = (self.period * 2).min(SLOWEST_DRAIN);
        }
    }
}

/// Reads every record waiting in the ring buffer; returns how many there were.
fn drain(
    ring: &mut RingBuf<MapData>,
    decoder: &mut CallDecoder,
    pipeline: &Pipeline,
    counts: &ReaderCounts,
) -> usize {
    let mut drained = 0;
    while let Some(record) = ring.next() {
        drained += 1;
        match decoder.decode(&record) {
            Ok(call) => {
                counts.calls.fetch_add(1, Ordering::Relaxed);
                pipeline.submit(call);
            }
            Err(error) => {
                counts.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "dropped a malformed ring buffer record");
            }
        }
    }
    drained
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_quickens_under_load_and_relaxes_when_idle() {
        let mut pace = DrainPace::new(1600);
        assert_eq!(pace.period(), SLOWEST_DRAIN);
        // Over a quarter full: halve, down to the fastest.
        for _ in 0..10 {
            pace.after_drain(401);
        }
        assert_eq!(pace.period(), FASTEST_DRAIN);
        // Between a sixteenth and a quarter: hold.
        pace.after_drain(200);
        assert_eq!(pace.period(), FASTEST_DRAIN);
        pace.after_drain(99);
        assert_eq!(pace.period(), FASTEST_DRAIN * 2);
        for _ in 0..10 {
            pace.after_drain(1);
        }
        assert_eq!(pace.period(), SLOWEST_DRAIN);
    }

    #[test]
    fn an_empty_ring_is_drained_less_often_until_calls_come_back() {
        // The default ring: 4 MiB of records.
        let records = (4 << 20) / RECORD_BYTES;
        let mut pace = DrainPace::new(records);
        for _ in 0..10 {
            pace.after_drain(0);
        }
        // A third of the wakeups or fewer.
        assert_eq!(pace.period(), pace.idle);
        assert!(pace.period() >= SLOWEST_DRAIN * 3, "{:?}", pace.period());
        // A burst at the bench loop's rate, starting just after an idle drain, fills at most
        // half the ring before the next.
        let burst = BURST_CALLS_PER_SEC as u128 * pace.period().as_micros() / 1_000_000;
        assert!(
            burst as usize <= records / 2,
            "{burst} of {records} records"
        );
        pace.after_drain(1);
        assert_eq!(pace.period(), FASTEST_DRAIN);
    }

    #[test]
    fn a_small_ring_is_not_left_idle_longer_than_under_load() {
        // One page: the e2e overload tests' ring, which a burst fills in microseconds.
        let mut pace = DrainPace::new(4096 / RECORD_BYTES);
        for _ in 0..10 {
            pace.after_drain(0);
        }
        assert_eq!(pace.period(), SLOWEST_DRAIN);
    }
}
