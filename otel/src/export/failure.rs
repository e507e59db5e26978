//! Why an export request delivered nothing, and what that says about its items: not delivered
//! (retry, or give up when the collector refused for good), or sent without an answer (the
//! collector may have them). The classes follow the OTLP specification's retry rules.

use std::fmt;

/// What a failed request means for the items it carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Not delivered; a later attempt may succeed (unreachable, throttled, unavailable).
    Retryable,
    /// The collector refused the request for good (the specification's non-retryable answers,
    /// e.g. HTTP 400 or 401, gRPC `UNAUTHENTICATED`): not delivered, and not sent again.
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
    /// What happened, for the log.
    pub message: String,
}

impl ExportFailure {
    /// A failure a later attempt may not have.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Retryable,
            message: message.into(),
        }
    }

    /// An HTTP answer that is not a success: 429, 502, 503 and 504 may be retried, the others
    /// are refusals.
    pub fn http_status(status: http::StatusCode, url: &str) -> Self {
        let kind = match status.as_u16() {
            429 | 502 | 503 | 504 => FailureKind::Retryable,
            _ => FailureKind::Refused,
        };
        Self {
            kind,
            message: format!("POST {url}: HTTP {status}"),
        }
    }

    /// A gRPC status. Only the codes a collector sends on purpose, and no transport failure
    /// produces, are refusals; the client's own timeout means no answer came.
    pub fn grpc_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let timed_out = matches!(status.code(), Code::DeadlineExceeded)
            || (status.code() == Code::Cancelled
                && status.message() == tonic::TimeoutExpired(()).to_string());
        let kind = match status.code() {
            _ if timed_out => FailureKind::NoAnswer,
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::Unimplemented => FailureKind::Refused,
            _ => FailureKind::Retryable,
        };
        let message = match status.message() {
            "" => format!("gRPC {:?}", status.code()),
            message => format!("gRPC {:?}: {message}", status.code()),
        };
        Self { kind, message }
    }
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
        let expected = [
            (400, FailureKind::Refused),
            (401, FailureKind::Refused),
            (404, FailureKind::Refused),
            (413, FailureKind::Refused),
            (429, FailureKind::Retryable),
            (500, FailureKind::Refused),
            (502, FailureKind::Retryable),
            (503, FailureKind::Retryable),
            (504, FailureKind::Retryable),
        ];
        let actual: Vec<_> = expected
            .iter()
            .map(|(code, _)| {
                let status = http::StatusCode::from_u16(*code).unwrap();
                (*code, ExportFailure::http_status(status, "u").kind)
            })
            .collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn grpc_timeouts_are_no_answer_and_transport_failures_are_retried() {
        use tonic::{Code, Status};
        let expected = [
            (Status::cancelled("Timeout expired"), FailureKind::NoAnswer),
            (Status::deadline_exceeded("late"), FailureKind::NoAnswer),
            (Status::cancelled("h2 CANCEL"), FailureKind::Retryable),
            (
                Status::unavailable("tcp connect error"),
                FailureKind::Retryable,
            ),
            (Status::unknown("transport error"), FailureKind::Retryable),
            (Status::internal("broken pipe"), FailureKind::Retryable),
            (
                Status::out_of_range("decoded message length too large"),
                FailureKind::Retryable,
            ),
            (Status::unauthenticated("token"), FailureKind::Refused),
            (Status::invalid_argument("bad"), FailureKind::Refused),
            (
                Status::new(Code::PermissionDenied, ""),
                FailureKind::Refused,
            ),
        ];
        let actual: Vec<_> = expected
            .iter()
            .map(|(status, _)| (status.code(), ExportFailure::grpc_status(status).kind))
            .collect();
        let wanted: Vec<_> = expected.iter().map(|(s, k)| (s.code(), *k)).collect();
        assert_eq!(actual, wanted);
    }
}
