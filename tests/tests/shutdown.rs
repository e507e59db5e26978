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
    // Exporting ~100k calls can take longer than the default 5 s deadline on a loaded 2-core
    // machine; the deadline has tests of its own, this one is about losing nothing.
    let mut config = common::config(
        "sigterm-under-load",
        workload,
        &["--shutdown-timeout", "60s"],
    );
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
            "--shutdown-timeout",
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

/// A collector that accepts connections and never answers, 12,001 calls waiting for export:
/// SIGTERM ends kspan within `--shutdown-timeout` (plus a margin for a loaded machine; the
/// requests' own 60 s timeouts would have held it for minutes), exit 0, and the summary counts
/// every call as lost at the stop, under its own stage.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_collector_cannot_hold_the_stop_past_the_deadline() {
    use std::process::{Command, Stdio};

    use kspan_receiver::{
        hostile::{HostileCollector, Hostility},
        Transport,
    };
    use nix::{
        sys::signal::{kill, Signal},
        unistd::Pid,
    };

    common::require_root();
    let dir = std::env::temp_dir()
        .join("kspan-e2e")
        .join("silent-collector");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ready, summary) = (dir.join("ready"), dir.join("summary.json"));
    let silent = HostileCollector::start(
        Transport::Grpc,
        "127.0.0.1:0".parse().unwrap(),
        Hostility::Silent,
    )
    .await
    .unwrap();

    let mut workload = Command::new(common::bin_dir().join("signalfd-workload"))
        .args(["bench", "--calls", "12000", "--wait-for"])
        .arg(&ready)
        .stdout(Stdio::null())
        .spawn()
        .expect("start the workload");
    let deadline = Duration::from_secs(2);
    let mut kspan = Command::new(common::bin_dir().join("kspan"))
        .args(["--pid", &workload.id().to_string()])
        .args(["--otlp-endpoint", &silent.endpoint()])
        .args(["--otlp-timeout", "60s", "--shutdown-timeout", "2s"])
        .arg("--ready-file")
        .arg(&ready)
        .arg("--summary-file")
        .arg(&summary)
        .stderr(std::fs::File::create(dir.join("kspan.log")).unwrap())
        .spawn()
        .expect("start kspan");
    // Every completed call is in the ring buffer once the workload has exited: the stop drains
    // it before the flush.
    assert!(workload.wait().unwrap().success());
    let stop = std::time::Instant::now();
    kill(Pid::from_raw(kspan.id() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || kspan.wait())
        .await
        .unwrap()
        .unwrap();
    let took = stop.elapsed();
    let margin = Duration::from_secs(10);
    assert!(
        took < deadline + margin,
        "the stop took {took:?} with --shutdown-timeout {deadline:?}"
    );
    assert_eq!(status.code(), Some(0), "exit after the stop");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary written"))
            .expect("summary JSON");
    let calls = summary["calls_read"].as_u64().unwrap();
    let export = &summary["export"];
    assert!(calls >= 12_001, "only {calls} calls read: {summary}");
    let counted = [
        export["spans_exported"].as_u64(),
        export["spans_lost_at_stop"].as_u64(),
        export["logs_lost_at_stop"].as_u64(),
        summary["lost"].as_u64(),
    ];
    assert_eq!(
        counted,
        [Some(0), Some(calls), Some(calls), Some(calls)],
        "{summary}"
    );
    let log = std::fs::read_to_string(dir.join("kspan.log")).unwrap();
    assert!(log.contains("stop deadline passed"), "{log}");
    println!("stop against a silent collector with {calls} calls waiting: {took:?}");
}

/// A SIGTERM as soon as kspan's `main` runs (its runtime's worker threads exist), long before
/// its probes are attached: a clean stop (exit 0, summary written), not a kill (exit 143,
/// which it was while the handlers came only after the start, ~60 ms in). Repeated, as the
/// moment varies.
#[test]
fn a_sigterm_during_the_start_is_a_clean_stop() {
    use std::process::{Command, Stdio};

    use nix::{
        sys::signal::{kill, Signal},
        unistd::Pid,
    };

    common::require_root();
    let dir = std::env::temp_dir().join("kspan-e2e").join("early-sigterm");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for attempt in 0..5 {
        let summary = dir.join(format!("summary-{attempt}.json"));
        let log = dir.join(format!("kspan-{attempt}.log"));
        let mut kspan = Command::new(common::bin_dir().join("kspan"))
            // Nothing to capture (pid 1 makes no signalfd calls here), nothing to ship.
            .args(["--exporter", "stdout", "--pid", "1", "--summary-file"])
            .arg(&summary)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start kspan");
        let tasks = format!("/proc/{}/task", kspan.id());
        let patience = std::time::Instant::now() + Duration::from_secs(60);
        // main has started once the runtime's two workers run beside the main thread.
        while std::fs::read_dir(&tasks).map_or(0, |tasks| tasks.count()) < 3 {
            assert!(
                kspan.try_wait().unwrap().is_none(),
                "kspan exited during its start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            assert!(std::time::Instant::now() < patience, "kspan never started");
            std::thread::yield_now();
        }
        kill(Pid::from_raw(kspan.id() as i32), Signal::SIGTERM).unwrap();
        let status = kspan.wait().unwrap();
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            status.code(),
            Some(0),
            "attempt {attempt}: SIGTERM during the start: {status}\n{log}"
        );
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary written"))
                .expect("summary JSON");
        assert_eq!(written["lost"].as_u64(), Some(0), "{written}");
    }
}
