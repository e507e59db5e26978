//! The fallback chain's evidence in a run directory: the probe kspan attached, and why it
//! refused the ones it tried first (its `probe refused` log lines).

use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;

use crate::run::artifacts;

/// A kernel function no kernel has: kprobe and fentry on it must be refused.
pub const MISSING_KERNEL_FUNCTION: &str = "kspan_no_such_function";

/// What kspan says when the kernel has no kprobes at all (this project's host).
pub const NO_KPROBES: &str = "this kernel has no kprobes";

/// What kspan says when the kernel function does not exist.
pub fn function_missing(function: &str) -> String {
    format!("`{function}` is not a function of this kernel")
}

/// Each refused probe and its reason, from kspan's log
/// (`WARN kspan::run: probe refused, falling back probe=kprobe reason="..."`).
pub fn refusals(log: &str) -> BTreeMap<String, String> {
    log.lines()
        .filter(|line| line.contains("probe refused"))
        .filter_map(|line| {
            let probe = line.split_once(" probe=")?.1.split_whitespace().next()?;
            let reason = line.split_once(" reason=\"")?.1.strip_suffix('"')?;
            let reason = reason.replace("\\\"", "\"").replace("\\\\", "\\");
            Some((probe.to_string(), reason))
        })
        .collect()
}

/// What is wrong with a run of `--attach auto --kernel-function` [`MISSING_KERNEL_FUNCTION`]:
/// it must have attached the tracepoints, and said that kprobe was refused because the
/// function is missing (or, where `kprobes_exist` is false, because there are no kprobes) and
/// fentry because the function is missing. Empty when all holds.
pub fn fallback_mismatches(dir: &Path, kprobes_exist: bool) -> anyhow::Result<Vec<String>> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let mut mismatches = Vec::new();
    let ready = read(artifacts::READY)?;
    if !ready.lines().any(|line| line == "probe=tracepoint") {
        mismatches.push(format!(
            "kspan should have fallen back to the tracepoints; its ready file says: {ready:?}"
        ));
    }
    let refused = refusals(&read(artifacts::KSPAN_LOG)?);
    let missing = function_missing(MISSING_KERNEL_FUNCTION);
    let kprobe_reason = if kprobes_exist {
        missing.as_str()
    } else {
        NO_KPROBES
    };
    for (probe, expected) in [("kprobe", kprobe_reason), ("fentry", missing.as_str())] {
        match refused.get(probe) {
            Some(reason) if reason.contains(expected) => {}
            Some(reason) => mismatches.push(format!(
                "{probe} was refused without saying `{expected}`: {reason}"
            )),
            None => mismatches.push(format!(
                "kspan's log has no `probe refused` line for {probe} (refusals: {refused:?})"
            )),
        }
    }
    Ok(mismatches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_refusals_from_the_log() {
        let log = "\
2026-11-28T10:22:32.341627Z  WARN kspan::run: probe refused, falling back probe=kprobe reason=\"this kernel has no kprobes (/sys/bus/event_source/devices/kprobe is missing)\"
2026-11-28T10:22:32.341711Z  WARN kspan::run: probe refused, falling back probe=fentry reason=\"`f` is not a function of this kernel: a \\\"quoted\\\" word\"
2026-11-28T10:22:32.341800Z  INFO kspan::run: attached probe=tracepoint function=f
";
        let refused = refusals(log);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused["kprobe"].starts_with(NO_KPROBES));
        assert_eq!(
            refused["fentry"],
            "`f` is not a function of this kernel: a \"quoted\" word"
        );
    }

    #[test]
    fn a_run_that_did_not_fall_back_or_say_why_is_caught() {
        let dir = std::env::temp_dir().join(format!("kspan-fallback-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = function_missing(MISSING_KERNEL_FUNCTION);
        let log = format!(
            "WARN kspan::run: probe refused, falling back probe=kprobe reason=\"{missing}\"\n\
             WARN kspan::run: probe refused, falling back probe=fentry reason=\"{missing}: x\"\n"
        );
        std::fs::write(dir.join(artifacts::KSPAN_LOG), &log).unwrap();
        std::fs::write(dir.join(artifacts::READY), "probe=tracepoint\npid=1\n").unwrap();
        assert!(fallback_mismatches(&dir, true).unwrap().is_empty());
        // Where there are no kprobes, the kprobe refusal must say that instead.
        assert_eq!(fallback_mismatches(&dir, false).unwrap().len(), 1);

        std::fs::write(dir.join(artifacts::READY), "probe=fentry\npid=1\n").unwrap();
        let fentry_log = log.lines().next().unwrap().to_string();
        std::fs::write(dir.join(artifacts::KSPAN_LOG), fentry_log).unwrap();
        let mismatches = fallback_mismatches(&dir, true).unwrap();
        assert_eq!(mismatches.len(), 2, "{mismatches:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
