//! Running host programs with errors that say which program failed and what it printed.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// The cargo profile binaries are built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// `dev`: what `cargo test` builds; `cargo xtask test` reuses its binaries.
    Dev,
    /// `release`: what users run and benchmarks measure.
    Release,
}

impl Profile {
    /// The profile's name, as `cargo --profile` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Dev => "dev",
            Profile::Release => "release",
        }
    }

    /// Where cargo puts the profile's binaries.
    pub fn bin_dir(self) -> PathBuf {
        let dir = match self {
            Profile::Dev => "debug",
            Profile::Release => "release",
        };
        crate::paths::target_dir().join(dir)
    }
}

/// `cargo` arguments that build every test target of the workspace (but the probes, which
/// build for the BPF target only) and, with them, every binary the tests run.
pub const BUILD_ALL_TESTS: [&str; 6] = [
    "test",
    "--workspace",
    "--exclude",
    "kspan-probes",
    "--all-targets",
    "--no-run",
];

/// Builds `packages` with `profile` in the workspace; returns where their binaries are.
///
/// The dev binaries are the very build `cargo test` makes: a `cargo build` of a few packages
/// would unify features differently (no dev-dependencies) and compile much of the tree again.
pub fn build_binaries(profile: Profile, packages: &[&str]) -> Result<PathBuf> {
    println!("==> building ({}): {}", profile.name(), packages.join(" "));
    let mut build = Command::new(env!("CARGO"));
    build.current_dir(crate::paths::workspace_root());
    match profile {
        Profile::Dev => {
            build.args(BUILD_ALL_TESTS);
        }
        Profile::Release => {
            build.args(["build", "--release", "--bins"]);
            for package in packages {
                build.args(["-p", package]);
            }
        }
    }
    run(&mut build)?;
    Ok(profile.bin_dir())
}

/// The command line of `command`, for messages.
pub fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

/// Runs `command` with the terminal as its stdout/stderr; fails unless it exits 0.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start `{}`", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

/// Runs `command` and returns its stdout; on failure the error carries its stderr.
pub fn stdout_of(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", describe(command)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).with_context(|| {
        format!(
            "`{}` printed something that is not UTF-8",
            describe(command)
        )
    })
}

/// Whether `command` starts and exits 0, its output discarded.
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Where `program` is found on `PATH`, if anywhere.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
