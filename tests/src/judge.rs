//! The verdict: what the receiver got must equal what the workload did, call for call.

mod declared;

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::RangeInclusive,
    path::Path,
};

use anyhow::Context as _;
use kspan_common::ProbeKind;
use kspan_receiver::{
    inspect::{int_attribute, string_attribute},
    ReceivedSpan,
};
use opentelemetry_proto::tonic::{
    common::v1::{any_value::Value, AnyValue, KeyValue},
    logs::v1::LogRecord,
    trace::v1::{status::StatusCode, Span},
};
use signalfd_workload::manifest::{
    declared::DeclaredCall, read_manifest, read_records, CallRecord, CallerIdentity, Syscall,
};

use crate::{
    containers::FakeContainer,
    run::{artifacts, RunRecord},
};
pub use declared::{call_summary, judge_declared, DeclaredVerdict, STRING_BOUND};

/// The outcome of judging one run.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Calls the manifest says the probe must see.
    pub expected: usize,
    /// Spans received.
    pub spans: usize,
    /// Log records received.
    pub logs: usize,
    /// Calls kspan counted as lost.
    pub lost: u64,
    /// Expected calls that no span matched.
    pub missing: usize,
    /// Calls already inside the kernel when the probe attached: no span may show them, and
    /// each return must be counted as a return without entry.
    pub midflight: usize,
    /// kspan's count of returns without an entry.
    pub returns_without_entry: u64,
    /// Every difference found, readable.
    pub mismatches: Vec<String>,
    /// The verdict on the calls of declared syscalls (the declared manifest) and their spans.
    pub declared: DeclaredVerdict,
}

impl Verdict {
    /// No difference at all, for signalfd and the declared probes.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.declared.passed()
    }
}

/// Mismatches shown in a report; the rest are counted.
const SHOWN_MISMATCHES: usize = 40;

impl std::fmt::Display for Verdict {
    /// The counts and verdict on one line, then the first mismatches, one per line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "expected {} calls, received {} spans and {} logs, {} missing, {} lost: {}",
            self.expected,
            self.spans,
            self.logs,
            self.missing,
            self.lost,
            if self.mismatches.is_empty() {
                "PASS"
            } else {
                "FAIL"
            }
        )?;
        if self.midflight > 0 {
            write!(
                f,
                " ({} calls mid-flight at attach, {} returns without entry counted)",
                self.midflight, self.returns_without_entry
            )?;
        }
        write_mismatches(f, &self.mismatches)?;
        if self.declared.expected > 0 || self.declared.spans > 0 {
            write!(f, "\n{}", self.declared)?;
        }
        Ok(())
    }
}

/// The first mismatches, one per line, and how many more there are.
fn write_mismatches(f: &mut std::fmt::Formatter<'_>, mismatches: &[String]) -> std::fmt::Result {
    for mismatch in mismatches.iter().take(SHOWN_MISMATCHES) {
        write!(f, "\n  {mismatch}")?;
    }
    if mismatches.len() > SHOWN_MISMATCHES {
        write!(
            f,
            "\n  ... and {} more",
            mismatches.len() - SHOWN_MISMATCHES
        )?;
    }
    Ok(())
}

/// How many of the expected calls must arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completeness {
    /// Every one.
    Exact,
    /// kspan was stopped while the workload ran: per thread, the calls before the stop.
    Prefix,
    /// Under overload: any subset, as long as kspan counted each missing call as lost.
    Lossy,
}

/// What the run's probe can see of each call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// kprobe or fentry on `do_signalfd4`: calls the syscall rejects early never get there.
    KernelFunction(ProbeKind),
    /// Syscall tracepoints: every call.
    Tracepoint,
}

impl Expectation {
    /// From kspan's `--attach` value; `auto` is judged by the probe kspan reports it used.
    pub fn for_probe(probe: &str) -> anyhow::Result<Self> {
        Ok(match ProbeKind::from_name(probe) {
            Some(ProbeKind::Tracepoint) => Expectation::Tracepoint,
            Some(kind) => Expectation::KernelFunction(kind),
            None => anyhow::bail!("unknown probe `{probe}`"),
        })
    }

    fn probe(self) -> &'static str {
        match self {
            Expectation::KernelFunction(kind) => kind.name(),
            Expectation::Tracepoint => ProbeKind::Tracepoint.name(),
        }
    }

    fn sees(self, call: &CallRecord) -> bool {
        match self {
            Expectation::KernelFunction(_) => call.reaches_kernel_function(),
            Expectation::Tracepoint => !call.midflight,
        }
    }

    /// Whether the call was inside the probed code when the probe attached, so only its return
    /// can be seen. Mid-flight calls are held in the syscall's copy of the mask: past the
    /// `sys_enter` tracepoint, but before `do_signalfd4`, which kprobe and fentry watch.
    fn sees_only_the_return(self, call: &CallRecord) -> bool {
        self == Expectation::Tracepoint && call.midflight
    }

    /// `signalfd.mask.source` for the call, and whether the mask value is meaningful.
    fn mask_source(self, call: &CallRecord) -> (&'static str, bool) {
        match self {
            Expectation::KernelFunction(_) => ("kernel", true),
            Expectation::Tracepoint if call.sizemask != 8 => ("not_read", false),
            Expectation::Tracepoint if !call.mask_readable => ("unreadable", false),
            Expectation::Tracepoint => ("user", true),
        }
    }
}

