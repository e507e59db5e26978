//! The guest's initramfs: static busybox, the guest binaries with every shared library they load,
//! and a tiny `/init`, packed with cpio (newc) and gzip.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use super::{console, results};
use crate::command;

/// busybox-static's binary; the only userland the guest has.
const BUSYBOX: &str = "/bin/busybox";

/// The guest's `/init`: mounts what kspan needs, runs `guest_command` once per attach mode
/// listed in the `kspan_modes` kernel parameter, ships each mode's results out on the second
/// serial port, then powers off.
pub fn init_script(guest_command: &str) -> String {
    format!(
        r#"#!/bin/sh
# /init of the kspan vm-test guest, written by `cargo xtask vm-test`.
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
# The initramfs has no /dev/console node, so the kernel started us without stdio.
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
# Everything from here runs in a cgroup of its own: the judge checks the spans' cgroup ids
# against a cgroup that is not the root.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir /sys/fs/cgroup/vm-test && echo $$ > /sys/fs/cgroup/vm-test/cgroup.procs
ip link set lo up
echo "{init} $(cut -d' ' -f1 /proc/uptime)"
# The kernel hands unknown name=value parameters to init as environment variables.
for mode in $(echo "$kspan_modes" | tr , ' '); do
    echo "{start} $mode"
    mkdir -p "/results/$mode"
    {guest_command}
    # ttyS1 carries the results to the host; closing it waits until the UART sent everything.
    {{ echo "{begin} $mode"; tar -C /results -cz "$mode" | base64; echo "{end} $mode"; }} >/dev/ttyS1
    echo "{done} $mode"
done
echo "{poweroff}"
poweroff -f
"#,
        init = console::INIT_MARKER,
        start = console::MODE_START_MARKER,
        done = console::MODE_DONE_MARKER,
        poweroff = console::POWEROFF_MARKER,
        begin = results::BEGIN_MARKER,
        end = results::END_MARKER,
    )
}

/// Builds `out` (a gzipped newc cpio) from `binaries` and `init`, staging files in `staging`.
pub fn build(binaries: &[PathBuf], init: &str, staging: &Path, out: &Path) -> Result<()> {
    if staging.exists() {
        fs::remove_dir_all(staging)
            .with_context(|| format!("cannot clear {}", staging.display()))?;
    }
    for dir in ["bin", "dev", "proc", "sys", "tmp", "results"] {
        create_dir(&staging.join(dir))?;
    }
    install_busybox(staging)?;
    for binary in binaries {
        let name = binary
            .file_name()
            .with_context(|| format!("{} has no file name", binary.display()))?;
        copy(binary, &staging.join("bin").join(name))?;
        for library in shared_libraries(binary)? {
            copy(
                &library,
                &staging.join(library.strip_prefix("/").unwrap_or(&library)),
            )?;
        }
    }
    let init_path = staging.join("init");
    fs::write(&init_path, init).with_context(|| format!("cannot write {}", init_path.display()))?;
    set_mode(&init_path, 0o755)?;
    pack(staging, out)
}

fn install_busybox(staging: &Path) -> Result<()> {
    let busybox = Path::new(BUSYBOX);
    if !shared_libraries(busybox)?.is_empty() {
        bail!("{BUSYBOX} is dynamically linked: the guest needs busybox-static (`cargo xtask setup --vm`)");
    }
    copy(busybox, &staging.join("bin/busybox"))?;
    let applets = command::stdout_of(Command::new(BUSYBOX).arg("--list"))?;
    for applet in applets
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let link = staging.join("bin").join(applet);
        std::os::unix::fs::symlink("busybox", &link)
            .with_context(|| format!("cannot create {}", link.display()))?;
    }
    Ok(())
}

