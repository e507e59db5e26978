//! Shipping calls: a bounded queue, a batching worker, and the sink that encodes and sends.
//! Code that produces calls only sees [`Pipeline::submit`], which takes them a batch at a time
//! (one hand-off per ring buffer drain, not per call); the sink decides the transport.
//!
//! Delivery is at least once: a batch is sent again until the destination acknowledges it, so
//! a request that reached the collector but whose answer did not come in time is sent twice.
//! Each call is counted once whatever the attempts: exported, failed, possibly delivered (never
//! acknowledged, but an attempt went unanswered) or lost at the stop deadline.

mod backlog;
mod failure;
mod otlp;
mod stdout;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures_util::{stream::FuturesUnordered, StreamExt as _};
use tokio::{
    sync::{mpsc, watch, Notify},
    task::JoinHandle,
    time::Instant,
};

pub use failure::{ExportFailure, FailureKind};
pub use otlp::{
    read_headers_file, validate_endpoint, MetricsExporter, OtlpConfig, OtlpSink, Protocol,
    Rejected, Signal, SignalSelection, MAX_RESPONSE_BYTES,
};
pub use stdout::StdoutSink;

use kspan_decode::Call;

use crate::{stats::ExportStats, wire::Wanted, ExportError};
use backlog::{Backlog, Backoff, Delivery, PendingBatch};

/// Where calls go.
pub enum Sink {
    /// OTLP spans and logs, over gRPC or HTTP/protobuf.
    Otlp(Box<OtlpSink>),
    /// One readable line per call on standard output.
    Stdout(StdoutSink),
}

impl Sink {
    /// Sends what is wanted of the calls' spans and log records; `None` for a signal not sent.
    async fn export(&self, calls: &[Call], wanted: Wanted) -> otlp::SignalOutcomes {
        match self {
            Sink::Otlp(sink) => sink.export(calls, wanted).await,
            Sink::Stdout(sink) => (
                wanted.spans.then(|| {
                    sink.export(calls)
                        .map(|()| 0)
                        .map_err(ExportFailure::retryable)
                }),
                wanted.logs.then_some(Ok(0)),
            ),
        }
    }

    /// Whether this sink sends spans (or, for stdout, lines).
    pub fn sends_spans(&self) -> bool {
        match self {
            Sink::Otlp(sink) => sink.sends_spans(),
            Sink::Stdout(_) => true,
        }
    }

    /// Whether this sink sends log records.
    fn sends_logs(&self) -> bool {
        match self {
            Sink::Otlp(sink) => sink.sends_logs(),
            Sink::Stdout(_) => false,
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
    /// Batches being sent at once: one at a time, a batch's round trip (encode, send, the
    /// collector's decode, the answer) caps throughput while both ends sit partly idle.
    pub max_in_flight: usize,
    /// How long a partial batch may wait.
    pub flush_interval: Duration,
    /// Calls kept for retry while the destination is unreachable; the oldest beyond this are
    /// dropped and counted.
    pub backlog_capacity: usize,
    /// First wait before retrying a failed export; doubles up to `max_backoff`. The final
    /// flush retries at this pace, without doubling.
    pub initial_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            // As kspan's `--export-queue` default: a 200k-call burst fits.
            queue_capacity: 262_144,
            max_batch: 1024,
            max_in_flight: 4,
            flush_interval: Duration::from_millis(200),
            backlog_capacity: 262_144,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The longest wait a collector's `Retry-After` or `RetryInfo` is granted: a longer one (or a
/// date far ahead) would stall every export behind it while the backlog overflows.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The export stage: a bounded queue drained by one batching worker.
pub struct Pipeline {
    /// Unbounded as a channel: `queued` and `capacity` bound it in calls.
    queue: mpsc::UnboundedSender<Vec<Call>>,
    /// Calls sent and not yet taken by intake.
    queued: Arc<AtomicUsize>,
    capacity: usize,
    max_batch: usize,
    stats: Arc<ExportStats>,
    /// When the final flush must end; set once, by [`Pipeline::shutdown`].
    stop_deadline: watch::Sender<Option<Instant>>,
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
        let (queue, receiver) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(ExportStats::default());
        let shared = Arc::new(Shared {
            backlog: Mutex::new(Backlog::new(config.backlog_capacity)),
            added: Notify::new(),
            intake_done: AtomicBool::new(false),
            stats: stats.clone(),
            sends_spans: sink.sends_spans(),
            sends_logs: sink.sends_logs(),
        });
        let (stop_deadline, deadline) = watch::channel(None);
        tokio::spawn(intake(receiver, queued.clone(), config, shared.clone()));
        let worker = tokio::spawn(deliver(sink, config, shared, deadline));
        Ok(Self {
            queue,
            queued,
            capacity: config.queue_capacity,
            max_batch: config.max_batch,
            stats,
            stop_deadline,
            worker,
        })
    }

    /// Queues calls without waiting; those beyond what a full queue has room for are dropped
    /// (the last ones) and counted.
    pub fn submit(&self, mut calls: Vec<Call>) {
        let offered = calls.len();
        if offered == 0 {
            return;
        }
        let capacity = self.capacity;
        let before = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                Some(queued + offered.min(capacity.saturating_sub(queued)))
            })
            .unwrap_or_else(|queued| queued);
        calls.truncate(offered.min(capacity.saturating_sub(before)));
        let accepted = calls.len();
        ExportStats::add(&self.stats.dropped_queue_full, (offered - accepted) as u64);
        if accepted == 0 {
            return;
        }
        match self.queue.send(calls) {
            Ok(()) => ExportStats::add(&self.stats.accepted, accepted as u64),
            // Only if intake died (it panicked): what it will never take is lost here.
            Err(_) => ExportStats::add(&self.stats.dropped_queue_full, accepted as u64),
        }
    }