/// Judges a run directory left by [`crate::run_capture`]: every call must have arrived.
pub fn judge_dir(dir: &Path) -> anyhow::Result<Verdict> {
    judge_dir_with(dir, Completeness::Exact)
}

/// Judges a run directory, with the given demand on completeness.
pub fn judge_dir_with(dir: &Path, completeness: Completeness) -> anyhow::Result<Verdict> {
    let mut manifest = read_manifest(&dir.join(artifacts::MANIFEST))?;
    let declared_manifest = dir.join(artifacts::DECLARED_MANIFEST);
    // A run dir left by an older harness has no declared manifest: no declared calls.
    let mut declared: Vec<DeclaredCall> = if declared_manifest.exists() {
        read_records(&declared_manifest)?
    } else {
        Vec::new()
    };
    let containers = FakeContainer::read_all(dir)?;
    if let Some(containers) = &containers {
        // Calls made in cgroups the run's filter left out must not arrive (nor count as lost).
        let selected = |cgroup: &Option<String>| {
            containers
                .iter()
                .any(|c| c.selected && cgroup.as_deref() == Some(&c.cgroup_path))
        };
        manifest.retain(|call| selected(&call.cgroup_path));
        declared.retain(|call| selected(&call.caller.cgroup_path));
    }
    let store = kspan_receiver::Store::read_jsonl(&dir.join(artifacts::RECEIVED))?;
    let summary: serde_json::Value = read_json(&dir.join(artifacts::SUMMARY))?;
    let run: RunRecord = serde_json::from_value(read_json(&dir.join(artifacts::RUN))?)?;
    let received_spans = store.spans();
    let mut resource_problems = resource_mismatches(&received_spans);
    if let Some(containers) = &containers {
        resource_problems.extend(container_mismatches(&manifest, containers, &received_spans));
    }
    let spans: Vec<Span> = received_spans
        .into_iter()
        .map(|received| received.span)
        .collect();
    let logs: Vec<LogRecord> = store
        .logs()
        .into_iter()
        .map(|received| received.record)
        .collect();
    // The spans and logs of the declared probes' calls are judged against their own manifest;
    // everything else against the signalfd manifest, which also catches any stray span.
    let declared_names: BTreeSet<&str> = declared.iter().map(|c| c.syscall.as_str()).collect();
    let (declared_spans, spans): (Vec<Span>, Vec<Span>) = spans
        .into_iter()
        .partition(|span| declared_names.contains(span.name.as_str()));
    let declared_ids: BTreeSet<(&[u8], &[u8])> = declared_spans
        .iter()
        .map(|span| (span.trace_id.as_slice(), span.span_id.as_slice()))
        .collect();
    let (declared_logs, logs): (Vec<LogRecord>, Vec<LogRecord>) = logs
        .into_iter()
        .partition(|log| declared_ids.contains(&(log.trace_id.as_slice(), log.span_id.as_slice())));
    let expect = if manifest.is_empty() {
        // No signalfd call to judge: which probe kspan would have used for one does not matter
        // (and a kspan tracing only declared probes need not name one in its ready file).
        Expectation::Tracepoint
    } else if run.attach == "auto" {
        Expectation::for_probe(&attached_probe(dir)?)?
    } else {
        Expectation::for_probe(&run.attach)?
    };
    let mut verdict = judge(&manifest, &spans, &logs, expect, completeness);
    let function_kinds = match declared.iter().any(|call| call.kernel_function) {
        true => declared_kinds(dir)?,
        false => BTreeMap::new(),
    };
    verdict.declared = judge_declared(&declared, &declared_spans, &declared_logs, &function_kinds);
    verdict.mismatches.extend(resource_problems);
    verdict.lost = summary["lost"]
        .as_u64()
        .context("summary.json has no `lost`")?;
    let accounted = match completeness {
        Completeness::Exact | Completeness::Prefix => verdict.lost == 0,
        // Every call that did not arrive must have been counted, and nothing else.
        Completeness::Lossy => verdict.lost == verdict.missing as u64,
    };
    if !accounted {
        verdict.mismatches.push(format!(
            "kspan counted {} lost calls, {} calls are missing: {summary}",
            verdict.lost, verdict.missing
        ));
    }
    let kernel_count = |name: &str| {
        summary["kernel"][name]
            .as_u64()
            .with_context(|| format!("summary.json has no `kernel.{name}`"))
    };
    verdict.returns_without_entry = kernel_count("returns_without_entry")?;
    // An entry the full in-flight map could not hold also leaves its return alone.
    let lone_returns = verdict.midflight as u64 + kernel_count("entries_not_stored")?;
    if verdict.returns_without_entry != lone_returns {
        verdict.mismatches.push(format!(
            "kspan counted {} returns without entry, expected {lone_returns} ({} calls mid-flight at attach + entries the in-flight map refused): {summary}",
            verdict.returns_without_entry, verdict.midflight
        ));
    }
    if run.kspan_exit != Some(0) {
        verdict
            .mismatches
            .push(format!("kspan exited with {:?}", run.kspan_exit));
    }
    if run.workload_exit != Some(0) {
        verdict
            .mismatches
            .push(format!("the workload exited with {:?}", run.workload_exit));
    }
    Ok(verdict)
}

