//! Reading `OTEL_*` variables: a value kspan cannot read is an error, never silently skipped.

use std::{collections::HashMap, ffi::OsString, sync::Arc};

use crate::ExportError;

/// Where `OTEL_*` settings come from: the process environment, or a fixed set (tests, which
/// must not change the environment other tests read).
#[derive(Clone, Debug, Default)]
pub struct Env {
    fixed: Option<Arc<HashMap<String, OsString>>>,
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Self::default()
    }

    /// Exactly these variables, and no others.
    pub fn fixed<K: Into<String>, V: Into<OsString>>(
        variables: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let variables = variables
            .into_iter()
            .map(|(name, value)| (name.into(), value.into()))
            .collect();
        Self {
            fixed: Some(Arc::new(variables)),
        }
    }

    /// The variable's value, `None` when unset or blank; an error when it is not valid UTF-8
    /// (the whole variable would otherwise be ignored, e.g. an `authorization` header never
    /// sent).
    pub fn var(&self, name: &str) -> Result<Option<String>, ExportError> {
        let value = match &self.fixed {
            Some(variables) => variables.get(name).cloned(),
            None => std::env::var_os(name),
        };
        match value.map(OsString::into_string) {
            None => Ok(None),
            Some(Ok(value)) if value.trim().is_empty() => Ok(None),
            Some(Ok(value)) => Ok(Some(value)),
            Some(Err(_)) => Err(ExportError::InvalidEnv {
                variable: name.to_string(),
                expected: "valid UTF-8",
            }),
        }
    }

    /// A boolean variable: `true` or `false` (any case); `None` when unset or blank.
    pub fn flag(&self, name: &str) -> Result<Option<bool>, ExportError> {
        match self.var(name)? {
            None => Ok(None),
            Some(value) if value.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(value) if value.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(ExportError::InvalidEnv {
                variable: name.to_string(),
                expected: "`true` or `false`",
            }),
        }
    }
}

/// The process environment's `name`, as [`Env::var`] reads it.
pub fn env_var(name: &str) -> Result<Option<String>, ExportError> {
    Env::process().var(name)
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

    #[test]
    fn a_fixed_set_is_read_like_the_environment() {
        let env = Env::fixed([
            ("A", OsStr::from_bytes(b"1")),
            ("BLANK", OsStr::from_bytes(b" ")),
            ("BAD", OsStr::from_bytes(b"\xff")),
        ]);
        assert_eq!(env.var("A").unwrap(), Some("1".into()));
        assert_eq!(env.var("BLANK").unwrap(), None);
        assert_eq!(env.var("PATH").unwrap(), None, "only the fixed set is read");
        assert_eq!(
            env.var("BAD").unwrap_err().to_string(),
            "invalid BAD: expected valid UTF-8"
        );
    }

    #[test]
    fn flags_are_true_or_false_in_any_case() {
        let cases = [
            ("true", Ok(Some(true))),
            ("TRUE", Ok(Some(true))),
            (" False ", Ok(Some(false))),
            ("", Ok(None)),
            (
                "1",
                Err("invalid F: expected `true` or `false`".to_string()),
            ),
            (
                "yes",
                Err("invalid F: expected `true` or `false`".to_string()),
            ),
        ];
        for (value, expected) in cases {
            let flag = Env::fixed([("F", value)])
                .flag("F")
                .map_err(|error| error.to_string());
            assert_eq!(flag, expected, "{value:?}");
        }
    }
}
