//! `otlp-receiver`: a standalone OTLP receiver that prints what it gets and can dump it to a file.

use anyhow::Context as _;
use clap::Parser;
use kspan_receiver::{
    hostile::{HostileCollector, HostileStats, Hostility},
    DumpWriter, ExportRequest, ReceivedRequest, Receiver, ReceiverConfig, ReceiverError,
    ReceiverSecurity, RequiredHeader, Store, TlsIdentity, Transport,
};
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};

/// Receive OTLP traces, logs and metrics over gRPC and HTTP, print one line per span, and
/// optionally append every request to a JSON-lines dump. Stops cleanly on SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "otlp-receiver", version)]
struct Cli {
    /// OTLP/gRPC listening address (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4317", value_parser = parse_addr)]
    grpc: SocketAddr,
    /// OTLP/HTTP listening address (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4318", value_parser = parse_addr)]
    http: SocketAddr,
    /// Append each received request to FILE as one JSON line (the file is emptied at start).
    #[arg(long, value_name = "FILE")]
    dump: Option<PathBuf>,
    /// Once listening, write the endpoints to PATH (`grpc=URL` and `http=URL` lines).
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Do not print a line per received span.
    #[arg(long)]
    quiet: bool,
    /// Serve both transports over TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse requests without this header and value, e.g. `authorization=Bearer TOKEN`
    /// (gRPC UNAUTHENTICATED, HTTP 401).
    #[arg(
        long,
        value_name = "KEY=VALUE",
        env = "OTLP_RECEIVER_REQUIRE_HEADER",
        hide_env_values = true
    )]
    require_header: Option<String>,
    /// Misbehave on purpose, to test an exporter against it: `silent` (never answer),
    /// `endless-body` (HTTP only: a 200 whose body never ends), `huge-body=BYTES` (a success
    /// answer that long) or `late=DELAY` (answer every request after DELAY, e.g. 30s).
    /// Nothing is kept or printed per request.
    #[arg(long, value_name = "MODE", value_parser = parse_hostility, conflicts_with_all = ["dump", "tls_cert", "require_header"])]
    hostile: Option<Hostility>,
}

/// The `--hostile` modes.
fn parse_hostility(text: &str) -> Result<Hostility, String> {
    let (mode, value) = text.split_once('=').unwrap_or((text, ""));
    match (mode, value) {
        ("silent", "") => Ok(Hostility::Silent),
        ("endless-body", "") => Ok(Hostility::EndlessBody),
        ("huge-body", bytes) => bytes
            .parse()
            .map(Hostility::HugeBody)
            .map_err(|_| "huge-body=BYTES needs a whole number of bytes".to_string()),
        ("late", delay) => humantime::parse_duration(delay)
            .map(|delay| Hostility::LateAnswer {
                delay,
                late: u64::MAX,
            })
            .map_err(|_| "late=DELAY needs a duration, e.g. late=30s".to_string()),
        _ => Err("expected silent, endless-body, huge-body=BYTES or late=DELAY".to_string()),
    }
}

/// Exit code for bad arguments, including an address that cannot be listened on or an unusable
/// TLS file (as clap's).
const EXIT_BAD_ADDRESS: u8 = 2;

