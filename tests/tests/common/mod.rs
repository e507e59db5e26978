//! Shared by the end-to-end test files: where the binaries are, root, and one capture run.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::{path::PathBuf, time::Duration};

use kspan_e2e::{run_capture, CaptureConfig, Destination, RunRecord, Transport, Workload};

/// Where the kspan and signalfd-workload binaries are: `KSPAN_BIN_DIR` (a relative path is taken
/// from the workspace root, as in `KSPAN_BIN_DIR=target/release cargo test`), else
/// `target/<profile>` next to this test, where `cargo xtask test` builds them.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KSPAN_BIN_DIR") {
        // cargo runs tests in the package's directory, one below the workspace root.
        return PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// These tests load eBPF programs: without root they fail, saying why (CI runs as root).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this end-to-end test loads eBPF programs: it needs root (CAP_BPF, CAP_PERFMON, tracefs access); run `cargo xtask test` as root"
    );
}

/// A capture run with kspan on auto, over gRPC unless the test changes it.
pub fn config(name: &str, workload: Workload, kspan_args: &[&str]) -> CaptureConfig {
    let out_dir = std::env::temp_dir().join("kspan-e2e").join(name);
    let _ = std::fs::remove_dir_all(&out_dir);
    CaptureConfig {
        attach: "auto".into(),
        destination: Destination::Receiver(Transport::Grpc),
        bin_dir: bin_dir(),
        kspan_wrapper: Vec::new(),
        out_dir,
        workload,
        kspan_args: kspan_args.iter().map(|arg| arg.to_string()).collect(),
        kspan_env: Vec::new(),
        timeout: Duration::from_secs(300),
        stop_kspan_after: None,
        receiver_outage: None,
        receiver_security: Default::default(),
        endpoint_userinfo: None,
    }
}

/// Runs a capture, failing the test with the reason if it cannot run.
pub async fn run(config: &CaptureConfig) -> RunRecord {
    require_root();
    run_capture(config)
        .await
        .unwrap_or_else(|error| panic!("capture run failed: {error:#}"))
}

/// Scenario arguments as a workload.
pub fn scenarios(args: &[&str]) -> Workload {
    Workload::Scenarios(args.iter().map(|arg| arg.to_string()).collect())
}

/// A real run was judged, and the judge found every call and nothing else.
pub fn assert_exact(verdict: &kspan_e2e::Verdict) {
    assert!(
        verdict.expected > 100,
        "the workload made only {} calls",
        verdict.expected
    );
    assert!(verdict.passed(), "{verdict}");
}
