//! One agent run: check, load, attach, read and export until SIGINT/SIGTERM, then flush.

use std::{path::Path, time::Duration};

use anyhow::Context as _;
use kspan_common::{AttachMode, ProbeKind};
use kspan_decode::{BootClock, CallDecoder, CgroupResolver};
use kspan_otel::{
    export::{
        read_headers_file, MetricsExporter, OtlpConfig, OtlpSink, Pipeline, PipelineConfig,
        Protocol, SignalSelection, Sink, StdoutSink,
    },
    Env, HostInfo, Resources, TraceGrouping,
};

use crate::{
    attach::{self, DeclaredPrograms},
    btf::{Btf, VMLINUX_BTF},
    cgroup_filter,
    cli::{Cli, ExporterKind, OtlpProtocol},
    counter_sources::CounterSources,
    declaration::{self, Declaration, DeclarationError, Probed},
    declared_probe::{HookPoint, ResolvedProbe},
    function_probe,
    health::{self, HealthReporter},
    output_file::OutputFile,
    privileges, probes,
    reader::EventReader,
    signalfd_probe::{self, BuiltinSignalfd},
    stop::StopSignals,
    syscall_probe, tracefs,
    usage_error::UsageError,
};

/// How long calls already inside probed functions get to return before the probes go.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(20);

/// How often losses are checked and reported while running.
const LOSS_REPORT_EVERY: Duration = Duration::from_secs(1);

/// At most this much of the stop deadline (and at most a fifth of it) is kept for the final
/// health metrics export; the calls get the rest.
const HEALTH_FINAL_RESERVE: Duration = Duration::from_secs(1);

/// Runs the agent until a stop signal (one that came during the start included), then
/// detaches and exports everything captured, within `--shutdown-timeout`.
pub async fn run(cli: Cli, mut signals: StopSignals) -> anyhow::Result<()> {
    let prepared = Prepared::check(cli)?;
    let session = prepared.attach()?;
    session.capture_until(&mut signals).await?;
    let stop_deadline = tokio::time::Instant::now() + session.cli.shutdown_timeout;
    tokio::spawn(async move {
        signals.recv().await;
        eprintln!("kspan: second signal, exiting without flushing");
        std::process::exit(130);
    });
    session.shut_down(stop_deadline).await
}

/// Step one: everything the user configured, checked before the kernel is touched (no partial
/// start), and the destination built.
struct Prepared {
    cli: Cli,
    ready_file: Option<OutputFile>,
    summary_file: Option<OutputFile>,
    destination: Destination,
    /// Every probe, the built-in's hooks among them.
    table: ProbeTable,
}

impl Prepared {
    fn check(cli: Cli) -> anyhow::Result<Self> {
        cli.check().map_err(UsageError::from)?;
        let checked = |option, path: &Option<std::path::PathBuf>| {
            path.as_deref()
                .map(|path| {
                    OutputFile::check(option, path).map(|file| file.with_mode(cli.output_file_mode))
                })
                .transpose()
                .map_err(UsageError::from)
        };
        let ready_file = checked("--ready-file", &cli.ready_file)?;
        let summary_file = checked("--summary-file", &cli.summary_file)?;
        let host = host_info()?;
        let grouping = TraceGrouping::new(boot_id()?, cli.trace_window);
        let destination = build_sink(&cli, &host, grouping)?;
        let declarations =
            declaration::read(&cli.probes, &cli.probe_files).map_err(UsageError::from)?;
        let signalfd = declarations
            .iter()
            .find(|declared| declared.probed == Probed::Signalfd)
            .map(|declared| declared.attach.unwrap_or(cli.attach));
        privileges::check(signalfd.unwrap_or(AttachMode::Tracepoint))?;
        raise_memlock_limit();
        let table = resolve_declared(&declarations, cli.attach, &cli.kernel_function)?;
        Ok(Self {
            cli,
            ready_file,
            summary_file,
            destination,
            table,
        })
    }

