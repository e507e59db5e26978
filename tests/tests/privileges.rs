//! Least privilege, end to end on this host (CI runs it as root). kspan (`--attach auto`) is
//! launched through capsh with exactly the capabilities it needs, as root and as `nobody`, and
//! must capture every call; with any one of them taken away it must stop at once, with one line
//! naming that capability, and leave no program loaded. The tests take turns: the check for leftover
//! programs must not see the programs of a capture running beside it.

mod common;

use std::{
    collections::BTreeSet,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use kspan_e2e::judge_dir;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Who kspan runs as.
#[derive(Clone, Copy, Debug)]
enum Identity {
    /// uid 0 with a reduced bounding set: tracefs belongs to root, no DAC capability is needed.
    Root,
    /// `nobody` with ambient capabilities: tracefs (mode 0700) is closed to it.
    Nobody,
}

impl Identity {
    /// What kspan needs as this identity (README, "Privileges").
    fn needs(self) -> &'static [&'static str] {
        match self {
            Identity::Root => &["cap_bpf", "cap_perfmon"],
            Identity::Nobody => &["cap_bpf", "cap_perfmon", "cap_dac_read_search"],
        }
    }

    /// capsh and its arguments, running what follows (kspan's path and arguments) as this
    /// identity with exactly `caps` effective.
    fn wrapper(self, caps: &[&str]) -> Vec<String> {
        let mut args = vec!["capsh".to_string()];
        match self {
            Identity::Root => {
                // Root's effective set after exec is its bounding set.
                let drop: Vec<String> = bounding_set()
                    .into_iter()
                    .filter(|cap| !caps.contains(&cap.as_str()))
                    .collect();
                args.push(format!("--drop={}", drop.join(",")));
            }
            Identity::Nobody => {
                let caps = caps.join(",");
                args.push("--user=nobody".into());
                args.push(format!("--inh={caps}"));
                args.push(format!("--addamb={caps}"));
            }
        }
        // bash execs "$0" (kspan) with "$@": kspan keeps the pid the harness signals.
        args.extend(["--", "-c", r#"exec "$0" "$@""#].map(String::from));
        args
    }
}

/// Runs `wrapper` around `program args`, returning the child.
fn wrapped(wrapper: &[String], program: &Path) -> Command {
    let mut command = Command::new(&wrapper[0]);
    command.args(&wrapper[1..]).arg(program);
    command
}

/// Capability names from capsh (`0x...=cap_chown,cap_dac_override,...`).
fn decode(hex: &str) -> BTreeSet<String> {
    let output = Command::new("capsh")
        .arg(format!("--decode={hex}"))
        .output()
        .expect("capsh is needed (apt package libcap2-bin; `cargo xtask setup` installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .split_once('=')
        .map(|(_, names)| names.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// A capability set from a `/proc/<pid>/status` line such as `CapBnd:\t000001fffeffffff`.
fn status_caps(status: &str, field: &str) -> BTreeSet<String> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    decode(hex)
}

/// The capabilities this process may hand on.
fn bounding_set() -> BTreeSet<String> {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status_caps(&status, "CapBnd:")
}

/// The effective set a program launched through `wrapper` gets (read by `cat` in its place).
fn effective_through(wrapper: &[String]) -> BTreeSet<String> {
    let output = wrapped(wrapper, Path::new("/bin/cat"))
        .arg("/proc/self/status")
        .output()
        .expect("run cat through capsh");
    assert!(
        output.status.success(),
        "capsh {wrapper:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    status_caps(&String::from_utf8_lossy(&output.stdout), "CapEff:")
}

/// A run directory `nobody` may write kspan's ready and summary files into.
fn open_dir(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create the run directory");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .expect("open the run directory");
}

/// Where `identity` can run the binaries from. `nobody` gets copies in the temporary directory:
/// the checkout may sit under a directory only root may enter (`mktemp -d` makes them 0700).
fn bin_dir_for(identity: Identity) -> PathBuf {
    let built = common::bin_dir();
    if matches!(identity, Identity::Root) {
        return built;
    }
    let dir = std::env::temp_dir()
        .join("kspan-e2e")
        .join("bin-for-nobody");
    std::fs::create_dir_all(&dir).expect("create the directory for nobody's binaries");
    // Ours to open, whatever the umask; the run directories sit in the same parent.
    for own in [&dir, dir.parent().expect("kspan-e2e")] {
        std::fs::set_permissions(own, std::fs::Permissions::from_mode(0o755))
            .expect("open the directory for nobody");
    }
    for ancestor in dir.ancestors() {
        let mode = std::fs::metadata(ancestor)
            .unwrap_or_else(|error| panic!("{}: {error}", ancestor.display()))
            .permissions()
            .mode();
        assert!(
            mode & 0o001 != 0,
            "`nobody` cannot enter {} (mode {mode:o}): point TMPDIR at a directory every user can enter",
            ancestor.display()
        );
    }
    for name in ["kspan", "signalfd-workload"] {
        // Copied beside, then renamed: a copy another test is running stays intact.
        let staged = dir.join(format!("{name}.{}", std::process::id()));
        std::fs::copy(built.join(name), &staged)
            .unwrap_or_else(|error| panic!("copy {name} for nobody: {error}"));
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))
            .expect("make the copy executable by nobody");
        std::fs::rename(&staged, dir.join(name)).expect("put the copy in place");
    }
    dir
}

/// Ids of loaded BPF programs that belong to kspan (`bpftool prog show`).
fn kspan_programs() -> BTreeSet<String> {
    let output = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .expect(
            "bpftool is needed to list loaded programs (`cargo xtask setup --bench` installs it)",
        );
    assert!(output.status.success(), "bpftool failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(" name kspan_"))
        .map(str::to_string)
        .collect()
}

/// With exactly what it needs, kspan captures every call of the workload.
async fn captures_with_exactly_what_it_needs(identity: Identity, name: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    common::require_root();
    let wrapper = identity.wrapper(identity.needs());
    let expected: BTreeSet<String> = identity.needs().iter().map(|c| c.to_string()).collect();
    assert_eq!(
        effective_through(&wrapper),
        expected,
        "capsh should give exactly what kspan needs"
    );
    let mut config = common::config(name, common::scenarios(&[]), &[]);
    open_dir(&config.out_dir);
    config.kspan_wrapper = wrapper;
    config.bin_dir = bin_dir_for(identity);
    common::run(&config).await;
    let verdict = judge_dir(&config.out_dir)
        .unwrap_or_else(|error| panic!("cannot judge {}: {error:#}", config.out_dir.display()));
    assert!(
        verdict.expected > 100,
        "the workload made only {} calls",
        verdict.expected
    );
    assert!(verdict.passed(), "{verdict}");
}

/// Without `dropped`, kspan stops at once with one line naming it, and loads nothing.
fn refuses_without(identity: Identity, dropped: &str) {
    let caps: Vec<&str> = identity
        .needs()
        .iter()
        .copied()
        .filter(|cap| *cap != dropped)
        .collect();
    refuses(identity, &caps, &[], dropped);
}

/// Holding only `caps`, kspan run with `args` stops at once with one line naming `lacking`
/// (and none of `caps`), and loads nothing.
fn refuses(identity: Identity, caps: &[&str], args: &[&str], lacking: &str) {
    let dropped = lacking;
    let dir = std::env::temp_dir()
        .join("kspan-e2e")
        .join(format!("without-{dropped}-{identity:?}"));
    let _ = std::fs::remove_dir_all(&dir);
    open_dir(&dir);
    let ready = dir.join("ready");
    let before = kspan_programs();
    let started = Instant::now();
    let mut kspan = wrapped(
        &identity.wrapper(caps),
        &bin_dir_for(identity).join("kspan"),
    )
    .args(args)
    .args(["--exporter", "stdout", "--ready-file"])
    .arg(&ready)
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start capsh");
    let status = loop {
        if let Some(status) = kspan.try_wait().expect("wait for kspan") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = kspan.kill();
            panic!(
                "{identity:?} without {dropped}: kspan ran on (ready: {})",
                ready.exists()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let after = kspan_programs();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut kspan.stderr.take().expect("stderr"), &mut stderr)
        .expect("read kspan's stderr");
    let context = format!("{identity:?} {args:?} without {dropped}");
    assert_eq!(status.code(), Some(1), "{context}: stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{context}: expected one line, got: {stderr}"
    );
    let named = |cap: &str| lines[0].contains(&format!("{} (", cap.to_uppercase()));
    // Either the check at start (`missing CAP_X (...)`) or, with `auto`, the fallback chain
    // refusing each probe (`... tracepoint: missing CAP_X (...)`).
    assert!(
        lines[0].starts_with("kspan: error: ") && named(dropped),
        "{context}: the line should name {}: {}",
        dropped.to_uppercase(),
        lines[0]
    );
    for held in caps {
        assert!(
            !named(held),
            "{context}: {held} is held, yet named: {}",
            lines[0]
        );
    }
    assert!(!ready.exists(), "{context}: kspan became ready");
    let left: Vec<&String> = after.difference(&before).collect();
    assert!(left.is_empty(), "{context}: programs left loaded: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn as_root_with_only_bpf_and_perfmon_every_call_is_captured() {
    captures_with_exactly_what_it_needs(Identity::Root, "privileges-root").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn as_nobody_with_bpf_perfmon_and_dac_read_search_every_call_is_captured() {
    captures_with_exactly_what_it_needs(Identity::Nobody, "privileges-nobody").await;
}

#[test]
fn as_root_without_any_one_needed_capability_kspan_names_it_and_stops() {
    let _turn = ONE_AT_A_TIME.blocking_lock();
    common::require_root();
    for cap in Identity::Root.needs() {
        refuses_without(Identity::Root, cap);
    }
}

#[test]
fn as_nobody_without_any_one_needed_capability_kspan_names_it_and_stops() {
    let _turn = ONE_AT_A_TIME.blocking_lock();
    common::require_root();
    for cap in Identity::Nobody.needs() {
        refuses_without(Identity::Nobody, cap);
    }
}
