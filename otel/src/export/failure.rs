//! Why an export request delivered nothing, and what that says about its items: not delivered
//! (retry, or give up when the collector refused for good), or sent without an answer (the
//! collector may have them). The classes follow the OTLP specification's retry rules.

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use tonic_types::StatusExt as _;

/// What a failed request means for the items it carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Not delivered; a later attempt may succeed (unreachable, throttled, unavailable).
    Retryable,
    /// The collector refused the request for good (the specification's non-retryable answers,
    /// e.g. HTTP 400 or 401, gRPC `UNAUTHENTICATED`): not delivered, not sent again, and
    /// counted as rejected at once.
    Refused,
    /// Sent, but no answer came within the request timeout: the collector may have the items.
    /// Sent again (delivery is at least once); if no attempt is ever acknowledged, the items
    /// are counted as possibly delivered, not lost.
    NoAnswer,
}

/// A failed export request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportFailure {
    /// What it means for the items.
    pub kind: FailureKind,
    /// What happened, for the log (the status included).
    pub message: String,
    /// How long the collector asked to be left alone before the next attempt (HTTP
    /// `Retry-After`, gRPC `google.rpc.RetryInfo`), for a retryable failure.
    pub retry_after: Option<Duration>,
}

impl ExportFailure {
    /// A failure a later attempt may not have.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Retryable,
            message: message.into(),
            retry_after: None,
        }
    }

    /// An HTTP answer that is not a success: 429, 502, 503 and 504 may be retried (after the
    /// `Retry-After` the answer carries, if any), every other status is a refusal.
    pub fn http_status(
        status: http::StatusCode,
        retry_after: Option<&http::HeaderValue>,
        url: &str,
    ) -> Self {
        let message = format!("POST {url}: HTTP {status}");
        match status.as_u16() {
            429 | 502 | 503 | 504 => Self {
                kind: FailureKind::Retryable,
                message,
                retry_after: retry_after
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, SystemTime::now())),
            },
            _ => Self {
                kind: FailureKind::Refused,
                message,
                retry_after: None,
            },
        }
    }

    /// A gRPC status. The collector's answers follow the specification: `CANCELLED`,
    /// `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE`, `DATA_LOSS`, and
    /// `RESOURCE_EXHAUSTED` when it carries a `RetryInfo`, are retried; every other code is a
    /// refusal. A status tonic made from a transport failure (it carries the error as its
    /// source) is no answer from the collector: retried. The client's own timeout means no
    /// answer came.
    pub fn grpc_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let timed_out = matches!(status.code(), Code::DeadlineExceeded)
            || (status.code() == Code::Cancelled
                && status.message() == tonic::TimeoutExpired(()).to_string());
        let retry_after = status
            .get_details_retry_info()
            .and_then(|info| info.retry_delay);
        let transport_failure = std::error::Error::source(status).is_some();
        let kind = match status.code() {
            _ if timed_out => FailureKind::NoAnswer,
            _ if transport_failure => FailureKind::Retryable,
            Code::Cancelled
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss => FailureKind::Retryable,
            Code::ResourceExhausted if retry_after.is_some() => FailureKind::Retryable,
            _ => FailureKind::Refused,
        };
        let message = match status.message() {
            "" => format!("gRPC {:?}", status.code()),
            message => format!("gRPC {:?}: {message}", status.code()),
        };
        Self {
            kind,
            message,
            retry_after: retry_after.filter(|_| kind != FailureKind::Refused),
        }
    }
}

/// `Retry-After` (RFC 9110): a number of seconds, or an HTTP-date (a date already past asks
/// for no wait); `None` when it is neither.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

