//! `cargo xtask fuzz`: runs each cargo-fuzz target (`fuzz/`) under libFuzzer for a while, seeded
//! with the committed corpus. New inputs and crashes go to `target/fuzz/`; the committed corpus
//! (replayed by `cargo test`, see `decode/tests/fuzz_corpus.rs`) changes only by hand.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result};

use crate::{command, paths, setup};

/// The fuzz targets, as `fuzz/Cargo.toml` names them.
pub const TARGETS: [&str; 2] = ["event_decoder", "decoders"];

/// `cargo xtask fuzz` options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
}

/// Builds the targets, then fuzzes each one; returns whether none crashed.
pub fn run(options: &Options) -> Result<bool> {
    setup::ensure_cargo_fuzz()?;
    let root = paths::workspace_root();
    let work = paths::target_dir().join("fuzz");
    command::run(&mut cargo_fuzz(&root, &["build"]))?;
    let mut passed = true;
    for target in TARGETS {
        let found = work.join("corpus").join(target);
        let artifacts = work.join("artifacts").join(target);
        for dir in [&found, &artifacts] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // libFuzzer adds what it finds to the first corpus directory only.
        let mut fuzz = cargo_fuzz(&root, &["run", target]);
        fuzz.arg(&found)
            .arg(root.join("fuzz").join("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={}", options.seconds))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1");
        println!(
            "==> fuzz {target} for {} s: {}",
            options.seconds,
            command::describe(&fuzz)
        );
        if let Err(error) = command::run(&mut fuzz) {
            eprintln!(
                "fuzz {target}: {error:#}\n  the input is in {}: fix the bug, then commit the input to fuzz/corpus/{target}/ so `cargo test` replays it",
                artifacts.display()
            );
            passed = false;
        }
    }
    Ok(passed)
}

/// `cargo fuzz ARGS` on the nightly toolchain (libFuzzer's instrumentation needs it).
fn cargo_fuzz(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("rustup");
    command
        .current_dir(root)
        .args(["run", "nightly", "cargo", "fuzz"])
        .args(args)
        // `cargo xtask test` lints through the stable clippy-driver, which the nightly rejects.
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    command
}
