//! How calls are grouped into traces, and their span ids.
//!
//! All calls of one process within one time window share a trace, so Jaeger shows a process's
//! signalfd activity together; windows keep a long-lived process from growing one endless trace.
//! Ids are derived from the host's boot id and the call's identity, so they are stable across
//! agent restarts and unique per call (a thread cannot start two calls in the same nanosecond).

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    time::{Duration, SystemTime},
};

use opentelemetry::trace::{SpanId, TraceId};

use crate::call::Call;

/// Derives trace and span ids for calls on one host.
#[derive(Clone, Debug)]
pub struct TraceGrouping {
    /// A hasher that has already taken in the host: cloning it saves hashing the boot id for
    /// every id (three per call).
    seeded: DefaultHasher,
    window: Duration,
}

impl TraceGrouping {
    /// `host` identifies this boot of this host (the kernel's boot id); `window` is how much time
    /// one process trace covers.
    pub fn new(host: impl Into<String>, window: Duration) -> Self {
        // DefaultHasher::new() uses fixed keys: the same inputs give the same id on every run.
        let mut seeded = DefaultHasher::new();
        host.into().hash(&mut seeded);
        Self {
            seeded,
            window: window.max(Duration::from_secs(1)),
        }
    }

    /// The trace of the call's process in the window holding the call's start.
    pub fn trace_id(&self, call: &Call) -> TraceId {
        let since_epoch = call
            .start
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let window = since_epoch.as_nanos() / self.window.as_nanos();
        let high = self.digest(("trace-high", call.pid, window));
        let low = self.digest(("trace-low", call.pid, window));
        TraceId::from(non_zero((u128::from(high) << 64) | u128::from(low)))
    }

    /// The call's own span id.
    pub fn span_id(&self, call: &Call) -> SpanId {
        let start = call
            .start
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        SpanId::from(non_zero(self.digest(("span", call.tid, start.as_nanos()))))
    }

    fn digest(&self, parts: impl Hash) -> u64 {
        let mut hasher = self.seeded.clone();
        parts.hash(&mut hasher);
        hasher.finish()
    }
}

/// All-zero ids are invalid in OTLP.
fn non_zero<T: PartialEq + From<u8>>(id: T) -> T {
    if id == T::from(0) {
        T::from(1)
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::tests::sample_call;

    fn grouping() -> TraceGrouping {
        TraceGrouping::new("boot-1", Duration::from_secs(60))
    }

    #[test]
    fn calls_of_one_process_in_one_window_share_a_trace() {
        let first = sample_call();
        let second = Call {
            tid: 999,
            start: first.start + Duration::from_secs(1),
            ..first.clone()
        };
        assert_eq!(grouping().trace_id(&first), grouping().trace_id(&second));
        assert_ne!(grouping().span_id(&first), grouping().span_id(&second));
    }

    #[test]
    fn other_process_window_or_host_gets_another_trace() {
        let call = sample_call();
        let other_pid = Call {
            pid: call.pid + 1,
            ..call.clone()
        };
        let later = Call {
            start: call.start + Duration::from_secs(60),
            ..call.clone()
        };
        let trace = grouping().trace_id(&call);
        assert_ne!(trace, grouping().trace_id(&other_pid));
        assert_ne!(trace, grouping().trace_id(&later));
        assert_ne!(
            trace,
            TraceGrouping::new("boot-2", Duration::from_secs(60)).trace_id(&call)
        );
    }

    #[test]
    fn ids_are_stable() {
        let call = sample_call();
        assert_eq!(grouping().span_id(&call), grouping().span_id(&call));
        assert_ne!(grouping().trace_id(&call), TraceId::INVALID);
    }
}