    /// The calls one export request carries: a submitter that hands over batches this size
    /// spares the worker from merging them.
    pub fn batch_size(&self) -> usize {
        self.max_batch
    }

    /// The export counters.
    pub fn stats(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }

    /// The final flush: exports everything queued and everything the backlog holds, retrying
    /// (every `initial_backoff`) until it is delivered or `deadline` passes, so a collector
    /// that comes back before the deadline gets it all. At the deadline, requests still in
    /// flight are abandoned and what is undelivered is counted as lost at stop (or possibly
    /// delivered, if an earlier attempt went unanswered). Returns by the deadline.
    pub async fn shutdown(self, deadline: Instant) {
        self.stop_deadline.send_replace(Some(deadline));
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
    sends_spans: bool,
    sends_logs: bool,
}

/// Why a batch is given up before everything in it was acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GiveUp {
    /// Pushed out of a full backlog while it waited for retry.
    Failed,
    /// Refused for good by the destination (a non-retryable status).
    Rejected,
    /// Still undelivered when the stop deadline passed.
    StopDeadline,
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
        // A signal the sink does not send is owed nothing from the start.
        let owed = |sent| match sent {
            true => Delivery::Pending,
            false => Delivery::Done,
        };
        let pending = PendingBatch {
            calls: Arc::new(calls),
            spans: owed(self.sends_spans),
            logs: owed(self.sends_logs),
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
            self.give_up(&batch, GiveUp::Failed);
        }
        ExportStats::set(&self.stats.backlog, waiting as u64);
        self.added.notify_one();
    }

    /// Counts what a batch will never deliver, signal by signal.
    fn give_up(&self, batch: &PendingBatch, why: GiveUp) {
        let count = batch.calls.len();
        SignalCounters::spans(&self.stats).given_up(batch.spans, count, why);
        SignalCounters::logs(&self.stats).given_up(batch.logs, count, why);
    }
}

/// One signal's export counters.
struct SignalCounters<'a> {
    /// "spans" or "log records", for the log.
    what: &'static str,
    exported: &'a AtomicU64,
    failed: &'a AtomicU64,
    rejected: &'a AtomicU64,
    lost_at_stop: &'a AtomicU64,
    possibly_delivered: &'a AtomicU64,
}

impl<'a> SignalCounters<'a> {
    fn spans(stats: &'a ExportStats) -> Self {
        Self {
            what: "spans",
            exported: &stats.spans_exported,
            failed: &stats.spans_failed,
            rejected: &stats.spans_rejected,
            lost_at_stop: &stats.spans_lost_at_stop,
            possibly_delivered: &stats.spans_possibly_delivered,
        }
    }

