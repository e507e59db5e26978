//! End to end on this host, as root: the workload's calls must arrive as exactly matching
//! spans and logs, over gRPC and over HTTP. kspan picks its probe itself (`auto`).

use std::{path::PathBuf, time::Duration};

use kspan_e2e::{judge_dir, run_capture, CaptureConfig, Destination, Transport, Verdict};

/// `target/<profile>`, where cargo puts the kspan and signalfd-workload binaries.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf()
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this end-to-end test loads eBPF programs: it needs root (CAP_BPF, CAP_PERFMON, tracefs access); run `cargo xtask test` as root"
    );
}

async fn capture(name: &str, transport: Transport, kspan_args: &[&str]) -> Verdict {
    require_root();
    let out_dir = bin_dir().join("e2e").join(name);
    let _ = std::fs::remove_dir_all(&out_dir);
    let config = CaptureConfig {
        attach: "auto".into(),
        destination: Destination::Receiver(transport),
        bin_dir: bin_dir(),
        out_dir: out_dir.clone(),
        workload_args: vec![],
        kspan_args: kspan_args.iter().map(|arg| arg.to_string()).collect(),
        timeout: Duration::from_secs(300),
        stop_kspan_after: None,
    };
    run_capture(&config)
        .await
        .unwrap_or_else(|error| panic!("capture run failed: {error:#}"));
    judge_dir(&out_dir)
        .unwrap_or_else(|error| panic!("cannot judge {}: {error:#}", out_dir.display()))
}

fn assert_exact(verdict: &Verdict) {
    assert!(
        verdict.expected > 100,
        "the workload made only {} calls",
        verdict.expected
    );
    assert!(
        verdict.passed(),
        "expected {} calls, got {} spans and {} logs, {} lost; differences:\n{}",
        verdict.expected,
        verdict.spans,
        verdict.logs,
        verdict.lost,
        verdict.mismatches.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_arrives_over_grpc() {
    assert_exact(&capture("grpc", Transport::Grpc, &[]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_arrives_over_http() {
    assert_exact(&capture("http", Transport::Http, &[]).await);
}

/// The check must fail when capture is broken: here a comm filter no thread matches.
#[tokio::test(flavor = "multi_thread")]
async fn broken_capture_is_detected() {
    let verdict = capture("broken", Transport::Grpc, &["--comm", "no-such-thread"]).await;
    assert!(
        !verdict.passed(),
        "a run that captured nothing passed the check"
    );
    assert_eq!(verdict.spans, 0);
    assert!(
        verdict
            .mismatches
            .iter()
            .any(|m| m.contains("spans received")),
        "{:?}",
        verdict.mismatches
    );
}