/// The libraries (and dynamic loader) `binary` loads, as `ldd` resolves them on this host.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .with_context(|| format!("cannot run ldd on {}", binary.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // ldd exits non-zero for static binaries ("not a dynamic executable").
    if !output.status.success() {
        return Ok(Vec::new());
    }
    parse_ldd(&stdout).with_context(|| format!("ldd {}", binary.display()))
}

/// Library paths from `ldd` output; a library ldd cannot find is an error.
fn parse_ldd(output: &str) -> Result<Vec<PathBuf>> {
    let mut libraries = Vec::new();
    for line in output.lines().map(str::trim) {
        let path = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    bail!("{} is not found on this host", name.trim());
                }
                target.split_whitespace().next()
            }
            None => line.split_whitespace().next(),
        };
        // `linux-vdso.so.1 (0x…)` is provided by the kernel: no path.
        if let Some(path) = path.filter(|path| path.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

/// `cpio --create --format=newc | gzip -1 > out`, fed the staged paths in sorted order.
fn pack(staging: &Path, out: &Path) -> Result<()> {
    let mut files = Vec::new();
    list_tree(staging, Path::new(""), &mut files)?;
    files.sort();
    let file_list: String = files
        .iter()
        .map(|path| format!("{}\n", path.display()))
        .collect();

    let archive =
        fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut cpio = Command::new("cpio")
        .args(["--create", "--format=newc", "--owner=0:0", "--quiet"])
        .current_dir(staging)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cpio (`cargo xtask setup --vm` installs it)")?;
    let cpio_out = cpio.stdout.take().context("cpio has no stdout")?;
    // gzip -1: the guest decompresses at the same speed whatever the level; packing is faster.
    let mut gzip = Command::new("gzip")
        .args(["-1", "-c"])
        .stdin(cpio_out)
        .stdout(archive)
        .spawn()
        .context("cannot start gzip")?;
    let mut stdin = cpio.stdin.take().context("cpio has no stdin")?;
    let fed = stdin.write_all(file_list.as_bytes());
    drop(stdin);
    let cpio_status = cpio.wait().context("cpio vanished")?;
    let gzip_status = gzip.wait().context("gzip vanished")?;
    fed.context("cannot feed cpio its file list")?;
    if !cpio_status.success() {
        bail!("cpio failed ({cpio_status}) packing {}", staging.display());
    }
    if !gzip_status.success() {
        bail!("gzip failed ({gzip_status}) writing {}", out.display());
    }
    Ok(())
}

/// Every path under `root/relative`, relative to `root`.
fn list_tree(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(relative);
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = relative.join(entry.file_name());
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        out.push(path.clone());
        if is_dir {
            list_tree(root, &path, out)?;
        }
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}

/// Copies the content `from` resolves to (libraries are often symlinks) to `to`.
fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        create_dir(parent)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_every_library_and_the_loader_from_ldd() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd5a7f2000)\n\
                      \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1c2a4e0000)\n\
                      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1c2a200000)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007f1c2a5a0000)\n";
        assert_eq!(
            parse_ldd(output).expect("parses"),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn a_missing_library_is_an_error_that_names_it() {
        let output =
            "\tlibssl.so.3 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n";
        let error = parse_ldd(output).expect_err("missing library");
        assert!(error.to_string().contains("libssl.so.3"), "{error}");
    }

    #[test]
    fn init_runs_the_guest_command_per_mode_and_powers_off() {
        let script = init_script("run-it --attach \"$mode\"");
        assert!(script.starts_with("#!/bin/sh\n"));
        for needed in [
            "mount -t tracefs tracefs /sys/kernel/tracing",
            "mount -t bpf bpf /sys/fs/bpf",
            "mount -t cgroup2 cgroup2 /sys/fs/cgroup",
            "ip link set lo up",
            "    run-it --attach \"$mode\"\n",
            ">/dev/ttyS1",
        ] {
            assert!(script.contains(needed), "init lacks `{needed}`:\n{script}");
        }
        assert!(script.trim_end().ends_with("poweroff -f"));
    }
}