/// Each span must come under the resource of the process that made the call (kspan's default
/// `--resource-per process`): its pid and executable name, that name as `service.name`, and
/// kspan as the telemetry distribution. One line per kind of problem, with a count.
fn resource_mismatches(spans: &[ReceivedSpan]) -> Vec<String> {
    let mut problems: BTreeMap<String, usize> = BTreeMap::new();
    for received in spans {
        let (span, resource) = (&received.span.attributes, &received.resource);
        let executable = string(span, "process.executable.name");
        let expected = [
            (
                "process.pid",
                show(int(span, "process.pid")),
                show(int(resource, "process.pid")),
            ),
            (
                "process.executable.name",
                show(executable.clone()),
                show(string(resource, "process.executable.name")),
            ),
            (
                "service.name",
                show(executable),
                show(string(resource, "service.name")),
            ),
            (
                "telemetry.distro.name",
                "kspan".to_string(),
                show(string(resource, "telemetry.distro.name")),
            ),
        ];
        for (key, expected, got) in expected {
            if expected != got {
                *problems
                    .entry(format!("resource {key}: expected {expected}, got {got}"))
                    .or_default() += 1;
            }
        }
    }
    problems
        .into_iter()
        .map(|(problem, spans)| format!("{problem} ({spans} spans)"))
        .collect()
}

/// Each span's resource must name the container and pod of the cgroup its thread ran in,
/// exactly as the harness named that cgroup (an attribute the name does not give must be
/// absent). Each workload process stays in one cgroup: the thread tells which.
fn container_mismatches(
    manifest: &[CallRecord],
    containers: &[FakeContainer],
    spans: &[ReceivedSpan],
) -> Vec<String> {
    let cgroup_of_thread: BTreeMap<i64, Option<&str>> = manifest
        .iter()
        .map(|call| (i64::from(call.tid), call.cgroup_path.as_deref()))
        .collect();
    let mut problems: BTreeMap<String, usize> = BTreeMap::new();
    for received in spans {
        let tid = int(&received.span.attributes, "thread.id").unwrap_or(-1);
        let Some(cgroup) = cgroup_of_thread.get(&tid).copied().flatten() else {
            continue; // A span of no expected thread: the judge reports it already.
        };
        let Some(container) = containers.iter().find(|c| c.cgroup_path == cgroup) else {
            *problems
                .entry(format!(
                    "thread {tid} ran in {cgroup}, a cgroup the harness did not make"
                ))
                .or_default() += 1;
            continue;
        };
        let resource = &received.resource;
        let expected = [
            ("container.id", &container.container_id),
            ("container.runtime.name", &container.runtime),
            ("k8s.pod.uid", &container.pod_uid),
        ];
        for (key, expected) in expected {
            let got = string(resource, key);
            if got != *expected {
                *problems
                    .entry(format!(
                        "cgroup {cgroup}: resource {key}: expected {}, got {}",
                        show(expected.clone()),
                        show(got)
                    ))
                    .or_default() += 1;
            }
        }
    }
    problems
        .into_iter()
        .map(|(problem, spans)| format!("{problem} ({spans} spans)"))
        .collect()
}

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The probe kspan wrote into its ready file.
fn attached_probe(dir: &Path) -> anyhow::Result<String> {
    let ready =
        std::fs::read_to_string(dir.join(artifacts::READY)).context("reading the ready file")?;
    ready
        .lines()
        .find_map(|line| line.strip_prefix("probe="))
        .map(str::to_string)
        .context("the ready file names no probe")
}

/// The kind of pair each declared probe attached as, by name, as kspan's ready file says
/// (`declared=<name>:<kind>`).
pub fn declared_kinds(dir: &Path) -> anyhow::Result<BTreeMap<String, ProbeKind>> {
    let ready =
        std::fs::read_to_string(dir.join(artifacts::READY)).context("reading the ready file")?;
    ready
        .lines()
        .filter_map(|line| line.strip_prefix("declared="))
        .map(|probe| {
            let (name, kind) = probe
                .rsplit_once(':')
                .with_context(|| format!("ready file line `declared={probe}`"))?;
            let kind = ProbeKind::from_name(kind)
                .with_context(|| format!("ready file line `declared={probe}`: no such kind"))?;
            Ok((name.to_string(), kind))
        })
        .collect()
}

