//! Shipping calls: a bounded queue, a batching worker, and the sink that encodes and sends.
//! Code that produces calls only sees [`Pipeline::submit`]; the sink decides the transport.

mod backlog;
mod otlp;
mod stdout;

use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle};

pub use otlp::{validate_endpoint, validate_env, OtlpConfig, OtlpSink, Protocol};
pub use stdout::StdoutSink;

use crate::{call::Call, stats::ExportStats, ExportError};
use backlog::{Backlog, Backoff, PendingBatch};

/// Where calls go.
pub enum Sink {
    /// OTLP spans and logs, over gRPC or HTTP/protobuf.
    Otlp(Box<OtlpSink>),
    /// One readable line per call on standard output.
    Stdout(StdoutSink),
}

impl Sink {
    async fn export_spans(&mut self, calls: &[Call]) -> Result<(), String> {
        match self {
            Sink::Otlp(sink) => sink.export_spans(calls).await,
            Sink::Stdout(sink) => sink.export(calls),
        }
    }

    async fn export_logs(&mut self, calls: &[Call]) -> Result<(), String> {
        match self {
            Sink::Otlp(sink) => sink.export_logs(calls).await,
            Sink::Stdout(_) => Ok(()),
        }
    }

    /// Whether this sink sends log records besides spans.
    fn sends_logs(&self) -> bool {
        matches!(self, Sink::Otlp(_))
    }

    fn shutdown(&mut self) {
        if let Sink::Otlp(sink) = self {
            sink.shutdown();
        }
    }
}

/// Queue, batch and backlog sizes of the export stage.
#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    /// Calls that may wait for the worker; beyond this they are dropped and counted.
    pub queue_capacity: usize,
    /// Calls per export request.
    pub max_batch: usize,
    /// How long a partial batch may wait.
    pub flush_interval: Duration,
    /// Calls kept for retry while the destination is unreachable; the oldest beyond this are
    /// dropped and counted.
    pub backlog_capacity: usize,
    /// First wait before retrying a failed export; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            max_batch: 512,
            flush_interval: Duration::from_millis(200),
            backlog_capacity: 262_144,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
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
        if config.queue_capacity == 0 || config.max_batch == 0 || config.backlog_capacity == 0 {
            return Err(ExportError::InvalidQueue);
        }
        let (queue, receiver) = mpsc::channel(config.queue_capacity);
        let stats = Arc::new(ExportStats::default());
        let worker = Worker {
            sink,
            receiver,
            config,
            stats: stats.clone(),
            backlog: Backlog::new(config.backlog_capacity),
            backoff: Backoff::new(config.initial_backoff, config.max_backoff),
        };
        let worker = tokio::spawn(worker.run());
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

    /// Exports everything queued (one last attempt for a backlog), shuts the sink down and
    /// waits for the worker. What still cannot be delivered is counted as failed.
    pub async fn shutdown(self) {
        drop(self.queue);
        if let Err(error) = self.worker.await {
            tracing::error!(%error, "export worker failed");
        }
    }
}

/// Batches calls, delivers them in order, and keeps undelivered ones for retry.
struct Worker {
    sink: Sink,
    receiver: mpsc::Receiver<Call>,
    config: PipelineConfig,
    stats: Arc<ExportStats>,
    backlog: Backlog,
    backoff: Backoff,
}

impl Worker {
    async fn run(mut self) {
        let mut open = true;
        while open {
            // With a backlog, wake up after the backoff even if nothing new arrives.
            let wait_for_first = (!self.backlog.is_empty()).then(|| self.backoff.current());
            let (batch, still_open) = self.gather(wait_for_first).await;
            open = still_open;
            if !batch.is_empty() {
                let pending = PendingBatch {
                    calls: batch,
                    spans_sent: false,
                    logs_sent: !self.sink.sends_logs(),
                };
                for evicted in self.backlog.push(pending) {
                    tracing::warn!(
                        calls = evicted.calls.len(),
                        "export backlog full: dropping the oldest calls"
                    );
                    self.give_up(&evicted);
                }
                ExportStats::set(&self.stats.backlog, self.backlog.len() as u64);
            }
            self.deliver_backlog().await;
        }
        while let Some(batch) = self.backlog.pop_front() {
            self.give_up(&batch);
        }
        ExportStats::set(&self.stats.backlog, 0);
        // The SDK's shutdown blocks on its own futures: run it off the async threads.
        let mut sink = self.sink;
        let _ = tokio::task::spawn_blocking(move || sink.shutdown()).await;
    }

