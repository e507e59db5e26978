//! Shipping calls: a bounded queue, a batching worker, and the sink that encodes and sends.
//! Code that produces calls only sees [`Pipeline::submit`]; the sink decides the transport.

mod otlp;
mod stdout;

use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle};

pub use otlp::{validate_endpoint, validate_env, OtlpConfig, OtlpSink, Protocol};
pub use stdout::StdoutSink;

use crate::{call::Call, stats::ExportStats, ExportError};

/// Where calls go.
pub enum Sink {
    /// OTLP spans and logs, over gRPC or HTTP/protobuf.
    Otlp(Box<OtlpSink>),
    /// One readable line per call on standard output.
    Stdout(StdoutSink),
}

impl Sink {
    async fn export(&mut self, calls: &[Call], stats: &ExportStats) {
        match self {
            Sink::Otlp(sink) => sink.export(calls, stats).await,
            Sink::Stdout(sink) => sink.export(calls, stats),
        }
    }

    fn shutdown(&mut self) {
        if let Sink::Otlp(sink) = self {
            sink.shutdown();
        }
    }
}

/// Queue and batch sizes of the export stage.
#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    /// Calls that may wait for export; beyond this they are dropped and counted.
    pub queue_capacity: usize,
    /// Calls per export request.
    pub max_batch: usize,
    /// How long a partial batch may wait.
    pub flush_interval: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            max_batch: 512,
            flush_interval: Duration::from_millis(200),
        }
    }
}

/// The export stage: a bounded queue drained by one batching worker.
pub struct Pipeline {
    queue: mpsc::Sender<Call>,
    stats: Arc<ExportStats>,
    worker: JoinHandle<()>,
}

impl Pipeline {
    /// Starts the worker on the current tokio runtime.
    pub fn start(sink: Sink, config: PipelineConfig) -> Result<Self, ExportError> {
        if config.queue_capacity == 0 || config.max_batch == 0 {
            return Err(ExportError::InvalidQueue);
        }
        let (queue, receiver) = mpsc::channel(config.queue_capacity);
        let stats = Arc::new(ExportStats::default());
        let worker = tokio::spawn(run_worker(sink, receiver, config, stats.clone()));
        Ok(Self {
            queue,
            stats,
            worker,
        })
    }

    /// Queues a call without waiting; a full queue drops it and counts the drop.
    pub fn submit(&self, call: Call) {
        match self.queue.try_send(call) {
            Ok(()) => ExportStats::add(&self.stats.accepted, 1),
            Err(_) => ExportStats::add(&self.stats.dropped_queue_full, 1),
        }
    }

    /// The export counters.
    pub fn stats(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }

    /// Exports everything queued, shuts the sink down and waits for the worker.
    pub async fn shutdown(self) {
        drop(self.queue);
        if let Err(error) = self.worker.await {
            tracing::error!(%error, "export worker failed");
        }
    }
}

async fn run_worker(
    mut sink: Sink,
    mut receiver: mpsc::Receiver<Call>,
    config: PipelineConfig,
    stats: Arc<ExportStats>,
) {
    let mut batch = Vec::with_capacity(config.max_batch);
    loop {
        // Wait for the first call, then give the batch a short time to fill.
        if receiver.recv_many(&mut batch, config.max_batch).await == 0 {
            break;
        }
        let deadline = tokio::time::Instant::now() + config.flush_interval;
        while batch.len() < config.max_batch {
            let room = config.max_batch - batch.len();
            match tokio::time::timeout_at(deadline, receiver.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        sink.export(&batch, &stats).await;
        batch.clear();
    }
    // The export runs on a blocking thread: the SDK's shutdown blocks on its own futures.
    let _ = tokio::task::spawn_blocking(move || sink.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{call::tests::sample_call, ids::TraceGrouping};

    #[tokio::test]
    async fn delivers_every_queued_call_before_shutdown() {
        let grouping = TraceGrouping::new("boot", Duration::from_secs(60));
        let (sink, lines) = StdoutSink::capturing(grouping);
        let pipeline = Pipeline::start(Sink::Stdout(sink), PipelineConfig::default()).unwrap();
        for tid in 0..1000 {
            pipeline.submit(Call {
                tid,
                ..sample_call()
            });
        }
        let stats = pipeline.stats();
        pipeline.shutdown().await;
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.accepted, 1000);
        assert_eq!(snapshot.spans_exported, 1000);
        assert_eq!(lines.lock().unwrap().len(), 1000);
    }

    #[tokio::test]
    async fn full_queue_drops_are_counted() {
        let grouping = TraceGrouping::new("boot", Duration::from_secs(60));
        let (sink, _lines) = StdoutSink::capturing(grouping);
        let config = PipelineConfig {
            queue_capacity: 4,
            ..PipelineConfig::default()
        };
        let pipeline = Pipeline::start(Sink::Stdout(sink), config).unwrap();
        // The worker cannot run between these submits: this test's runtime has one thread.
        for _ in 0..10 {
            pipeline.submit(sample_call());
        }
        let stats = pipeline.stats();
        pipeline.shutdown().await;
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.accepted, snapshot.dropped_queue_full), (4, 6));
        assert_eq!(snapshot.spans_exported, 4);
    }

    #[test]
    fn zero_sized_queue_is_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let grouping = TraceGrouping::new("boot", Duration::from_secs(60));
        let (sink, _) = StdoutSink::capturing(grouping);
        let config = PipelineConfig {
            queue_capacity: 0,
            ..PipelineConfig::default()
        };
        assert!(matches!(
            Pipeline::start(Sink::Stdout(sink), config),
            Err(ExportError::InvalidQueue)
        ));
    }
}
