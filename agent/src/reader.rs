//! Reads complete calls from the kernel ring buffer as they arrive and hands them to export.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use kspan_common::CallEvent;
use kspan_otel::export::Pipeline;
use tokio::{sync::oneshot, task::JoinHandle};

use kspan_decode::CallDecoder;

/// The probes never wake the reader (a wakeup would cost every traced call more than the
/// probe itself): it drains on a timer whose period follows the load, between these bounds.
/// The slowest bounds how long a call waits in the kernel; tokio's timers tick in milliseconds.
const SLOWEST_DRAIN: Duration = Duration::from_millis(10);
const FASTEST_DRAIN: Duration = Duration::from_millis(1);

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
pub struct EventReader {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<Pipeline>>,
    counts: Arc<ReaderCounts>,
}

impl EventReader {
    /// Starts reading `ring`, of `ring_bytes` bytes, on the current runtime.
    pub fn start(
        ring: RingBuf<MapData>,
        ring_bytes: u32,
        decoder: CallDecoder,
        pipeline: Pipeline,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let counts = Arc::new(ReaderCounts::default());
        let task = tokio::spawn(read_until_stopped(
            ring,
            DrainPace::new(ring_bytes as usize / RECORD_BYTES),
            decoder,
            pipeline,
            counts.clone(),
            stopped,
        ));
        Self { stop, task, counts }
    }

    /// Counters shared with the reader.
    pub fn counts(&self) -> Arc<ReaderCounts> {
        self.counts.clone()
    }

    /// Stops after reading everything already in the ring buffer; returns the pipeline.
    pub async fn finish(self) -> anyhow::Result<Pipeline> {
        // The reader may have exited already on an error: the join below reports it.
        let _ = self.stop.send(());
        self.task.await?
    }
}

async fn read_until_stopped(
    mut ring: RingBuf<MapData>,
    mut pace: DrainPace,
    mut decoder: CallDecoder,
    pipeline: Pipeline,
    counts: Arc<ReaderCounts>,
    mut stopped: oneshot::Receiver<()>,
) -> anyhow::Result<Pipeline> {
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tokio::time::sleep(pace.period()) => {
                let drained = drain(&mut ring, &mut decoder, &pipeline, &counts);
                pace.after_drain(drained);
            }
        }
    }
    drain(&mut ring, &mut decoder, &pipeline, &counts);
    Ok(pipeline)
}

/// The drain period: halved while drains find the buffer over a quarter full, doubled back
/// while they find it under a sixteenth, so a burst gets drained before the buffer fills.
#[derive(Debug)]
struct DrainPace {
    capacity_records: usize,
    period: Duration,
}

impl DrainPace {
    fn new(capacity_records: usize) -> Self {
        Self {
            capacity_records,
            period: SLOWEST_DRAIN,
        }
    }

    fn period(&self) -> Duration {
        self.period
    }

    fn after_drain(&mut self, drained_records: usize) {
        if drained_records * 4 > self.capacity_records {
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
            pace.after_drain(0);
        }
        assert_eq!(pace.period(), SLOWEST_DRAIN);
    }
}
