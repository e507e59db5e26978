//! Encoding cost per call: `cargo bench -p kspan-otel --bench encode` prints the median CPU ns
//! per call (the thread's CPU time, so other work on a shared machine does not count) of the
//! span and log requests of batches of 1,024 varied calls, as the agent writes them
//! (both in one pass), each alone, and beside them the same requests built through
//! `opentelemetry-proto`'s prost structs and `Message::encode` (the baseline; the unit test
//! `requests_equal_the_prost_baseline` checks both give the same bytes). As in the agent, a
//! request is dropped once used, which returns its buffer to the encoder's pool, so this is the
//! steady state of an agent exporting batch after batch; the baseline writes into buffers it
//! reuses too. Run it under `valgrind --tool=callgrind` for instruction counts that do not
//! depend on a noisy machine; `-- one-pass` runs only the agent's encoder, for a profiler;
//! `-- --json FILE` also writes the figures there (`cargo xtask bench` does).

use std::{
    cell::RefCell,
    hint::black_box,
    time::{Duration, SystemTime},
};

use kspan_common::{MaskSource, ProbeKind, Syscall};
use kspan_decode::{Call, CallDetail, SignalMask, SignalfdCall};
use kspan_otel::{
    prost_baseline::ProstBaseline, CallEncoder, HostInfo, ResourcePer, Resources, TraceGrouping,
    Wanted,
};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use prost::Message as _;

const BATCH: usize = 1024;
const ROUNDS: usize = 7;

/// A batch like the workload's: creates and updates, a few errors, several threads, varied masks.
fn batch() -> Vec<Call> {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    (0..BATCH as u64)
        .map(|i| {
            let failed = i % 10 == 0;
            let at = start + Duration::from_micros(i * 7);
            Call {
                probe: ProbeKind::Kprobe,
                pid: 4000 + (i % 4) as u32,
                tid: 4100 + (i % 16) as u32,
                uid: 1000,
                euid: 1000,
                cgroup_id: 8812,
                process_name: "signalfd-worklo".into(),
                process_details: None,
                cgroup: None,
                thread_name: format!("random-{}", i % 16).as_str().into(),
                start: at,
                end: at + Duration::from_nanos(900),
                detail: CallDetail::Signalfd(SignalfdCall {
                    syscall: if i % 3 == 0 {
                        Syscall::Signalfd
                    } else {
                        Syscall::Signalfd4
                    },
                    mask_source: MaskSource::Kernel,
                    ufd: if i % 2 == 0 { -1 } else { 7 },
                    flags: [0, libc::SFD_CLOEXEC, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC]
                        [i as usize % 3],
                    mask: SignalMask(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 48)),
                    ret: if failed { -libc::EINVAL } else { 7 },
                }),
            }
        })
        .collect()
}

/// Encodes a batch, returning how many bytes it wrote.
type Encoder<'a> = &'a dyn Fn(&[Call]) -> usize;

/// The CPU time this thread has used: on a shared machine, wall time would also count the
/// time other work had the core.
fn cpu_time() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .expect("every Linux has a thread CPU-time clock")
}

