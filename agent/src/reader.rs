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
use kspan_common::declared::DECLARED_EVENT_WITHOUT_STRINGS;
use kspan_otel::export::Pipeline;
use nix::{
    errno::Errno,
    poll::{poll, PollFd, PollFlags, PollTimeout},
};
use tokio::sync::Notify;

use kspan_decode::{Call, CallDecoder};

/// While calls keep coming the reader drains on a timer whose period follows the load, between
/// these bounds: the probes' submits wake it only when it has caught up, and a wakeup for every
/// few calls would cost more than the calls. The slowest bounds how long a call waits in the
/// kernel.
const SLOWEST_DRAIN: Duration = Duration::from_millis(10);
const FASTEST_DRAIN: Duration = Duration::from_millis(1);

/// The reader's nice value when kspan may raise it (`CAP_SYS_NICE`): during a burst it must keep
/// draining the ring while the export workers, the collector and the traced program want the
/// same cores; it needs ~0.2 µs per call and sleeps the rest of the time.
const READER_NICE: i32 = -10;

/// Bytes a record of a probe without strings (the built-in's) takes in the ring buffer: the
/// event and the kernel's 8-byte header.
const RECORD_BYTES: usize = DECLARED_EVENT_WITHOUT_STRINGS + 8;

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
        raise_priority();
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

/// Raises the calling thread's scheduling priority to [`READER_NICE`], if allowed.
fn raise_priority() {
    let tid = nix::unistd::gettid().as_raw() as libc::id_t;
    // SAFETY: setpriority only changes the scheduling priority of the thread it names (on Linux
    // the nice value is per thread), here this one.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, READER_NICE) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::debug!(%error, nice = READER_NICE, "the ring buffer reader keeps the default priority (raising it needs CAP_SYS_NICE)");
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
/// the next record ends the wait); the fastest period after that notification, since a burst
/// may be starting; then halved while drains find the buffer over a quarter full and doubled
/// while they find it under a sixteenth.
#[derive(Debug)]
struct DrainPace {
    capacity_records: usize,
    /// `None`: waiting for a record.
    period: Option<Duration>,
}

impl DrainPace {
    fn new(capacity_records: usize) -> Self {
        Self {
            capacity_records,
            period: None,
        }
    }

    /// The wait after a drain that found `drained_records`.
    fn after_drain(&mut self, drained_records: usize) -> Option<Duration> {
        let capacity = self.capacity_records;
        self.period = match (self.period, drained_records) {
            // Woken (or woken for a record still being written: no spinning on it).
            (None, _) => Some(FASTEST_DRAIN),
            // Caught up: the kernel wakes the reader at the next record.
            (Some(_), 0) => None,
            (Some(period), n) if n * 4 > capacity => Some((period / 2).max(FASTEST_DRAIN)),
            (Some(period), n) if n * 16 < capacity => Some((period * 2).min(SLOWEST_DRAIN)),
            (period, _) => period,
        };
        self.period
    }
}

/// Reads every record waiting in the ring buffer and hands the calls to export a request's
/// worth at a time (the rest at the end); returns how many records there were.
fn drain(
    ring: &mut RingBuf<MapData>,
    decoder: &mut CallDecoder,
    pipeline: &Pipeline,
    counts: &ReaderCounts,
) -> usize {
    let batch_size = pipeline.batch_size();
    let mut drained = 0;
    let mut calls = Vec::new();
    while let Some(record) = ring.next() {
        drained += 1;
        match decoder.decode(&record) {
            Ok(call) => {
                if calls.capacity() == 0 {
                    calls.reserve_exact(batch_size);
                }
                calls.push(call);
                if calls.len() == batch_size {
                    hand_over(pipeline, counts, std::mem::take(&mut calls));
                }
            }
            Err(error) => {
                counts.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "dropped a malformed ring buffer record");
            }
        }
    }
    hand_over(pipeline, counts, calls);
    drained
}

/// Counts the calls read, then submits them.
fn hand_over(pipeline: &Pipeline, counts: &ReaderCounts, calls: Vec<Call>) {
    counts
        .calls
        .fetch_add(calls.len() as u64, Ordering::Relaxed);
    pipeline.submit(calls);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default ring: 4 MiB of records.
    const DEFAULT_RING_RECORDS: usize = (4 << 20) / RECORD_BYTES;

    #[test]
    fn an_empty_ring_is_waited_on_not_polled() {
        let mut pace = DrainPace::new(DEFAULT_RING_RECORDS);
        assert_eq!(pace.after_drain(5), Some(FASTEST_DRAIN));
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
    fn a_steady_trickle_is_drained_at_the_slowest_pace() {
        let mut pace = DrainPace::new(DEFAULT_RING_RECORDS);
        pace.after_drain(1);
        for _ in 0..10 {
            pace.after_drain(10);
        }
        assert_eq!(pace.period, Some(SLOWEST_DRAIN));
    }
}
