//! Started mid-flight, on this host, as root: calls already inside the kernel when kspan
//! attaches make no span, and each one's return is counted as a return without entry.
//!
//! The workload holds its calls inside `signalfd`/`signalfd4` (their mask page faults into a
//! userfaultfd) before kspan starts, and lets them go once kspan is ready. With the syscall
//! tracepoints, that is past `sys_enter`: kspan sees only the returns.

mod common;

use kspan_e2e::{artifacts, judge_dir, Workload};
use signalfd_workload::read_manifest;

/// Calls held inside the kernel across kspan's start.
const HELD: u16 = 8;

#[tokio::test(flavor = "multi_thread")]
async fn calls_inside_the_kernel_at_attach_make_no_span_and_are_counted() {
    let workload = Workload::MidFlight {
        calls: HELD,
        scenarios: ["--scenario", "masks", "--scenario", "threads"]
            .map(String::from)
            .to_vec(),
    };
    let config = common::config("midflight", workload, &[]);
    common::run(&config).await;

    let ready = std::fs::read_to_string(config.out_dir.join(artifacts::READY)).expect("ready file");
    assert!(
        ready.contains("probe=tracepoint"),
        "held calls wait in the syscall's copy of the mask, before do_signalfd4: only with the \
         syscall tracepoints are they mid-flight at attach, but kspan attached with {ready:?}"
    );
    let manifest =
        read_manifest(&config.out_dir.join(artifacts::MANIFEST)).expect("the workload's manifest");
    let held = manifest.iter().filter(|call| call.midflight).count();
    assert_eq!(held, usize::from(HELD), "mid-flight calls in the manifest");

    let verdict = judge_dir(&config.out_dir)
        .unwrap_or_else(|error| panic!("cannot judge {}: {error:#}", config.out_dir.display()));
    // Exact over the ordinary calls, no span for a held call, the counter exact.
    assert!(verdict.passed(), "{verdict}");
    assert_eq!(verdict.midflight, usize::from(HELD), "{verdict}");
    assert_eq!(
        verdict.returns_without_entry,
        u64::from(HELD),
        "returns without entry: {verdict}"
    );
    assert_eq!(verdict.spans, verdict.expected, "{verdict}");
    assert!(verdict.expected > 2 * usize::from(HELD), "{verdict}");
}