    /// Up to one batch of calls; `false` once the queue is closed and empty.
    async fn gather(&mut self, wait_for_first: Option<Duration>) -> (Vec<Call>, bool) {
        let max = self.config.max_batch;
        let mut batch = Vec::with_capacity(max);
        let first = match wait_for_first {
            None => self.receiver.recv_many(&mut batch, max).await,
            Some(wait) => {
                match tokio::time::timeout(wait, self.receiver.recv_many(&mut batch, max)).await {
                    Ok(received) => received,
                    Err(_) => return (batch, true),
                }
            }
        };
        if first == 0 {
            return (batch, false);
        }
        let deadline = tokio::time::Instant::now() + self.config.flush_interval;
        while batch.len() < max {
            let room = max - batch.len();
            match tokio::time::timeout_at(deadline, self.receiver.recv_many(&mut batch, room)).await
            {
                Ok(0) => return (batch, false),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        (batch, true)
    }

    /// Delivers waiting batches oldest first; stops at the first failure and backs off.
    async fn deliver_backlog(&mut self) {
        while let Some(batch) = self.backlog.front_mut() {
            let count = batch.calls.len() as u64;
            if !batch.spans_sent {
                match self.sink.export_spans(&batch.calls).await {
                    Ok(()) => {
                        batch.spans_sent = true;
                        ExportStats::add(&self.stats.spans_exported, count);
                    }
                    Err(error) => return self.failed("spans", &error),
                }
            }
            if !batch.logs_sent {
                match self.sink.export_logs(&batch.calls).await {
                    Ok(()) => {
                        batch.logs_sent = true;
                        ExportStats::add(&self.stats.logs_exported, count);
                    }
                    Err(error) => return self.failed("logs", &error),
                }
            }
            self.backlog.pop_front();
            ExportStats::set(&self.stats.backlog, self.backlog.len() as u64);
            if self.backoff.current() != self.config.initial_backoff {
                tracing::info!("export recovered: delivering the backlog");
            }
            self.backoff.reset();
        }
    }

    fn failed(&mut self, signal: &str, error: &str) {
        ExportStats::add(&self.stats.export_errors, 1);
        tracing::warn!(
            signal,
            %error,
            backlog = self.backlog.len(),
            retry_in = ?self.backoff.current(),
            "export failed; keeping the calls for retry"
        );
        self.backoff.increase();
    }

    /// Counts what a batch will never deliver.
    fn give_up(&self, batch: &PendingBatch) {
        let count = batch.calls.len() as u64;
        if !batch.spans_sent {
            ExportStats::add(&self.stats.spans_failed, count);
        }
        if !batch.logs_sent {
            ExportStats::add(&self.stats.logs_failed, count);
        }
    }
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

#[cfg(test)]
mod outage_tests {
    //! Against a real OTLP receiver that is down at first and comes up later.
    use std::net::{SocketAddr, TcpListener};

    use kspan_receiver::{Receiver, ReceiverConfig};

    use super::*;
    use crate::{call::tests::sample_call, ids::TraceGrouping, resource::HostInfo};

    fn free_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    fn sink(addr: SocketAddr, protocol: Protocol) -> Sink {
        let config = OtlpConfig {
            protocol,
            endpoint: Some(format!("http://{addr}")),
            headers: vec![],
            ca_certificate: None,
            timeout: Some(Duration::from_secs(2)),
        };
        let host = HostInfo {
            host_name: "test".into(),
            kernel_release: "6.0".into(),
        };
        let grouping = TraceGrouping::new("boot", Duration::from_secs(60));
        Sink::Otlp(Box::new(
            OtlpSink::new(&config, &crate::agent_resource(&host), grouping).unwrap(),
        ))
    }

    async fn survives_an_outage(protocol: Protocol) {
        let addr = free_port();
        let config = PipelineConfig {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            flush_interval: Duration::from_millis(20),
            ..PipelineConfig::default()
        };
        let pipeline = Pipeline::start(sink(addr, protocol), config).unwrap();
        for tid in 0..300 {
            pipeline.submit(Call {
                tid,
                ..sample_call()
            });
        }
        let stats = pipeline.stats();
        // Let exports fail against the closed port for a while.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            stats.snapshot().export_errors > 0,
            "exports should have failed while down"
        );
        assert_eq!(stats.snapshot().spans_exported, 0);
        let receiver_config = match protocol {
            Protocol::Grpc => ReceiverConfig {
                grpc_addr: Some(addr),
                ..ReceiverConfig::default()
            },
            Protocol::HttpProtobuf => ReceiverConfig {
                http_addr: Some(addr),
                ..ReceiverConfig::default()
            },
        };
        let receiver = Receiver::start(receiver_config).await.unwrap();
        for tid in 300..600 {
            pipeline.submit(Call {
                tid,
                ..sample_call()
            });
        }
        pipeline.shutdown().await;
        let snapshot = stats.snapshot();
        assert_eq!(
            (snapshot.spans_exported, snapshot.logs_exported),
            (600, 600),
            "{snapshot:?}"
        );
        assert_eq!(
            (
                snapshot.spans_failed,
                snapshot.logs_failed,
                snapshot.backlog
            ),
            (0, 0, 0)
        );
        let received = receiver.store().stats();
        assert_eq!((received.spans, received.logs), (600, 600));
        receiver.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grpc_backlog_is_delivered_after_an_outage() {
        survives_an_outage(Protocol::Grpc).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_backlog_is_delivered_after_an_outage() {
        survives_an_outage(Protocol::HttpProtobuf).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_beyond_the_backlog_are_counted_as_failed() {
        let config = PipelineConfig {
            backlog_capacity: 100,
            max_batch: 50,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
            flush_interval: Duration::from_millis(5),
            ..PipelineConfig::default()
        };
        let pipeline = Pipeline::start(sink(free_port(), Protocol::Grpc), config).unwrap();
        for tid in 0..500 {
            pipeline.submit(Call {
                tid,
                ..sample_call()
            });
        }
        let stats = pipeline.stats();
        pipeline.shutdown().await;
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.accepted, 500);
        assert_eq!(
            snapshot.spans_exported + snapshot.spans_failed,
            500,
            "{snapshot:?}"
        );
        assert_eq!(snapshot.spans_failed, 500);
        assert_eq!(snapshot.logs_failed, 500);
    }
}
