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

use kspan_decode::Call;

/// Derives trace and span ids for calls on one host.
#[derive(Clone, Debug)]
pub struct TraceGrouping {
    /// The host, hashed once: every id starts from it.
    seed: u64,
    window: Duration,
}

impl TraceGrouping {
    /// `host` identifies this boot of this host (the kernel's boot id); `window` is how much time
    /// one process trace covers.
    pub fn new(host: impl Into<String>, window: Duration) -> Self {
        // DefaultHasher::new() uses fixed keys: the same inputs give the same id on every run.
        let mut hasher = DefaultHasher::new();
        host.into().hash(&mut hasher);
        Self {
            seed: hasher.finish(),
            window: window.max(Duration::from_secs(1)),
        }
    }

    /// The call's span id, the trace of its process in the window holding its start (a call
    /// made inside another on its thread: the outermost one's start), and its parent's span id.
    pub fn ids(&self, call: &Call) -> CallIds {
        CallIds {
            trace: self.trace(call.pid, self.window_of(call.trace_start())),
            span: self.span(call.tid, call.start),
            parent: call.parent_start().map(|start| self.span(call.tid, start)),
        }
    }

    /// The window holding `time`.
    fn window_of(&self, time: SystemTime) -> u64 {
        (unix_nanos(time) / self.window.as_nanos()) as u64
    }

    fn trace(&self, pid: u32, window: u64) -> TraceId {
        let pid = u64::from(pid);
        let high = self.digest([Domain::TraceHigh as u64, pid, window]);
        let low = self.digest([Domain::TraceLow as u64, pid, window]);
        TraceId::from(non_zero((u128::from(high) << 64) | u128::from(low)))
    }

    fn span(&self, tid: u32, start: SystemTime) -> SpanId {
        let start = unix_nanos(start);
        SpanId::from(non_zero(self.digest([
            Domain::Span as u64 | u64::from(tid) << 8,
            start as u64,
            (start >> 64) as u64,
        ])))
    }

    /// Three words mixed into the host's seed one after the other. Ids need to be spread and
    /// unique, not secret: a multiply-xorshift mix per word costs a fraction of a SipHash,
    /// which was a few percent of the agent's CPU at two or three ids per call.
    fn digest(&self, words: [u64; 3]) -> u64 {
        words
            .into_iter()
            .fold(self.seed, |state, word| mix(state ^ word))
    }
}

