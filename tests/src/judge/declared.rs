//! The verdict on declared probes (`kspan --probe syscall:NAME`): the spans and logs of a run
//! against the workload's declared manifest, call for call, on the threads that made the calls.
//!
//! The workload's other threads open files of their own (the loader, the manifests, /proc):
//! their spans are counted as ignored, with the reason, not judged. On a thread that made
//! recorded calls, every span must be one of them.

mod expected;

use std::collections::{BTreeMap, BTreeSet};

use kspan_common::ProbeKind;
use kspan_receiver::inspect::display_value;
use opentelemetry_proto::tonic::{
    common::v1::{any_value::Value, AnyValue, KeyValue},
    logs::v1::LogRecord,
    trace::v1::{span::SpanKind, status::StatusCode, Span},
};
use signalfd_workload::manifest::declared::DeclaredCall;

use super::{caller_mismatches, int, match_by_time, show, status_name, string, timing_mismatch};
pub use expected::{call_summary, STRING_BOUND};

/// The outcome of judging a run's declared calls.
#[derive(Debug, Default)]
pub struct DeclaredVerdict {
    /// Calls in the declared manifest.
    pub expected: usize,
    /// Spans judged (or ignored) here.
    pub spans: usize,
    /// Log records judged here.
    pub logs: usize,
    /// Calls no span matched.
    pub missing: usize,
    /// Spans not judged, counted by why.
    pub ignored: BTreeMap<String, usize>,
    /// Every difference found, readable.
    pub mismatches: Vec<String>,
}

impl DeclaredVerdict {
    /// No difference at all.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }

    /// Spans ignored, for every reason.
    pub fn ignored_spans(&self) -> usize {
        self.ignored.values().sum()
    }
}

impl std::fmt::Display for DeclaredVerdict {
    /// The counts and verdict on one line, then why spans were ignored and the mismatches.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "declared probes: expected {} calls, received {} spans and {} logs, {} missing, {} spans ignored: {}",
            self.expected,
            self.spans,
            self.logs,
            self.missing,
            self.ignored_spans(),
            if self.passed() { "PASS" } else { "FAIL" }
        )?;
        for (why, spans) in &self.ignored {
            write!(f, "\n  ignored {spans}: {why}")?;
        }
        super::write_mismatches(f, &self.mismatches)
    }
}

