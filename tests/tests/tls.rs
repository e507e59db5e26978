//! TLS and authentication end to end, on this host, as root: the receiver serves TLS with a
//! certificate from a CA made at test time and refuses requests without
//! `authorization: Bearer <token>`. kspan trusts the CA through `--otlp-ca-cert` and sends the
//! header from OTEL_EXPORTER_OTLP_HEADERS or `--otlp-header`. Every run logs at trace level, so
//! the check that the token appears in none of kspan's output means something. Credentials in
//! the endpoint URL (`http://user:password@host`) become `authorization: Basic` and are shown
//! nowhere either.

mod common;

use std::path::Path;

use kspan_e2e::{
    artifacts, judge_dir, judge_dir_with, CaptureConfig, Completeness, Destination, RunRecord,
    Transport,
};
use kspan_receiver::{test_pki::TestPki, ReceiverSecurity, RequiredHeader};

/// The secret. Distinctive, so finding it anywhere cannot be a coincidence.
const TOKEN: &str = "kspan-e2e-s3cr3t-7f3a9c1e";

/// How kspan is given the header.
#[derive(Clone, Copy, Debug)]
enum HeaderVia {
    /// OTEL_EXPORTER_OTLP_HEADERS, percent-encoded as the specification says.
    Environment,
    /// `--otlp-header`.
    Option,
}

/// A capture run against a TLS receiver that requires `Bearer {TOKEN}`; kspan trusts the test
/// CA (unless `trust_ca` is false) and sends `Bearer {kspan_token}`.
fn secured_run(
    name: &str,
    transport: Transport,
    via: HeaderVia,
    kspan_token: &str,
    trust_ca: bool,
) -> CaptureConfig {
    let pki = TestPki::generate().expect("generating the test CA and server certificate");
    let mut config = common::config(name, common::scenarios(&[]), &[]);
    config.destination = Destination::Receiver(transport);
    config.receiver_security = ReceiverSecurity {
        tls: Some(pki.server_identity().expect("the test server identity")),
        required_header: Some(
            RequiredHeader::new("authorization", &format!("Bearer {TOKEN}"))
                .expect("a valid header"),
        ),
    };
    // The CA goes beside the run's artifacts; it is not secret.
    std::fs::create_dir_all(&config.out_dir).expect("creating the run directory");
    let ca = config.out_dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("writing the CA certificate");
    if trust_ca {
        config.kspan_args.push("--otlp-ca-cert".into());
        config.kspan_args.push(ca.display().to_string());
    }
    config.kspan_env.push(("KSPAN_LOG".into(), "trace".into()));
    match via {
        HeaderVia::Environment => config.kspan_env.push((
            "OTEL_EXPORTER_OTLP_HEADERS".into(),
            format!("authorization=Bearer%20{kspan_token}"),
        )),
        HeaderVia::Option => {
            config.kspan_args.push("--otlp-header".into());
            config
                .kspan_args
                .push(format!("authorization=Bearer {kspan_token}"));
        }
    }
    config
}

/// Every file the run left (kspan's stderr and stdout, summary, ready file, what the receiver
/// got): none may hold the token. kspan must have logged at trace level, or this proves little.
fn assert_token_never_shown(dir: &Path) {
    assert_never_shown(dir, TOKEN);
}

/// As [`assert_token_never_shown`], for any secret.
fn assert_never_shown(dir: &Path, secret: &str) {
    for entry in std::fs::read_dir(dir).expect("the run directory") {
        let path = entry.expect("a directory entry").path();
        let bytes = std::fs::read(&path).expect("an artifact");
        let text = String::from_utf8_lossy(&bytes);
        if let Some(at) = text.find(secret) {
            let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |n| at + n);
            panic!(
                "the secret appears in {}: {}",
                path.display(),
                &text[line_start..line_end]
            );
        }
    }
    let log = std::fs::read_to_string(dir.join(artifacts::KSPAN_LOG)).expect("kspan's log");
    let trace_lines = log.lines().filter(|line| line.contains(" TRACE ")).count();
    assert!(
        trace_lines > 0,
        "kspan logged nothing at trace level: the check above proves little\n{log}"
    );
}

fn receiver_stats(record: &RunRecord) -> kspan_receiver::ReceiverStats {
    record.receiver.expect("the run had a receiver")
}

