//! The kernels `vm-test` boots: entries of `ci/kernels.toml` resolved to Debian kernel packages
//! and cached as `target/vm/kernels/<name>/vmlinuz`, or bzImages the user names.

use std::{
    cmp::Ordering,
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::debian_version;
use crate::{apt::Apt, command, probe_run::ProbeRun};

/// One `[[kernel]]` entry of `ci/kernels.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelEntry {
    /// Short name used in reports and paths, e.g. `debian-6.12`.
    pub name: String,
    /// apt package name regex; the newest matching package is booted.
    pub package: String,
    /// Attach modes that must pass on this kernel.
    pub required_modes: Vec<ProbeRun>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelsFile {
    kernel: Vec<KernelEntry>,
}

/// Parses and checks the text of `ci/kernels.toml`.
pub fn parse_kernels_toml(text: &str) -> Result<Vec<KernelEntry>> {
    let file: KernelsFile = toml::from_str(text)?;
    ensure!(!file.kernel.is_empty(), "no [[kernel]] entries");
    let mut names = BTreeSet::new();
    for entry in &file.kernel {
        ensure!(
            !entry.name.is_empty()
                && entry
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "kernel name `{}` must be non-empty and use only letters, digits, `.`, `_` and `-` \
             (it names a folder)",
            entry.name
        );
        ensure!(
            names.insert(&entry.name),
            "kernel `{}` is listed twice",
            entry.name
        );
        ensure!(
            !entry.package.trim().is_empty(),
            "kernel `{}` has an empty package pattern",
            entry.name
        );
        ensure!(
            !entry.required_modes.is_empty(),
            "kernel `{}` requires no attach mode",
            entry.name
        );
    }
    Ok(file.kernel)
}

/// Reads `ci/kernels.toml`.
pub fn load_kernels_toml(path: &Path) -> Result<Vec<KernelEntry>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_kernels_toml(&text)
        .with_context(|| format!("{} is not a valid kernel list", path.display()))
}

/// A kernel image ready to boot.
#[derive(Clone, Debug)]
pub struct BootKernel {
    /// Name in reports and result paths.
    pub name: String,
    /// The bzImage.
    pub image: PathBuf,
    /// Where it came from (package and version, or the user's path).
    pub origin: String,
}

/// A bzImage the user named with `--kernel`; named after its file, made unique among `taken`.
pub fn user_kernel(image: &Path, taken: &mut BTreeSet<String>) -> Result<BootKernel> {
    ensure!(
        image.is_file(),
        "--kernel {}: no such file",
        image.display()
    );
    let stem = image
        .file_name()
        .map(|name| {
            name.to_string_lossy().replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-',
                "_",
            )
        })
        .unwrap_or_else(|| "kernel".to_string());
    let mut name = stem.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{stem}-{n}");
        n += 1;
    }
    Ok(BootKernel {
        name,
        image: image.to_path_buf(),
        origin: image.display().to_string(),
    })
}

/// What a kernel's cache folder holds besides `vmlinuz` and `config`.
#[derive(Debug, Serialize, Deserialize)]
struct CachedPackage {
    pattern: String,
    package: String,
    version: String,
}

const CACHE_RECORD: &str = "package.toml";

/// The entry's kernel from the cache, or the newest matching package downloaded and unpacked
/// into `cache_root/<name>/` (keeping only `vmlinuz` and `config`).
pub fn fetch(entry: &KernelEntry, cache_root: &Path, apt: &mut Apt) -> Result<BootKernel> {
    let dir = cache_root.join(&entry.name);
    let image = dir.join("vmlinuz");
    if let Some(cached) =
        read_cache_record(&dir).filter(|cached| cached.pattern == entry.package && image.is_file())
    {
        println!(
            "[{}] kernel cached: {} {}",
            entry.name, cached.package, cached.version
        );
        return Ok(boot_kernel(entry, image, &cached));
    }

    apt.update_once()?;
    let names = command::stdout_of(Command::new("apt-cache").args([
        "search",
        "--names-only",
        &entry.package,
    ]))?;
    let names = package_names(&names);
    if names.is_empty() {
        bail!(
            "[{}] no package in the apt index matches `{}`: check ci/kernels.toml against `apt-cache search --names-only`",
            entry.name,
            entry.package
        );
    }
    let madison = command::stdout_of(Command::new("apt-cache").arg("madison").args(&names))?;
    let Some(newest) = newest_package(&madison) else {
        bail!(
            "[{}] apt-cache madison lists no version of {}",
            entry.name,
            names.join(" ")
        );
    };
    println!(
        "[{}] downloading kernel {} {}",
        entry.name, newest.package, newest.version
    );
    download_and_unpack(&newest, &dir)?;
    let record = CachedPackage {
        pattern: entry.package.clone(),
        package: newest.package,
        version: newest.version,
    };
    let text = toml::to_string(&record).context("cannot write the kernel cache record")?;
    fs::write(dir.join(CACHE_RECORD), text)
        .with_context(|| format!("cannot write {}", dir.display()))?;
    Ok(boot_kernel(entry, image, &record))
}

