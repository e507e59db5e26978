//! The command line: help, and one clear line plus a non-zero exit for every bad input,
//! before anything is loaded into the kernel.

use assert_cmd::Command;
use predicates::prelude::*;

fn kspan() -> Command {
    let mut command = Command::cargo_bin("kspan").expect("kspan binary");
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("OTEL_")) {
        command.env_remove(name);
    }
    command
}

/// Runs kspan and expects exit code `code` with exactly one line on stderr containing `message`.
fn fails_with(command: &mut Command, code: i32, message: &str) {
    let output = command.output().expect("run kspan");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        stderr.contains(message),
        "expected `{message}` in: {stderr}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn help_lists_the_options() {
    kspan().arg("--help").assert().success().stdout(
        predicate::str::contains("--attach").and(predicate::str::contains("--otlp-endpoint")),
    );
}

#[test]
fn unknown_attach_mode() {
    let output = kspan().args(["--attach", "uprobe"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("invalid value 'uprobe' for '--attach")
    );
}

#[test]
fn unknown_exporter() {
    let output = kspan().args(["--exporter", "kafka"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn endpoint_without_scheme() {
    fails_with(
        kspan().args(["--otlp-endpoint", "collector:4317"]),
        2,
        "invalid OTLP endpoint `collector:4317`",
    );
}

#[test]
fn endpoint_with_wrong_scheme() {
    fails_with(
        kspan().args(["--otlp-endpoint", "ftp://collector"]),
        2,
        "scheme `ftp` is not http or https",
    );
}

#[test]
fn endpoint_from_environment_is_checked() {
    fails_with(
        kspan().env("OTEL_EXPORTER_OTLP_ENDPOINT", "nonsense"),
        2,
        "invalid OTLP endpoint `nonsense`",
    );
}

#[test]
fn unsupported_protocol_from_environment() {
    fails_with(
        kspan().env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        2,
        "unsupported OTLP protocol `http/json`",
    );
}

#[test]
fn malformed_headers_from_environment_hide_the_secret() {
    let mut command = kspan();
    command.env(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "authorization=Bearer s3cr3t,oops",
    );
    fails_with(
        &mut command,
        2,
        "malformed OTEL_EXPORTER_OTLP_HEADERS: entry 2",
    );
    let stderr = command.output().unwrap().stderr;
    assert!(!String::from_utf8_lossy(&stderr).contains("s3cr3t"));
}

#[test]
fn bad_header_option() {
    let output = kspan().args(["--otlp-header", "novalue"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected KEY=VALUE"));
}

#[test]
fn unreadable_ca_certificate() {
    fails_with(
        kspan().args(["--otlp-ca-cert", "/nonexistent/ca.pem"]),
        2,
        "cannot read CA certificate /nonexistent/ca.pem",
    );
}

/// A CA file that is not PEM is refused at start, not at the first TLS handshake; over both
/// transports, from the option and from OTEL_EXPORTER_OTLP_CERTIFICATE.
#[test]
fn ca_certificate_that_is_not_pem() {
    let path = std::env::temp_dir().join(format!("kspan-cli-not-pem-{}.pem", std::process::id()));
    std::fs::write(&path, "this is not a certificate\n").expect("writing the test file");
    let message = format!(
        "cannot read CA certificate {}: it holds no PEM CERTIFICATE block",
        path.display()
    );
    // Accepted, kspan would run until stopped: the timeout turns that into a failure.
    let kspan = || {
        let mut command = kspan();
        command.timeout(std::time::Duration::from_secs(20));
        command
    };
    for protocol in ["grpc", "http/protobuf"] {
        fails_with(
            kspan()
                .args([
                    "--otlp-protocol",
                    protocol,
                    "--otlp-endpoint",
                    "https://127.0.0.1:1",
                ])
                .arg("--otlp-ca-cert")
                .arg(&path),
            2,
            &message,
        );
        fails_with(
            kspan()
                .args(["--otlp-protocol", protocol])
                .env("OTEL_EXPORTER_OTLP_CERTIFICATE", &path),
            2,
            &message,
        );
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn ring_buffer_size_must_be_a_power_of_two() {
    let output = kspan()
        .args(["--ring-buffer-bytes", "5000"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn shutdown_timeout_of_zero_is_refused() {
    let output = kspan().args(["--shutdown-timeout", "0s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("the final flush needs some time"));
}

#[test]
fn thread_name_longer_than_the_kernel_keeps() {
    let output = kspan()
        .args(["--comm", "a-very-long-thread-name"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("at most 15 bytes"));
}

/// Needs root to drop to an unprivileged user; CI runs as root.
#[test]
fn unprivileged_run_names_the_missing_capabilities() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to run kspan as `nobody`; run the tests as root"
    );
    let kspan = assert_cmd::cargo::cargo_bin("kspan");
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(kspan);
    fails_with(
        &mut command,
        1,
        "missing CAP_BPF (to create its eBPF maps and load its programs) and CAP_PERFMON (",
    );
}
