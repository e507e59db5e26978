//! `cargo xtask setup`: installs what a fresh machine lacks, and nothing that is already there.

mod bpf_linker;
mod rotel;

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{apt::Apt, command};

/// `cargo xtask setup` options: which optional tool sets to install besides the eBPF build
/// toolchain and the test tools.
#[derive(Debug, Default, clap::Args)]
pub struct Options {
    /// Only what building kspan needs (rust-src, bpf-linker), as a container image build wants:
    /// no test tools.
    #[arg(long, conflicts_with_all = ["vm", "bench", "fuzz"])]
    pub build_only: bool,
    /// Also install the VM test tools (qemu-system-x86, busybox-static, cpio).
    #[arg(long)]
    pub vm: bool,
    /// Also install the benchmark peers (bpftrace, bpftool).
    #[arg(long)]
    pub bench: bool,
    /// Also install cargo-fuzz (for `cargo xtask fuzz`).
    #[arg(long)]
    pub fuzz: bool,
}

/// A tool from a Debian package, present when its binary is on PATH.
struct AptTool {
    package: &'static str,
    /// The binary that shows it is installed; `None`: ask dpkg (busybox-static's `/bin/busybox`
    /// is also what the dynamically linked `busybox` package installs).
    binary: Option<&'static str>,
    why: &'static str,
}

const VM_TOOLS: &[AptTool] = &[
    AptTool {
        package: "qemu-system-x86",
        binary: Some("qemu-system-x86_64"),
        why: "boots test kernels",
    },
    AptTool {
        package: "busybox-static",
        binary: None,
        why: "is the guest's userland",
    },
    AptTool {
        package: "cpio",
        binary: Some("cpio"),
        why: "packs the guest's initramfs",
    },
];

/// The Debian package whose font draws the benchmark chart's text.
pub const CHART_FONT_PACKAGE: &str = "fonts-dejavu-core";

const BENCH_TOOLS: &[AptTool] = &[
    AptTool {
        package: "bpftrace",
        binary: Some("bpftrace"),
        why: "is the peer kspan is measured against",
    },
    AptTool {
        package: "bpftool",
        binary: Some("bpftool"),
        why: "shows attached BPF programs",
    },
    AptTool {
        package: CHART_FONT_PACKAGE,
        binary: None,
        why: "has the font of the benchmark chart",
    },
];

/// What the end-to-end tests need on every machine that runs them.
const TEST_TOOLS: &[AptTool] = &[AptTool {
    package: "libcap2-bin",
    binary: Some("capsh"),
    why: "launches kspan with only the capabilities it needs (tests/tests/privileges.rs)",
}];

/// Installs the eBPF build toolchain, the test tools (rotel, the collector of the end-to-end
/// tests, among them) and the requested tool sets.
pub fn run(options: &Options) -> Result<()> {
    let mut apt = Apt::default();
    ensure_ebpf_toolchain()?;
    if options.build_only {
        println!("setup: done (build tools only)");
        return Ok(());
    }
    ensure_apt_tools(&mut apt, TEST_TOOLS)?;
    rotel::ensure()?;
    if options.vm {
        ensure_vm_tools(&mut apt)?;
    }
    if options.bench {
        ensure_apt_tools(&mut apt, BENCH_TOOLS)?;
    }
    if options.fuzz {
        ensure_cargo_fuzz()?;
    }
    println!("setup: done");
    Ok(())
}

/// Installs what building the probes needs: the nightly's rust-src and bpf-linker.
pub fn ensure_ebpf_toolchain() -> Result<()> {
    ensure_rust_src()?;
    bpf_linker::ensure()
}

/// Installs QEMU, busybox-static and cpio when missing (what `vm-test` needs on the host).
pub fn ensure_vm_tools(apt: &mut Apt) -> Result<()> {
    ensure_apt_tools(apt, VM_TOOLS)
}

fn ensure_apt_tools(apt: &mut Apt, tools: &[AptTool]) -> Result<()> {
    let missing: Vec<&AptTool> = tools.iter().filter(|tool| !is_present(tool)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    for tool in &missing {
        println!("setup: installing {}: it {}", tool.package, tool.why);
    }
    let packages: Vec<&str> = missing.iter().map(|tool| tool.package).collect();
    apt.install(&packages)
}

fn is_present(tool: &AptTool) -> bool {
    match tool.binary {
        Some(binary) => command::find_on_path(binary).is_some(),
        None => crate::apt::is_installed(tool.package),
    }
}

/// cargo-fuzz, for `cargo xtask fuzz` (it builds the targets with the nightly toolchain).
pub fn ensure_cargo_fuzz() -> Result<()> {
    if command::find_on_path("cargo-fuzz").is_some() {
        return Ok(());
    }
    println!("setup: installing cargo-fuzz from crates.io: it runs the fuzz targets in fuzz/");
    command::run(Command::new(env!("CARGO")).args(["install", "cargo-fuzz", "--locked"]))
}

/// `rust-src` for the nightly: the probes are built with `-Z build-std=core`.
fn ensure_rust_src() -> Result<()> {
    let installed = command::stdout_of(
        Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]),
    )
    .context("cannot list the nightly toolchain's components: is `rustup toolchain install nightly` done?")?;
    if installed
        .lines()
        .any(|line| line.trim().starts_with("rust-src"))
    {
        return Ok(());
    }
    println!("setup: adding rust-src to the nightly toolchain: the probes build core from source");
    command::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}
