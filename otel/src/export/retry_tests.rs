//! The OTLP specification's retry rules, against a collector that answers each status: the
//! retryable ones are retried (after the wait the answer asks for, if any) and every call is
//! then delivered; the others are not retried, and every call is counted rejected at once.

use std::time::Duration;

use kspan_receiver::hostile::{FailureStatus, HostileStats, Hostility, RetryAfter};
use tonic::Code;

use super::hostile_tests::{collector, one_batch_of};
use super::outage_tests::{sink_to, submit, wait_until, PATIENCE};
use super::*;

use crate::ExportSnapshot;

/// Calls in each case's one batch.
const CALLS: u64 = 20;

/// One status and what the specification says of it.
struct Case {
    status: FailureStatus,
    retried: bool,
    /// The wait the answer asks for: the retry must come no sooner.
    waits_at_least: Option<Duration>,
}

fn retried(status: FailureStatus) -> Case {
    Case {
        status,
        retried: true,
        waits_at_least: None,
    }
}

fn rejected(status: FailureStatus) -> Case {
    Case {
        status,
        retried: false,
        waits_at_least: None,
    }
}

fn retried_after(status: FailureStatus, wait: Duration) -> Case {
    Case {
        waits_at_least: Some(wait),
        ..retried(status)
    }
}

/// One batch against a collector that answers its first attempt (spans and logs) with the
/// case's status and any later one with success; what went wrong, if anything.
async fn check(protocol: Protocol, case: Case) -> Option<String> {
    let hostility = Hostility::Failing {
        status: case.status,
        times: 2,
    };
    let hostile = collector(protocol, hostility).await;
    let sink = sink_to(hostile.endpoint(), protocol, Duration::from_secs(10));
    let pipeline = Pipeline::start(sink, one_batch_of(CALLS as usize)).unwrap();
    submit(&pipeline, 0..CALLS as u32);
    let stats = pipeline.stats();
    wait_until("every call exported or rejected", || {
        let s = stats.snapshot();
        s.spans_exported + s.spans_rejected == CALLS && s.logs_exported + s.logs_rejected == CALLS
    })
    .await;
    pipeline.shutdown(Instant::now() + PATIENCE).await;
    let (expected, requests) = match case.retried {
        true => (
            ExportSnapshot {
                accepted: CALLS,
                spans_exported: CALLS,
                logs_exported: CALLS,
                export_errors: 1,
                ..ExportSnapshot::default()
            },
            4,
        ),
        false => (
            ExportSnapshot {
                accepted: CALLS,
                spans_rejected: CALLS,
                logs_rejected: CALLS,
                ..ExportSnapshot::default()
            },
            2,
        ),
    };
    let server = hostile.stats();
    let got = (stats.snapshot(), HostileStats::get(&server.requests));
    let mut problems = Vec::new();
    if got != (expected, requests) {
        problems.push(format!(
            "expected {expected:?} after {requests} requests, got {:?} after {}",
            got.0, got.1
        ));
    }
    if let (Some(wait), [_, first_answered, retry, ..]) =
        (case.waits_at_least, server.arrival_times().as_slice())
    {
        let waited = *retry - *first_answered;
        if waited < wait {
            problems.push(format!("retried after {waited:?}, asked to wait {wait:?}"));
        }
    }
    (!problems.is_empty()).then(|| format!("{:?}: {}", case.status, problems.join("; ")))
}

/// Runs every case at once (each with its own collector and pipeline) and lists the failures.
async fn check_all(protocol: Protocol, cases: Vec<Case>) {
    let count = cases.len();
    let outcomes =
        futures_util::future::join_all(cases.into_iter().map(|case| check(protocol, case))).await;
    let failures: Vec<String> = outcomes.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "{} of {count} statuses not handled as the OTLP specification says:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_statuses_follow_the_otlp_retry_rules() {
    let status = |code| FailureStatus::Grpc(code, None);
    let with_retry_info = |code, wait| FailureStatus::Grpc(code, Some(wait));
    let wait = Duration::from_millis(500);
    let mut cases: Vec<Case> = [
        Code::Cancelled,
        Code::DeadlineExceeded,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unavailable,
        Code::DataLoss,
    ]
    .into_iter()
    .map(|code| retried(status(code)))
    .collect();
    cases.extend([
        retried_after(with_retry_info(Code::ResourceExhausted, wait), wait),
        retried_after(with_retry_info(Code::Unavailable, wait), wait),
    ]);
    cases.extend(
        [
            Code::ResourceExhausted,
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::Internal,
            Code::Unknown,
        ]
        .into_iter()
        .map(|code| rejected(status(code))),
    );
    check_all(Protocol::Grpc, cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_statuses_follow_the_otlp_retry_rules() {
    let status = |code| FailureStatus::Http(code, None);
    let second = Duration::from_secs(1);
    let mut cases: Vec<Case> = [429, 502, 503, 504]
        .into_iter()
        .map(|code| retried(status(code)))
        .collect();
    cases.extend([
        retried_after(
            FailureStatus::Http(503, Some(RetryAfter::Seconds(1))),
            second,
        ),
        retried_after(
            FailureStatus::Http(429, Some(RetryAfter::DateIn(second))),
            second,
        ),
    ]);
    cases.extend(
        [400, 401, 403, 404, 405, 408, 413, 415, 500, 501]
            .into_iter()
            .map(|code| rejected(status(code))),
    );
    check_all(Protocol::HttpProtobuf, cases).await;
}
