//! Compiles `probes/` for the BPF target (nightly + bpf-linker) so `kspan` can embed it.

fn main() -> aya_build::Result<()> {
    let probes = aya_build::Package {
        name: "kspan-probes",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../probes"),
        ..Default::default()
    };
    aya_build::build_ebpf([probes], aya_build::Toolchain::default())
}
