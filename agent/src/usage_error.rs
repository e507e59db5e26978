//! The one error kind that is the user's to fix rather than the host's.

use crate::{
    cgroup_filter::CgroupFilterError, cli::CliError, declaration::DeclarationError,
    output_file::OutputFileError,
};

/// A configuration mistake the user can fix: exit code 2, like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UsageError(Box<dyn std::error::Error + Send + Sync>);

impl From<kspan_otel::ExportError> for UsageError {
    fn from(error: kspan_otel::ExportError) -> Self {
        Self(Box::new(error))
    }
}

impl From<OutputFileError> for UsageError {
    fn from(error: OutputFileError) -> Self {
        Self(Box::new(error))
    }
}

impl From<CliError> for UsageError {
    fn from(error: CliError) -> Self {
        Self(Box::new(error))
    }
}

impl From<CgroupFilterError> for UsageError {
    fn from(error: CgroupFilterError) -> Self {
        Self(Box::new(error))
    }
}

impl From<DeclarationError> for UsageError {
    fn from(error: DeclarationError) -> Self {
        Self(Box::new(error))
    }
}