    fn logs(stats: &'a ExportStats) -> Self {
        Self {
            what: "log records",
            exported: &stats.logs_exported,
            failed: &stats.logs_failed,
            rejected: &stats.logs_rejected,
            lost_at_stop: &stats.logs_lost_at_stop,
            possibly_delivered: &stats.logs_possibly_delivered,
        }
    }

    /// Counts `count` items that will never be acknowledged, by where they stand and why. An
    /// earlier unanswered attempt may have delivered them: possibly delivered, whatever came
    /// after.
    fn given_up(&self, state: Delivery, count: usize, why: GiveUp) {
        let counter = match (state, why) {
            (Delivery::Done, _) => return,
            (Delivery::Unanswered, _) => self.possibly_delivered,
            (Delivery::Pending, GiveUp::Failed) => self.failed,
            (Delivery::Pending, GiveUp::Rejected) => self.rejected,
            (Delivery::Pending, GiveUp::StopDeadline) => self.lost_at_stop,
        };
        ExportStats::add(counter, count as u64);
    }

    /// Counts an accepted request: what the collector kept, and what it rejected in a partial
    /// success (lost, and said).
    fn delivered(&self, sent: u64, rejected: u64) {
        let rejected = rejected.min(sent);
        ExportStats::add(self.exported, sent - rejected);
        if rejected > 0 {
            ExportStats::add(self.rejected, rejected);
            tracing::warn!(rejected, sent, "the collector rejected some {}", self.what);
        }
    }
}

/// Moves calls from the queue into the backlog in batches of up to `max_batch`, at the pace
/// they arrive, so a burst waits in the backlog while a slow export is in flight. A partial
/// batch waits up to `flush_interval` for more.
async fn intake(
    mut receiver: mpsc::UnboundedReceiver<Vec<Call>>,
    queued: Arc<AtomicUsize>,
    config: PipelineConfig,
    shared: Arc<Shared>,
) {
    let mut batch = Vec::new();
    let mut flush_at = None;
    loop {
        let received = match flush_at {
            None => receiver.recv().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(received) => received,
                Err(_) => {
                    shared.enqueue(std::mem::take(&mut batch));
                    flush_at = None;
                    continue;
                }
            },
        };
        let Some(calls) = received else {
            break;
        };
        queued.fetch_sub(calls.len(), Ordering::AcqRel);
        for full in fill(&mut batch, calls, config.max_batch) {
            shared.enqueue(full);
        }
        flush_at = match batch.is_empty() {
            true => None,
            false => flush_at.or_else(|| Some(Instant::now() + config.flush_interval)),
        };
    }
    if !batch.is_empty() {
        shared.enqueue(batch);
    }
    shared.intake_done.store(true, Ordering::Release);
    shared.added.notify_one();
}

/// Adds `calls` to the partial `batch` and returns the batches of `max` that are now full.
/// Only what tops up a partial batch is copied: otherwise `calls` becomes the batch, so a
/// batch handed over whole is not copied.
fn fill(batch: &mut Vec<Call>, mut calls: Vec<Call>, max: usize) -> Vec<Vec<Call>> {
    let mut full = Vec::new();
    if !batch.is_empty() {
        let room = max.saturating_sub(batch.len()).min(calls.len());
        batch.extend(calls.drain(..room));
        if batch.len() < max {
            return full;
        }
        full.push(std::mem::take(batch));
    }
    *batch = calls;
    while batch.len() >= max {
        let rest = batch.split_off(max);
        full.push(std::mem::replace(batch, rest));
    }
    full
}

