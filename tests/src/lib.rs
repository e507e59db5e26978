//! End-to-end checks of kspan: run the workload under the agent with a real OTLP receiver, then
//! judge what arrived against the workload's manifest. The same code runs on the host (tests/)
//! and inside QEMU guests (`cargo xtask vm-test` runs the `kspan-e2e` binary there and judges
//! the results on the host).

pub mod bench;
mod containers;
mod fallback;
mod health;
mod judge;
pub mod rotel;
mod run;
mod transport;

pub use containers::{FakeContainer, FakeContainers};
pub use fallback::{fallback_mismatches, function_missing, MISSING_KERNEL_FUNCTION, NO_KPROBES};
pub use health::health_mismatches;
pub use judge::{
    call_summary, declared_kinds, judge_declared, judge_dir, judge_dir_with, Completeness,
    DeclaredVerdict, Verdict, STRING_BOUND,
};
pub use run::{
    artifacts, run_capture, CaptureConfig, Destination, Outage, RunRecord, Transport, Workload,
};