/// A run over TLS with the right token: every call arrives exactly, nothing is refused, and the
/// token is shown nowhere.
async fn assert_secured_delivery(name: &str, transport: Transport, via: HeaderVia) {
    let config = secured_run(name, transport, via, TOKEN, true);
    let record = common::run(&config).await;
    let verdict = judge_dir(&config.out_dir).expect("judge");
    println!("{verdict}");
    common::assert_exact(&verdict);
    assert_eq!(
        (verdict.spans, verdict.logs),
        (verdict.expected, verdict.expected),
        "{verdict}"
    );
    let stats = receiver_stats(&record);
    assert_eq!(
        stats.unauthenticated_requests.total(),
        0,
        "requests were refused: {stats:?}"
    );
    let requests = match transport {
        Transport::Grpc => stats.trace_requests.grpc,
        Transport::Http => stats.trace_requests.http,
    };
    assert!(requests > 0, "{stats:?}");
    assert_token_never_shown(&config.out_dir);
}

/// (a) gRPC over TLS, the token from OTEL_EXPORTER_OTLP_HEADERS: every call arrives exactly.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_over_tls_with_the_header_from_the_environment() {
    assert_secured_delivery("tls-grpc", Transport::Grpc, HeaderVia::Environment).await;
}

/// (b) HTTP/protobuf over TLS, the token from `--otlp-header`: every call arrives exactly.
#[tokio::test(flavor = "multi_thread")]
async fn http_over_tls_with_the_header_from_the_command_line() {
    assert_secured_delivery("tls-http", Transport::Http, HeaderVia::Option).await;
}

/// (c) A wrong token: the receiver refuses every request, kspan counts every call as lost at
/// export (spans and logs), nothing arrives, and kspan still exits cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_refused_and_every_call_counted_lost() {
    let wrong = format!("{TOKEN}-wrong");
    let config = secured_run(
        "tls-wrong-token",
        Transport::Grpc,
        HeaderVia::Environment,
        &wrong,
        true,
    );
    let record = common::run(&config).await;
    // Lossy: whatever is missing must be exactly what kspan counted as lost.
    let verdict = judge_dir_with(&config.out_dir, Completeness::Lossy).expect("judge");
    println!("{verdict}");
    assert!(verdict.passed(), "{verdict}");
    assert!(verdict.expected > 100, "{verdict}");
    assert_eq!((verdict.spans, verdict.logs), (0, 0), "{verdict}");
    assert_eq!(verdict.missing, verdict.expected, "{verdict}");
    assert_eq!(verdict.lost, verdict.expected as u64, "{verdict}");
    assert_eq!(record.kspan_exit, Some(0));

    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(config.out_dir.join(artifacts::SUMMARY)).expect("summary"),
    )
    .expect("summary JSON");
    let export = &summary["export"];
    let expected = verdict.expected as u64;
    assert_eq!(export["spans_exported"].as_u64(), Some(0), "{summary}");
    assert_eq!(export["logs_exported"].as_u64(), Some(0), "{summary}");
    // Refused for good (gRPC UNAUTHENTICATED): rejected at once, not retried until evicted.
    assert_eq!(
        export["spans_rejected"].as_u64(),
        Some(expected),
        "{summary}"
    );
    assert_eq!(
        export["logs_rejected"].as_u64(),
        Some(expected),
        "{summary}"
    );
    assert_eq!(export["spans_failed"].as_u64(), Some(0), "{summary}");

    let stats = receiver_stats(&record);
    assert!(
        stats.unauthenticated_requests.grpc > 0,
        "the receiver refused nothing: {stats:?}"
    );
    assert_eq!(
        (stats.trace_requests.total(), stats.log_requests.total()),
        (0, 0),
        "{stats:?}"
    );
    println!(
        "receiver refused {} requests",
        stats.unauthenticated_requests.total()
    );
    let log = std::fs::read_to_string(config.out_dir.join(artifacts::KSPAN_LOG)).expect("log");
    assert!(
        log.contains("Unauthenticated"),
        "kspan's log does not say the collector refused it:\n{log}"
    );
    assert_token_never_shown(&config.out_dir);
    // The wrong token is a secret too.
    assert!(!log.contains(&wrong));
}