/// Judges `spans` and `logs` (those of the declared probes) against `calls`: on each thread
/// that made calls, each call must show as exactly one span (matched by name and time) with its
/// arguments, strings, result, status, duration inside the caller's clock readings and parent,
/// and one log record saying the same; nothing else may show on those threads. Spans of the
/// workload's other threads are ignored (and counted); spans of any other process are
/// mismatches.
pub fn judge_declared(
    calls: &[DeclaredCall],
    spans: &[Span],
    logs: &[LogRecord],
    function_kinds: &BTreeMap<String, ProbeKind>,
) -> DeclaredVerdict {
    let mut verdict = DeclaredVerdict {
        expected: calls.len(),
        spans: spans.len(),
        logs: logs.len(),
        ..DeclaredVerdict::default()
    };
    let scenario_threads: BTreeSet<i64> = calls.iter().map(|c| i64::from(c.caller.tid)).collect();
    let workload_pids: BTreeSet<i64> = calls.iter().map(|c| i64::from(c.caller.pid)).collect();

    let mut calls_by_thread: BTreeMap<(i64, &str), Vec<&DeclaredCall>> = BTreeMap::new();
    for call in calls {
        calls_by_thread
            .entry((call.caller.tid.into(), call.syscall.as_str()))
            .or_default()
            .push(call);
    }
    let mut spans_by_thread: BTreeMap<(i64, &str), Vec<&Span>> = BTreeMap::new();
    for span in spans {
        let tid = int(&span.attributes, "thread.id").unwrap_or(-1);
        let pid = int(&span.attributes, "process.pid").unwrap_or(-1);
        if scenario_threads.contains(&tid) {
            spans_by_thread
                .entry((tid, span.name.as_str()))
                .or_default()
                .push(span);
        } else if workload_pids.contains(&pid) {
            let why = format!(
                "{} spans of thread {}, which made no recorded call (the workload's own opens)",
                span.name,
                show(string(&span.attributes, "thread.name"))
            );
            *verdict.ignored.entry(why).or_default() += 1;
        } else {
            verdict.mismatches.push(format!(
                "{} is from process {pid}, which made no recorded call",
                describe(span)
            ));
        }
    }
    for calls in calls_by_thread.values_mut() {
        calls.sort_by_key(|call| call.wall_before_ns);
    }
    for spans in spans_by_thread.values_mut() {
        spans.sort_by_key(|span| span.start_time_unix_nano);
    }

    let mut matched: BTreeMap<u64, (&DeclaredCall, &Span)> = BTreeMap::new();
    for ((tid, name), spans) in &spans_by_thread {
        if !calls_by_thread.contains_key(&(*tid, *name)) {
            verdict.mismatches.push(format!(
                "thread {tid}: {} span(s) named {name}, a call it never made: first is {}",
                spans.len(),
                describe(spans[0])
            ));
        }
    }
    for ((tid, name), calls) in &calls_by_thread {
        let spans = spans_by_thread
            .get(&(*tid, *name))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let windows: Vec<_> = calls
            .iter()
            .map(|call| call.wall_before_ns..=call.wall_after_ns)
            .collect();
        let matching = match_by_time(&windows, spans);
        for span in &matching.unmatched_spans {
            verdict.mismatches.push(format!(
                "thread {tid}: {} matches no {name} call's time window (an extra span)",
                describe(span)
            ));
        }
        verdict.missing += matching.missed_calls.len();
        for &index in &matching.missed_calls {
            verdict
                .mismatches
                .push(format!("{}: no span", about(calls[index])));
        }
        for (index, span) in matching.pairs {
            matched.insert(calls[index].seq, (calls[index], span));
        }
    }

    let mut logs_by_ids = logs_by_ids(logs);
    for (call, span) in matched.values() {
        let mut problems = span_mismatches(call, span, function_kinds);
        problems.extend(parent_mismatch(call, span, &matched));
        match logs_by_ids.remove(&ids(span)).as_deref() {
            Some([log]) => problems.extend(log_mismatches(call, span, log)),
            Some(many) => problems.push(format!("{} log records for its span", many.len())),
            None => problems.push("no log record for its span".to_string()),
        }
        for problem in problems {
            verdict
                .mismatches
                .push(format!("{}: {problem}", about(call)));
        }
    }
    // The logs of spans judged as extra or ignored are theirs, not orphans.
    let judged: BTreeSet<(&[u8], &[u8])> = matched.values().map(|(_, span)| ids(span)).collect();
    for span in spans.iter().filter(|span| !judged.contains(&ids(span))) {
        logs_by_ids.remove(&ids(span));
    }
    let orphans: usize = logs_by_ids.values().map(Vec::len).sum();
    if orphans > 0 {
        verdict.mismatches.push(format!(
            "{orphans} log record(s) of declared probes match no span"
        ));
    }
    verdict
}

/// The call, for a mismatch: thread, seq and the call with its arguments.
fn about(call: &DeclaredCall) -> String {
    format!("thread {} seq {} {call}", call.caller.tid, call.seq)
}

