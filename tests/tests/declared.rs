//! Declared probes end to end on this host, as root: `kspan --probe syscall:openat` (and
//! openat2, with a member path through the caller's memory) must show each call of the
//! workload's `open` scenario as exactly one span and log record, with its arguments, strings,
//! result and time, and nothing else on the scenario's threads.

mod common;

use kspan_e2e::judge_dir;

#[tokio::test(flavor = "multi_thread")]
async fn every_openat_call_arrives_exactly() {
    // openat2 declared with a member path through the caller's memory (`how->flags`).
    let dir = probes_dir("declared-openat2");
    let probes = probe_file(&dir, "openat2", &["dfd", "filename", "how->flags"]);
    let workload = common::scenarios(&[
        "--scenario",
        "open",
        "--threads",
        "4",
        "--calls",
        "50",
        "--openat2",
    ]);
    let kspan = ["--probe", "syscall:openat", "--probes", &probes];
    let config = common::config("declared-openat", workload, &kspan);
    common::run(&config).await;
    let verdict = judge_dir(&config.out_dir)
        .unwrap_or_else(|error| panic!("cannot judge {}: {error:#}", config.out_dir.display()));
    // The open scenario makes no signalfd call, and kspan traces only what is declared.
    assert_eq!((verdict.expected, verdict.spans), (0, 0), "{verdict}");
    assert_eq!(verdict.declared.expected, 400, "{verdict}");
    assert!(verdict.passed(), "{verdict}");
    // Shows what was ignored (the workload's own opens on its other threads) and why.
    println!("{verdict}");
    // The probes' own counters add up to the totals: every entry is one of theirs, none lost.
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(config.out_dir.join(kspan_e2e::artifacts::SUMMARY)).expect("summary"),
    )
    .expect("summary is JSON");
    let per_probe = &summary["kernel_per_probe"];
    let entries = |probe: &str| per_probe[probe]["entries"].as_u64().unwrap_or_default();
    assert_eq!(
        Some(entries("openat") + entries("openat2")),
        summary["kernel"]["entries"].as_u64(),
        "{summary:#}"
    );
    for probe in ["openat", "openat2"] {
        let lost = serde_json::json!({
            "ring_buffer_full": 0,
            "stale_entries": 0,
            "returns_without_entry": 0,
            "entries_not_stored": 0,
        });
        let mut counters = per_probe[probe].clone();
        counters
            .as_object_mut()
            .expect("counters")
            .remove("entries");
        assert_eq!(counters, lost, "{probe}: {summary:#}");
        assert!(entries(probe) >= 200, "{probe}: {summary:#}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A probe file in `dir` declaring `syscall` with `arguments`; its path.
fn probe_file(dir: &std::path::Path, syscall: &str, arguments: &[&str]) -> String {
    let arguments: String = arguments
        .iter()
        .map(|name| format!("[[probe.argument]]\nname = \"{name}\"\n"))
        .collect();
    let path = dir.join(format!("{syscall}.toml"));
    std::fs::write(
        &path,
        format!("[[probe]]\nsyscall = \"{syscall}\"\n{arguments}"),
    )
    .expect("probe file");
    path.display().to_string()
}

/// A directory of the test's own for probe files.
fn probes_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kspan-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A probe that reads no string sends its event without the string slots (a quarter of the
/// bytes): declared with `dfd`, `flags` and `mode` only, each openat still arrives exactly with
/// those three arguments.
#[tokio::test(flavor = "multi_thread")]
async fn a_probe_without_strings_arrives_exactly() {
    let dir = probes_dir("declared-no-strings");
    let probes = probe_file(&dir, "openat", &["dfd", "flags", "mode"]);
    let workload = common::scenarios(&["--scenario", "open", "--threads", "2", "--calls", "16"]);
    let config = common::config("declared-no-strings", workload, &["--probes", &probes]);
    common::run(&config).await;
    // The workload records every argument it passed: the expectation keeps the declared ones.
    let manifest = config.out_dir.join(kspan_e2e::artifacts::DECLARED_MANIFEST);
    let records: Vec<String> = std::fs::read_to_string(&manifest)
        .expect("declared manifest")
        .lines()
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).expect("a record");
            let args = record["args"].as_array_mut().expect("args");
            args.retain(|arg| arg["name"] != "filename");
            record.to_string()
        })
        .collect();
    std::fs::write(&manifest, records.join("\n") + "\n").expect("rewrite the manifest");
    let verdict = judge_dir(&config.out_dir)
        .unwrap_or_else(|error| panic!("cannot judge {}: {error:#}", config.out_dir.display()));
    assert_eq!(verdict.declared.expected, 32, "{verdict}");
    assert!(verdict.passed(), "{verdict}");
    let _ = std::fs::remove_dir_all(&dir);
}
