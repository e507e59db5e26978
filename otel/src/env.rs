//! Reading `OTEL_*` variables: a value kspan cannot read is an error, never silently skipped.

use crate::ExportError;

/// The variable's value, `None` when unset or blank; an error when it is not valid UTF-8 (the
/// whole variable would otherwise be ignored, e.g. an `authorization` header never sent).
pub fn env_var(name: &str) -> Result<Option<String>, ExportError> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ExportError::InvalidEnv {
            variable: name.to_string(),
            expected: "valid UTF-8",
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::{ffi::OsStr, os::unix::ffi::OsStrExt as _};

    use super::*;

    #[test]
    fn a_variable_that_is_not_utf8_is_an_error_not_unset() {
        // A name of this test's own: no other test reads it.
        let name = "KSPAN_TEST_ENV_NOT_UTF8";
        std::env::set_var(name, OsStr::from_bytes(b"authorization=Bearer \xff"));
        assert_eq!(
            env_var(name).unwrap_err().to_string(),
            format!("invalid {name}: expected valid UTF-8")
        );
        std::env::set_var(name, "  ");
        assert_eq!(env_var(name).unwrap(), None);
        std::env::set_var(name, "x");
        assert_eq!(env_var(name).unwrap(), Some("x".to_string()));
        std::env::remove_var(name);
        assert_eq!(env_var(name).unwrap(), None);
    }
}