/// Median CPU ns per call of each encoder over [`ROUNDS`] rounds of `repeat` batches, the
/// encoders' rounds interleaved.
fn medians<const N: usize>(calls: &[Call], repeat: usize, encoders: [Encoder<'_>; N]) -> [f64; N] {
    let mut rounds = [[0.0; ROUNDS]; N];
    for round in 0..ROUNDS {
        for (encode, figures) in encoders.iter().zip(&mut rounds) {
            let started = cpu_time();
            for _ in 0..repeat {
                black_box(encode(black_box(calls)));
            }
            let spent = cpu_time() - started;
            figures[round] = spent.as_nanos() as f64 / (repeat * calls.len()) as f64;
        }
    }
    rounds.map(|mut figures| {
        figures.sort_by(f64::total_cmp);
        figures[ROUNDS / 2]
    })
}

fn main() {
    // `cargo test --benches` runs this once as a smoke test: one batch is enough there.
    let repeat = if std::env::args().any(|arg| arg == "--bench") {
        50
    } else {
        1
    };
    let host = HostInfo {
        host_name: "bench-host".into(),
        host_id: Some("0123456789abcdef0123456789abcdef".into()),
        kernel_release: "6.1.0".into(),
        os_name: Some("Debian GNU/Linux".into()),
    };
    // The agent's default: a resource per process.
    let resources = Resources::from_env(&host, ResourcePer::Process, "bench".into())
        .expect("no OTEL_RESOURCE_ATTRIBUTES to misread");
    let grouping = TraceGrouping::new("bench-boot-id", Duration::from_secs(60));
    let scope = InstrumentationScope {
        name: "kspan".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    };
    let encoder = CallEncoder::new(grouping.clone(), &resources, &scope);
    let baseline = ProstBaseline::new(grouping, &resources, &scope);
    let calls = batch();
    let wanted = |spans, logs| Wanted { spans, logs };
    let length = |request: Option<kspan_otel::RequestBuffer>| request.map_or(0, |r| r.len());
    let baseline_buffers = RefCell::new((Vec::new(), Vec::new()));
    // `cargo bench -p kspan-otel --bench encode -- one-pass`: the agent's encoder alone, for
    // long enough to profile (`perf record` on the bench binary).
    if std::env::args().any(|arg| arg == "one-pass") {
        let batches = repeat * 40;
        let started = cpu_time();
        for _ in 0..batches {
            let requests = encoder.requests(black_box(&calls), wanted(true, true));
            black_box(length(requests.traces) + length(requests.logs));
        }
        let per_call = (cpu_time() - started).as_nanos() as f64 / (batches * BATCH) as f64;
        println!("encode, one pass only: span + log record {per_call:.0} CPU ns per call");
        return;
    }
    // Rounds of each alternate, so a burst of other work on the machine hits all alike.
    let figures = medians(
        &calls,
        repeat,
        [
            &|calls: &[Call]| {
                let requests = encoder.requests(calls, wanted(true, true));
                length(requests.traces) + length(requests.logs)
            },
            &|calls: &[Call]| length(encoder.requests(calls, wanted(true, false)).traces),
            &|calls: &[Call]| length(encoder.requests(calls, wanted(false, true)).logs),
            &|calls: &[Call]| {
                let observed = 1_800_000_000_000_000_000;
                let (traces, logs) = &mut *baseline_buffers.borrow_mut();
                traces.clear();
                logs.clear();
                let encoded = baseline.traces_request(calls).encode(traces);
                let encoded = encoded.and(baseline.logs_request(calls, observed).encode(logs));
                encoded.expect("a Vec grows to fit");
                traces.len() + logs.len()
            },
        ],
    );
    let [both, spans, logs, prost] = figures;
    // Page faults of steady encoding: what reusing request buffers is for.
    let faults_before = minor_faults();
    for _ in 0..repeat {
        let requests = encoder.requests(black_box(&calls), wanted(true, true));
        black_box(length(requests.traces) + length(requests.logs));
    }
    let faults = (minor_faults() - faults_before) as f64 / repeat as f64;
    println!(
        "encode, batches of {BATCH} calls, median of {ROUNDS} rounds, CPU ns per call: \
         span + log record {both:.0} (span alone {spans:.0}, log alone {logs:.0}); \
         prost baseline {prost:.0} ({:.1} x the hand-written encoder); \
         {faults:.1} page faults per batch of span + log record",
        prost / both
    );
    // `-- --json FILE`: the figures for `cargo xtask bench`'s report.
    let args: Vec<String> = std::env::args().collect();
    if let Some(path) = args
        .iter()
        .position(|arg| arg == "--json")
        .and_then(|at| args.get(at + 1))
    {
        let json = serde_json::json!({
            "span_and_log_ns": both,
            "span_ns": spans,
            "log_ns": logs,
            "prost_baseline_ns": prost,
            "page_faults_per_batch": faults,
        });
        std::fs::write(path, json.to_string())
            .unwrap_or_else(|error| panic!("writing {path}: {error}"));
    }
}

/// This process's minor page faults so far.
fn minor_faults() -> i64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0, |usage| usage.minor_page_faults())
}
