//! The store: every accepted export request in arrival order, counters, and a notification for
//! waiters.

use crate::dump::{self, DumpWriter};
use crate::{
    ExportMetricsServiceRequest, ExportRequest, ReceivedLog, ReceivedRequest, ReceivedSpan,
    ReceiverError, Signal, Transport,
};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// Called with every request the receiver accepts, before the exporter gets its answer; an error
/// refuses the request (the exporter sees a server error and may retry).
pub type RequestObserver = dyn Fn(&ReceivedRequest) -> Result<(), ReceiverError> + Send + Sync;

/// Request counts of one signal, per transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransportCounts {
    /// Requests received over OTLP/gRPC.
    pub grpc: usize,
    /// Requests received over OTLP/HTTP.
    pub http: usize,
}

impl TransportCounts {
    /// Requests over both transports.
    pub fn total(&self) -> usize {
        self.grpc + self.http
    }

    fn count(&mut self, transport: Transport) {
        match transport {
            Transport::Grpc => self.grpc += 1,
            Transport::Http => self.http += 1,
        }
    }
}

/// What the receiver has taken in so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiverStats {
    /// Trace export requests accepted.
    pub trace_requests: TransportCounts,
    /// Log export requests accepted.
    pub log_requests: TransportCounts,
    /// Metrics export requests accepted.
    pub metrics_requests: TransportCounts,
    /// Spans in all accepted trace requests.
    pub spans: usize,
    /// Log records in all accepted log requests.
    pub logs: usize,
    /// HTTP requests refused (wrong content type or encoding, undecodable body).
    pub rejected_http_requests: usize,
    /// Requests refused for a missing or wrong required header (gRPC UNAUTHENTICATED, HTTP 401).
    pub unauthenticated_requests: TransportCounts,
}

/// Everything the receiver accepted; clones share the same contents.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    contents: Mutex<Contents>,
    /// Bumped after every accepted request; waiters subscribe to it.
    changed: watch::Sender<()>,
    observer: Option<Box<RequestObserver>>,
    /// False for a counting store: requests are counted, then dropped.
    keep: bool,
}

