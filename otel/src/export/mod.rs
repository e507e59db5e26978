//! Shipping calls: a bounded queue, a batching worker, and the sink that encodes and sends.
//! Code that produces calls only sees [`Pipeline::submit`]; the sink decides the transport.

mod backlog;
mod otlp;
mod stdout;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures_util::{stream::FuturesUnordered, StreamExt as _};
use tokio::{
    sync::{mpsc, Notify},
    task::JoinHandle,
};

pub use otlp::{
    read_headers_file, validate_endpoint, MetricsExporter, OtlpConfig, OtlpSink, Protocol,
    Rejected, Signal,
};
pub use stdout::StdoutSink;

use kspan_decode::Call;

use crate::{stats::ExportStats, ExportError};
use backlog::{Backlog, Backoff, PendingBatch};

/// Where calls go.
pub enum Sink {
    /// OTLP spans and logs, over gRPC or HTTP/protobuf.
    Otlp(Box<OtlpSink>),
    /// One readable line per call on standard output.
    Stdout(StdoutSink),
}

impl Sink {
    async fn export_spans(&self, calls: &[Call]) -> Result<Rejected, String> {
        match self {
            Sink::Otlp(sink) => sink.export_spans(calls).await,
            Sink::Stdout(sink) => sink.export(calls).map(|()| 0),
        }
    }

    async fn export_logs(&self, calls: &[Call]) -> Result<Rejected, String> {
        match self {
            Sink::Otlp(sink) => sink.export_logs(calls).await,
            Sink::Stdout(_) => Ok(0),
        }
    }

    /// Whether this sink sends log records besides spans.
    fn sends_logs(&self) -> bool {
        matches!(self, Sink::Otlp(_))
    }
}

/// Queue, batch and backlog sizes of the export stage.
#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    /// Calls that may wait for the worker; beyond this they are dropped and counted.
    pub queue_capacity: usize,
    /// Calls per export request.
    pub max_batch: usize,
    /// Batches being sent at once: one at a time, a batch's round trip (encode, send, the
    /// collector's decode, the answer) caps throughput while both ends sit partly idle.
    pub max_in_flight: usize,
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
            max_batch: 1024,
            max_in_flight: 4,
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
        if config.queue_capacity == 0
            || config.max_batch == 0
            || config.max_in_flight == 0
            || config.backlog_capacity == 0
        {
            return Err(ExportError::InvalidQueue);
        }
        let (queue, receiver) = mpsc::channel(config.queue_capacity);
        let stats = Arc::new(ExportStats::default());
        let shared = Arc::new(Shared {
            backlog: Mutex::new(Backlog::new(config.backlog_capacity)),
            added: Notify::new(),
            intake_done: AtomicBool::new(false),
            stats: stats.clone(),
            sends_logs: sink.sends_logs(),
        });
        tokio::spawn(intake(receiver, config, shared.clone()));
        let worker = tokio::spawn(deliver(sink, config, shared));
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

/// The backlog shared by intake and delivery, and whether intake has finished.
struct Shared {
    backlog: Mutex<Backlog>,
    /// Wakes delivery when intake adds a batch or finishes.
    added: Notify,
    intake_done: AtomicBool,
    stats: Arc<ExportStats>,
    sends_logs: bool,
}