/// Delivers backlog batches oldest first, up to `max_in_flight` at once; a failed batch goes
/// back to the front of the backlog and nothing new starts until the backoff has passed. Once
/// a stop deadline is set, retries come every `initial_backoff` until everything is delivered
/// or the deadline passes.
async fn deliver(
    sink: Sink,
    config: PipelineConfig,
    shared: Arc<Shared>,
    mut stop_deadline: watch::Receiver<Option<Instant>>,
) {
    let mut backoff = Backoff::new(config.initial_backoff, config.max_backoff);
    let mut in_flight = FuturesUnordered::new();
    // The batches whose requests are in flight, by id, so the deadline can count them.
    let mut sending: HashMap<u64, PendingBatch> = HashMap::new();
    let mut next_id = 0_u64;
    let mut retry_at: Option<Instant> = None;
    let mut deadline: Option<Instant> = None;
    loop {
        if deadline.is_none() {
            if let Some(stop) = *stop_deadline.borrow_and_update() {
                // The final flush: try again now, whatever the backoff had reached.
                deadline = Some(stop);
                retry_at = None;
                backoff.reset();
            }
        }
        while retry_at.is_none() && in_flight.len() < config.max_in_flight {
            let Some(batch) = shared.backlog().pop_front() else {
                break;
            };
            let id = next_id;
            next_id += 1;
            in_flight.push(send(
                &sink,
                id,
                batch.calls.clone(),
                batch.spans,
                batch.logs,
            ));
            sending.insert(id, batch);
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
            Some(attempt) = in_flight.next() => {
                let Some(mut batch) = sending.remove(&attempt.id) else {
                    continue;
                };
                let count = batch.calls.len() as u64;
                let outcome = settle(&shared.stats, &mut batch, attempt);
                if let Some(refusal) = &outcome.refused {
                    tracing::warn!(error = %refusal, calls = count, "the collector refused an export for good; counting its calls as rejected, not retrying");
                }
                match outcome.retry {
                    None => {
                        if outcome.refused.is_none() && backoff.current() != config.initial_backoff {
                            tracing::info!("export recovered: delivering the backlog");
                        }
                        backoff.reset();
                    }
                    Some(error) => {
                        ExportStats::add(&shared.stats.export_errors, 1);
                        let waiting = shared.backlog().len() as u64 + count;
                        // The collector's own word first (Retry-After, RetryInfo), within reason.
                        let wait = match (error.retry_after, deadline) {
                            (Some(asked), _) => asked.min(MAX_RETRY_AFTER),
                            (None, Some(_)) => config.initial_backoff,
                            (None, None) => backoff.wait(),
                        };
                        // Unanswered: the collector may have the calls; sending them again may
                        // duplicate them (delivery is at least once).
                        let unanswered = error.kind == FailureKind::NoAnswer;
                        tracing::warn!(%error, unanswered, backlog = waiting, retry_in = ?wait, "export failed; keeping the calls for retry");
                        let evicted = shared.backlog().push_front(batch);
                        for batch in evicted {
                            shared.give_up(&batch, GiveUp::Failed);
                        }
                        retry_at = Some(Instant::now() + wait);
                        if deadline.is_none() {
                            backoff.increase();
                        }
                    }
                }
                ExportStats::set(&shared.stats.backlog, shared.backlog().len() as u64);
            }
            () = shared.added.notified(), if can_start => {}
            () = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)),
                if retry_at.is_some() => retry_at = None,
            // Wakes a worker waiting out a backoff when the stop comes.
            Ok(()) = stop_deadline.changed(), if deadline.is_none() => {}
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                if deadline.is_some() => {
                drop(in_flight);
                abandon(&shared, sending.into_values().collect()).await;
                break;
            }
        }
    }
    ExportStats::set(&shared.stats.backlog, 0);
}

/// At the stop deadline: counts the batches whose requests were abandoned, then (once intake
/// has moved the last queued calls into it) everything the backlog still holds.
async fn abandon(shared: &Shared, in_flight: Vec<PendingBatch>) {
    let mut calls = 0;
    for batch in in_flight {
        calls += batch.calls.len();
        shared.give_up(&batch, GiveUp::StopDeadline);
    }
    loop {
        // Intake finishing between the check and the wait leaves a permit: the wait ends.
        let added = shared.added.notified();
        let done = shared.intake_done.load(Ordering::Acquire);
        let left: Vec<PendingBatch> = {
            let mut backlog = shared.backlog();
            std::iter::from_fn(|| backlog.pop_front()).collect()
        };
        for batch in left {
            calls += batch.calls.len();
            shared.give_up(&batch, GiveUp::StopDeadline);
        }
        if done {
            break;
        }
        added.await;
    }
    tracing::warn!(
        calls,
        "stop deadline passed: abandoning the export of what is still undelivered"
    );
}