/// Accepts `IP:PORT` or `HOST:PORT` (resolved now, first address wins).
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("expected IP:PORT or HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if error.use_stderr() => {
            // clap's first paragraph says what is wrong (e.g. which arguments are missing); the
            // rest is a pointer to --help. One line, for scripts.
            let rendered = error.to_string();
            let what: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            if what.is_empty() {
                eprintln!("error: bad arguments");
            } else {
                eprintln!("{}", what.join(" "));
            }
            return ExitCode::from(EXIT_BAD_ADDRESS);
        }
        Err(help_or_version) => help_or_version.exit(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("otlp-receiver: {error:#}");
            let bad_address = matches!(
                error.downcast_ref::<ReceiverError>(),
                Some(
                    ReceiverError::Bind { .. }
                        | ReceiverError::TlsFile { .. }
                        | ReceiverError::Tls { .. }
                        | ReceiverError::InvalidRequiredHeader { .. }
                )
            );
            ExitCode::from(if bad_address { EXIT_BAD_ADDRESS } else { 1 })
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Listen for signals before anyone can learn we are ready, so an early SIGTERM is clean.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    if let Some(hostility) = cli.hostile {
        return run_hostile(&cli, hostility, async move {
            tokio::select! {
                _ = sigint.recv() => {}
                _ = sigterm.recv() => {}
            }
        })
        .await;
    }

    let dump = cli.dump.as_deref().map(DumpWriter::create).transpose()?;
    let quiet = cli.quiet;
    let store = Store::with_observer(move |received| {
        if !quiet {
            print_request(received);
        }
        match &dump {
            Some(dump) => dump.append(received),
            None => Ok(()),
        }
    });
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some(TlsIdentity::from_pem_files(cert, key)?),
        _ => None,
    };
    // Parsed here rather than by clap, whose error would quote the secret value.
    let required_header = cli
        .require_header
        .as_deref()
        .map(RequiredHeader::parse)
        .transpose()?;
    let config = ReceiverConfig {
        grpc_addr: Some(cli.grpc),
        http_addr: Some(cli.http),
        security: ReceiverSecurity {
            tls,
            required_header,
        },
    };
    let receiver = Receiver::start_with_store(config, store).await?;
    let grpc = receiver.grpc_endpoint().unwrap_or_default();
    let http = receiver.http_endpoint().unwrap_or_default();
    if let Some(path) = &cli.ready_file {
        write_ready_file(path, &grpc, &http)?;
    }
    println!("listening grpc={grpc} http={http}");

    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    let store = receiver.store();
    receiver.shutdown().await;
    let stats = store.stats();
    println!(
        "stopped: {} spans, {} log records, {} metrics requests",
        stats.spans,
        stats.logs,
        stats.metrics_requests.total()
    );
    Ok(())
}

/// Serves as a hostile collector until `stop`, then prints what it saw and sent.
async fn run_hostile(
    cli: &Cli,
    hostility: Hostility,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let http = HostileCollector::start(Transport::Http, cli.http, hostility).await?;
    // A gRPC client refuses an endless answer by its length prefix: no gRPC endpoint for it.
    let grpc = match hostility {
        Hostility::EndlessBody => None,
        _ => Some(HostileCollector::start(Transport::Grpc, cli.grpc, hostility).await?),
    };
    let grpc_endpoint = grpc
        .as_ref()
        .map(HostileCollector::endpoint)
        .unwrap_or_default();
    if let Some(path) = &cli.ready_file {
        write_ready_file(path, &grpc_endpoint, &http.endpoint())?;
    }
    println!(
        "listening grpc={grpc_endpoint} http={} hostile={hostility:?}",
        http.endpoint()
    );
    stop.await;
    for collector in std::iter::once(&http).chain(&grpc) {
        let stats = collector.stats();
        println!(
            "stopped {}: {} connections, {} requests, {} spans, {} log records, {} answer body bytes taken",
            collector.endpoint(),
            HostileStats::get(&stats.connections),
            HostileStats::get(&stats.requests),
            HostileStats::get(&stats.spans),
            HostileStats::get(&stats.logs),
            HostileStats::get(&stats.body_bytes_written),
        );
    }
    Ok(())
}

/// Writes the ready file through a temporary name, so a reader never sees half of it.
fn write_ready_file(path: &Path, grpc: &str, http: &str) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, format!("grpc={grpc}\nhttp={http}\n"))
        .with_context(|| format!("cannot write ready file {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot write ready file {}", path.display()))
}

/// One line per span; one line per log or metrics request.
fn print_request(received: &ReceivedRequest) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not make the receiver refuse telemetry: printing is best effort.
    let _ = match &received.request {
        ExportRequest::Traces(_) => received
            .spans()
            .try_for_each(|span| writeln!(out, "{}", span.summary())),
        ExportRequest::Logs(_) => writeln!(
            out,
            "logs: {} records via {}",
            received.request.log_count(),
            received.transport
        ),
        ExportRequest::Metrics(request) => writeln!(
            out,
            "metrics: {} resource metrics via {}",
            request.resource_metrics.len(),
            received.transport
        ),
    };
    let _ = out.flush();
}