fn boot_kernel(entry: &KernelEntry, image: PathBuf, cached: &CachedPackage) -> BootKernel {
    BootKernel {
        name: entry.name.clone(),
        image,
        origin: format!("{} {}", cached.package, cached.version),
    }
}

fn read_cache_record(dir: &Path) -> Option<CachedPackage> {
    let text = fs::read_to_string(dir.join(CACHE_RECORD)).ok()?;
    toml::from_str(&text).ok()
}

fn download_and_unpack(package: &PackageVersion, dir: &Path) -> Result<()> {
    let download = dir.join("download");
    let extract = dir.join("extract");
    for stale in [&download, &extract] {
        if stale.exists() {
            fs::remove_dir_all(stale)
                .with_context(|| format!("cannot remove {}", stale.display()))?;
        }
    }
    fs::create_dir_all(&download)
        .with_context(|| format!("cannot create {}", download.display()))?;
    command::stdout_of(
        Command::new("apt-get")
            // As root apt would otherwise warn that its sandbox user cannot write here.
            .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("{}={}", package.package, package.version))
            .current_dir(&download),
    )?;
    let deb = fs::read_dir(&download)
        .with_context(|| format!("cannot list {}", download.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", download.display()))?;
    command::stdout_of(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&extract))?;
    let boot = extract.join("boot");
    for (prefix, keep_as) in [("vmlinuz-", "vmlinuz"), ("config-", "config")] {
        let found = fs::read_dir(&boot)
            .with_context(|| format!("{} has no boot/ folder", deb.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .find(|path| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with(prefix))
            })
            .with_context(|| format!("{} has no boot/{prefix}*", deb.display()))?;
        fs::rename(&found, dir.join(keep_as))
            .with_context(|| format!("cannot move {}", found.display()))?;
    }
    for scratch in [&download, &extract] {
        fs::remove_dir_all(scratch)
            .with_context(|| format!("cannot remove {}", scratch.display()))?;
    }
    Ok(())
}

/// A package and one of its versions.
#[derive(Debug, PartialEq, Eq)]
pub struct PackageVersion {
    /// Package name.
    pub package: String,
    /// Debian version.
    pub version: String,
}

/// Package names from `apt-cache search` output (`name - description` lines).
fn package_names(search_output: &str) -> Vec<String> {
    search_output
        .lines()
        .filter_map(|line| line.split(" - ").next())
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(String::from)
        .collect()
}

