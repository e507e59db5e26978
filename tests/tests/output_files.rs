//! Root kspan's ready and summary files against an unprivileged user who owns their directory,
//! on this host, as root. The refusals at the start are CLI tests (`agent/tests/cli.rs`); this
//! is what needs kspan running: the ready file written past a planted `ready.partial` link, and
//! a summary link planted while kspan runs.

mod common;

use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// Generous for a loaded 2-core machine: kspan loads and attaches its probes in well under 1 s.
const DEADLINE: Duration = Duration::from_secs(60);

/// `ln -s target link` as `nobody`.
fn plant_link_as_nobody(target: &Path, link: &Path) {
    let status = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "ln",
            "-s",
        ])
        .arg(target)
        .arg(link)
        .status()
        .expect("running setpriv (package util-linux)");
    assert!(
        status.success(),
        "nobody could not plant {}",
        link.display()
    );
}

fn fresh_dir(path: &Path, mode: u32) {
    let _ = std::fs::remove_dir_all(path);
    std::fs::create_dir_all(path).expect("creating a test directory");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .expect("setting a test directory's mode");
}

#[test]
fn links_planted_by_a_local_user_never_redirect_root_kspans_files() {
    common::require_root();
    let base = std::env::temp_dir().join("kspan-e2e").join("output-files");
    fresh_dir(&base, 0o755);
    let root_dir = base.join("root");
    fresh_dir(&root_dir, 0o755);
    let (ready_victim, summary_victim) = (
        root_dir.join("ready-victim"),
        root_dir.join("summary-victim"),
    );
    for victim in [&ready_victim, &summary_victim] {
        std::fs::write(victim, "precious\n").expect("writing a root-owned file");
    }
    let user_dir = base.join("nobody");
    fresh_dir(&user_dir, 0o755);
    nix::unistd::chown(&user_dir, Some(65534.into()), Some(65534.into()))
        .expect("giving the directory to nobody");
    // Where kspan once wrote its ready file before renaming it.
    plant_link_as_nobody(&ready_victim, &user_dir.join("ready.partial"));
    let (ready, summary) = (user_dir.join("ready"), user_dir.join("summary.json"));

    // A process that makes no signalfd calls: kspan captures nothing, and stops quickly.
    let mut idle = Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("starting sleep");
    let log = base.join("kspan.log");
    let mut kspan = Command::new(common::bin_dir().join("kspan"))
        .args(["--exporter", "stdout", "--pid", &idle.id().to_string()])
        .arg("--ready-file")
        .arg(&ready)
        .arg("--summary-file")
        .arg(&summary)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("creating kspan's log"))
        .spawn()
        .expect("starting kspan");
    let started = Instant::now();
    while !ready.exists() {
        if let Some(status) = kspan.try_wait().expect("waiting for kspan") {
            let _ = idle.kill();
            panic!(
                "kspan exited ({status}) before it was ready:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < DEADLINE,
            "kspan was not ready within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let ready_meta = std::fs::symlink_metadata(&ready).expect("the ready file");
    let expected_ready = (true, 0o600, 0);
    let actual_ready = (
        ready_meta.file_type().is_file(),
        ready_meta.permissions().mode() & 0o777,
        ready_meta.uid(),
    );
    // The summary link is planted while kspan runs, after every check at its start.
    plant_link_as_nobody(&summary_victim, &summary);
    kill(Pid::from_raw(kspan.id() as i32), Signal::SIGTERM).expect("signalling kspan");
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = kspan.try_wait().expect("waiting for kspan") {
            break status;
        }
        if stopped.elapsed() > DEADLINE {
            let _ = kspan.kill();
            panic!("kspan did not stop within {DEADLINE:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = idle.kill();
    let _ = idle.wait();
    let stderr = std::fs::read_to_string(&log).expect("kspan's log");

    for victim in [&ready_victim, &summary_victim] {
        assert_eq!(
            std::fs::read_to_string(victim).expect("a root-owned file"),
            "precious\n",
            "{} was written through a planted link; kspan's log:\n{stderr}",
            victim.display()
        );
    }
    assert_eq!(
        actual_ready, expected_ready,
        "the ready file (regular, mode, owner) is not as expected"
    );
    let ready_text = std::fs::read_to_string(&ready).expect("the ready file");
    let lines: Vec<&str> = ready_text.lines().collect();
    assert!(
        matches!(lines[..], [probe, pid] if probe.starts_with("probe=") && pid == format!("pid={}", kspan.id())),
        "the ready file should say the probe and kspan's pid: {ready_text:?}"
    );
    // The summary could not be written: a failure, said in one line.
    assert_eq!(status.code(), Some(1), "kspan's log:\n{stderr}");
    let expected = format!(
        "kspan: error: --summary-file {}: it is a symbolic link: kspan does not write through links",
        summary.display()
    );
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|line| line.starts_with(&expected)),
        "expected the last line to start with `{expected}`; kspan's log:\n{stderr}"
    );
    let mut left: Vec<String> = std::fs::read_dir(&user_dir)
        .expect("the user's directory")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["ready", "ready.partial", "summary.json"],
        "files kspan left"
    );
    let _ = std::fs::remove_dir_all(&base);
}
