//! Reads complete calls from the kernel ring buffer as they arrive and hands them to export.

use std::{
    io::{PipeReader, PipeWriter},
    os::fd::AsFd as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use anyhow::Context as _;

use aya::maps::{MapData, RingBuf};
use kspan_common::CallEvent;
use kspan_otel::export::Pipeline;
use nix::{
    errno::Errno,
    poll::{poll, PollFd, PollFlags, PollTimeout},
};
use tokio::sync::Notify;

use kspan_decode::CallDecoder;

/// While calls keep coming the reader drains on a timer whose period follows the load, between
/// these bounds: the probes' submits wake it only when it has caught up, and a wakeup for every
/// few calls would cost more than the calls. The slowest bounds how long a call waits in the
/// kernel.
const SLOWEST_DRAIN: Duration = Duration::from_millis(10);
const FASTEST_DRAIN: Duration = Duration::from_millis(1);

/// The fastest burst the ring is sized for: the bench loop's ~1M calls/s. After the first call
/// of a burst wakes the reader, it fills at most a quarter of the ring before the next drain.
const BURST_CALLS_PER_SEC: u64 = 1_000_000;

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
/// It is a thread of its own that blocks in `poll` on the ring buffer while it is empty and
/// sleeps between drains while calls come: a tokio timer costs a second wakeup whenever its
/// deadline crosses one of the timer wheel's 64 ms blocks, and a hand-off through the
/// runtime's driver for each drain.
pub struct EventReader {
    /// Dropped to stop the reader: its end of the pipe then polls as hung up.
    stop: PipeWriter,
    thread: thread::JoinHandle<Pipeline>,
    counts: Arc<ReaderCounts>,
    calls_arrived: Arc<Notify>,
}

impl EventReader {
    /// Starts reading `ring`, of `ring_bytes` bytes, on a thread of its own.
    pub fn start(
        ring: RingBuf<MapData>,
        ring_bytes: u32,
        decoder: CallDecoder,
        pipeline: Pipeline,
    ) -> anyhow::Result<Self> {
        let (stopped, stop) = std::io::pipe().context("making the reader's stop pipe")?;
        let counts = Arc::new(ReaderCounts::default());
        let calls_arrived = Arc::new(Notify::new());
        let reader = Reader {
            ring,
            pace: DrainPace::new(ring_bytes as usize / RECORD_BYTES),
            decoder,
            pipeline,
            counts: counts.clone(),
            calls_arrived: calls_arrived.clone(),
        };
        let thread = thread::Builder::new()
            .name("kspan-reader".into())
            .spawn(move || reader.read_until_stopped(&stopped))
            .context("starting the ring buffer reader thread")?;
        Ok(Self {
            stop,
            thread,
            counts,
            calls_arrived,
        })
    }

    /// Counters shared with the reader.
    pub fn counts(&self) -> Arc<ReaderCounts> {
        self.counts.clone()
    }

    /// Notified whenever calls arrive in an empty ring buffer (after a quiet spell).
    pub fn calls_arrived(&self) -> Arc<Notify> {
        self.calls_arrived.clone()
    }

    /// Stops after reading everything already in the ring buffer; returns the pipeline.
    pub async fn finish(self) -> anyhow::Result<Pipeline> {
        // The reader only ends when told to, or when it panicked: the join below reports that.
        drop(self.stop);
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
    calls_arrived: Arc<Notify>,
}

/// What ended a wait.
#[derive(Debug, PartialEq, Eq)]
enum Woken {
    /// The period passed.
    Timer,
    /// The kernel said a record landed in the empty ring buffer.
    Record,
    /// The agent is stopping.
    Stop,
}

impl Reader {
    /// Drains, then waits as the pace says, until `stopped` hangs up; then drains once more.
    fn read_until_stopped(mut self, stopped: &PipeReader) -> Pipeline {
        loop {
            let drained = drain(
                &mut self.ring,
                &mut self.decoder,
                &self.pipeline,
                &self.counts,
            );
            let period = self.pace.after_drain(drained);
            match wait(&self.ring, stopped, period) {
                Woken::Timer => {}
                Woken::Record => self.calls_arrived.notify_one(),
                Woken::Stop => break,
            }
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

/// Waits `period`, or with `None` until the ring buffer holds a record; either way no longer
/// than it takes `stopped` to hang up.
fn wait(ring: &RingBuf<MapData>, stopped: &PipeReader, period: Option<Duration>) -> Woken {
    let mut fds = [
        PollFd::new(stopped.as_fd(), PollFlags::POLLIN),
        PollFd::new(ring.as_fd(), PollFlags::POLLIN),
    ];
    let (fds, timeout) = match period {
        Some(period) => (
            &mut fds[..1],
            PollTimeout::try_from(period).unwrap_or(PollTimeout::MAX),
        ),
        None => (&mut fds[..], PollTimeout::NONE),
    };
    match poll(fds, timeout) {
        Ok(0) | Err(Errno::EINTR) => Woken::Timer,
        Ok(_) if fds[0].any().unwrap_or(false) => Woken::Stop,
        Ok(_) => Woken::Record,
        Err(error) => {
            // Cannot happen with two valid descriptors; if it does, drain on the slowest timer.
            tracing::warn!(%error, "polling the ring buffer failed");
            thread::sleep(SLOWEST_DRAIN);
            Woken::Timer
        }
    }
}

/// The wait before the next drain: none while the ring is empty (the kernel's notification of
/// the next record ends the wait); after the first records of a quiet spell, as long as a burst
/// takes to fill a quarter of the ring at [`BURST_CALLS_PER_SEC`] (at least the fastest period,
/// at most the slowest), so the calls that follow gather; then halved while drains find the
/// buffer over a quarter full and doubled back while they find it under a sixteenth.
#[derive(Debug)]
struct DrainPace {
    capacity_records: usize,
    first: Duration,
    /// `None`: waiting for a record.
    period: Option<Duration>,
}

impl DrainPace {
    fn new(capacity_records: usize) -> Self {
        let quarter_ring =
            Duration::from_micros(capacity_records as u64 / 4 * 1_000_000 / BURST_CALLS_PER_SEC);
        Self {
            capacity_records,
            first: quarter_ring.clamp(FASTEST_DRAIN, SLOWEST_DRAIN),
            period: None,
        }
    }

    /// The wait after a drain that found `drained_records`.
    fn after_drain(&mut self, drained_records: usize) -> Option<Duration> {
        let capacity = self.capacity_records;
        self.period = match (self.period, drained_records) {
            // Woken for a record still being written: look again shortly rather than spin.
            (None, 0) => Some(FASTEST_DRAIN),
            // Caught up: the kernel wakes the reader at the next record.
            (Some(_), 0) => None,
            (None, _) => Some(self.first),
            (Some(period), n) if n * 4 > capacity => Some((period / 2).max(FASTEST_DRAIN)),
            (Some(period), n) if n * 16 < capacity => Some((period * 2).min(SLOWEST_DRAIN)),
            (period, _) => period,
        };
        self.period
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

    /// The default ring: 4 MiB of records.
    const DEFAULT_RING_RECORDS: usize = (4 << 20) / RECORD_BYTES;

    #[test]
    fn an_empty_ring_is_waited_on_not_polled() {
        let mut pace = DrainPace::new(DEFAULT_RING_RECORDS);
        assert_eq!(pace.after_drain(5), Some(pace.first));
        assert_eq!(pace.after_drain(0), None);
        // Woken, but the record was not complete yet: no spinning on it.
        assert_eq!(pace.after_drain(0), Some(FASTEST_DRAIN));
        assert_eq!(pace.after_drain(0), None);
    }

    #[test]
    fn the_pace_quickens_under_load_and_relaxes_as_it_eases() {
        let mut pace = DrainPace::new(1600);
        pace.after_drain(1);
        // Over a quarter full: halve, down to the fastest.
        for _ in 0..10 {
            pace.after_drain(401);
        }
        assert_eq!(pace.period, Some(FASTEST_DRAIN));
        // Between a sixteenth and a quarter: hold.
        assert_eq!(pace.after_drain(200), Some(FASTEST_DRAIN));
        assert_eq!(pace.after_drain(99), Some(FASTEST_DRAIN * 2));
        for _ in 0..10 {
            pace.after_drain(1);
        }
        assert_eq!(pace.period, Some(SLOWEST_DRAIN));
    }

    #[test]
    fn a_burst_fills_at_most_a_quarter_of_the_ring_before_the_drain_after_its_first_call() {
        let pace = DrainPace::new(DEFAULT_RING_RECORDS);
        let burst = BURST_CALLS_PER_SEC as u128 * pace.first.as_micros() / 1_000_000;
        assert!(
            burst as usize <= DEFAULT_RING_RECORDS / 4,
            "{burst} of {DEFAULT_RING_RECORDS} records"
        );
        assert!(pace.first > FASTEST_DRAIN, "{:?}", pace.first);
    }

    #[test]
    fn a_small_ring_is_drained_at_the_fastest_pace_after_a_wakeup() {
        // One page: the e2e overload tests' ring, which a burst fills in microseconds.
        let mut pace = DrainPace::new(4096 / RECORD_BYTES);
        assert_eq!(pace.after_drain(1), Some(FASTEST_DRAIN));
    }
}