    /// Step two: load the probes, attach the first pair that works, start reading and
    /// exporting, and say so in the ready file.
    fn attach(self) -> anyhow::Result<Session> {
        let Self {
            cli,
            ready_file,
            summary_file,
            destination: (sink, health_exporter),
            table,
        } = self;
        let cgroups =
            cgroup_filter::resolve(&cli.cgroups, &cli.containers)?.map_err(UsageError::from)?;
        if let Some(selection) = &cgroups {
            tracing::info!(cgroups = ?selection.paths, "capturing only these cgroups and their descendants");
        }
        let filters = probes::Filters {
            pids: cli.pids.clone(),
            comms: cli.comms.clone(),
            cgroups: cgroups.map(|selection| selection.dirs),
        };
        let cgroups = CgroupResolver::new().context("reading /proc/self/mountinfo")?;
        let mut ebpf = probes::open(&filters, cli.ring_buffer_bytes)?;
        let ring = probes::take_events(&mut ebpf)?;
        let probe_names = table.probes.iter().map(|probe| probe.info.name.clone());
        let counter_maps = probes::CounterMaps::take(&mut ebpf, probe_names.collect())?;

        // With `--floor`, the empty programs attach from their own object in the built-in
        // probe's place; the product's maps are still loaded, so everything else runs as it
        // does for real.
        let mut floor = match cli.floor {
            true => Some(probes::open_floor()?),
            false => None,
        };
        let mut programs = DeclaredPrograms::default();
        let builtin = match &table.builtin {
            Some(builtin) => {
                let attached = match floor.as_mut() {
                    Some(floor) => attach::attach_floor(floor, builtin.mode, &cli.kernel_function)?,
                    None => programs.attach_builtin(&mut ebpf, builtin, &table.probes)?,
                };
                for (mode, reason) in &attached.refused {
                    // Verifier logs run to many lines: the first says why, the rest is for
                    // debugging.
                    let why = reason.lines().next().unwrap_or_default();
                    tracing::warn!(probe = %mode, reason = why, "probe refused, falling back");
                    tracing::debug!(probe = %mode, %reason, "full refusal");
                }
                if attached.kind == ProbeKind::Tracepoint {
                    tracing::info!(probe = %attached.kind, "attached");
                } else {
                    tracing::info!(probe = %attached.kind, function = %cli.kernel_function, "attached");
                }
                Some(attached.kind)
            }
            None => None,
        };
        let mut declared = Vec::new();
        for &index in &table.declared {
            let probe = &table.probes[index];
            let kind = programs.attach(&mut ebpf, probe)?;
            tracing::info!(probe = %probe.info.name, kind = %kind, "attached");
            declared.push((probe.info.name.as_str(), kind));
        }

        let pipeline_config = PipelineConfig {
            queue_capacity: cli.export_queue as usize,
            backlog_capacity: cli.export_backlog as usize,
            ..PipelineConfig::default()
        };
        let pipeline = Pipeline::start(sink, pipeline_config)?;
        let export_stats = pipeline.stats();
        let decoder = CallDecoder::new(BootClock::measure().context("reading the system clocks")?)
            .with_cgroups(cgroups)
            .with_declared(
                table
                    .probes
                    .iter()
                    .map(|probe| probe.info.clone())
                    .collect(),
            );
        let decoder = match cli.process_details {
            true => decoder.with_process_details(),
            false => decoder,
        };
        let reader = EventReader::start(ring, cli.ring_buffer_bytes, decoder, pipeline)?;
        let counters = CounterSources {
            reader: reader.counts(),
            kernel: counter_maps,
            export: export_stats,
        };

        release_startup_memory();
        if let Some(file) = &ready_file {
            file.write(ready_contents(builtin, &declared).as_bytes())?;
        }
        tracing::info!(
            probes = declared.len() + usize::from(builtin.is_some()),
            "ready"
        );
        let health =
            health_exporter.map(|(exporter, interval)| HealthReporter::start(exporter, interval));
        Ok(Session {
            cli,
            summary_file,
            ebpf,
            floor,
            builtin,
            reader,
            counters,
            health,
        })
    }
}

/// The running agent: probes attached, calls read and exported.
struct Session {
    cli: Cli,
    summary_file: Option<OutputFile>,
    ebpf: aya::Ebpf,
    /// The floor programs' object, with `--floor`.
    floor: Option<aya::Ebpf>,
    /// The kind of pair the built-in signalfd probe attached as, when it is traced.
    builtin: Option<ProbeKind>,
    reader: EventReader,
    counters: CounterSources,
    health: Option<HealthReporter>,
}