#[derive(Default)]
struct Contents {
    requests: Vec<ReceivedRequest>,
    stats: ReceiverStats,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("stats", &self.stats())
            .field("observer", &self.shared.observer.is_some())
            .field("keep", &self.shared.keep)
            .finish()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::build(None, true)
    }

    /// An empty store that only counts: [`Store::stats`] and [`Store::wait_for`] work, but no
    /// request is kept (so `requests`, `spans`, `logs` and dumps stay empty). Over gRPC, spans
    /// and log records are counted from the request bytes without being decoded.
    ///
    /// For benchmarks: millions of kept spans and logs would take gigabytes, and decoding them
    /// would take CPU from what is measured.
    pub fn counting() -> Self {
        Self::build(None, false)
    }

    /// An empty store that calls `observer` with each request it accepts, in acceptance order.
    ///
    /// The observer runs while the store is locked, so it sees requests in the order the store
    /// keeps them and has finished by the time a waiter wakes up; keep it short.
    pub fn with_observer(
        observer: impl Fn(&ReceivedRequest) -> Result<(), ReceiverError> + Send + Sync + 'static,
    ) -> Self {
        Self::build(Some(Box::new(observer)), true)
    }

    fn build(observer: Option<Box<RequestObserver>>, keep: bool) -> Self {
        Store {
            shared: Arc::new(Shared {
                contents: Mutex::new(Contents::default()),
                changed: watch::Sender::new(()),
                observer,
                keep,
            }),
        }
    }

    fn contents(&self) -> MutexGuard<'_, Contents> {
        // A panic elsewhere while holding the lock leaves the contents whole (each update is a
        // push plus counter bumps), so keep serving them.
        self.shared
            .contents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Accepts one request: runs the observer, keeps the request, wakes waiters.
    pub(crate) fn record(&self, received: ReceivedRequest) -> Result<(), ReceiverError> {
        {
            let mut contents = self.contents();
            if let Some(observer) = &self.shared.observer {
                observer(&received)?;
            }
            let stats = &mut contents.stats;
            stats.spans += received.request.span_count();
            stats.logs += received.request.log_count();
            match received.request {
                ExportRequest::Traces(_) => stats.trace_requests.count(received.transport),
                ExportRequest::Logs(_) => stats.log_requests.count(received.transport),
                ExportRequest::Metrics(_) => stats.metrics_requests.count(received.transport),
            }
            if self.shared.keep {
                contents.requests.push(received);
            }
        }
        self.shared.changed.send_replace(());
        Ok(())
    }

    /// Whether requests only need counting: nothing is kept and no observer looks at them.
    pub(crate) fn counts_only(&self) -> bool {
        !self.shared.keep && self.shared.observer.is_none()
    }

    /// Accepts one trace or log request that was counted, not decoded (see [`Store::counting`]).
    pub(crate) fn record_count(&self, signal: Signal, items: usize, transport: Transport) {
        {
            let stats = &mut self.contents().stats;
            match signal {
                Signal::Traces => {
                    stats.spans += items;
                    stats.trace_requests.count(transport);
                }
                Signal::Logs => {
                    stats.logs += items;
                    stats.log_requests.count(transport);
                }
                Signal::Metrics => stats.metrics_requests.count(transport),
            }
        }
        self.shared.changed.send_replace(());
    }

    /// Counts one refused HTTP request.
    pub(crate) fn count_rejected_http(&self) {
        self.contents().stats.rejected_http_requests += 1;
    }

    /// Counts one request refused for a missing or wrong required header.
    pub(crate) fn count_unauthenticated(&self, transport: Transport) {
        self.contents()
            .stats
            .unauthenticated_requests
            .count(transport);
    }

    /// Every accepted request, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.contents().requests.clone()
    }

    /// All spans of all trace requests, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let contents = self.contents();
        contents
            .requests
            .iter()
            .flat_map(ReceivedRequest::spans)
            .collect()
    }

    /// All log records of all log requests, in arrival order.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        let contents = self.contents();
        contents
            .requests
            .iter()
            .flat_map(ReceivedRequest::logs)
            .collect()
    }

    /// The metrics export requests, whole, in arrival order.
    pub fn metrics_requests(&self) -> Vec<ExportMetricsServiceRequest> {
        let contents = self.contents();
        contents
            .requests
            .iter()
            .filter_map(|received| match &received.request {
                ExportRequest::Metrics(request) => Some(request.clone()),
                _ => None,
            })
            .collect()
    }

    /// Counters of what has been received.
    pub fn stats(&self) -> ReceiverStats {
        self.contents().stats
    }

    /// Waits until at least `spans` spans and `logs` log records have arrived; false if `timeout`
    /// passed first. Woken by each accepted request, it does not poll.
    pub async fn wait_for(&self, spans: usize, logs: usize, timeout: Duration) -> bool {
        let reached = || {
            let stats = self.stats();
            stats.spans >= spans && stats.logs >= logs
        };
        // Subscribe before the first check, so a request accepted in between still wakes us.
        let mut changed = self.shared.changed.subscribe();
        let wait = async {
            loop {
                if reached() {
                    return true;
                }
                if changed.changed().await.is_err() {
                    // The sender lives as long as `self`: this cannot happen, but be exact.
                    return reached();
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(reached) => reached,
            Err(_elapsed) => reached(),
        }
    }

    /// Writes every request as JSON lines (see [`DumpWriter`]), replacing `path`.
    pub fn write_jsonl(&self, path: &Path) -> Result<(), ReceiverError> {
        let writer = DumpWriter::create(path)?;
        for received in self.contents().requests.iter() {
            writer.append(received)?;
        }
        Ok(())
    }

    /// Loads a dump written by [`Store::write_jsonl`] or a [`DumpWriter`] into a new store.
    pub fn read_jsonl(path: &Path) -> Result<Store, ReceiverError> {
        let store = Store::new();
        for received in dump::read(path)? {
            store.record(received)?;
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::received::tests::{log_request, trace_request};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn traces(transport: Transport) -> ReceivedRequest {
        ReceivedRequest {
            transport,
            request: ExportRequest::Traces(trace_request()),
        }
    }

    fn logs(transport: Transport) -> ReceivedRequest {
        ReceivedRequest {
            transport,
            request: ExportRequest::Logs(log_request()),
        }
    }

    #[test]
    fn counts_per_signal_and_transport() -> Result<(), ReceiverError> {
        let store = Store::new();
        store.record(traces(Transport::Grpc))?;
        store.record(traces(Transport::Http))?;
        store.record(logs(Transport::Http))?;
        store.record(ReceivedRequest {
            transport: Transport::Grpc,
            request: ExportRequest::Metrics(ExportMetricsServiceRequest::default()),
        })?;
        store.count_rejected_http();
        store.count_unauthenticated(Transport::Grpc);
        let expected = ReceiverStats {
            trace_requests: TransportCounts { grpc: 1, http: 1 },
            log_requests: TransportCounts { grpc: 0, http: 1 },
            metrics_requests: TransportCounts { grpc: 1, http: 0 },
            spans: 6,
            logs: 1,
            rejected_http_requests: 1,
            unauthenticated_requests: TransportCounts { grpc: 1, http: 0 },
        };
        assert_eq!(store.stats(), expected);
        assert_eq!(store.spans().len(), 6);
        assert_eq!(store.logs().len(), 1);
        assert_eq!(store.metrics_requests().len(), 1);
        assert_eq!(store.requests().len(), 4);
        assert_eq!(store.spans()[3].transport, Transport::Http);
        Ok(())
    }

    #[test]
    fn a_counting_store_counts_but_keeps_nothing() -> Result<(), ReceiverError> {
        let store = Store::counting();
        store.record(traces(Transport::Grpc))?;
        store.record(logs(Transport::Http))?;
        assert_eq!((store.stats().spans, store.stats().logs), (3, 1));
        assert_eq!(store.stats().trace_requests.total(), 1);
        assert!(store.requests().is_empty() && store.spans().is_empty());
        Ok(())
    }

    #[test]
    fn clones_share_contents() -> Result<(), ReceiverError> {
        let store = Store::new();
        let clone = store.clone();
        clone.record(traces(Transport::Grpc))?;
        assert_eq!(store.stats().spans, 3);
        Ok(())
    }

    #[test]
    fn observer_sees_each_request_and_can_refuse_it() {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        let store = Store::with_observer(move |received| {
            if counter.fetch_add(1, Ordering::SeqCst) == 1 {
                return Err(ReceiverError::DumpWrite {
                    path: "/full/disk".into(),
                    cause: std::io::Error::other("no space left"),
                });
            }
            assert_eq!(received.transport, Transport::Grpc);
            Ok(())
        });
        assert!(store.record(traces(Transport::Grpc)).is_ok());
        let refused = store.record(traces(Transport::Grpc));
        assert!(
            matches!(refused, Err(ReceiverError::DumpWrite { .. })),
            "{refused:?}"
        );
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        assert_eq!(store.stats().trace_requests.grpc, 1, "refused request kept");
    }

    #[tokio::test]
    async fn wait_for_wakes_on_arrival() {
        let store = Store::new();
        let sender = store.clone();
        let arrivals = tokio::spawn(async move {
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                sender.record(traces(Transport::Grpc))?;
            }
            sender.record(logs(Transport::Http))
        });
        let started = std::time::Instant::now();
        assert!(store.wait_for(6, 1, Duration::from_secs(30)).await);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "woke late: {:?}",
            started.elapsed()
        );
        assert!(matches!(arrivals.await, Ok(Ok(()))));
    }

    #[tokio::test]
    async fn wait_for_times_out_when_short() -> Result<(), ReceiverError> {
        let store = Store::new();
        store.record(traces(Transport::Grpc))?;
        assert!(store.wait_for(3, 0, Duration::ZERO).await, "already there");
        assert!(!store.wait_for(4, 0, Duration::from_millis(50)).await);
        assert!(!store.wait_for(0, 1, Duration::from_millis(50)).await);
        Ok(())
    }
}