impl Shared {
    fn backlog(&self) -> std::sync::MutexGuard<'_, Backlog> {
        // A panic elsewhere cannot leave the backlog half-updated: keep going with it.
        self.backlog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a batch, counting what falls out of the backlog.
    fn enqueue(&self, calls: Vec<Call>) {
        ExportStats::add(&self.stats.dequeued, calls.len() as u64);
        let pending = PendingBatch {
            calls,
            spans_sent: false,
            logs_sent: !self.sends_logs,
        };
        let (evicted, waiting) = {
            let mut backlog = self.backlog();
            (backlog.push(pending), backlog.len())
        };
        for batch in evicted {
            tracing::warn!(
                calls = batch.calls.len(),
                "export backlog full: dropping the oldest calls"
            );
            self.give_up(&batch);
        }
        ExportStats::set(&self.stats.backlog, waiting as u64);
        self.added.notify_one();
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

/// Moves calls from the queue into the backlog in batches, at the pace they arrive, so a
/// burst waits in the backlog while a slow export is in flight.
async fn intake(mut receiver: mpsc::Receiver<Call>, config: PipelineConfig, shared: Arc<Shared>) {
    let max = config.max_batch;
    loop {
        let mut batch = Vec::with_capacity(max);
        if receiver.recv_many(&mut batch, max).await == 0 {
            break;
        }
        // Give a partial batch a moment to fill.
        let deadline = tokio::time::Instant::now() + config.flush_interval;
        let mut open = true;
        while batch.len() < max {
            let room = max - batch.len();
            match tokio::time::timeout_at(deadline, receiver.recv_many(&mut batch, room)).await {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        shared.enqueue(batch);
        if !open {
            break;
        }
    }
    shared.intake_done.store(true, Ordering::Release);
    shared.added.notify_one();
}

/// Delivers backlog batches oldest first, up to `max_in_flight` at once; a failed batch goes
/// back to the front of the backlog and nothing new starts until the backoff has passed.
async fn deliver(sink: Sink, config: PipelineConfig, shared: Arc<Shared>) {
    let mut backoff = Backoff::new(config.initial_backoff, config.max_backoff);
    let mut in_flight = FuturesUnordered::new();
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        while retry_at.is_none() && in_flight.len() < config.max_in_flight {
            let Some(batch) = shared.backlog().pop_front() else {
                break;
            };
            in_flight.push(send(&sink, &shared.stats, batch));
        }
        if in_flight.is_empty()
            && retry_at.is_none()
            && shared.intake_done.load(Ordering::Acquire)
            && shared.backlog().is_empty()
        {
            break;
        }
        let can_start = retry_at.is_none() && in_flight.len() < config.max_in_flight;
        tokio::select! {
            Some((batch, failure)) = in_flight.next() => {
                match failure {
                    None => {
                        if backoff.current() != config.initial_backoff {
                            tracing::info!("export recovered: delivering the backlog");
                        }
                        backoff.reset();
                    }
                    Some(error) => {
                        ExportStats::add(&shared.stats.export_errors, 1);
                        let waiting = shared.backlog().len() + batch.calls.len();
                        tracing::warn!(%error, backlog = waiting, retry_in = ?backoff.current(), "export failed; keeping the calls for retry");
                        if shared.intake_done.load(Ordering::Acquire) {
                            // Shutting down: one attempt per batch, then count what is left.
                            shared.give_up(&batch);
                        } else {
                            let evicted = shared.backlog().push_front(batch);
                            for batch in evicted {
                                shared.give_up(&batch);
                            }
                            retry_at = Some(tokio::time::Instant::now() + backoff.current());
                            backoff.increase();
                        }
                    }
                }
                ExportStats::set(&shared.stats.backlog, shared.backlog().len() as u64);
            }
            () = shared.added.notified(), if can_start => {}
            () = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)),
                if retry_at.is_some() => retry_at = None,
        }
    }
    ExportStats::set(&shared.stats.backlog, 0);
}

/// Sends what a batch still owes (spans and logs concurrently, on separate requests) and
/// counts what got through; returns the batch and the first failure, if any.
async fn send(
    sink: &Sink,
    stats: &ExportStats,
    mut batch: PendingBatch,
) -> (PendingBatch, Option<String>) {
    let count = batch.calls.len() as u64;
    let calls = &batch.calls;
    let spans = async {
        match batch.spans_sent {
            true => None,
            false => Some(sink.export_spans(calls).await),
        }
    };
    let logs = async {
        match batch.logs_sent {
            true => None,
            false => Some(sink.export_logs(calls).await),
        }
    };
    let (spans, logs) = tokio::join!(spans, logs);
    let signals = [
        (
            &spans,
            &mut batch.spans_sent,
            "spans",
            &stats.spans_exported,
            &stats.spans_failed,
        ),
        (
            &logs,
            &mut batch.logs_sent,
            "log records",
            &stats.logs_exported,
            &stats.logs_failed,
        ),
    ];
    for (outcome, sent, what, exported, failed) in signals {
        if let Some(Ok(rejected)) = outcome {
            *sent = true;
            count_delivery(what, count, *rejected, exported, failed);
        }
    }
    let failure = [spans, logs].into_iter().flatten().find_map(Result::err);
    (batch, failure)
}

/// Counts an accepted request: what the collector kept, and what it rejected (lost, and said).
fn count_delivery(
    what: &str,
    sent: u64,
    rejected: u64,
    exported: &std::sync::atomic::AtomicU64,
    failed: &std::sync::atomic::AtomicU64,
) {
    let rejected = rejected.min(sent);
    ExportStats::add(exported, sent - rejected);
    if rejected > 0 {
        ExportStats::add(failed, rejected);
        tracing::warn!(rejected, sent, "the collector rejected some {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kspan_decode::test_support::sample_call;

    use crate::ids::TraceGrouping;

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
    fn rejected_items_are_counted_lost_not_delivered() {
        let stats = ExportStats::default();
        count_delivery("spans", 10, 3, &stats.spans_exported, &stats.spans_failed);
        // A collector claiming more rejections than items sent cannot make counts negative.
        count_delivery("spans", 5, 9, &stats.spans_exported, &stats.spans_failed);
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.spans_exported, snapshot.spans_failed), (7, 8));
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
    use kspan_decode::test_support::sample_call;

    use crate::{ids::TraceGrouping, resource::HostInfo};

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
            OtlpSink::new(&config, &crate::agent_resource(&host).unwrap(), grouping).unwrap(),
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
