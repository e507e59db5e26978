//! The `otlp-receiver` binary: start-up line and ready file, real OTLP over both transports,
//! printed spans, the dump, signals, bad addresses, TLS and a required header.

use kspan_receiver::proto::collector::logs::v1::ExportLogsServiceRequest;
use kspan_receiver::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use kspan_receiver::proto::collector::trace::v1::ExportTraceServiceRequest;
use kspan_receiver::proto::common::v1::{any_value, AnyValue, KeyValue};
use kspan_receiver::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use kspan_receiver::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use kspan_receiver::{ExportRequest, Store, Transport};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use predicates::prelude::*;
use prost::Message;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BIN: &str = env!("CARGO_BIN_EXE_otlp-receiver");
const TRACE_ID: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff];
const SPAN_ID: [u8; 8] = [0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];

fn span_request(name: &str) -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: SPAN_ID.to_vec(),
        name: name.to_owned(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_000_002_500,
        attributes: vec![KeyValue {
            key: "signalfd.fd".to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(4)),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn log_request() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    trace_id: TRACE_ID.to_vec(),
                    span_id: SPAN_ID.to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A fresh scratch directory for one test.
fn scratch(test: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("otlp-receiver-{test}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A running receiver binary, its stdout, and the endpoints from its `listening` line.
struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
    grpc: String,
    http: String,
}

async fn start(extra: &[&str]) -> Result<Running, Box<dyn std::error::Error>> {
    let mut child = Command::new(BIN)
        .args(["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line)).await??;
    let endpoint = |key: &str| {
        line.split_whitespace()
            .find_map(|field| field.strip_prefix(key))
            .map(str::to_owned)
            .ok_or(format!("no {key} in the first line: {line:?}"))
    };
    let grpc = endpoint("grpc=")?;
    let http = endpoint("http=")?;
    assert!(line.starts_with("listening "), "{line:?}");
    Ok(Running {
        child,
        stdout,
        grpc,
        http,
    })
}

impl Running {
    fn signal(&self, signal: Signal) -> Result<(), Box<dyn std::error::Error>> {
        let pid = self.child.id().ok_or("receiver already reaped")?;
        kill(Pid::from_raw(i32::try_from(pid)?), signal)?;
        Ok(())
    }

    /// Waits for exit; returns the exit status and the rest of stdout.
    async fn finish(
        mut self,
    ) -> Result<(std::process::ExitStatus, String), Box<dyn std::error::Error>> {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).await?;
        Ok((status, rest))
    }
}

async fn post_protobuf(url: String, body: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
    // kspan-otel may turn on reqwest's TLS without a default provider: install ring's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await?;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn receives_prints_dumps_and_stops_on_sigterm() -> TestResult {
    let dir = scratch("sigterm")?;
    let dump = dir.join("dump.jsonl");
    let ready = dir.join("ready");
    let mut running = start(&[
        "--dump",
        dump.to_str().ok_or("path")?,
        "--ready-file",
        ready.to_str().ok_or("path")?,
    ])
    .await?;

    assert_eq!(
        std::fs::read_to_string(&ready)?,
        format!("grpc={}\nhttp={}\n", running.grpc, running.http)
    );
    let mut client = TraceServiceClient::connect(running.grpc.clone()).await?;
    client.export(span_request("over-grpc")).await?;
    post_protobuf(
        format!("{}/v1/traces", running.http),
        span_request("over-http").encode_to_vec(),
    )
    .await?;
    post_protobuf(
        format!("{}/v1/logs", running.http),
        log_request().encode_to_vec(),
    )
    .await?;

    let mut first_span_line = String::new();
    running.stdout.read_line(&mut first_span_line).await?;
    assert_eq!(
        first_span_line,
        "span \"over-grpc\" trace=000102030405060708090a0b0c0d0eff span=00000000deadbeef \
         parent=- start=2023-11-14T22:13:20.000000000Z duration=2.5µs via gRPC signalfd.fd=4\n"
    );
    running.signal(Signal::SIGTERM)?;
    let (status, rest) = running.finish().await?;
    assert!(status.success(), "{status}");
    assert!(
        rest.contains("span \"over-http\" trace=000102030405060708090a0b0c0d0eff"),
        "{rest}"
    );
    assert!(rest.contains("logs: 1 records via HTTP"), "{rest}");
    assert!(
        rest.ends_with("stopped: 2 spans, 1 log records, 0 metrics requests\n"),
        "{rest}"
    );

    let loaded = Store::read_jsonl(&dump)?;
    let requests = loaded.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].transport, Transport::Grpc);
    assert_eq!(
        requests[0].request,
        ExportRequest::Traces(span_request("over-grpc"))
    );
    assert_eq!(requests[1].transport, Transport::Http);
    assert_eq!(
        requests[1].request,
        ExportRequest::Traces(span_request("over-http"))
    );
    assert_eq!(requests[2].request, ExportRequest::Logs(log_request()));
    assert_eq!(loaded.logs()[0].span_id_hex(), "00000000deadbeef");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn quiet_prints_no_spans_and_sigint_exits_zero() -> TestResult {
    let running = start(&["--quiet"]).await?;
    let mut client = TraceServiceClient::connect(running.grpc.clone()).await?;
    client.export(span_request("hidden")).await?;
    running.signal(Signal::SIGINT)?;
    let (status, rest) = running.finish().await?;
    assert!(status.success(), "{status}");
    assert_eq!(
        rest,
        "stopped: 1 spans, 0 log records, 0 metrics requests\n"
    );
    Ok(())
}

#[tokio::test]
async fn a_killed_receiver_keeps_every_acknowledged_request_in_the_dump() -> TestResult {
    let dir = scratch("kill")?;
    let dump = dir.join("dump.jsonl");
    let mut running = start(&["--quiet", "--dump", dump.to_str().ok_or("path")?]).await?;
    let mut client = TraceServiceClient::connect(running.grpc.clone()).await?;
    for n in 0..5 {
        client.export(span_request(&format!("call-{n}"))).await?;
    }
    running.child.start_kill()?;
    running.child.wait().await?;
    let names: Vec<_> = Store::read_jsonl(&dump)?
        .spans()
        .into_iter()
        .map(|span| span.span.name)
        .collect();
    assert_eq!(names, ["call-0", "call-1", "call-2", "call-3", "call-4"]);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn an_unparsable_address_is_one_line_and_exit_2() {
    assert_cmd::Command::new(BIN)
        .args(["--grpc", "not-an-address"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            predicate::str::starts_with(
                "error: invalid value 'not-an-address' for '--grpc <ADDR>'",
            )
            .and(predicate::str::ends_with("\n"))
            .and(predicate::function(|stderr: &str| {
                stderr.lines().count() == 1
            })),
        );
}

#[test]
fn help_still_goes_to_stdout_with_exit_0() {
    assert_cmd::Command::new(BIN)
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("--ready-file <PATH>"));
}

#[test]
fn a_taken_port_is_one_line_and_exit_2() -> TestResult {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let output = assert_cmd::Command::new(BIN)
        .args(["--grpc", "127.0.0.1:0", "--http", &addr])
        .assert()
        .code(2)
        .stdout("")
        .get_output()
        .clone();
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "otlp-receiver: cannot listen for OTLP/HTTP on {addr}: "
        )),
        "{stderr}"
    );
    Ok(())
}

/// TLS and a required header from the command line (the header through its variable, so the
/// secret stays out of the process list): `https` endpoints, the right header passes, a missing
/// one is refused.
#[tokio::test]
async fn tls_and_a_required_header_from_the_command_line() -> TestResult {
    use kspan_receiver::test_pki::TestPki;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};

    let dir = scratch("tls")?;
    let pki = TestPki::generate()?;
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert, &pki.server_cert_pem)?;
    std::fs::write(&key, &pki.server_key_pem)?;
    let mut child = Command::new(BIN)
        .args(["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--quiet"])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env(
            "OTLP_RECEIVER_REQUIRE_HEADER",
            "authorization=Bearer s3cr3t",
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line)).await??;
    let grpc = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("grpc="))
        .ok_or(format!("no grpc= in {line:?}"))?
        .to_owned();
    assert!(grpc.starts_with("https://127.0.0.1:"), "{line:?}");
    assert!(line.contains(" http=https://127.0.0.1:"), "{line:?}");

    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem));
    let channel = Channel::from_shared(grpc)?
        .tls_config(tls)?
        .connect()
        .await?;
    let mut client = TraceServiceClient::new(channel);
    let mut request = tonic::Request::new(span_request("with-token"));
    request
        .metadata_mut()
        .insert("authorization", "Bearer s3cr3t".parse()?);
    client.export(request).await?;
    let refused = client.export(span_request("without")).await;
    assert_eq!(
        refused.err().map(|status| status.code()),
        Some(tonic::Code::Unauthenticated)
    );

    kill(
        Pid::from_raw(i32::try_from(child.id().ok_or("reaped")?)?),
        Signal::SIGTERM,
    )?;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await?;
    assert_eq!(
        rest,
        "stopped: 1 spans, 0 log records, 0 metrics requests\n"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Runs the receiver with `args`, expecting exit 2 and one line on stderr; returns the line.
fn fails_with_one_line(
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<String, Box<dyn std::error::Error>> {
    let output = assert_cmd::Command::new(BIN)
        .args(["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .assert()
        .code(2)
        .stdout("")
        .get_output()
        .clone();
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    Ok(stderr)
}

#[test]
fn tls_needs_both_certificate_and_key() -> TestResult {
    let stderr = fails_with_one_line(&["--tls-cert", "/etc/hostname"], &[])?;
    assert!(stderr.contains("--tls-key <FILE>"), "{stderr}");
    Ok(())
}

#[test]
fn unusable_tls_files_are_one_line_and_exit_2() -> TestResult {
    let missing = fails_with_one_line(
        &[
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        &[],
    )?;
    assert!(
        missing.starts_with("otlp-receiver: cannot read TLS file /nonexistent/cert.pem: "),
        "{missing}"
    );
    let dir = scratch("bad-pem")?;
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello")?;
    let path = not_pem.to_str().ok_or("path")?;
    let garbage = fails_with_one_line(&["--tls-cert", path, "--tls-key", path], &[])?;
    assert!(
        garbage.contains(
            "unusable TLS identity: the certificate chain holds no PEM CERTIFICATE block"
        ),
        "{garbage}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn a_malformed_required_header_does_not_show_its_value() -> TestResult {
    for (args, env) in [
        (vec!["--require-header", "bad name=s3cr3t"], vec![]),
        (
            vec![],
            vec![("OTLP_RECEIVER_REQUIRE_HEADER", "s3cr3t-without-name")],
        ),
    ] {
        let stderr = fails_with_one_line(&args, &env)?;
        assert!(stderr.contains("invalid required header"), "{stderr}");
        assert!(!stderr.contains("s3cr3t"), "{stderr}");
    }
    Ok(())
}

#[test]
fn an_unknown_hostile_mode_is_one_line_and_exit_2() -> TestResult {
    let stderr = fails_with_one_line(&["--hostile", "rude"], &[])?;
    assert!(stderr.contains("expected silent, endless-body"), "{stderr}");
    Ok(())
}

/// `--hostile late=1h`: the request is taken whole and counted, and no answer comes.
#[tokio::test]
async fn a_late_hostile_receiver_takes_requests_and_does_not_answer() -> TestResult {
    let running = start(&["--hostile", "late=1h"]).await?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let answer = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()?
        .post(format!("{}/v1/traces", running.http))
        .header("content-type", "application/x-protobuf")
        .body(span_request("late").encode_to_vec())
        .send()
        .await;
    assert!(
        answer.as_ref().is_err_and(reqwest::Error::is_timeout),
        "{answer:?}"
    );
    running.signal(Signal::SIGTERM)?;
    let (status, rest) = running.finish().await?;
    assert!(status.success(), "{status}");
    assert!(
        rest.contains("1 requests, 1 spans, 0 log records"),
        "{rest}"
    );
    Ok(())
}
