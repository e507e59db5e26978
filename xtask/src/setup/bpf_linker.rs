//! bpf-linker, built against the nightly toolchain's own libLLVM so that no system LLVM is needed.
//!
//! The nightly ships `lib/libLLVM.so.<ver>-rust-<ver>-nightly`. bpf-linker's build wants an LLVM
//! prefix with `lib/libLLVM.so`; we make one out of two symlinks in a folder that stays put,
//! because the installed binary finds libLLVM through an rpath to that folder.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::command;

/// Installs bpf-linker unless a working one is already on PATH.
pub fn ensure() -> Result<()> {
    if command::succeeds(Command::new("bpf-linker").arg("--version")) {
        return Ok(());
    }
    let llvm = NightlyLlvm::discover()?;
    let prefix = llvm_prefix_dir()?;
    llvm.link_into(&prefix)?;
    println!(
        "setup: installing bpf-linker (no working one on PATH): it links the eBPF probes; \
         building against the nightly's LLVM {} ({}) via {} takes a few minutes",
        llvm.major,
        llvm.library.display(),
        prefix.display()
    );
    command::run(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--force",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{}", llvm.major))
            .env("LLVM_PREFIX", &prefix),
    )?;
    if !command::succeeds(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker was installed but `bpf-linker --version` still fails: is cargo's bin folder on PATH?");
    }
    Ok(())
}

/// The nightly toolchain's libLLVM.
struct NightlyLlvm {
    /// The shared library inside the nightly's sysroot.
    library: PathBuf,
    /// LLVM's major version, which picks bpf-linker's `llvm-NN` feature.
    major: u32,
}

impl NightlyLlvm {
    fn discover() -> Result<Self> {
        let sysroot =
            command::stdout_of(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
                .context(
                    "cannot find the nightly toolchain: run `rustup toolchain install nightly`",
                )?;
        let lib_dir = Path::new(sysroot.trim()).join("lib");
        let names: Vec<String> = fs::read_dir(&lib_dir)
            .with_context(|| format!("cannot list {}", lib_dir.display()))?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        let Some(file_name) = pick_libllvm(&names) else {
            bail!(
                "no libLLVM.so.* in {}: the nightly toolchain looks incomplete",
                lib_dir.display()
            );
        };
        let verbose = command::stdout_of(Command::new("rustc").args(["+nightly", "-vV"]))?;
        let Some(major) = llvm_major(&verbose) else {
            bail!("`rustc +nightly -vV` names no LLVM version:\n{verbose}");
        };
        Ok(NightlyLlvm {
            library: lib_dir.join(file_name),
            major,
        })
    }

    /// Makes `prefix/lib/libLLVM.so` and `prefix/lib/<library's own name>` point at the library.
    fn link_into(&self, prefix: &Path) -> Result<()> {
        let lib = prefix.join("lib");
        fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
        let own_name = self
            .library
            .file_name()
            .context("libLLVM path has no file name")?;
        for name in [std::ffi::OsStr::new("libLLVM.so"), own_name] {
            let link = lib.join(name);
            if link.symlink_metadata().is_ok() {
                fs::remove_file(&link)
                    .with_context(|| format!("cannot replace {}", link.display()))?;
            }
            std::os::unix::fs::symlink(&self.library, &link).with_context(|| {
                format!(
                    "cannot link {} to {}",
                    link.display(),
                    self.library.display()
                )
            })?;
        }
        Ok(())
    }
}

/// A folder that outlives the build: `$XDG_DATA_HOME/kspan/llvm-nightly` or
/// `~/.local/share/kspan/llvm-nightly`.
fn llvm_prefix_dir() -> Result<PathBuf> {
    let data_home = match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME")
                .context("HOME is not set: cannot choose where the LLVM prefix lives")?;
            PathBuf::from(home).join(".local/share")
        }
    };
    Ok(data_home.join("kspan/llvm-nightly"))
}

/// The libLLVM shared library among a sysroot's `lib/` file names. Recent nightlies also ship a
/// `libLLVM-NN-rust-….so` that is only a linker script pointing at `libLLVM.so.*`: that one is
/// taken only when there is no `libLLVM.so.*` (older toolchains).
fn pick_libllvm(names: &[String]) -> Option<&str> {
    let named = |prefix: &str| {
        names
            .iter()
            .map(String::as_str)
            .filter(|name| name.starts_with(prefix))
            .min()
    };
    named("libLLVM.so.").or_else(|| named("libLLVM-").filter(|name| name.ends_with(".so")))
}

/// LLVM's major version from `rustc -vV` (`LLVM version: 22.1.0`).
fn llvm_major(rustc_verbose_version: &str) -> Option<u32> {
    rustc_verbose_version
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version:"))
        .and_then(|version| version.trim().split('.').next())
        .and_then(|major| major.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nightly_libllvm_among_other_libraries() {
        let names: Vec<String> = [
            "librustc_driver-1a2b.so",
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "rustlib",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            pick_libllvm(&names),
            Some("libLLVM.so.22.1-rust-1.97.0-nightly")
        );
    }

    #[test]
    fn finds_the_older_libllvm_naming() {
        let names = vec!["libLLVM-17-rust-1.75.0-nightly.so".to_string()];
        assert_eq!(
            pick_libllvm(&names),
            Some("libLLVM-17-rust-1.75.0-nightly.so")
        );
        assert_eq!(pick_libllvm(&["libstd-xyz.so".to_string()]), None);
    }

    #[test]
    fn reads_the_llvm_major_version_from_rustc() {
        let verbose = "rustc 1.97.0-nightly (abc 2026-05-01)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\n\
                       release: 1.97.0-nightly\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(verbose), Some(22));
        assert_eq!(llvm_major("rustc 1.0.0\n"), None);
    }
}