/// splitmix64's finalizer: a bijection of 64-bit words in which every input bit moves about
/// half the output bits.
fn mix(mut word: u64) -> u64 {
    word = (word ^ (word >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    word = (word ^ (word >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    word ^ (word >> 31)
}

/// Ids for a run of calls, as an encoder meets them: consecutive calls of one process in one
/// window share their trace id, which is derived once for the run rather than per call.
pub(crate) struct RunIds<'a> {
    grouping: &'a TraceGrouping,
    /// The last trace derived, by (pid, window).
    last: Option<((u32, u64), TraceId)>,
}

impl<'a> RunIds<'a> {
    pub(crate) fn new(grouping: &'a TraceGrouping) -> Self {
        Self {
            grouping,
            last: None,
        }
    }

    /// The same ids as [`TraceGrouping::ids`].
    pub(crate) fn ids(&mut self, call: &Call) -> CallIds {
        let window = self.grouping.window_of(call.trace_start());
        let key = (call.pid, window);
        let trace = match self.last {
            Some((last, trace)) if last == key => trace,
            _ => {
                let trace = self.grouping.trace(call.pid, window);
                self.last = Some((key, trace));
                trace
            }
        };
        CallIds {
            trace,
            span: self.grouping.span(call.tid, call.start),
            parent: call
                .parent_start()
                .map(|start| self.grouping.span(call.tid, start)),
        }
    }
}

/// Nanoseconds since the UNIX epoch (0 before it).
fn unix_nanos(time: SystemTime) -> u128 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// Keeps the three ids' inputs apart.
#[repr(u64)]
enum Domain {
    TraceHigh = 1,
    TraceLow = 2,
    Span = 3,
}

/// A call's place in the trace data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallIds {
    /// The trace of the call's process in the call's window.
    pub trace: TraceId,
    /// The call's own span.
    pub span: SpanId,
    /// The span of the call it was made in on the same thread, if any.
    pub parent: Option<SpanId>,
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
    use kspan_decode::test_support::sample_call;

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
        let (first, second) = (grouping().ids(&first), grouping().ids(&second));
        assert_eq!(first.trace, second.trace);
        assert_ne!(first.span, second.span);
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
        let trace = grouping().ids(&call).trace;
        assert_ne!(trace, grouping().ids(&other_pid).trace);
        assert_ne!(trace, grouping().ids(&later).trace);
        assert_ne!(
            trace,
            TraceGrouping::new("boot-2", Duration::from_secs(60))
                .ids(&call)
                .trace
        );
    }

    #[test]
    fn ids_of_a_run_are_the_ids_of_each_call() {
        let grouping = grouping();
        let first = sample_call();
        let calls = [
            first.clone(),
            Call {
                tid: 7,
                start: first.start + Duration::from_secs(1),
                ..first.clone()
            },
            Call {
                pid: 9,
                ..first.clone()
            },
            Call {
                start: first.start + Duration::from_secs(61),
                ..first.clone()
            },
            first.clone(),
        ];
        let mut run = RunIds::new(&grouping);
        for call in &calls {
            assert_eq!(run.ids(call), grouping.ids(call), "{call:?}");
        }
    }

    #[test]
    fn a_call_made_inside_another_is_its_child_in_the_outermost_call_s_trace() {
        use kspan_decode::{test_support::sample_declared_call, CallDetail};
        let grouping = grouping();
        let outer = sample_declared_call();
        let mut inner = Call {
            start: outer.start + Duration::from_secs(59),
            ..outer.clone()
        };
        if let CallDetail::Declared(call) = &mut inner.detail {
            call.parent_start = Some(outer.start);
        }
        let (outer_ids, inner_ids) = (grouping.ids(&outer), grouping.ids(&inner));
        assert_eq!(outer_ids.parent, None);
        assert_eq!(inner_ids.parent, Some(outer_ids.span));
        assert_ne!(inner_ids.span, outer_ids.span);
        // In the outer call's window even where its own start is in the next.
        let later = Call {
            start: outer.start + Duration::from_secs(61),
            ..inner.clone()
        };
        assert_eq!(grouping.ids(&later).trace, outer_ids.trace);
        assert_eq!(RunIds::new(&grouping).ids(&later), grouping.ids(&later));
    }

    #[test]
    fn span_ids_of_close_calls_are_distinct_and_spread() {
        let grouping = grouping();
        let first = sample_call();
        let mut spans = std::collections::HashSet::new();
        let mut ones = 0;
        for tid in 0..4 {
            for ns in 0..50_000 {
                let call = Call {
                    tid,
                    start: first.start + Duration::from_nanos(ns),
                    ..first.clone()
                };
                let span = u64::from_be_bytes(grouping.ids(&call).span.to_bytes());
                ones += span.count_ones();
                assert!(
                    spans.insert(span),
                    "tid {tid}, +{ns} ns: a span id seen before"
                );
            }
        }
        // Half the bits set, as random ids have: 32 per id, within a tenth of a bit.
        let per_id = f64::from(ones) / spans.len() as f64;
        assert!((per_id - 32.0).abs() < 0.1, "{per_id} bits set per id");
    }

    #[test]
    fn ids_are_stable() {
        let call = sample_call();
        assert_eq!(grouping().ids(&call), grouping().ids(&call));
        assert_ne!(grouping().ids(&call).trace, TraceId::INVALID);
        assert_ne!(grouping().ids(&call).span, SpanId::INVALID);
    }
}
