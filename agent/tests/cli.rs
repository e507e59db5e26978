//! The command line: help, and one clear line plus a non-zero exit for every bad input,
//! before anything is loaded into the kernel.

use std::{
    ffi::{OsStr, OsString},
    os::unix::ffi::OsStrExt as _,
};

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
    // gRPC takes `host:port` (https://, or http:// with OTEL_EXPORTER_OTLP_INSECURE=true);
    // HTTP needs a URL, and neither takes a bare word.
    fails_with(
        kspan().args([
            "--otlp-protocol",
            "http/protobuf",
            "--otlp-endpoint",
            "collector:4318",
        ]),
        2,
        "invalid OTLP endpoint `collector:4318/v1/traces`",
    );
    fails_with(
        kspan().args(["--otlp-endpoint", "collector"]),
        2,
        "invalid OTLP endpoint `collector`: it needs a scheme",
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
        kspan().args([
            "--otlp-ca-cert",
            "/nonexistent/ca.pem",
            "--otlp-endpoint",
            "https://collector:4317",
        ]),
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
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:1")
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

/// A secret for the cases below: distinctive, so finding it in output cannot be a coincidence.
const SECRET: &str = "s3cr3t-9d41";

/// One bad input: kspan's arguments and environment, and what its one line must say.
struct BadInput {
    args: Vec<OsString>,
    env: Vec<(&'static str, OsString)>,
    expected: String,
}

fn bad(args: &[&str], env: &[(&'static str, &[u8])], expected: &str) -> BadInput {
    BadInput {
        args: args.iter().map(OsString::from).collect(),
        env: env
            .iter()
            .map(|(name, value)| (*name, OsStr::from_bytes(value).to_os_string()))
            .collect(),
        expected: expected.to_string(),
    }
}

/// Runs every case (each must exit 2 with one line holding `expected` and no secret) and
/// reports all that did not, with what kspan said instead.
fn all_refused(cases: Vec<BadInput>) {
    let mut wrong = Vec::new();
    for case in &cases {
        let mut command = kspan();
        // Accepted, kspan would run until stopped: the timeout turns that into a failure.
        command
            .timeout(std::time::Duration::from_secs(30))
            .args(&case.args)
            .envs(case.env.iter().map(|(name, value)| (name, value)));
        let output = command.output().expect("run kspan");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let as_expected = output.status.code() == Some(2)
            && lines.len() == 1
            && lines[0].starts_with("kspan: error: ")
            && lines[0].contains(&case.expected)
            && !stderr.contains(SECRET);
        if !as_expected {
            wrong.push(format!(
                "args {:?} env {:?}\\n  expected: exit 2, one line with `{}`\\n  got: exit {:?}, stderr: {stderr}",
                case.args, case.env, case.expected, output.status.code()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} bad inputs were not refused as expected:\\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\\n")
    );
}

/// Inputs that kspan once accepted and then handled wrongly, each now one line and exit 2
/// before anything is loaded, whichever exporter is chosen.
#[test]
fn silently_wrong_inputs_are_refused() {
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("reading pid_max")
        .trim()
        .parse()
        .expect("pid_max is a number");
    let above_pid_max = pid_max.to_string();
    // One more distinct value than the kernel's filter maps hold.
    let too_many = |option: &str, value: fn(u32) -> String, expected: &str| BadInput {
        args: (1..=1025)
            .flat_map(|n| [OsString::from(option), OsString::from(value(n))])
            .collect(),
        env: Vec::new(),
        expected: expected.to_string(),
    };
    let headers_not_utf8 = b"authorization=Bearer s3cr3t-9d41\xff";
    let mut cases = vec![
        bad(
            &[],
            &[("OTEL_EXPORTER_OTLP_HEADERS", headers_not_utf8)],
            "invalid OTEL_EXPORTER_OTLP_HEADERS: expected valid UTF-8",
        ),
        bad(
            &[],
            &[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", headers_not_utf8)],
            "invalid OTEL_EXPORTER_OTLP_TRACES_HEADERS: expected valid UTF-8",
        ),
        bad(
            &[],
            &[("OTEL_RESOURCE_ATTRIBUTES", b"team=a,foo")],
            "malformed OTEL_RESOURCE_ATTRIBUTES: entry 2 is not key=value",
        ),
        bad(
            &[],
            &[("OTEL_RESOURCE_ATTRIBUTES", b"=bar")],
            "malformed OTEL_RESOURCE_ATTRIBUTES: entry 1 has an empty key",
        ),
        bad(
            &[],
            &[("OTEL_RESOURCE_ATTRIBUTES", b"team=\xff")],
            "invalid OTEL_RESOURCE_ATTRIBUTES: expected valid UTF-8",
        ),
        bad(
            &[],
            &[("OTEL_RESOURCE_ATTRIBUTES", b"team=%ff")],
            "malformed OTEL_RESOURCE_ATTRIBUTES: entry 1 has a value that does not percent-decode to UTF-8",
        ),
        bad(
            &[],
            &[("OTEL_SERVICE_NAME", b"\xff")],
            "invalid OTEL_SERVICE_NAME: expected valid UTF-8",
        ),
        bad(
            &["--otlp-timeout", "0"],
            &[],
            "the OTLP export timeout must be more than 0",
        ),
        bad(
            &[],
            &[("OTEL_EXPORTER_OTLP_TIMEOUT", b"0")],
            "invalid OTEL_EXPORTER_OTLP_TIMEOUT: expected a positive whole number of milliseconds",
        ),
        bad(
            &["--otlp-endpoint", "http://collector:0"],
            &[],
            "port `0` is not 1 to 65535",
        ),
        bad(
            &["--otlp-endpoint", "http://collector:99999"],
            &[],
            "port `99999` is not 1 to 65535",
        ),
        bad(
            &[],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", b"http://collector:65536")],
            "port `65536` is not 1 to 65535",
        ),
        bad(
            &["--trace-window", "0"],
            &[],
            "invalid value '0' for '--trace-window <TRACE_WINDOW>': a trace window is at least 1s",
        ),
        bad(
            &["--trace-window", "500ms"],
            &[],
            "a trace window is at least 1s",
        ),
        bad(
            &["--process-details", "--resource-per", "host"],
            &[],
            "--process-details needs a resource per process: drop --resource-per host",
        ),
        bad(
            &["--resource-per", "container"],
            &[],
            "invalid value 'container' for '--resource-per <RESOURCE_PER>'",
        ),
        bad(
            &["--pid", &above_pid_max],
            &[],
            &format!("no process can have id {pid_max}: this kernel's ids are below {pid_max}"),
        ),
        bad(&["--pid", "0"], &[], "0 is not a process id"),
        bad(
            &["--container", "0123456789a"],
            &[],
            "11 hex digits: give at least 12 of the container id, as `docker ps` shows it",
        ),
        bad(
            &["--container", "0123456789xy"],
            &[],
            "`0123456789xy` is not a container id: hex digits only",
        ),
        bad(
            &["--ring-buffer-bytes", "2147483648"],
            &[],
            "2147483648 is more than the largest allowed, 268435456 (256 MiB)",
        ),
        too_many(
            "--pid",
            |n| n.to_string(),
            "1025 distinct --pid values: the in-kernel filter holds at most 1024",
        ),
        too_many(
            "--comm",
            |n| format!("t{n}"),
            "1025 distinct --comm values: the in-kernel filter holds at most 1024",
        ),
    ];
    // The same OTLP mistakes with `--exporter stdout`: still refused, not ignored.
    let stdout_cases: Vec<BadInput> = [
        bad(
            &["--otlp-endpoint", "http://collector:0"],
            &[],
            "port `0` is not 1 to 65535",
        ),
        bad(
            &[],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", b"nonsense")],
            "invalid OTLP endpoint `nonsense`",
        ),
        bad(
            &[],
            &[(
                "OTEL_EXPORTER_OTLP_HEADERS",
                b"authorization=Bearer s3cr3t-9d41,oops",
            )],
            "malformed OTEL_EXPORTER_OTLP_HEADERS: entry 2",
        ),
        bad(
            &[],
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", b"http/json")],
            "unsupported OTLP protocol `http/json`",
        ),
        bad(
            &[],
            &[("OTEL_RESOURCE_ATTRIBUTES", b"foo")],
            "malformed OTEL_RESOURCE_ATTRIBUTES: entry 1 is not key=value",
        ),
        bad(
            &["--otlp-timeout", "0"],
            &[],
            "the OTLP export timeout must be more than 0",
        ),
        bad(
            &["--otlp-ca-cert", "/nonexistent/ca.pem"],
            &[],
            "is set but the OTLP endpoint `http://localhost:4317` is plaintext http://",
        ),
        bad(
            &[],
            &[("OTEL_METRIC_EXPORT_INTERVAL", b"0")],
            "invalid OTEL_METRIC_EXPORT_INTERVAL",
        ),
        bad(
            &[],
            &[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", b"http/json")],
            "unsupported OTLP protocol `http/json`",
        ),
        bad(
            &[],
            &[("OTEL_EXPORTER_OTLP_INSECURE", b"yes")],
            "invalid OTEL_EXPORTER_OTLP_INSECURE: expected `true` or `false`",
        ),
        bad(
            &[],
            &[("OTEL_EXPORTER_OTLP_TRACES_INSECURE", b"1")],
            "invalid OTEL_EXPORTER_OTLP_TRACES_INSECURE: expected `true` or `false`",
        ),
        bad(
            &[],
            &[("OTEL_TRACES_EXPORTER", b"console")],
            "invalid OTEL_TRACES_EXPORTER: expected `otlp` or `none`",
        ),
        bad(
            &[],
            &[("OTEL_LOGS_EXPORTER", b"otlp,console")],
            "invalid OTEL_LOGS_EXPORTER: expected `otlp` or `none`",
        ),
        bad(
            &[],
            &[("OTEL_METRICS_EXPORTER", b"prometheus")],
            "invalid OTEL_METRICS_EXPORTER: expected `otlp` or `none`",
        ),
        bad(
            &[],
            &[("OTEL_SDK_DISABLED", b"yes")],
            "invalid OTEL_SDK_DISABLED: expected `true` or `false`",
        ),
    ]
    .into_iter()
    .map(|mut case| {
        case.args
            .splice(0..0, ["--exporter".into(), "stdout".into()]);
        case
    })
    .collect();
    cases.extend(stdout_cases);
    all_refused(cases);
}

/// A certificate asks for TLS: with a plaintext endpoint, headers (tokens) would go in clear.
#[test]
fn certificates_with_a_plaintext_endpoint_are_refused() {
    let message = |setting: &str, endpoint: &str| {
        format!("{setting} is set but the OTLP endpoint `{endpoint}` is plaintext http://: use an https:// endpoint")
    };
    let ca = "--otlp-ca-cert";
    all_refused(vec![
        bad(
            &[
                "--otlp-ca-cert",
                "/etc/ssl/ca.pem",
                "--otlp-endpoint",
                "http://collector:4317",
            ],
            &[],
            &message(ca, "http://collector:4317"),
        ),
        bad(
            &[
                "--otlp-protocol",
                "http/protobuf",
                "--otlp-ca-cert",
                "/etc/ssl/ca.pem",
            ],
            &[],
            &message(ca, "http://localhost:4318/v1/traces"),
        ),
        bad(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", b"/etc/ssl/ca.pem"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", b"http://collector:4317"),
            ],
            &message("OTEL_EXPORTER_OTLP_CERTIFICATE", "http://collector:4317"),
        ),
        bad(
            &[],
            &[("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", b"/etc/ssl/ca.pem")],
            &message(
                "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
                "http://localhost:4317",
            ),
        ),
        bad(
            &["--otlp-endpoint", "http://collector:4317"],
            &[
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                    b"/etc/ssl/client.pem",
                ),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", b"/etc/ssl/client.key"),
            ],
            &message(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                "http://collector:4317",
            ),
        ),
        // The endpoint in the message never shows its user information.
        bad(
            &[
                "--otlp-ca-cert",
                "/etc/ssl/ca.pem",
                "--otlp-endpoint",
                "http://kspan:s3cr3t-9d41@collector:4317",
            ],
            &[],
            &message(ca, "http://collector:4317"),
        ),
    ]);
}

/// User information in an endpoint is a secret: no error shows it.
#[test]
fn endpoint_user_information_is_never_shown() {
    all_refused(vec![
        bad(
            &["--otlp-endpoint", "http://kspan:s3cr3t-9d41@collector:0"],
            &[],
            "invalid OTLP endpoint `http://<redacted>@collector:0`: port `0` is not 1 to 65535",
        ),
        bad(
            &[],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", b"kspan:s3cr3t-9d41@collector:4317")],
            "invalid OTLP endpoint `<redacted>@collector:4317`",
        ),
        bad(
            &["--otlp-endpoint", "http://kspan:s3cr3t-9d41%ff@collector:4317"],
            &[],
            "invalid OTLP endpoint `http://<redacted>@collector:4317`: its user information does not percent-decode to UTF-8",
        ),
    ]);
}

/// `--otlp-headers-file`: a file kspan cannot use is refused, naming the line, never its value.
#[test]
fn headers_files_are_checked_and_their_values_never_shown() {
    let dir = std::env::temp_dir().join(format!("kspan-cli-headers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the test directory");
    let file = |name: &str, contents: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("writing a headers file");
        path.display().to_string()
    };
    let no_equals = file("no-equals", b"# token\nauthorization Bearer s3cr3t-9d41\n");
    let bad_value = file("bad-value", b"authorization=Bearer s3cr3t-9d41\x01\n");
    let not_utf8 = file("not-utf8", b"authorization=Bearer s3cr3t-9d41\xff\n");
    all_refused(vec![
        bad(
            &["--otlp-headers-file", "/nonexistent/headers"],
            &[],
            "headers file /nonexistent/headers: No such file or directory",
        ),
        bad(
            &["--otlp-headers-file", &no_equals],
            &[],
            &format!("headers file {no_equals}: line 2 is not KEY=VALUE"),
        ),
        bad(
            &["--otlp-headers-file", &bad_value],
            &[],
            &format!("headers file {bad_value}: line 1 has a value that is not visible ASCII"),
        ),
        bad(
            &["--exporter", "stdout", "--otlp-headers-file", &not_utf8],
            &[],
            &format!("headers file {not_utf8}: line 1 is not valid UTF-8"),
        ),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `program` as `nobody` (uid and gid 65534, no groups, no capabilities).
fn as_nobody(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(program);
    command
}

/// A directory of the test's own, emptied, with `mode`.
fn fresh_dir(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::remove_dir_all(path);
    std::fs::create_dir_all(path).expect("creating a test directory");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .expect("setting a test directory's mode");
}

/// What a local user can plant for root kspan's `--ready-file` and `--summary-file` (symlinks
/// to a root-owned file in a directory they own, a device node, a directory) is refused before
/// anything is loaded, and nothing it points to is touched.
#[test]
fn output_files_that_would_redirect_the_write_are_refused() {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    use std::os::unix::fs::FileTypeExt as _;
    use std::os::unix::fs::MetadataExt as _;

    assert!(
        nix::unistd::geteuid().is_root(),
        "this test plays root kspan against an unprivileged user: run the tests as root"
    );
    let base = std::env::temp_dir().join(format!("kspan-cli-output-{}", std::process::id()));
    fresh_dir(&base, 0o755);
    let root_dir = base.join("root");
    fresh_dir(&root_dir, 0o755);
    let victim = root_dir.join("victim");
    std::fs::write(&victim, "precious\n").expect("writing the root-owned file");
    let user_dir = base.join("nobody");
    fresh_dir(&user_dir, 0o755);
    nix::unistd::chown(&user_dir, Some(65534.into()), Some(65534.into()))
        .expect("giving the directory to nobody");
    for name in ["summary.json", "ready"] {
        let status = as_nobody("ln")
            .arg("-s")
            .arg(&victim)
            .arg(user_dir.join(name))
            .output()
            .expect("running ln as nobody");
        assert!(
            status.status.success(),
            "nobody could not plant {name}: {status:?}"
        );
    }
    // A device node like /dev/full, of the test's own: a kspan that replaced it harms nothing.
    let device = base.join("full");
    mknod(
        &device,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 7),
    )
    .expect("creating a device node");
    let path = |p: &std::path::Path| p.display().to_string();
    let (summary_link, ready_link) = (user_dir.join("summary.json"), user_dir.join("ready"));
    let link = "it is a symbolic link: kspan does not write through links";
    all_refused(vec![
        bad(
            &["--summary-file", &path(&summary_link)],
            &[],
            &format!("--summary-file {}: {link}", path(&summary_link)),
        ),
        bad(
            &["--exporter", "stdout", "--ready-file", &path(&ready_link)],
            &[],
            &format!("--ready-file {}: {link}", path(&ready_link)),
        ),
        bad(
            &["--ready-file", &path(&device)],
            &[],
            &format!(
                "--ready-file {}: it is a character device: kspan only replaces regular files",
                path(&device)
            ),
        ),
        bad(
            &["--summary-file", &path(&user_dir)],
            &[],
            "it is a directory: kspan only replaces regular files",
        ),
        bad(
            &["--ready-file", &path(&base.join("missing/ready"))],
            &[],
            &format!(
                "its directory {} does not exist",
                path(&base.join("missing"))
            ),
        ),
        bad(
            &["--summary-file", &path(&victim.join("summary.json"))],
            &[],
            &format!("{} is not a directory", path(&victim)),
        ),
        // The ready file is fine, the summary file is not: still refused at the start.
        bad(
            &[
                "--ready-file",
                &path(&base.join("ready")),
                "--summary-file",
                &path(&summary_link),
            ],
            &[],
            link,
        ),
    ]);
    assert_eq!(
        std::fs::read_to_string(&victim).expect("the root-owned file"),
        "precious\n",
        "the root-owned file was written through a link"
    );
    let device_now = std::fs::symlink_metadata(&device).expect("the device node");
    assert!(
        device_now.file_type().is_char_device() && device_now.rdev() == makedev(1, 7),
        "the device node was replaced: {device_now:?}"
    );
    for link in [&summary_link, &ready_link] {
        assert_eq!(std::fs::read_link(link).expect("the planted link"), victim);
    }
    assert!(!base.join("ready").exists(), "kspan became ready");
    let _ = std::fs::remove_dir_all(&base);
}

/// A directory kspan's user cannot write is refused at the start (exit 2), not when the
/// file is first written.
#[test]
fn an_output_directory_kspan_cannot_write_is_refused() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs kspan as `nobody`: run the tests as root"
    );
    let dir = std::env::temp_dir().join(format!("kspan-cli-root-only-{}", std::process::id()));
    fresh_dir(&dir, 0o755);
    let ready = dir.join("ready");
    fails_with(
        as_nobody(assert_cmd::cargo::cargo_bin("kspan"))
            .args(["--exporter", "stdout", "--ready-file"])
            .arg(&ready)
            .timeout(std::time::Duration::from_secs(30)),
        2,
        &format!(
            "--ready-file {}: kspan (uid 65534) cannot write in {}: Permission denied",
            ready.display(),
            dir.display()
        ),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// clap's own usage errors are one line too: the message with its possible values and tips.
#[test]
fn usage_errors_are_one_line() {
    all_refused(vec![
        bad(
            &["--exporter", "kafka"],
            &[],
            "invalid value 'kafka' for '--exporter <EXPORTER>' ([possible values: otlp, stdout])",
        ),
        bad(
            &["--exportr", "stdout"],
            &[],
            "unexpected argument '--exportr' found (tip: a similar argument exists: '--exporter')",
        ),
        bad(
            &["--pid"],
            &[],
            "a value is required for '--pid <PID>' but none was supplied",
        ),
    ]);
}

/// Declarations kspan cannot honour are refused at start, naming the probe: one line, exit 2.
#[test]
fn bad_probe_declarations_are_refused_naming_the_probe() {
    let dir = std::env::temp_dir().join(format!("kspan-cli-probes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write probe file");
        path.display().to_string()
    };
    let unknown_argument = file(
        "argument.toml",
        "[[probe]]\nsyscall = \"openat\"\n[[probe.argument]]\nname = \"how\"\n",
    );
    let unknown_decoder = file(
        "decoder.toml",
        "[[probe]]\nsyscall = \"openat\"\n[[probe.argument]]\nname = \"flags\"\ndecoder = \"ksym\"\n",
    );
    let not_toml = file("broken.toml", "[[probe]\nsyscall = ");
    let decoded_string = file(
        "strings.toml",
        "[[probe]]\nsyscall = \"openat\"\n[[probe.argument]]\nname = \"flags\"\ndecoder = \"signals\"\n[[probe.argument]]\nname = \"filename\"\ndecoder = \"errno\"\n",
    );
    let stdout = ["--exporter", "stdout"];
    let with = |args: &[&str], expected: &str| {
        let all: Vec<&str> = stdout.iter().chain(args).copied().collect();
        bad(&all, &[], expected)
    };
    all_refused(vec![
        with(
            &["--probe", "syscall:no_such_call"],
            "probe no_such_call (--probe syscall:no_such_call): no syscall `no_such_call` here",
        ),
        with(
            &["--probes", &unknown_argument],
            "argument `how`: sys_enter_openat has dfd, filename, flags, mode",
        ),
        with(&["--probes", &unknown_decoder], "unknown decoder `ksym`"),
        with(&["--probes", &not_toml], "probe file"),
        with(
            &["--probes", &decoded_string],
            "argument `filename`: a decoder names a number, and this is a string",
        ),
        with(
            &["--probe", "syscall:openat", "--probe", "syscall:openat"],
            "probe openat is declared twice",
        ),
        with(
            &["--probe", "signalfd", "--probe", "syscall:signalfd4"],
            "probes signalfd and signalfd4 both hook syscalls:sys_enter_signalfd4: declare it once",
        ),
        with(
            &["--probe", "syscall:openat", "--attach", "kprobe"],
            "a syscall attaches to its tracepoints, but the attach mode allows only kprobe",
        ),
        with(
            &["--probe", "vfs_fsync", "--attach", "tracepoint"],
            "probe vfs_fsync (--probe vfs_fsync): a kernel function is probed with a kprobe or \
             fentry pair, but the attach mode allows only tracepoint",
        ),
        with(
            &["--probe", "kspan_no_such_function"],
            "`kspan_no_such_function` is not a function of this kernel",
        ),
        with(
            &["--probes", "/no/such/file.toml"],
            "cannot read probe file /no/such/file.toml",
        ),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
}
