//! The fallback chain on this host, as root: told to probe a kernel function that does not
//! exist, `--attach auto` still captures every call (on the tracepoints) and says why kprobe and
//! fentry were refused; `--attach kprobe` fails at once with one line.

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use kspan_e2e::{
    fallback_mismatches, function_missing, judge_dir, MISSING_KERNEL_FUNCTION, NO_KPROBES,
};

/// Whether this kernel can make kprobes (it decides which reason kspan must give for kprobe).
fn kprobes_exist() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe").is_dir()
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_falls_back_to_the_tracepoints_and_says_why() {
    let config = common::config(
        "fallback-auto",
        common::scenarios(&[]),
        &["--kernel-function", MISSING_KERNEL_FUNCTION],
    );
    common::run(&config).await;
    let mut verdict = judge_dir(&config.out_dir)
        .unwrap_or_else(|error| panic!("cannot judge {}: {error:#}", config.out_dir.display()));
    verdict.mismatches.extend(
        fallback_mismatches(&config.out_dir, kprobes_exist())
            .unwrap_or_else(|error| panic!("cannot read the fallback evidence: {error:#}")),
    );
    assert!(
        verdict.expected > 100,
        "the workload made only {} calls",
        verdict.expected
    );
    assert!(verdict.passed(), "{verdict}");
}

#[test]
fn kprobe_alone_on_a_missing_function_fails_at_once_with_one_line() {
    common::require_root();
    let mut kspan = Command::new(common::bin_dir().join("kspan"))
        .args([
            "--attach",
            "kprobe",
            "--kernel-function",
            MISSING_KERNEL_FUNCTION,
        ])
        .args(["--exporter", "stdout"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kspan");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = kspan.try_wait().expect("wait for kspan") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = kspan.kill();
            panic!("kspan attached a kprobe to {MISSING_KERNEL_FUNCTION}, or hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut kspan.stderr.take().expect("stderr"), &mut stderr)
        .expect("read kspan's stderr");
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    let why = if kprobes_exist() {
        function_missing(MISSING_KERNEL_FUNCTION)
    } else {
        NO_KPROBES.to_string()
    };
    let expected = format!("kspan: error: no probe could be attached (kprobe: {why}");
    assert!(
        lines[0].starts_with(&expected),
        "expected `{expected}...`, got: {}",
        lines[0]
    );
}