/// The span's name and attributes, its kind, status and timing, against the call.
fn span_mismatches(
    call: &DeclaredCall,
    span: &Span,
    function_kinds: &BTreeMap<String, ProbeKind>,
) -> Vec<String> {
    let attrs = &span.attributes;
    let mut problems =
        caller_mismatches(&call.caller, attrs, expected::probe(call, function_kinds));
    if span.name != call.syscall {
        problems.push(format!(
            "name: expected {}, got {}",
            call.syscall, span.name
        ));
    }
    if span.kind != SpanKind::Internal as i32 {
        problems.push(format!(
            "kind: expected Internal, got {}",
            SpanKind::try_from(span.kind)
                .map_or_else(|_| span.kind.to_string(), |k| format!("{k:?}"))
        ));
    }
    let wanted = expected::attributes(call);
    for (key, value) in &wanted {
        let got = super::attribute_value(attrs, key);
        if got != Some(value) {
            problems.push(format!(
                "{key}: expected {}, got {}",
                display(value),
                got.map_or_else(|| "none".to_string(), display)
            ));
        }
    }
    // Nothing in the call's own namespace, nor an error type, beyond what the contract names.
    let prefix = format!("{}.", call.syscall);
    let policed = |key: &str| key.starts_with(&prefix) || key == "error.type";
    for kv in attrs.iter().filter(|kv| policed(&kv.key)) {
        if !wanted.iter().any(|(key, _)| *key == kv.key) {
            problems.push(format!(
                "{}: expected none, got {}",
                kv.key,
                kv.value.as_ref().map_or_else(String::new, display_value)
            ));
        }
    }
    let (code, message) = span
        .status
        .as_ref()
        .map_or((StatusCode::Unset as i32, ""), |s| {
            (s.code, s.message.as_str())
        });
    let (want_code, want_message) = match &call.errno_name {
        Some(errno) if call.failed() => (StatusCode::Error, errno.as_str()),
        _ => (StatusCode::Unset, ""),
    };
    if (code, message) != (want_code as i32, want_message) {
        problems.push(format!(
            "status: expected {:?} {want_message:?}, got {} {message:?}",
            want_code,
            status_name(code)
        ));
    }
    problems.extend(timing_mismatch(
        &(call.wall_before_ns..=call.wall_after_ns),
        span,
    ));
    problems
}

/// A span whose call names a parent must be that call's span's child, in its trace; a span
/// whose call names none must have no parent.
fn parent_mismatch(
    call: &DeclaredCall,
    span: &Span,
    matched: &BTreeMap<u64, (&DeclaredCall, &Span)>,
) -> Option<String> {
    let Some(parent_seq) = call.parent_seq else {
        return (!span.parent_span_id.is_empty()).then(|| {
            format!(
                "parent: expected none, got span {}",
                hex(&span.parent_span_id)
            )
        });
    };
    let Some((_, parent)) = matched.get(&parent_seq) else {
        return Some(format!(
            "parent: expected the span of seq {parent_seq}, which did not arrive"
        ));
    };
    let expected = (parent.trace_id.as_slice(), parent.span_id.as_slice());
    let got = (span.trace_id.as_slice(), span.parent_span_id.as_slice());
    (expected != got).then(|| {
        format!(
            "parent: expected trace {} span {} (seq {parent_seq}), got trace {} parent {}",
            hex(expected.0),
            hex(expected.1),
            hex(got.0),
            hex(got.1)
        )
    })
}

/// The span's log record: the same attributes, event name `<syscall>.call`, severity INFO for
/// a result and WARN for an error, and the one-line summary as its body.
fn log_mismatches(call: &DeclaredCall, span: &Span, log: &LogRecord) -> Vec<String> {
    let mut problems = Vec::new();
    let event_name = format!("{}.call", call.syscall);
    if log.event_name != event_name {
        problems.push(format!(
            "log event name: expected {event_name}, got {}",
            log.event_name
        ));
    }
    let severity = if call.failed() { 13 } else { 9 }; // WARN, INFO
    if log.severity_number != severity {
        problems.push(format!(
            "log severity: expected {severity}, got {}",
            log.severity_number
        ));
    }
    let body = call_summary(call);
    match &log.body {
        Some(AnyValue {
            value: Some(Value::StringValue(got)),
        }) if *got == body => {}
        got => problems.push(format!(
            "log body: expected {body:?}, got {}",
            got.as_ref()
                .map_or_else(|| "none".to_string(), display_value)
        )),
    }
    if sorted(&log.attributes) != sorted(&span.attributes) {
        problems.push(format!(
            "log attributes differ from its span's: {}",
            attribute_difference(&span.attributes, &log.attributes)
        ));
    }
    problems
}

fn sorted(attributes: &[KeyValue]) -> Vec<&KeyValue> {
    let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    sorted
}