/// The newest package version in `apt-cache madison` output (`name | version | source` lines).
fn newest_package(madison_output: &str) -> Option<PackageVersion> {
    madison_output
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('|').map(str::trim);
            let package = fields.next()?;
            let version = fields.next()?;
            (!package.is_empty() && !version.is_empty()).then(|| PackageVersion {
                package: package.to_string(),
                version: version.to_string(),
            })
        })
        .max_by(
            |a, b| match debian_version::compare(&a.version, &b.version) {
                Ordering::Equal => a.package.cmp(&b.package),
                other => other,
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNELS_TOML: &str = r#"
        [[kernel]]
        name = "debian-6.1"
        package = '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$'
        required_modes = ["kprobe", "fentry", "tracepoint"]

        [[kernel]]
        name = "debian-6.12"
        package = '^linux-image-6\.12\.[0-9.]+\+deb12-amd64-unsigned$'
        required_modes = ["kprobe"]
    "#;

    #[test]
    fn parses_the_kernel_list() {
        let kernels = parse_kernels_toml(KERNELS_TOML).expect("valid list");
        assert_eq!(
            kernels,
            vec![
                KernelEntry {
                    name: "debian-6.1".into(),
                    package: r"^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$".into(),
                    required_modes: vec![ProbeRun::Kprobe, ProbeRun::Fentry, ProbeRun::Tracepoint],
                },
                KernelEntry {
                    name: "debian-6.12".into(),
                    package: r"^linux-image-6\.12\.[0-9.]+\+deb12-amd64-unsigned$".into(),
                    required_modes: vec![ProbeRun::Kprobe],
                },
            ]
        );
    }

    #[test]
    fn the_shipped_kernel_list_is_valid() {
        let path = crate::paths::workspace_root().join("ci/kernels.toml");
        let kernels = load_kernels_toml(&path).expect("ci/kernels.toml parses");
        assert!(kernels
            .iter()
            .all(|kernel| kernel.required_modes.contains(&ProbeRun::Kprobe)));
    }

    #[test]
    fn rejects_bad_lists_with_a_reason() {
        let cases = [
            ("", "missing field `kernel`"),
            ("kernel = []", "no [[kernel]] entries"),
            (
                "[[kernel]]\nname = \"a\"\npackage = \"p\"\nrequired_modes = [\"uprobe\"]",
                "unknown variant `uprobe`",
            ),
            (
                "[[kernel]]\nname = \"a b\"\npackage = \"p\"\nrequired_modes = [\"kprobe\"]",
                "names a folder",
            ),
            (
                "[[kernel]]\nname = \"a\"\npackage = \"p\"\nrequired_modes = [\"kprobe\"]\n\
                 [[kernel]]\nname = \"a\"\npackage = \"q\"\nrequired_modes = [\"kprobe\"]",
                "listed twice",
            ),
            (
                "[[kernel]]\nname = \"a\"\npackage = \"p\"\nrequired_modes = []",
                "requires no attach mode",
            ),
            (
                "[[kernel]]\nname = \"a\"\npackage = \"p\"\nmodes = [\"kprobe\"]",
                "unknown field `modes`",
            ),
        ];
        for (text, reason) in cases {
            let error = format!("{:#}", parse_kernels_toml(text).expect_err(text));
            assert!(
                error.contains(reason),
                "{text:?}: expected `{reason}` in `{error}`"
            );
        }
    }

    #[test]
    fn reads_package_names_from_apt_cache_search() {
        let output = "linux-image-6.1.0-9-amd64-unsigned - Linux 6.1 for 64-bit PCs\n\
                      linux-image-6.1.0-56-amd64-unsigned - Linux 6.1 for 64-bit PCs\n";
        assert_eq!(
            package_names(output),
            vec![
                "linux-image-6.1.0-9-amd64-unsigned",
                "linux-image-6.1.0-56-amd64-unsigned"
            ]
        );
    }

    #[test]
    fn picks_the_newest_version_not_the_last_in_text_order() {
        let madison = "\
linux-image-6.12.99+deb12-amd64-unsigned | 6.12.99-1~deb12u1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages
linux-image-6.12.111+deb12-amd64-unsigned | 6.12.111-1~deb12u1 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-6.12.111+deb12-amd64-unsigned | 6.12.111-1~deb12u0 | http://deb.debian.org/debian bookworm/main amd64 Packages
linux-image-6.12.9+deb12-amd64-unsigned | 6.12.9-1~deb12u1 | http://deb.debian.org/debian bookworm/main amd64 Packages
";
        assert_eq!(
            newest_package(madison),
            Some(PackageVersion {
                package: "linux-image-6.12.111+deb12-amd64-unsigned".into(),
                version: "6.12.111-1~deb12u1".into()
            })
        );
        assert_eq!(newest_package(""), None);
    }

    #[test]
    fn user_kernels_get_unique_names() {
        let dir = std::env::temp_dir().join(format!("xtask-user-kernel-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let image = dir.join("bzImage");
        fs::write(&image, b"not really a kernel").expect("write image");
        let mut taken = BTreeSet::new();
        let first = user_kernel(&image, &mut taken).expect("first");
        let second = user_kernel(&image, &mut taken).expect("second");
        assert_eq!(
            (first.name.as_str(), second.name.as_str()),
            ("bzImage", "bzImage-2")
        );
        assert!(user_kernel(&dir.join("missing"), &mut taken).is_err());
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
