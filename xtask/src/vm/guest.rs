//! What the guest runs and how the host judges it: the one place to change when the guest side
//! changes.

use std::path::Path;

use anyhow::Result;

pub use kspan_e2e::Verdict;

/// Cargo packages built (release) for the guest.
pub const CARGO_PACKAGES: &[&str] = &["kspan", "signalfd-workload", "kspan-e2e"];

/// Binaries from `target/release/` copied into the guest's `/bin` (`kspan-e2e` runs the OTLP
/// receiver in-process).
pub const GUEST_BINARIES: &[&str] = &["kspan", "signalfd-workload", "kspan-e2e"];

/// Shell command `/init` runs once per attach mode, with `$mode` set; it leaves its files in
/// `/results/$mode` (which exists). Its exit status does not matter: the host judges the files.
pub const GUEST_COMMAND: &str =
    r#"kspan-e2e run --attach "$mode" --bin-dir /bin --out-dir "/results/$mode""#;

/// Judges the files one mode's guest run left in `dir` (unpacked on the host).
pub fn judge(dir: &Path) -> Result<Verdict> {
    kspan_e2e::judge_dir(dir)
}