impl Session {
    /// Step three: capture until a stop signal, reporting losses as they happen and keeping the
    /// health metrics' figures current. The check runs every [`LOSS_REPORT_EVERY`] while the
    /// figures move and sleeps while they hold still, until calls arrive again: an idle agent
    /// does not wake for it. (A loss without any call read, an entry the kernel could not
    /// store, is then reported with the next call, and always in the summary.)
    async fn capture_until(&self, signals: &mut StopSignals) -> anyhow::Result<()> {
        let calls_arrived = self.reader.calls_arrived();
        let mut report = tokio::time::interval(LOSS_REPORT_EVERY);
        let mut reported = self.counters.read()?;
        let mut moving = true;
        loop {
            tokio::select! {
                () = signals.recv() => break,
                () = calls_arrived.notified(), if !moving => {
                    moving = true;
                    report.reset();
                }
                _ = report.tick(), if moving => {
                    let now = self.counters.read()?;
                    if now.lost() > reported.lost() {
                        tracing::warn!(lost_since_last_report = now.lost() - reported.lost(), lost_total = now.lost(), "calls lost");
                    }
                    if let Some(health) = &self.health {
                        health.update(now);
                    }
                    moving = now != reported;
                    reported = now;
                }
            }
        }
        tracing::info!(timeout = ?self.cli.shutdown_timeout, "stopping: detaching probes, exporting what was captured");
        Ok(())
    }

