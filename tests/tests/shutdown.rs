//! Shutdown under load, on this host, as root.

mod common;

use std::time::Duration;

use kspan_e2e::{judge_dir_with, Completeness};

/// SIGTERM while the workload is still calling: kspan exports every call completed before it
/// detached (per thread, an unbroken prefix of the calls), loses none, exits 0, and leaves no
/// program attached.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_exports_every_completed_call_and_detaches() {
    let workload = common::scenarios(&[
        "--scenario",
        "random",
        "--threads",
        "2",
        "--calls",
        "400000",
    ]);
    let mut config = common::config("sigterm-under-load", workload, &[]);
    config.stop_kspan_after = Some(Duration::from_millis(500));
    let record = common::run(&config).await;
    assert_eq!(record.kspan_exit, Some(0));
    let verdict = judge_dir_with(&config.out_dir, Completeness::Prefix).expect("judge");
    assert!(verdict.passed(), "{verdict}");
    assert!(
        verdict.spans > 1000,
        "only {} calls were captured before the stop",
        verdict.spans
    );
    assert!(
        verdict.missing > 0,
        "the workload had finished before kspan was stopped"
    );
    // The programs this kspan held, not any other kspan's the host may be running.
    assert!(
        record.kspan_program_ids.len() >= 2,
        "kspan held no probe pair once ready: {:?}",
        record.kspan_program_ids
    );
    let leftover: Vec<String> = loaded_programs()
        .into_iter()
        .filter(|line| {
            line.split(':')
                .next()
                .and_then(|id| id.parse().ok())
                .is_some_and(|id: u32| record.kspan_program_ids.contains(&id))
        })
        .collect();
    assert!(
        leftover.is_empty(),
        "programs still loaded after kspan exited: {leftover:?}"
    );
}

/// The first line of each loaded BPF program (`bpftool prog show`): `ID: TYPE  name NAME ...`.
fn loaded_programs() -> Vec<String> {
    let output = std::process::Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .expect(
            "bpftool is needed to list loaded programs (`cargo xtask setup --bench` installs it)",
        );
    assert!(
        output.status.success(),
        "bpftool failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(" name "))
        .map(str::to_string)
        .collect()
}

/// A collector that accepts connections and never answers keeps kspan's final flush waiting;
/// a second signal must end it at once (exit code 130) instead of waiting out the timeout.
#[test]
fn a_second_signal_forces_a_prompt_exit() {
    use std::process::{Command, Stdio};

    use nix::{
        sys::signal::{kill, Signal},
        unistd::Pid,
    };

    common::require_root();
    let dir = std::env::temp_dir().join("kspan-e2e").join("second-signal");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready");
    // Bound but never accepting: connections complete in the kernel's backlog, requests hang.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", blackhole.local_addr().unwrap());

    let mut workload = Command::new(common::bin_dir().join("signalfd-workload"))
        .args(["--scenario", "masks", "--wait-for"])
        .arg(&ready)
        .stderr(Stdio::null())
        .spawn()
        .expect("start the workload");
    let mut kspan = Command::new(common::bin_dir().join("kspan"))
        .args([
            "--pid",
            &workload.id().to_string(),
            "--otlp-endpoint",
            &endpoint,
            "--otlp-timeout",
            "60s",
        ])
        .arg("--ready-file")
        .arg(&ready)
        .stderr(std::fs::File::create(dir.join("kspan.log")).unwrap())
        .spawn()
        .expect("start kspan");
    assert!(workload.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    let pid = Pid::from_raw(kspan.id() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        kspan.try_wait().unwrap().is_none(),
        "kspan should still be flushing to the silent collector"
    );
    let second = std::time::Instant::now();
    kill(pid, Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = kspan.try_wait().unwrap() {
            break status;
        }
        assert!(
            second.elapsed() < Duration::from_secs(3),
            "kspan ignored the second signal"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(130), "exit after the second signal");
    drop(blackhole);
}