/// What one attempt at a batch came to, per signal (`None`: not sent, nothing was owed).
struct Attempt {
    id: u64,
    spans: Option<Result<Rejected, ExportFailure>>,
    logs: Option<Result<Rejected, ExportFailure>>,
}

/// Sends what a batch still owes (spans and logs concurrently, on separate requests).
async fn send(
    sink: &Sink,
    id: u64,
    calls: Arc<Vec<Call>>,
    spans: Delivery,
    logs: Delivery,
) -> Attempt {
    let wanted = Wanted {
        spans: spans != Delivery::Done,
        logs: logs != Delivery::Done,
    };
    let (spans, logs) = sink.export(&calls, wanted).await;
    Attempt { id, spans, logs }
}

/// What an attempt means for its batch: a failure to retry it for, and a refusal to report.
struct Settled {
    retry: Option<ExportFailure>,
    refused: Option<ExportFailure>,
}

/// Updates a batch after an attempt and counts what it settled: acknowledged items as
/// exported (or rejected, if the collector rejected some in a partial success), refused ones
/// as rejected (or possibly delivered, after an unanswered attempt).
fn settle(stats: &ExportStats, batch: &mut PendingBatch, attempt: Attempt) -> Settled {
    let count = batch.calls.len();
    let mut settled = Settled {
        retry: None,
        refused: None,
    };
    let signals = [
        (
            attempt.spans,
            &mut batch.spans,
            SignalCounters::spans(stats),
        ),
        (attempt.logs, &mut batch.logs, SignalCounters::logs(stats)),
    ];
    for (outcome, state, counters) in signals {
        match outcome {
            None => {}
            Some(Ok(rejected)) => {
                *state = Delivery::Done;
                counters.delivered(count as u64, rejected);
            }
            Some(Err(failure)) => match failure.kind {
                FailureKind::Refused => {
                    counters.given_up(*state, count, GiveUp::Rejected);
                    *state = Delivery::Done;
                    settled.refused.get_or_insert(failure);
                }
                FailureKind::NoAnswer => {
                    *state = Delivery::Unanswered;
                    settled.retry.get_or_insert(failure);
                }
                FailureKind::Retryable => {
                    settled.retry.get_or_insert(failure);
                }
            },
        }
    }
    settled
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
            pipeline.submit(vec![Call {
                tid,
                ..sample_call()
            }]);
        }
        let stats = pipeline.stats();
        pipeline
            .shutdown(Instant::now() + Duration::from_secs(60))
            .await;
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.accepted, 1000);
        assert_eq!(snapshot.spans_exported, 1000);
        assert_eq!(lines.lock().unwrap().len(), 1000);
    }

    /// A pipeline to stdout whose queue holds four calls.
    fn four_call_queue() -> Pipeline {
        let grouping = TraceGrouping::new("boot", Duration::from_secs(60));
        let (sink, _lines) = StdoutSink::capturing(grouping);
        let config = PipelineConfig {
            queue_capacity: 4,
            ..PipelineConfig::default()
        };
        Pipeline::start(Sink::Stdout(sink), config).unwrap()
    }

    #[tokio::test]
    async fn full_queue_drops_are_counted() {
        let pipeline = four_call_queue();
        // The worker cannot run between these submits: this test's runtime has one thread.
        for _ in 0..3 {
            pipeline.submit(vec![sample_call()]);
        }
        // Room for one of these three.
        pipeline.submit(vec![sample_call(); 3]);
        pipeline.submit(vec![sample_call(); 4]);
        let stats = pipeline.stats();
        pipeline
            .shutdown(Instant::now() + Duration::from_secs(60))
            .await;
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.accepted, snapshot.dropped_queue_full), (4, 6));
        assert_eq!(snapshot.spans_exported, 4);
    }

    #[tokio::test]
    async fn the_queue_has_room_again_once_intake_takes_its_calls() {
        let pipeline = four_call_queue();
        let stats = pipeline.stats();
        pipeline.submit(vec![sample_call(); 4]);
        wait_for_intake(&pipeline).await;
        pipeline.submit(vec![sample_call(); 4]);
        pipeline
            .shutdown(Instant::now() + Duration::from_secs(60))
            .await;
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.accepted, snapshot.dropped_queue_full), (8, 0));
    }

    /// Yields until intake has taken everything queued.
    async fn wait_for_intake(pipeline: &Pipeline) {
        while pipeline.queued.load(Ordering::Acquire) > 0 {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn calls_are_cut_into_batches_of_the_request_size() {
        let calls = |tids: std::ops::Range<u32>| -> Vec<Call> {
            tids.map(|tid| Call {
                tid,
                ..sample_call()
            })
            .collect()
        };
        let tids = |batch: &[Call]| batch.iter().map(|call| call.tid).collect::<Vec<_>>();
        let mut batch = Vec::new();
        assert!(fill(&mut batch, calls(0..3), 4).is_empty());
        let full = fill(&mut batch, calls(3..12), 4);
        let full: Vec<Vec<u32>> = full.iter().map(|batch| tids(batch)).collect();
        assert_eq!(
            full,
            [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9, 10, 11]]
        );
        assert!(batch.is_empty());
        // Topped up to the full size exactly.
        assert!(fill(&mut batch, calls(0..2), 4).is_empty());
        let full = fill(&mut batch, calls(2..4), 4);
        assert_eq!(tids(&full[0]), [0, 1, 2, 3]);
        assert!(batch.is_empty());
        // A whole batch handed over is the batch itself, not a copy.
        let whole = calls(0..4);
        let address = whole.as_ptr();
        let full = fill(&mut batch, whole, 4);
        assert_eq!(full[0].as_ptr(), address);
    }

    #[test]
    fn rejected_items_are_counted_lost_not_delivered() {
        let stats = ExportStats::default();
        SignalCounters::spans(&stats).delivered(10, 3);
        // A collector claiming more rejections than items sent cannot make counts negative.
        SignalCounters::spans(&stats).delivered(5, 9);
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.spans_exported, snapshot.spans_rejected), (7, 8));
    }

    #[test]
    fn a_batch_given_up_is_counted_by_where_each_signal_stands() {
        use Delivery::{Done, Pending, Unanswered};
        let given_up = |spans, logs, why| {
            let shared = Shared {
                backlog: Mutex::new(Backlog::new(1)),
                added: Notify::new(),
                intake_done: AtomicBool::new(false),
                stats: Arc::new(ExportStats::default()),
                sends_spans: true,
                sends_logs: true,
            };
            let batch = PendingBatch {
                calls: vec![sample_call(); 3].into(),
                spans,
                logs,
            };
            shared.give_up(&batch, why);
            shared.stats.snapshot()
        };
        // [failed, rejected, lost at stop, possibly delivered] of spans, then of logs.
        let cases = [
            (Pending, Done, GiveUp::Failed, [3, 0, 0, 0, 0, 0, 0, 0]),
            (Pending, Pending, GiveUp::Rejected, [0, 3, 0, 0, 0, 3, 0, 0]),
            (
                Pending,
                Unanswered,
                GiveUp::Rejected,
                [0, 3, 0, 0, 0, 0, 0, 3],
            ),
            (
                Pending,
                Pending,
                GiveUp::StopDeadline,
                [0, 0, 3, 0, 0, 0, 3, 0],
            ),
            (
                Unanswered,
                Pending,
                GiveUp::StopDeadline,
                [0, 0, 0, 3, 0, 0, 3, 0],
            ),
            (Done, Unanswered, GiveUp::Failed, [0, 0, 0, 0, 0, 0, 0, 3]),
        ];
        for (spans, logs, why, expected) in cases {
            let s = given_up(spans, logs, why);
            let actual = [
                s.spans_failed,
                s.spans_rejected,
                s.spans_lost_at_stop,
                s.spans_possibly_delivered,
                s.logs_failed,
                s.logs_rejected,
                s.logs_lost_at_stop,
                s.logs_possibly_delivered,
            ];
            assert_eq!(actual, expected, "spans {spans:?}, logs {logs:?}, {why:?}");
        }
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
mod outage_tests;

#[cfg(test)]
mod hostile_tests;

#[cfg(test)]
mod retry_tests;

#[cfg(test)]
mod selection_tests;