/// Compares spans and logs with the manifest: same calls per thread, in order, same arguments
/// and results, times inside the workload's own clock readings, one log per span.
pub fn judge(
    manifest: &[CallRecord],
    spans: &[Span],
    logs: &[LogRecord],
    expect: Expectation,
    completeness: Completeness,
) -> Verdict {
    let expected: Vec<&CallRecord> = manifest.iter().filter(|call| expect.sees(call)).collect();
    let mut verdict = Verdict {
        expected: expected.len(),
        spans: spans.len(),
        logs: logs.len(),
        ..Verdict::default()
    };
    let mismatches = &mut verdict.mismatches;

    let mut calls_by_tid: BTreeMap<i64, Vec<&CallRecord>> = BTreeMap::new();
    for call in &expected {
        calls_by_tid
            .entry(i64::from(call.tid))
            .or_default()
            .push(call);
    }
    let mut spans_by_tid: BTreeMap<i64, Vec<&Span>> = BTreeMap::new();
    for span in spans {
        spans_by_tid
            .entry(int(&span.attributes, "thread.id").unwrap_or(-1))
            .or_default()
            .push(span);
    }
    for calls in calls_by_tid.values_mut() {
        calls.sort_by_key(|call| call.wall_before_ns);
    }
    for spans in spans_by_tid.values_mut() {
        spans.sort_by_key(|span| span.start_time_unix_nano);
    }
    for call in manifest
        .iter()
        .filter(|call| expect.sees_only_the_return(call))
    {
        verdict.midflight += 1;
        let window = call.wall_before_ns..=call.wall_after_ns;
        let shown = spans_by_tid
            .get(&i64::from(call.tid))
            .into_iter()
            .flatten()
            .filter(|span| window.contains(&span.start_time_unix_nano));
        for span in shown {
            mismatches.push(format!(
                "thread {}: call seq {} was mid-flight when the probe attached, yet {} shows it",
                call.tid,
                call.seq,
                describe(span)
            ));
        }
    }
    for (tid, spans) in &spans_by_tid {
        if !calls_by_tid.contains_key(tid) {
            mismatches.push(format!(
                "{} span(s) from thread {tid}, which made no expected call: first is {}",
                spans.len(),
                describe(spans[0])
            ));
        }
    }
    for (tid, calls) in &calls_by_tid {
        let spans = spans_by_tid.get(tid).map(Vec::as_slice).unwrap_or_default();
        let windows: Vec<_> = calls
            .iter()
            .map(|call| call.wall_before_ns..=call.wall_after_ns)
            .collect();
        let matching = match_by_time(&windows, spans);
        for span in &matching.unmatched_spans {
            mismatches.push(format!(
                "thread {tid}: {} matches no call's time window",
                describe(span)
            ));
        }
        let missed = &matching.missed_calls;
        verdict.missing += missed.len();
        let complete_enough = match completeness {
            Completeness::Exact => missed.is_empty(),
            // Stopped mid-run: what is missing is the end of each thread's calls.
            Completeness::Prefix => missed
                .iter()
                .all(|&index| index + missed.len() >= calls.len()),
            Completeness::Lossy => true,
        };
        if !complete_enough {
            mismatches.push(format!(
                "thread {tid}: {} calls made, {} spans received (missing: {})",
                calls.len(),
                spans.len(),
                missed
                    .iter()
                    .take(5)
                    .map(|&i| format!("#{i} seq {}", calls[i].seq))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for (index, span) in &matching.pairs {
            let call = calls[*index];
            for problem in compare(call, span, expect) {
                mismatches.push(format!(
                    "thread {tid} call #{index} (seq {} {} ufd={}): {problem}",
                    call.seq, call.syscall, call.ufd
                ));
            }
        }
    }
    check_logs(spans, logs, mismatches);
    verdict
}

/// A thread's calls and spans paired by time.
struct Matching<'a> {
    /// (call index, span): the span started inside that call's wall-clock window.
    pairs: Vec<(usize, &'a Span)>,
    /// Spans inside no call's window.
    unmatched_spans: Vec<&'a Span>,
    /// Indices of calls no span matched.
    missed_calls: Vec<usize>,
}

/// Pairs one thread's calls, given by their wall-clock windows, and spans, both sorted by time.
/// A thread's calls do not overlap, so each span can start inside at most one call's window.
fn match_by_time<'a>(calls: &[RangeInclusive<u64>], spans: &[&'a Span]) -> Matching<'a> {
    let mut matching = Matching {
        pairs: Vec::new(),
        unmatched_spans: Vec::new(),
        missed_calls: Vec::new(),
    };
    let mut next_call = 0;
    for span in spans {
        let start = span.start_time_unix_nano;
        while next_call < calls.len() && *calls[next_call].end() < start {
            matching.missed_calls.push(next_call);
            next_call += 1;
        }
        match calls.get(next_call) {
            Some(call) if *call.start() <= start => {
                matching.pairs.push((next_call, span));
                next_call += 1;
            }
            _ => matching.unmatched_spans.push(span),
        }
    }
    matching.missed_calls.extend(next_call..calls.len());
    matching
}

fn compare(call: &CallRecord, span: &Span, expect: Expectation) -> Vec<String> {
    let attrs = &span.attributes;
    let mut problems = caller_mismatches(&call.caller(), attrs, expect.probe());
    let mut check = |what: &str, expected: String, got: String| {
        if expected != got {
            problems.push(format!("{what}: expected {expected}, got {got}"));
        }
    };
    let name = match call.syscall {
        Syscall::Signalfd => "signalfd",
        Syscall::Signalfd4 => "signalfd4",
    };
    check("name", name.into(), span.name.clone());
    let ints = [
        ("signalfd.ufd", call.ufd.into()),
        ("signalfd.flags", i64::from(call.flags)),
    ];
    for (key, expected) in ints {
        check(key, expected.to_string(), show(int(attrs, key)));
    }
    let (source, mask_known) = expect.mask_source(call);
    check(
        "signalfd.mask.source",
        source.into(),
        show(string(attrs, "signalfd.mask.source")),
    );
    if mask_known {
        check(
            "signalfd.mask",
            format!("{:#018x}", call.mask),
            show(string(attrs, "signalfd.mask")),
        );
    }
    let status = span
        .status
        .as_ref()
        .map_or(StatusCode::Unset as i32, |status| status.code);
    match (call.fd, &call.errno_name) {
        (Some(fd), _) => {
            check(
                "signalfd.fd",
                fd.to_string(),
                show(int(attrs, "signalfd.fd")),
            );
            check("status", "Unset".into(), status_name(status));
        }
        (None, errno) => {
            check(
                "error.type",
                show(errno.clone()),
                show(string(attrs, "error.type")),
            );
            check(
                "signalfd.fd",
                "none".into(),
                show(int(attrs, "signalfd.fd")),
            );
            check("status", "Error".into(), status_name(status));
        }
    }
    problems.extend(timing_mismatch(
        &(call.wall_before_ns..=call.wall_after_ns),
        span,
    ));
    problems
}