impl fmt::Display for ExportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_follow_the_otlp_retry_rules() {
        let retryable = [429, 502, 503, 504];
        let refused = [
            400, 401, 403, 404, 405, 408, 409, 413, 415, 431, 500, 501, 505,
        ];
        let expected: Vec<_> = retryable
            .iter()
            .map(|code| (*code, FailureKind::Retryable))
            .chain(refused.iter().map(|code| (*code, FailureKind::Refused)))
            .collect();
        let actual: Vec<_> = expected
            .iter()
            .map(|(code, _)| {
                let status = http::StatusCode::from_u16(*code).unwrap();
                (*code, ExportFailure::http_status(status, None, "u").kind)
            })
            .collect();
        assert_eq!(actual, expected);
        let refused =
            ExportFailure::http_status(http::StatusCode::UNAUTHORIZED, None, "http://c/v1/traces");
        assert_eq!(
            refused.message,
            "POST http://c/v1/traces: HTTP 401 Unauthorized"
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let in_a_minute = httpdate::fmt_http_date(now + Duration::from_secs(60));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(60));
        let cases = [
            ("7", Some(Duration::from_secs(7))),
            (" 0 ", Some(Duration::ZERO)),
            (in_a_minute.as_str(), Some(Duration::from_secs(60))),
            (past.as_str(), Some(Duration::ZERO)),
            ("-1", None),
            ("1.5", None),
            ("soon", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
        let header = http::HeaderValue::from_static("3");
        let throttled =
            ExportFailure::http_status(http::StatusCode::TOO_MANY_REQUESTS, Some(&header), "u");
        assert_eq!(throttled.retry_after, Some(Duration::from_secs(3)));
        // A refusal is not retried, whatever it says.
        let refused = ExportFailure::http_status(http::StatusCode::BAD_REQUEST, Some(&header), "u");
        assert_eq!(
            (refused.kind, refused.retry_after),
            (FailureKind::Refused, None)
        );
    }

    #[test]
    fn grpc_codes_follow_the_otlp_retry_rules() {
        use tonic::{Code, Status};
        use tonic_types::ErrorDetails;
        let retry_in = Duration::from_millis(1500);
        let with_retry_info = |code| {
            Status::with_error_details(
                code,
                "slow down",
                ErrorDetails::with_retry_info(Some(retry_in)),
            )
        };
        let cases = [
            (
                Status::cancelled("Timeout expired"),
                FailureKind::NoAnswer,
                None,
            ),
            (
                Status::deadline_exceeded("late"),
                FailureKind::NoAnswer,
                None,
            ),
            (Status::cancelled("h2 CANCEL"), FailureKind::Retryable, None),
            (Status::unavailable("down"), FailureKind::Retryable, None),
            (Status::aborted("conflict"), FailureKind::Retryable, None),
            (
                Status::out_of_range("decoded message length too large"),
                FailureKind::Retryable,
                None,
            ),
            (Status::data_loss("lost"), FailureKind::Retryable, None),
            (
                with_retry_info(Code::Unavailable),
                FailureKind::Retryable,
                Some(retry_in),
            ),
            (
                with_retry_info(Code::ResourceExhausted),
                FailureKind::Retryable,
                Some(retry_in),
            ),
            (
                Status::resource_exhausted("full"),
                FailureKind::Refused,
                None,
            ),
            (
                with_retry_info(Code::InvalidArgument),
                FailureKind::Refused,
                None,
            ),
            (Status::unauthenticated("token"), FailureKind::Refused, None),
            (Status::invalid_argument("bad"), FailureKind::Refused, None),
            (
                Status::new(Code::PermissionDenied, ""),
                FailureKind::Refused,
                None,
            ),
            (
                Status::unimplemented("no metrics"),
                FailureKind::Refused,
                None,
            ),
            (Status::not_found("where"), FailureKind::Refused, None),
            (Status::already_exists("dup"), FailureKind::Refused, None),
            (
                Status::failed_precondition("state"),
                FailureKind::Refused,
                None,
            ),
            (
                Status::unknown("collector said so"),
                FailureKind::Refused,
                None,
            ),
            (
                Status::internal("collector bug"),
                FailureKind::Refused,
                None,
            ),
            // Made by tonic from a transport error: the collector never answered.
            (
                Status::from_error(Box::new(std::io::Error::other("connection reset"))),
                FailureKind::Retryable,
                None,
            ),
        ];
        let actual: Vec<_> = cases
            .iter()
            .map(|(status, _, _)| {
                let failure = ExportFailure::grpc_status(status);
                (status.code(), failure.kind, failure.retry_after)
            })
            .collect();
        let expected: Vec<_> = cases.iter().map(|(s, k, r)| (s.code(), *k, *r)).collect();
        assert_eq!(actual, expected);
        let refused = ExportFailure::grpc_status(&Status::unauthenticated("bad token"));
        assert_eq!(refused.message, "gRPC Unauthenticated: bad token");
    }
}
