//! Reads complete calls from the kernel ring buffer as they arrive and hands them to export.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use kspan_otel::export::Pipeline;
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::oneshot,
    task::JoinHandle,
};

use crate::event::CallDecoder;

/// How often the ring buffer is drained when the probes have not asked for a wakeup.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

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
    /// Starts reading `ring` on the current runtime.
    pub fn start(
        ring: RingBuf<MapData>,
        decoder: CallDecoder,
        pipeline: Pipeline,
    ) -> anyhow::Result<Self> {
        // SAFETY: the RingBuf owns its map fd and keeps it open until it is dropped, which only
        // happens when this AsyncFd is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        let (stop, stopped) = oneshot::channel();
        let counts = Arc::new(ReaderCounts::default());
        let task = tokio::spawn(read_until_stopped(
            ring,
            decoder,
            pipeline,
            counts.clone(),
            stopped,
        ));
        Ok(Self { stop, task, counts })
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
    mut ring: AsyncFd<RingBuf<MapData>>,
    mut decoder: CallDecoder,
    pipeline: Pipeline,
    counts: Arc<ReaderCounts>,
    mut stopped: oneshot::Receiver<()>,
) -> anyhow::Result<Pipeline> {
    // The probes wake this task only when the buffer fills up (see `wakeup_bytes`); otherwise
    // it drains on a short timer, which bounds the delay a call waits in the kernel.
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tick.tick() => drain(ring.get_mut(), &mut decoder, &pipeline, &counts),
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &mut decoder, &pipeline, &counts);
                guard.clear_ready();
            }
        }
    }
    drain(ring.get_mut(), &mut decoder, &pipeline, &counts);
    Ok(pipeline)
}

fn drain(
    ring: &mut RingBuf<MapData>,
    decoder: &mut CallDecoder,
    pipeline: &Pipeline,
    counts: &ReaderCounts,
) {
    while let Some(record) = ring.next() {
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
}
