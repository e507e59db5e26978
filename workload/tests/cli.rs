//! The binary's command line: default run, bench, volume mode, waiting, bad input.

use assert_cmd::Command;
use predicates::prelude::*;
use signalfd_workload::manifest::{declared::DeclaredCall, read_records};
use signalfd_workload::read_manifest;
use std::path::PathBuf;

fn workload() -> Command {
    Command::cargo_bin("signalfd-workload").expect("binary built")
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "signalfd-workload-cli-{}-{name}",
        std::process::id()
    ))
}

#[test]
fn manifest_alone_runs_every_default_scenario() {
    let manifest = temp_path("default.jsonl");
    workload()
        .arg("--manifest")
        .arg(&manifest)
        .assert()
        .success()
        .stderr(
            predicate::str::contains("calls=294 ").and(predicate::str::contains("unexpected=0")),
        );
    let records = read_manifest(&manifest).expect("manifest");
    let _ = std::fs::remove_file(&manifest);
    assert_eq!(records.len(), 294);
    for scenario in ["masks", "flags", "update", "errors", "threads", "random"] {
        assert!(records.iter().any(|r| r.scenario == scenario), "{scenario}");
    }
}

#[test]
fn the_open_scenario_writes_only_the_declared_manifest() {
    let manifest = temp_path("open.jsonl");
    let declared = temp_path("open-declared.jsonl");
    workload()
        .arg("--manifest")
        .arg(&manifest)
        .arg("--declared-manifest")
        .arg(&declared)
        .args(["--scenario", "open", "--threads", "2", "--calls", "8"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "calls=16 ok=8 errors=8 unexpected=0",
        ));
    let signalfd_calls = read_manifest(&manifest).expect("manifest");
    let open_calls: Vec<DeclaredCall> = read_records(&declared).expect("declared manifest");
    let _ = std::fs::remove_file(&manifest);
    let _ = std::fs::remove_file(&declared);
    assert_eq!(signalfd_calls.len(), 0);
    assert_eq!(open_calls.len(), 16);
    assert!(open_calls.iter().all(|call| call.syscall == "openat"));
}

#[test]
fn bench_prints_its_figures() {
    workload()
        .args(["bench", "--calls", "1000"])
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(r"(?m)^ns_per_call=[0-9.]+$")
                .expect("regex")
                .and(predicate::str::contains("calls=1000\n"))
                .and(predicate::str::contains("setup_calls=1\n")),
        );
}

#[test]
fn volume_mode_without_manifest_prints_only_the_summary() {
    workload()
        .args(["--rate", "2000", "--duration", "0.1", "--threads", "2"])
        .assert()
        .success()
        .stdout("")
        .stderr(
            predicate::str::contains("calls=200 ").and(predicate::str::contains("manifest=none")),
        );
}

#[test]
fn waiting_for_a_missing_ready_file_times_out() {
    workload()
        .arg("--wait-for")
        .arg(temp_path("never-ready"))
        .args(["--wait-timeout", "0.05"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("did not appear within 0.050 s"));
}

#[test]
fn bad_input_is_a_usage_error() {
    workload().args(["--scenario", "nope"]).assert().code(2);
    workload()
        .args(["--rate", "10", "--duration", "1", "--scenario", "masks"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--rate runs only the random scenario",
        ));
}