/// The keys whose values differ between the span's and the log's attributes.
fn attribute_difference(span: &[KeyValue], log: &[KeyValue]) -> String {
    let keys: BTreeSet<&str> = span.iter().chain(log).map(|kv| kv.key.as_str()).collect();
    keys.into_iter()
        .filter(|key| super::attribute_value(span, key) != super::attribute_value(log, key))
        .map(|key| {
            let shown =
                |attrs| super::attribute_value(attrs, key).map_or_else(|| "none".into(), display);
            format!("{key} span {} log {}", shown(span), shown(log))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn logs_by_ids(logs: &[LogRecord]) -> BTreeMap<(&[u8], &[u8]), Vec<&LogRecord>> {
    let mut by_ids: BTreeMap<(&[u8], &[u8]), Vec<&LogRecord>> = BTreeMap::new();
    for log in logs {
        by_ids
            .entry((&log.trace_id, &log.span_id))
            .or_default()
            .push(log);
    }
    by_ids
}

fn ids(span: &Span) -> (&[u8], &[u8]) {
    (&span.trace_id, &span.span_id)
}

fn describe(span: &Span) -> String {
    format!(
        "span {} (thread {}, start {})",
        span.name,
        show(int(&span.attributes, "thread.id")),
        span.start_time_unix_nano
    )
}

fn display(value: &Value) -> String {
    display_value(&AnyValue {
        value: Some(value.clone()),
    })
}

fn hex(bytes: &[u8]) -> String {
    kspan_receiver::inspect::hex_id(bytes)
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::Status;
    use signalfd_workload::manifest::{declared::DeclaredArg, CallerIdentity};

    use super::*;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    fn call(
        seq: u64,
        tid: u32,
        filename: DeclaredArg,
        ret: i64,
        errno: Option<&str>,
    ) -> DeclaredCall {
        DeclaredCall {
            seq,
            scenario: "open".into(),
            caller: CallerIdentity {
                pid: 10,
                tid,
                uid: 0,
                euid: 0,
                thread_name: format!("open-{tid}"),
                executable: "app".into(),
                cgroup_id: Some(1),
                cgroup_path: Some("/test.scope".into()),
            },
            syscall: "openat".into(),
            args: vec![
                DeclaredArg::int("dfd", -100),
                filename,
                DeclaredArg::int("flags", 524288),
                DeclaredArg::int("mode", 0),
            ],
            ret,
            errno_name: errno.map(str::to_string),
            wall_before_ns: 1_000 + seq * 1_000,
            wall_after_ns: 1_900 + seq * 1_000,
            parent_seq: None,
            kernel_function: false,
        }
    }

    /// The common attributes kspan gives every span of `call`'s thread.
    fn caller_attributes(call: &DeclaredCall, tid: u32) -> Vec<KeyValue> {
        let caller = &call.caller;
        vec![
            kv("process.pid", Value::IntValue(caller.pid.into())),
            kv("thread.id", Value::IntValue(tid.into())),
            kv(
                "thread.name",
                Value::StringValue(caller.thread_name.clone()),
            ),
            kv(
                "process.executable.name",
                Value::StringValue(caller.executable.clone()),
            ),
            kv("process.user.id", Value::IntValue(caller.euid.into())),
            kv("process.real_user.id", Value::IntValue(caller.uid.into())),
            kv("kspan.probe", Value::StringValue("tracepoint".into())),
            kv("kspan.cgroup.id", Value::IntValue(1)),
            kv(
                "kspan.cgroup.path",
                Value::StringValue("/test.scope".into()),
            ),
        ]
    }

    /// The span kspan should produce for `call`.
    fn span_for(call: &DeclaredCall) -> Span {
        let mut attributes = caller_attributes(call, call.caller.tid);
        attributes.extend(
            expected::attributes(call)
                .into_iter()
                .map(|(key, value)| kv(&key, value)),
        );
        Span {
            trace_id: vec![1; 16],
            span_id: call.seq.to_be_bytes().to_vec(),
            name: call.syscall.clone(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: call.wall_before_ns + 100,
            end_time_unix_nano: call.wall_after_ns - 100,
            attributes,
            status: call.errno_name.as_ref().map(|errno| Status {
                code: StatusCode::Error as i32,
                message: errno.clone(),
            }),
            ..Span::default()
        }
    }

    fn log_for(call: &DeclaredCall, span: &Span) -> LogRecord {
        LogRecord {
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
            severity_number: if call.failed() { 13 } else { 9 },
            event_name: "openat.call".into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue(call_summary(call))),
            }),
            attributes: span.attributes.clone(),
            ..LogRecord::default()
        }
    }

    fn fixture() -> (Vec<DeclaredCall>, Vec<Span>, Vec<LogRecord>) {
        let calls = vec![
            call(
                1,
                100,
                DeclaredArg::user_string("filename", "/tmp/x"),
                3,
                None,
            ),
            call(
                2,
                100,
                DeclaredArg::user_string("filename", "/nope"),
                -2,
                Some("ENOENT"),
            ),
            call(
                3,
                200,
                DeclaredArg::user_string("filename", &"l".repeat(300)),
                -36,
                Some("ENAMETOOLONG"),
            ),
            call(
                4,
                200,
                DeclaredArg::unreadable("filename", 1),
                -14,
                Some("EFAULT"),
            ),
        ];
        let spans: Vec<Span> = calls.iter().map(span_for).collect();
        let logs = calls
            .iter()
            .zip(&spans)
            .map(|(c, s)| log_for(c, s))
            .collect();
        (calls, spans, logs)
    }

    fn assert_mismatch(verdict: &DeclaredVerdict, text: &str) {
        assert!(
            verdict.mismatches.iter().any(|m| m.contains(text)),
            "no mismatch containing {text:?}: {:#?}",
            verdict.mismatches
        );
    }

    #[test]
    fn an_exact_capture_passes() {
        let (calls, spans, logs) = fixture();
        let verdict = judge_declared(&calls, &spans, &logs, &BTreeMap::new());
        assert!(verdict.passed(), "{verdict}");
        assert_eq!(
            (
                verdict.expected,
                verdict.spans,
                verdict.logs,
                verdict.missing
            ),
            (4, 4, 4, 0)
        );
    }

    /// The contract's own example, spelled out rather than derived from the expectation code.
    #[test]
    fn the_contract_example_passes_as_written() {
        let (calls, _, _) = fixture();
        let open = &calls[0];
        let mut attributes = caller_attributes(open, 100);
        attributes.extend([
            kv("openat.dfd", Value::IntValue(-100)),
            kv("openat.filename", Value::StringValue("/tmp/x".into())),
            kv("openat.flags", Value::IntValue(524288)),
            kv("openat.mode", Value::IntValue(0)),
            kv("openat.result", Value::IntValue(3)),
        ]);
        let span = Span {
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            name: "openat".into(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: 2_100,
            end_time_unix_nano: 2_800,
            attributes: attributes.clone(),
            ..Span::default()
        };
        let log = LogRecord {
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            severity_number: 9,
            event_name: "openat.call".into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue(
                    r#"openat(dfd=-100, filename="/tmp/x", flags=524288, mode=0) = 3"#.into(),
                )),
            }),
            attributes: attributes.into_iter().rev().collect(),
            ..LogRecord::default()
        };
        let verdict = judge_declared(&calls[..1], &[span], &[log], &BTreeMap::new());
        assert!(verdict.passed(), "{verdict}");
    }

    #[test]
    fn a_missing_span_fails() {
        let (calls, mut spans, mut logs) = fixture();
        spans.remove(1);
        logs.remove(1);
        let verdict = judge_declared(&calls, &spans, &logs, &BTreeMap::new());
        assert_eq!(verdict.missing, 1);
        assert_mismatch(
            &verdict,
            r#"thread 100 seq 2 openat(dfd=-100, filename="/nope", flags=524288, mode=0): no span"#,
        );
    }

    #[test]
    fn an_extra_span_on_a_scenario_thread_fails() {
        let (calls, mut spans, mut logs) = fixture();
        let mut extra = call(
            9,
            100,
            DeclaredArg::user_string("filename", "/etc/x"),
            5,
            None,
        );
        extra.wall_before_ns = 50_000;
        extra.wall_after_ns = 51_000;
        spans.push(span_for(&extra));
        logs.push(log_for(&extra, spans.last().unwrap()));
        let mut close = span_for(&calls[0]);
        close.name = "close".into();
        close.span_id = vec![5; 8];
        spans.push(close);
        let verdict = judge_declared(&calls, &spans, &logs, &BTreeMap::new());
        assert_mismatch(
            &verdict,
            "matches no openat call's time window (an extra span)",
        );
        assert_mismatch(
            &verdict,
            "thread 100: 1 span(s) named close, a call it never made",
        );
        assert!(
            !verdict
                .mismatches
                .iter()
                .any(|m| m.contains("match no span")),
            "{verdict}"
        );
    }

    #[test]
    fn spans_of_other_workload_threads_are_ignored_and_counted_but_other_processes_fail() {
        let (calls, mut spans, mut logs) = fixture();
        for (seq, tid) in [(20, 1), (21, 1), (22, 2)] {
            let mut own = call(
                seq,
                tid,
                DeclaredArg::user_string("filename", "/proc/self/cgroup"),
                3,
                None,
            );
            own.caller.thread_name = "signalfd-worklo".into();
            spans.push(span_for(&own));
            logs.push(log_for(&own, spans.last().unwrap()));
        }
        let verdict = judge_declared(&calls, &spans, &logs, &BTreeMap::new());
        assert!(verdict.passed(), "{verdict}");
        assert_eq!(verdict.ignored_spans(), 3);
        assert!(verdict.to_string().contains(
            "ignored 3: openat spans of thread signalfd-worklo, which made no recorded call"
        ));

        let mut stranger = call(30, 3, DeclaredArg::user_string("filename", "/x"), 3, None);
        stranger.caller.pid = 11;
        spans.push(span_for(&stranger));
        let verdict = judge_declared(&calls, &spans, &logs, &BTreeMap::new());
        assert_mismatch(&verdict, "is from process 11, which made no recorded call");
    }

    #[test]
    fn a_wrong_or_uncut_string_fails_with_both_values() {
        let (calls, mut spans, logs) = fixture();
        for kv in &mut spans[0].attributes {
            if kv.key == "openat.filename" {
                kv.value = Some(AnyValue {
                    value: Some(Value::StringValue("/tmp/y".into())),
                });
            }
        }
        // The long name in full and without its mark, as a probe without a bound would send it.
        spans[2]
            .attributes
            .retain(|kv| kv.key != "openat.filename.truncated");
        for kv in &mut spans[2].attributes {
            if kv.key == "openat.filename" {
                kv.value = Some(AnyValue {
                    value: Some(Value::StringValue("l".repeat(300))),
                });
            }
        }
        spans[3]
            .attributes
            .retain(|kv| kv.key != "openat.filename.unreadable");
        spans[3]
            .attributes
            .push(kv("openat.filename", Value::StringValue(String::new())));
        let verdict = judge_declared(&calls, &spans, &logs, &BTreeMap::new());
        assert_mismatch(
            &verdict,
            r#"openat.filename: expected "/tmp/x", got "/tmp/y""#,
        );
        assert_mismatch(
            &verdict,
            "openat.filename.truncated: expected true, got none",
        );
        assert_mismatch(
            &verdict,
            "openat.filename.unreadable: expected true, got none",
        );
        assert_mismatch(&verdict, r#"openat.filename: expected none, got """#);
    }

    #[test]
    fn a_wrong_result_fails() {
        let (calls, mut spans, logs) = fixture();
        // A success shown as a failure, and a failure shown as a success.
        spans[0].attributes.retain(|kv| kv.key != "openat.result");
        spans[0]
            .attributes
            .push(kv("error.type", Value::StringValue("EBADF".into())));
        spans[1].attributes.retain(|kv| kv.key != "error.type");
        spans[1]
            .attributes
            .push(kv("openat.result", Value::IntValue(-2)));
        spans[1].status = None;
        spans[2].status.as_mut().unwrap().message = "ENOENT".into();
        let verdict = judge_declared(&calls, &spans, &logs, &BTreeMap::new());
        assert_mismatch(&verdict, "seq 1 openat(");
        assert_mismatch(&verdict, "openat.result: expected 3, got none");
        assert_mismatch(&verdict, "error.type: expected none, got \"EBADF\"");
        assert_mismatch(&verdict, "openat.result: expected none, got -2");
        assert_mismatch(&verdict, "error.type: expected \"ENOENT\", got none");
        assert_mismatch(&verdict, r#"status: expected Error "ENOENT", got Unset """#);
        assert_mismatch(
            &verdict,
            r#"status: expected Error "ENAMETOOLONG", got Error "ENOENT""#,
        );
    }

    #[test]
    fn the_span_must_lie_inside_the_callers_clock_readings() {
        let (calls, mut spans, logs) = fixture();
        spans[0].end_time_unix_nano = calls[0].wall_after_ns + 1;
        let verdict = judge_declared(&calls, &spans, &logs, &BTreeMap::new());
        assert_mismatch(&verdict, "timing: expected 2000 <= start <= end <= 2900");
    }

    #[test]
    fn each_span_needs_its_one_log_saying_the_same() {
        let (calls, spans, mut logs) = fixture();
        logs[0].body = Some(AnyValue {
            value: Some(Value::StringValue("openat(...) = 3".into())),
        });
        logs[1].event_name = "signalfd.call".into();
        logs[1].severity_number = 9;
        logs[2].attributes.retain(|kv| kv.key != "openat.flags");
        logs.remove(3);
        logs.push(LogRecord {
            trace_id: vec![9; 16],
            span_id: vec![9; 8],
            ..LogRecord::default()
        });
        let verdict = judge_declared(&calls, &spans, &logs, &BTreeMap::new());
        assert_mismatch(
            &verdict,
            r#"log body: expected "openat(dfd=-100, filename=\"/tmp/x\", flags=524288, mode=0) = 3", got "openat(...) = 3""#,
        );
        assert_mismatch(
            &verdict,
            "log event name: expected openat.call, got signalfd.call",
        );
        assert_mismatch(&verdict, "log severity: expected 13, got 9");
        assert_mismatch(
            &verdict,
            "log attributes differ from its span's: openat.flags span 524288 log none",
        );
        assert_mismatch(&verdict, "seq 4 openat(dfd=-100, filename=0x1, flags=524288, mode=0): no log record for its span");
        assert_mismatch(&verdict, "1 log record(s) of declared probes match no span");
    }

    #[test]
    fn a_child_must_name_its_parents_span_and_trace() {
        let (mut calls, mut spans, mut logs) = fixture();
        // seq 5 is made inside seq 1 on the same thread, under another name.
        let mut child = calls[0].clone();
        child.seq = 5;
        child.syscall = "do_sys_openat2".into();
        child.parent_seq = Some(1);
        let mut span = span_for(&child);
        span.parent_span_id = spans[0].span_id.clone();
        let mut log = log_for(&child, &span);
        log.event_name = "do_sys_openat2.call".into();
        calls.push(child.clone());
        spans.push(span);
        logs.push(log);
        let verdict = judge_declared(&calls, &spans, &logs, &BTreeMap::new());
        assert!(verdict.passed(), "{verdict}");

        spans[4].parent_span_id = vec![3; 8];
        spans[1].parent_span_id = spans[0].span_id.clone();
        let verdict = judge_declared(&calls, &spans, &logs, &BTreeMap::new());
        assert_mismatch(
            &verdict,
            "parent: expected trace 01010101010101010101010101010101 span 0000000000000001 (seq 1), got trace 01010101010101010101010101010101 parent 0303030303030303",
        );
        assert_mismatch(&verdict, "seq 2 openat(");
        assert_mismatch(&verdict, "parent: expected none, got span 0000000000000001");
    }
}
