//! The one error kind that is the user's to fix rather than the host's.

/// A configuration mistake the user can fix: exit code 2, like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UsageError(#[from] kspan_otel::ExportError);
