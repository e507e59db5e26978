//! Encoding cost per call: `cargo bench -p kspan-otel --bench encode` prints the median ns per
//! call of a span request and of a log request over batches of 1,024 varied calls. The agent's
//! CPU per call under load is mostly this (see the README's Performance section); run it under
//! `valgrind --tool=callgrind` for instruction counts that do not depend on a noisy machine.

use std::{
    hint::black_box,
    time::{Duration, Instant, SystemTime},
};

use kspan_common::{MaskSource, ProbeKind, Syscall};
use kspan_decode::{
    cgroup::{Cgroup, ContainerIdentity},
    Call, CgroupLookup, SignalMask,
};
use kspan_otel::{CallEncoder, HostInfo, ResourcePer, Resources, TraceGrouping};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;

const BATCH: usize = 1024;
const ROUNDS: usize = 7;

/// A batch like the workload's: creates and updates, a few errors, several threads, varied masks.
fn batch() -> Vec<Call> {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    // Every call is resolved to its cgroup now; these run in a Kubernetes container.
    let path = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_4718_92a3_b4c5d6e7f809.slice/cri-containerd-{}.scope",
        "ab".repeat(32)
    );
    let cgroup = std::sync::Arc::new(CgroupLookup::Found(Cgroup {
        identity: ContainerIdentity::from_path(&path),
        path,
    }));
    (0..BATCH as u64)
        .map(|i| {
            let failed = i % 10 == 0;
            let at = start + Duration::from_micros(i * 7);
            Call {
                syscall: if i % 3 == 0 {
                    Syscall::Signalfd
                } else {
                    Syscall::Signalfd4
                },
                probe: ProbeKind::Kprobe,
                mask_source: MaskSource::Kernel,
                pid: 4000 + (i % 4) as u32,
                tid: 4100 + (i % 16) as u32,
                uid: 1000,
                euid: 1000,
                cgroup_id: 8812,
                cgroup: Some(cgroup.clone()),
                process_name: "signalfd-worklo".to_string(),
                process_details: None,
                thread_name: format!("random-{}", i % 16),
                ufd: if i % 2 == 0 { -1 } else { 7 },
                flags: [0, libc::SFD_CLOEXEC, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC]
                    [i as usize % 3],
                mask: SignalMask(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 48)),
                ret: if failed { -libc::EINVAL } else { 7 },
                start: at,
                end: at + Duration::from_nanos(900),
            }
        })
        .collect()
}

/// Median ns per call of `encode` over [`ROUNDS`] rounds of `repeat` batches.
fn ns_per_call(calls: &[Call], repeat: usize, encode: impl Fn(&[Call]) -> Vec<u8>) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..repeat {
                black_box(encode(black_box(calls)));
            }
            started.elapsed().as_nanos() as f64 / (repeat * calls.len()) as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
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
    let encoder = CallEncoder::new(
        TraceGrouping::new("bench-boot-id", Duration::from_secs(60)),
        &resources,
        &InstrumentationScope::default(),
    );
    let calls = batch();
    let spans = ns_per_call(&calls, repeat, |calls| encoder.traces_request(calls));
    let logs = ns_per_call(&calls, repeat, |calls| encoder.logs_request(calls));
    println!(
        "encode, batches of {BATCH} calls, median of {ROUNDS} rounds: span {spans:.0} ns/call, \
         log {logs:.0} ns/call, both {:.0} ns/call",
        spans + logs
    );
}