/// The span must start and end inside the caller's own clock readings around the call.
fn timing_mismatch(window: &RangeInclusive<u64>, span: &Span) -> Option<String> {
    let (start, end) = (span.start_time_unix_nano, span.end_time_unix_nano);
    let inside = window.contains(&start) && start <= end && window.contains(&end);
    (!inside).then(|| {
        format!(
            "timing: expected {} <= start <= end <= {}, got start {start}, end {end}",
            window.start(),
            window.end()
        )
    })
}

/// What a span's attributes say of its caller (process, thread, ids, cgroup) and of the probe
/// kind, against the manifest: one `key: expected X, got Y` per difference.
fn caller_mismatches(caller: &CallerIdentity, attrs: &[KeyValue], probe: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |what: &str, expected: String, got: String| {
        if expected != got {
            problems.push(format!("{what}: expected {expected}, got {got}"));
        }
    };
    let ints = [
        ("process.pid", i64::from(caller.pid)),
        ("process.user.id", caller.euid.into()),
        ("process.real_user.id", caller.uid.into()),
    ];
    for (key, expected) in ints {
        check(key, expected.to_string(), show(int(attrs, key)));
    }
    let strings = [
        ("thread.name", caller.thread_name.as_str()),
        ("process.executable.name", caller.executable.as_str()),
        ("kspan.probe", probe),
    ];
    for (key, expected) in strings {
        check(key, expected.to_string(), show(string(attrs, key)));
    }
    if let Some(cgroup_id) = caller.cgroup_id {
        check(
            "kspan.cgroup.id",
            cgroup_id.to_string(),
            show(int(attrs, "kspan.cgroup.id").map(|id| id as u64)),
        );
    }
    if let Some(path) = &caller.cgroup_path {
        check(
            "kspan.cgroup.path",
            path.clone(),
            show(string(attrs, "kspan.cgroup.path")),
        );
    }
    problems
}

fn check_logs(spans: &[Span], logs: &[LogRecord], mismatches: &mut Vec<String>) {
    let mut logs_by_ids: BTreeMap<(&[u8], &[u8]), Vec<&LogRecord>> = BTreeMap::new();
    for log in logs {
        logs_by_ids
            .entry((&log.trace_id, &log.span_id))
            .or_default()
            .push(log);
    }
    for span in spans {
        let found = logs_by_ids.remove(&(span.trace_id.as_slice(), span.span_id.as_slice()));
        match found.as_deref() {
            Some([log]) => {
                let failed = span
                    .status
                    .as_ref()
                    .is_some_and(|s| s.code == StatusCode::Error as i32);
                let severity = if failed { 13 } else { 9 }; // WARN, INFO
                if log.severity_number != severity {
                    mismatches.push(format!(
                        "log of {} has severity {}, expected {severity}",
                        describe(span),
                        log.severity_number
                    ));
                }
                if !matches!(&log.body, Some(AnyValue { value: Some(Value::StringValue(body)) }) if body.starts_with(&span.name))
                {
                    mismatches.push(format!("log of {} has body {:?}", describe(span), log.body));
                }
            }
            Some(many) => mismatches.push(format!("{} logs for {}", many.len(), describe(span))),
            None => mismatches.push(format!("no log for {}", describe(span))),
        }
    }
    let orphans: usize = logs_by_ids.values().map(Vec::len).sum();
    if orphans > 0 {
        mismatches.push(format!("{orphans} log record(s) match no span"));
    }
}

fn describe(span: &Span) -> String {
    format!(
        "span {} (thread {}, ufd {})",
        span.name,
        show(int(&span.attributes, "thread.id")),
        show(int(&span.attributes, "signalfd.ufd"))
    )
}

fn status_name(code: i32) -> String {
    StatusCode::try_from(code).map_or_else(|_| code.to_string(), |code| format!("{code:?}"))
}

fn show<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "none".to_string(), |value| value.to_string())
}

fn attribute_value<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    kspan_receiver::inspect::attribute(attributes, key).and_then(|value| value.value.as_ref())
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    int_attribute(attributes, key)
}

fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
    string_attribute(attributes, key).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{common::v1::ArrayValue, trace::v1::Status};

    use super::*;

    fn call(seq: u64, tid: u32, fd: Option<i32>) -> CallRecord {
        CallRecord {
            seq,
            scenario: "test".into(),
            pid: 10,
            tid,
            uid: 0,
            euid: 0,
            executable: "app".into(),
            thread_name: "worker".into(),
            cgroup_id: Some(1),
            cgroup_path: Some("/test.scope".into()),
            syscall: Syscall::Signalfd4,
            ufd: -1,
            flags: 0,
            mask: 1 << 9,
            sizemask: 8,
            mask_readable: true,
            fd,
            errno: fd.is_none().then_some(22),
            errno_name: fd.is_none().then(|| "EINVAL".into()),
            wall_before_ns: 1_000 + seq * 1_000,
            wall_after_ns: 1_900 + seq * 1_000,
            midflight: false,
        }
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    /// The span kspan should produce for `call` with tracepoints.
    fn span_for(call: &CallRecord) -> Span {
        let mut attributes = vec![
            kv("process.pid", Value::IntValue(call.pid.into())),
            kv("thread.id", Value::IntValue(call.tid.into())),
            kv("process.user.id", Value::IntValue(call.euid.into())),
            kv("process.real_user.id", Value::IntValue(call.uid.into())),
            kv("thread.name", Value::StringValue(call.thread_name.clone())),
            kv(
                "process.executable.name",
                Value::StringValue(call.executable.clone()),
            ),
            kv("kspan.cgroup.id", Value::IntValue(1)),
            kv(
                "kspan.cgroup.path",
                Value::StringValue("/test.scope".into()),
            ),
            kv("signalfd.ufd", Value::IntValue(call.ufd.into())),
            kv("signalfd.flags", Value::IntValue(call.flags.into())),
            kv(
                "signalfd.mask",
                Value::StringValue(format!("{:#018x}", call.mask)),
            ),
            kv("signalfd.mask.source", Value::StringValue("user".into())),
            kv(
                "signalfd.mask.signals",
                Value::ArrayValue(ArrayValue { values: vec![] }),
            ),
            kv("kspan.probe", Value::StringValue("tracepoint".into())),
        ];
        let status = match (call.fd, &call.errno_name) {
            (Some(fd), _) => {
                attributes.push(kv("signalfd.fd", Value::IntValue(fd.into())));
                None
            }
            (None, errno) => {
                attributes.push(kv("error.type", Value::StringValue(errno.clone().unwrap())));
                Some(Status {
                    code: StatusCode::Error as i32,
                    message: String::new(),
                })
            }
        };
        Span {
            trace_id: vec![1; 16],
            span_id: call.seq.to_be_bytes().to_vec(),
            name: call.syscall.to_string(),
            start_time_unix_nano: call.wall_before_ns + 100,
            end_time_unix_nano: call.wall_after_ns - 100,
            attributes,
            status,
            ..Span::default()
        }
    }

    fn log_for(span: &Span) -> LogRecord {
        let failed = span.status.is_some();
        LogRecord {
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
            severity_number: if failed { 13 } else { 9 },
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!("{}(...) = x", span.name))),
            }),
            ..LogRecord::default()
        }
    }

    fn fixture() -> (Vec<CallRecord>, Vec<Span>, Vec<LogRecord>) {
        let manifest = vec![
            call(1, 100, Some(3)),
            call(2, 100, None),
            call(3, 200, Some(4)),
        ];
        let spans: Vec<Span> = manifest.iter().map(span_for).collect();
        let logs = spans.iter().map(log_for).collect();
        (manifest, spans, logs)
    }

    #[test]
    fn exact_capture_passes() {
        let (manifest, spans, logs) = fixture();
        let verdict = judge(
            &manifest,
            &spans,
            &logs,
            Expectation::Tracepoint,
            Completeness::Exact,
        );
        assert!(verdict.passed(), "{:#?}", verdict.mismatches);
        assert_eq!((verdict.expected, verdict.spans, verdict.logs), (3, 3, 3));
    }

    #[test]
    fn a_missing_span_fails() {
        let (manifest, mut spans, mut logs) = fixture();
        spans.remove(1);
        logs.remove(1);
        let verdict = judge(
            &manifest,
            &spans,
            &logs,
            Expectation::Tracepoint,
            Completeness::Exact,
        );
        assert!(
            verdict
                .mismatches
                .iter()
                .any(|m| m == "thread 100: 2 calls made, 1 spans received (missing: #1 seq 2)"),
            "{:#?}",
            verdict.mismatches
        );
    }

    /// The verdict lists a mismatch starting with `prefix`.
    /// The verdict of an exact tracepoint capture.
    fn judge_exact(manifest: &[CallRecord], spans: &[Span], logs: &[LogRecord]) -> Verdict {
        judge(
            manifest,
            spans,
            logs,
            Expectation::Tracepoint,
            Completeness::Exact,
        )
    }

    fn assert_mismatch(verdict: &Verdict, prefix: &str) {
        assert!(
            verdict.mismatches.iter().any(|m| m.starts_with(prefix)),
            "no mismatch starting with {prefix:?}: {:#?}",
            verdict.mismatches
        );
    }

    #[test]
    fn an_extra_span_fails() {
        let (manifest, mut spans, mut logs) = fixture();
        let mut extra = call(9, 300, Some(5));
        extra.seq = 9;
        spans.push(span_for(&extra));
        logs.push(log_for(spans.last().unwrap()));
        let verdict = judge(
            &manifest,
            &spans,
            &logs,
            Expectation::Tracepoint,
            Completeness::Exact,
        );
        assert_mismatch(&verdict, "1 span(s) from thread 300");
    }

    #[test]
    fn wrong_arguments_results_and_times_are_named() {
        let (manifest, mut spans, logs) = fixture();
        spans[0].attributes.retain(|kv| kv.key != "signalfd.fd");
        spans[2].end_time_unix_nano = manifest[2].wall_after_ns + 1;
        let verdict = judge_exact(&manifest, &spans, &logs);
        let text = verdict.mismatches.join("\n");
        assert!(
            text.contains(
                "thread 100 call #0 (seq 1 signalfd4 ufd=-1): signalfd.fd: expected 3, got none"
            ),
            "{text}"
        );
        assert!(
            text.contains("thread 200 call #0 (seq 3 signalfd4 ufd=-1): timing"),
            "{text}"
        );
    }

    #[test]
    fn a_wrong_identity_is_named() {
        let (manifest, mut spans, logs) = fixture();
        for kv in &mut spans[0].attributes {
            let wrong = match kv.key.as_str() {
                "process.user.id" => Value::IntValue(7),
                "process.real_user.id" => Value::IntValue(8),
                "kspan.cgroup.id" => Value::IntValue(2),
                "thread.name" => Value::StringValue("other".into()),
                "process.executable.name" => Value::StringValue("app-renamed".into()),
                _ => continue,
            };
            kv.value = Some(AnyValue { value: Some(wrong) });
        }
        let verdict = judge_exact(&manifest, &spans, &logs);
        let text = verdict.mismatches.join("\n");
        for problem in [
            "process.user.id: expected 0, got 7",
            "process.real_user.id: expected 0, got 8",
            "thread.name: expected worker, got other",
            "process.executable.name: expected app, got app-renamed",
            "kspan.cgroup.id: expected 1, got 2",
        ] {
            assert!(text.contains(problem), "{problem} not in {text}");
        }
    }

    #[test]
    fn logs_must_match_spans_one_to_one() {
        let (manifest, spans, mut logs) = fixture();
        logs[0].severity_number = 13;
        logs.pop();
        logs.push(LogRecord {
            trace_id: vec![9; 16],
            span_id: vec![9; 8],
            ..LogRecord::default()
        });
        let verdict = judge(
            &manifest,
            &spans,
            &logs,
            Expectation::Tracepoint,
            Completeness::Exact,
        );
        let text = verdict.mismatches.join("\n");
        assert!(text.contains("has severity 13, expected 9"), "{text}");
        assert!(
            text.contains("no log for span signalfd4 (thread 200"),
            "{text}"
        );
        assert!(text.contains("1 log record(s) match no span"), "{text}");
    }

    #[test]
    fn kernel_function_probes_skip_calls_rejected_by_the_syscall() {
        let (mut manifest, spans, logs) = fixture();
        let mut bad_size = call(4, 100, None);
        bad_size.sizemask = 4;
        manifest.push(bad_size);
        let spans: Vec<Span> = spans
            .into_iter()
            .map(|mut span| {
                for kv in &mut span.attributes {
                    match kv.key.as_str() {
                        "kspan.probe" => {
                            *kv =
                                super::tests::kv("kspan.probe", Value::StringValue("kprobe".into()))
                        }
                        "signalfd.mask.source" => {
                            *kv = super::tests::kv(
                                "signalfd.mask.source",
                                Value::StringValue("kernel".into()),
                            )
                        }
                        _ => {}
                    }
                }
                span
            })
            .collect();
        let verdict = judge(
            &manifest,
            &spans,
            &logs,
            Expectation::KernelFunction(ProbeKind::Kprobe),
            Completeness::Exact,
        );
        assert!(verdict.passed(), "{:#?}", verdict.mismatches);
        assert_eq!(verdict.expected, 3);
        let tracepoint = judge(
            &manifest,
            &spans,
            &logs,
            Expectation::Tracepoint,
            Completeness::Exact,
        );
        assert!(!tracepoint.passed());
    }

    #[test]
    fn a_stopped_run_may_miss_only_the_last_calls() {
        let (manifest, spans, logs) = fixture();
        let verdict = judge(
            &manifest,
            &spans[..1],
            &logs[..1],
            Expectation::Tracepoint,
            Completeness::Prefix,
        );
        assert!(verdict.passed(), "{:#?}", verdict.mismatches);
        assert_eq!(verdict.missing, 2);
        let without_first: Vec<Span> = spans[1..].to_vec();
        let verdict = judge(
            &manifest,
            &without_first,
            &logs[1..],
            Expectation::Tracepoint,
            Completeness::Prefix,
        );
        assert!(
            !verdict.passed(),
            "a gap before captured calls is not a prefix"
        );
    }

    #[test]
    fn lossy_runs_count_what_is_missing() {
        let (manifest, spans, logs) = fixture();
        let kept = [spans[0].clone(), spans[2].clone()];
        let verdict = judge(
            &manifest,
            &kept,
            &[logs[0].clone(), logs[2].clone()],
            Expectation::Tracepoint,
            Completeness::Lossy,
        );
        assert!(verdict.passed(), "{:#?}", verdict.mismatches);
        assert_eq!(verdict.missing, 1);
    }

    #[test]
    fn midflight_calls_must_make_no_span() {
        let (mut manifest, spans, logs) = fixture();
        let mut held = call(0, 100, Some(7));
        held.midflight = true;
        manifest.push(held.clone());
        let verdict = judge(
            &manifest,
            &spans,
            &logs,
            Expectation::Tracepoint,
            Completeness::Exact,
        );
        assert!(verdict.passed(), "{:#?}", verdict.mismatches);
        assert_eq!((verdict.expected, verdict.midflight), (3, 1));

        let (mut spans, mut logs) = (spans, logs);
        spans.push(span_for(&held));
        logs.push(log_for(spans.last().unwrap()));
        let verdict = judge(
            &manifest,
            &spans,
            &logs,
            Expectation::Tracepoint,
            Completeness::Exact,
        );
        assert_mismatch(&verdict, "thread 100: call seq 0 was mid-flight");
        // kprobe and fentry see the held call begin: do_signalfd4 runs after it is let go.
        let kprobe = judge(
            &manifest,
            &spans,
            &logs,
            Expectation::KernelFunction(ProbeKind::Kprobe),
            Completeness::Exact,
        );
        assert_eq!((kprobe.expected, kprobe.midflight), (4, 0));
    }

    #[test]
    fn spans_must_come_under_their_process_resource() {
        let (manifest, spans, _) = fixture();
        let received = |span: &Span, resource: Vec<KeyValue>| ReceivedSpan {
            transport: kspan_receiver::Transport::Grpc,
            resource,
            scope: None,
            span: span.clone(),
        };
        let named = span_for(&manifest[0]);
        let own = vec![
            kv("service.name", Value::StringValue("app".into())),
            kv("process.pid", Value::IntValue(manifest[0].pid.into())),
            kv("process.executable.name", Value::StringValue("app".into())),
            kv("telemetry.distro.name", Value::StringValue("kspan".into())),
        ];
        assert_eq!(
            resource_mismatches(&[received(&named, own.clone())]),
            Vec::<String>::new()
        );

        // kspan's own resource for every call, as `--resource-per host` sends: each is named.
        let host = vec![
            kv("service.name", Value::StringValue("kspan".into())),
            kv("telemetry.distro.name", Value::StringValue("kspan".into())),
        ];
        let problems =
            resource_mismatches(&[received(&named, host.clone()), received(&named, host)]);
        let pid = manifest[0].pid;
        assert_eq!(
            problems,
            [
                "resource process.executable.name: expected app, got none (2 spans)".to_string(),
                format!("resource process.pid: expected {pid}, got none (2 spans)"),
                "resource service.name: expected app, got kspan (2 spans)".to_string(),
            ]
        );
        assert_eq!(spans.len(), manifest.len());
    }

    #[test]
    fn spans_must_name_their_cgroups_container_and_pod_exactly() {
        let (manifest, spans, _) = fixture();
        let id = "ab".repeat(32);
        let container = FakeContainer {
            naming: "docker, cgroupfs driver".into(),
            cgroup_path: "/test.scope".into(),
            container_id: Some(id.clone()),
            runtime: Some("docker".into()),
            pod_uid: None,
            selected: true,
        };
        let received = |resource: Vec<KeyValue>| ReceivedSpan {
            transport: kspan_receiver::Transport::Grpc,
            resource,
            scope: None,
            span: spans[0].clone(),
        };
        let right = vec![
            kv("container.id", Value::StringValue(id.clone())),
            kv(
                "container.runtime.name",
                Value::StringValue("docker".into()),
            ),
        ];
        let containers = std::slice::from_ref(&container);
        assert_eq!(
            container_mismatches(&manifest, containers, &[received(right)]),
            Vec::<String>::new()
        );
        // Another container's id, a pod that is not there, the runtime missing.
        let wrong = vec![
            kv("container.id", Value::StringValue("cd".repeat(32))),
            kv(
                "k8s.pod.uid",
                Value::StringValue("1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809".into()),
            ),
        ];
        assert_eq!(
            container_mismatches(&manifest, containers, &[received(wrong)]),
            [
                format!("cgroup /test.scope: resource container.id: expected {id}, got {} (1 spans)", "cd".repeat(32)),
                "cgroup /test.scope: resource container.runtime.name: expected docker, got none (1 spans)".to_string(),
                "cgroup /test.scope: resource k8s.pod.uid: expected none, got 1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809 (1 spans)".to_string(),
            ]
        );
        // A thread in a cgroup the harness did not make.
        let elsewhere = FakeContainer {
            cgroup_path: "/elsewhere".into(),
            ..container.clone()
        };
        assert_eq!(
            container_mismatches(&manifest, &[elsewhere], &[received(vec![])]),
            [format!(
                "thread {} ran in /test.scope, a cgroup the harness did not make (1 spans)",
                manifest[0].tid
            )]
        );
    }

    #[test]
    fn a_span_outside_every_window_is_reported() {
        let (manifest, mut spans, logs) = fixture();
        spans[1].start_time_unix_nano = manifest[1].wall_after_ns + 50;
        let verdict = judge(
            &manifest,
            &spans,
            &logs,
            Expectation::Tracepoint,
            Completeness::Lossy,
        );
        assert!(
            verdict
                .mismatches
                .iter()
                .any(|m| m.contains("matches no call's time window")),
            "{:#?}",
            verdict.mismatches
        );
    }
}