    /// Step four: stop new entries everywhere at once, let calls already inside return,
    /// detach, export every completed call still queued by `stop_deadline`, then report.
    async fn shut_down(self, stop_deadline: tokio::time::Instant) -> anyhow::Result<()> {
        let Self {
            cli,
            summary_file,
            mut ebpf,
            mut floor,
            builtin,
            reader,
            counters,
            health,
        } = self;
        probes::stop_new_entries(&mut ebpf)?;
        tokio::time::sleep(IN_FLIGHT_GRACE).await;
        if let (Some(floor), Some(kind)) = (floor.as_mut(), builtin) {
            attach::unload_floor(floor, kind);
        }
        drop((floor, ebpf));
        let pipeline = reader.finish().await?;
        let health_reserve = match health {
            Some(_) => health_reserve(cli.shutdown_timeout),
            None => Duration::ZERO,
        };
        pipeline.shutdown(stop_deadline - health_reserve).await;

        let summary = counters.read()?;
        summary.log();
        if let Some(health) = health {
            let sent = tokio::time::timeout_at(stop_deadline, health.finish(summary)).await;
            if sent.is_err() {
                tracing::warn!("stop deadline passed: the final health metrics were not sent");
            }
        }
        if let Some(file) = &summary_file {
            let mut json = summary.to_json();
            let per_probe = counters.kernel.per_probe()?;
            if !per_probe.is_empty() {
                json["kernel_per_probe"] = per_probe
                    .into_iter()
                    .map(|(name, kernel)| {
                        let counts = serde_json::json!({
                            "entries": kernel.entries,
                            "ring_buffer_full": kernel.ring_buffer_full,
                            "stale_entries": kernel.stale_entries,
                            "returns_without_entry": kernel.returns_without_entry,
                            "entries_not_stored": kernel.entries_not_stored,
                        });
                        (name.to_owned(), counts)
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
            let json = serde_json::to_string_pretty(&json)?;
            file.write((json + "\n").as_bytes())?;
        }
        Ok(())
    }
}

/// Why a built-in hook was not made: its kind is not among the attach mode's.
const NOT_TRIED: &str = "the attach mode does not try it";

/// Every probe to load, by number (events and counters carry it): the built-in's hooks and the
/// declared probes.
struct ProbeTable {
    probes: Vec<ResolvedProbe>,
    /// The built-in signalfd probe's hooks, when it is traced.
    builtin: Option<BuiltinSignalfd>,
    /// The declared probes' numbers.
    declared: Vec<usize>,
}

/// Resolves the declared syscalls against tracefs and the declared functions against BTF;
/// the built-in probe's hooks each as far as they can be (one that cannot is refused when its
/// kind is tried, as the attach mode's fallback chain moves on).
fn resolve_declared(
    declarations: &[Declaration],
    default_attach: AttachMode,
    signalfd_function: &str,
) -> anyhow::Result<ProbeTable> {
    let mut table = ProbeTable {
        probes: Vec::new(),
        builtin: None,
        declared: Vec::new(),
    };
    let mut btf: Option<Btf> = None;
    for declared in declarations {
        let index = table.probes.len() as u32;
        let probe = match &declared.probed {
            Probed::Signalfd => {
                let mode = declared.attach.unwrap_or(default_attach);
                let candidates = mode.candidates();
                let function = match candidates.contains(&ProbeKind::Kprobe)
                    || candidates.contains(&ProbeKind::Fentry)
                {
                    true => loaded(&mut btf, "the built-in probe's function is typed from BTF")
                        .map_err(|error| format!("{error:#}"))
                        .and_then(|btf| {
                            signalfd_probe::function(btf, signalfd_function, index, mode)
                        })
                        .map(|probe| table.add(probe)),
                    false => Err(NOT_TRIED.to_owned()),
                };
                let index = table.probes.len() as u32;
                let syscalls = match candidates.contains(&ProbeKind::Tracepoint) {
                    true => tracefs::ensure_mounted()
                        .map_err(|error| error.to_string())
                        .and_then(|root| signalfd_probe::syscalls(&root, index, mode))
                        .map(|probes| probes.map(|probe| table.add(probe))),
                    false => Err(NOT_TRIED.to_owned()),
                };
                table.builtin = Some(BuiltinSignalfd {
                    mode,
                    function,
                    syscalls,
                });
                continue;
            }
            Probed::Function(function) => {
                let btf = loaded(
                    &mut btf,
                    "declared functions are typed from the kernel's BTF",
                )?;
                function_probe::resolve(btf, declared, function, index, default_attach)
            }
            Probed::Syscall(syscall) => {
                let root = tracefs::ensure_mounted()?;
                // Member paths through a syscall's pointers are typed from BTF.
                let btf = match declared.member_paths().next() {
                    Some(_) => Some(loaded(
                        &mut btf,
                        "member paths are typed from the kernel's BTF",
                    )?),
                    None => None,
                };
                syscall_probe::resolve(&root, btf, declared, syscall, index, default_attach)
            }
        };
        let index = table.add(probe.map_err(UsageError::from)?);
        table.declared.push(index);
    }
    table.check_hooks_unshared()?;
    Ok(table)
}

impl ProbeTable {
    /// Adds `probe`; returns its number.
    fn add(&mut self, probe: ResolvedProbe) -> usize {
        self.probes.push(probe);
        self.probes.len() - 1
    }

    /// Two probes on one hook would overwrite each other's declaration: refused.
    fn check_hooks_unshared(&self) -> Result<(), UsageError> {
        for (index, probe) in self.probes.iter().enumerate() {
            let shared = self.probes[..index]
                .iter()
                .find(|earlier| same_hook(&earlier.hook, &probe.hook));
            if let Some(earlier) = shared {
                let hook = match &probe.hook {
                    HookPoint::Syscall { tracepoints, .. } => {
                        format!("syscalls:{}", tracepoints[0])
                    }
                    HookPoint::Function { name, .. } => name.clone(),
                };
                return Err(UsageError::from(DeclarationError::SharedHook {
                    first: earlier.info.name.clone(),
                    second: probe.info.name.clone(),
                    hook,
                }));
            }
        }
        Ok(())
    }
}

/// Whether two hooks are the same syscall or the same function.
fn same_hook(a: &HookPoint, b: &HookPoint) -> bool {
    match (a, b) {
        (HookPoint::Syscall { number: a, .. }, HookPoint::Syscall { number: b, .. }) => a == b,
        (HookPoint::Function { name: a, .. }, HookPoint::Function { name: b, .. }) => a == b,
        _ => false,
    }
}

/// The kernel's BTF, read the first time it is needed.
fn loaded<'a>(btf: &'a mut Option<Btf>, why: &'static str) -> anyhow::Result<&'a Btf> {
    if btf.is_none() {
        *btf = Some(Btf::read(Path::new(VMLINUX_BTF)).context(why)?);
    }
    btf.as_ref().context(why)
}

/// The ready file: the kind of pair the built-in signalfd probe attached as (`probe=`), each
/// declared probe and the kind it attached as, and kspan's pid.
fn ready_contents(builtin: Option<ProbeKind>, declared: &[(&str, ProbeKind)]) -> String {
    let mut contents = String::new();
    if let Some(kind) = builtin {
        contents.push_str(&format!("probe={kind}\n"));
    }
    for (probe, kind) in declared {
        contents.push_str(&format!("declared={probe}:{kind}\n"));
    }
    contents.push_str(&format!("pid={}\n", std::process::id()));
    contents
}

/// The part of the stop deadline kept for the final health metrics export.
fn health_reserve(shutdown_timeout: Duration) -> Duration {
    (shutdown_timeout / 5).min(HEALTH_FINAL_RESERVE)
}

/// Where calls go and, with OTLP, the health metrics exporter and its interval (unless
/// `OTEL_METRICS_EXPORTER=none` or `OTEL_SDK_DISABLED=true`).
type Destination = (Sink, Option<(MetricsExporter, Duration)>);

fn build_sink(cli: &Cli, host: &HostInfo, grouping: TraceGrouping) -> anyhow::Result<Destination> {
    // The OTLP settings are resolved whatever the exporter: one that is wrong is refused (exit 2)
    // with `--exporter stdout` too, rather than waiting to fail when the exporter changes.
    let env = Env::process();
    let selection = SignalSelection::from_env(&env).map_err(UsageError::from)?;
    let protocol = cli.otlp_protocol.map(|protocol| match protocol {
        OtlpProtocol::Grpc => Protocol::Grpc,
        OtlpProtocol::HttpProtobuf => Protocol::HttpProtobuf,
    });
    let mut headers = match &cli.otlp_headers_file {
        Some(path) => read_headers_file(path).map_err(UsageError::from)?,
        None => Vec::new(),
    };
    headers.extend(cli.otlp_headers.iter().cloned());
    let config = OtlpConfig {
        protocol,
        endpoint: cli.otlp_endpoint.clone(),
        headers,
        ca_certificate: cli.otlp_ca_cert.clone(),
        timeout: cli.otlp_timeout,
        env,
    };
    let resources = Resources::from_env(host, cli.resource_per.into(), instance_id()?)
        .map_err(UsageError::from)?;
    let sink = OtlpSink::new(&config, selection, &resources, grouping.clone())
        .map_err(UsageError::from)?;
    let metrics = MetricsExporter::new(&config, &resources).map_err(UsageError::from)?;
    let interval = health::interval_from_env().map_err(UsageError::from)?;
    Ok(match cli.exporter {
        ExporterKind::Stdout => (Sink::Stdout(StdoutSink::new(grouping)), None),
        ExporterKind::Otlp => {
            if selection.disabled {
                tracing::info!("OTEL_SDK_DISABLED=true: nothing is sent (no spans, log records or health metrics); calls are captured and counted");
            } else if !selection.sends_calls() {
                tracing::info!("OTEL_TRACES_EXPORTER and OTEL_LOGS_EXPORTER are none: calls are captured and counted, not sent");
            }
            let health = selection.metrics.then_some((metrics, interval));
            (Sink::Otlp(Box::new(sink)), health)
        }
    })
}

fn host_info() -> anyhow::Result<HostInfo> {
    let uname = nix::sys::utsname::uname().context("uname")?;
    Ok(HostInfo {
        host_name: uname.nodename().to_string_lossy().into_owned(),
        host_id: machine_id(),
        kernel_release: uname.release().to_string_lossy().into_owned(),
        os_name: os_name(),
    })
}

/// `host.id`: the machine id systemd (or dbus) keeps, when there is one.
fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|id| id.trim().to_string())
        .find(|id| !id.is_empty())
}

/// `os.name`: `NAME` in os-release, when there is one.
fn os_name() -> Option<String> {
    let release = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())?;
    release.lines().find_map(|line| {
        let value = line.strip_prefix("NAME=")?.trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// `service.instance.id` of this run: a random UUID from the kernel.
fn instance_id() -> anyhow::Result<String> {
    let path = "/proc/sys/kernel/random/uuid";
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {path}"))?
        .trim()
        .to_string())
}

/// This boot's id: trace ids derived from it do not collide across hosts or reboots.
fn boot_id() -> anyhow::Result<String> {
    let path = "/proc/sys/kernel/random/boot_id";
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {path}"))?
        .trim()
        .to_string())
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones ignore it.
/// Gives the heap that starting took back to the kernel: parsing the kernel's BTF (for the
/// probes' offsets and the declared probes' types) allocates ~19 MiB that are freed at once, and
/// glibc otherwise keeps them resident for the agent's whole life whenever a later allocation
/// sits above them.
fn release_startup_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn raise_memlock_limit() {
    use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
    if let Err(error) = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY) {
        tracing::debug!(%error, "cannot raise RLIMIT_MEMLOCK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_health_export_gets_a_fifth_of_the_deadline_up_to_a_second() {
        let cases = [(5_000, 1_000), (2_000, 400), (100, 20), (60_000, 1_000)];
        let got: Vec<(u64, u128)> = cases
            .iter()
            .map(|&(timeout, _)| {
                (
                    timeout,
                    health_reserve(Duration::from_millis(timeout)).as_millis(),
                )
            })
            .collect();
        let expected: Vec<(u64, u128)> = cases.iter().map(|&(t, r)| (t, r)).collect();
        assert_eq!(got, expected);
    }
}