/// Without the CA, kspan does not trust the receiver's certificate: nothing is sent (the
/// handshake fails before any header leaves), every call is counted lost, kspan exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_refused_by_kspan() {
    let config = secured_run(
        "tls-untrusted",
        Transport::Http,
        HeaderVia::Option,
        TOKEN,
        false,
    );
    let record = common::run(&config).await;
    let verdict = judge_dir_with(&config.out_dir, Completeness::Lossy).expect("judge");
    println!("{verdict}");
    assert!(verdict.passed(), "{verdict}");
    assert!(verdict.expected > 100, "{verdict}");
    assert_eq!(
        (verdict.spans, verdict.lost),
        (0, verdict.expected as u64),
        "{verdict}"
    );
    let stats = receiver_stats(&record);
    assert_eq!(
        stats,
        kspan_receiver::ReceiverStats::default(),
        "a request got through the TLS handshake"
    );
    let log = std::fs::read_to_string(config.out_dir.join(artifacts::KSPAN_LOG)).expect("log");
    assert!(
        log.contains("UnknownIssuer"),
        "kspan's log does not say the certificate was not trusted:\n{log}"
    );
    assert_token_never_shown(&config.out_dir);
}

/// A plaintext receiver that requires `authorization: Basic base64(kspan:{TOKEN})`; kspan's
/// endpoint carries `kspan:{password}` as its user information.
fn userinfo_run(name: &str, transport: Transport, password: &str) -> CaptureConfig {
    let mut config = common::config(name, common::scenarios(&[]), &[]);
    config.destination = Destination::Receiver(transport);
    config.receiver_security = ReceiverSecurity {
        tls: None,
        required_header: Some(
            RequiredHeader::new("authorization", &format!("Basic {}", basic(TOKEN)))
                .expect("a valid header"),
        ),
    };
    config.endpoint_userinfo = Some(format!("kspan:{password}"));
    config.kspan_env.push(("KSPAN_LOG".into(), "trace".into()));
    config
}

/// The credentials `kspan:{password}` as HTTP Basic authentication carries them.
fn basic(password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("kspan:{password}"))
}

/// (e) `user:password@` in the endpoint, over gRPC: sent as `authorization: Basic`, every call
/// arrives exactly, and neither the password nor its encoding appears in any output.
#[tokio::test(flavor = "multi_thread")]
async fn endpoint_credentials_are_sent_as_basic_auth_and_never_shown() {
    let config = userinfo_run("userinfo-grpc", Transport::Grpc, TOKEN);
    let record = common::run(&config).await;
    let verdict = judge_dir(&config.out_dir).expect("judge");
    println!("{verdict}");
    common::assert_exact(&verdict);
    let stats = receiver_stats(&record);
    assert_eq!(
        stats.unauthenticated_requests.total(),
        0,
        "requests were refused: {stats:?}"
    );
    assert_token_never_shown(&config.out_dir);
    assert_never_shown(&config.out_dir, &basic(TOKEN));
}

/// (f) A wrong password in the endpoint, over HTTP: every request is refused and every call
/// counted lost; kspan's warnings name the URL it posts to, without the credentials.
#[tokio::test(flavor = "multi_thread")]
async fn endpoint_credentials_are_not_in_export_failures() {
    let wrong = format!("{TOKEN}-wrong");
    let config = userinfo_run("userinfo-http-refused", Transport::Http, &wrong);
    let record = common::run(&config).await;
    let verdict = judge_dir_with(&config.out_dir, Completeness::Lossy).expect("judge");
    println!("{verdict}");
    assert!(verdict.passed(), "{verdict}");
    assert_eq!(
        (verdict.spans, verdict.lost),
        (0, verdict.expected as u64),
        "{verdict}"
    );
    assert!(
        receiver_stats(&record).unauthenticated_requests.http > 0,
        "the receiver refused nothing"
    );
    let log = std::fs::read_to_string(config.out_dir.join(artifacts::KSPAN_LOG)).expect("log");
    let refusals: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("HTTP 401"))
        .collect();
    assert!(
        !refusals.is_empty(),
        "kspan's log does not say the collector refused it:\n{log}"
    );
    for refusal in refusals {
        assert!(
            refusal.contains("POST http://127.0.0.1:"),
            "the warning should name the URL, without credentials: {refusal}"
        );
    }
    assert_token_never_shown(&config.out_dir);
    assert_never_shown(&config.out_dir, &basic(&wrong));
}
