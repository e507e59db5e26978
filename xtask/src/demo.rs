//! `cargo xtask demo`: the agent capturing the workload, each call printed as kspan saw it.
//! No collector needed: kspan runs with `--exporter stdout`.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use kspan_e2e::{artifacts, run_capture, CaptureConfig, Destination, Workload};

use crate::{command, paths, setup};

/// Builds kspan and the workload, runs one capture and prints what kspan counted.
pub fn run() -> Result<()> {
    setup::run(&setup::Options::default())?;
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo loads eBPF programs: run it as root (e.g. `sudo -E cargo xtask demo`)");
    }
    let bin_dir =
        command::build_binaries(command::Profile::Release, &["kspan", "signalfd-workload"])?;
    let out_dir = paths::target_dir().join("demo");
    let _ = std::fs::remove_dir_all(&out_dir);
    let config = CaptureConfig {
        attach: "auto".into(),
        destination: Destination::Stdout,
        bin_dir,
        kspan_wrapper: Vec::new(),
        out_dir: out_dir.clone(),
        workload: Workload::Scenarios(vec![]),
        kspan_args: vec![],
        kspan_env: Vec::new(),
        timeout: Duration::from_secs(120),
        stop_kspan_after: None,
        receiver_outage: None,
        receiver_security: Default::default(),
        endpoint_userinfo: None,
    };
    println!("==> running signalfd-workload under kspan (one line per captured call)\n");
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let record = runtime.block_on(run_capture(&config))?;
    let summary = std::fs::read_to_string(out_dir.join(artifacts::SUMMARY))
        .context("reading kspan's summary")?;
    println!(
        "\n==> kspan exited with {:?}; its counters ({}):\n{summary}",
        record.kspan_exit,
        out_dir.join(artifacts::SUMMARY).display()
    );
    println!(
        "The workload's own record of every call: {}",
        out_dir.join(artifacts::MANIFEST).display()
    );
    println!("To send OTLP to a collector instead, see README.md (\"Sending to an OpenTelemetry Collector and Jaeger\").");
    if record.kspan_exit != Some(0) {
        bail!("kspan exited with {:?}", record.kspan_exit);
    }
    Ok(())
}
