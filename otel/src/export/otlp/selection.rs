//! Which signals go out over OTLP: `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`,
//! `OTEL_LOGS_EXPORTER` and `OTEL_METRICS_EXPORTER`, as the SDK configuration specification
//! names them. Every variable is checked, whatever the others say.

use crate::{env::Env, ExportError};

/// The OTLP signals kspan sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalSelection {
    /// Spans, one per call.
    pub traces: bool,
    /// Log records, one per call.
    pub logs: bool,
    /// kspan's own health metrics.
    pub metrics: bool,
    /// `OTEL_SDK_DISABLED=true`: nothing is sent, whatever the exporter variables say.
    pub disabled: bool,
}

impl SignalSelection {
    /// Every signal: what kspan sends when no variable says otherwise.
    pub const ALL: Self = Self {
        traces: true,
        logs: true,
        metrics: true,
        disabled: false,
    };

    /// Reads the variables; a value kspan cannot use is an error naming the variable.
    pub fn from_env(env: &Env) -> Result<Self, ExportError> {
        let disabled = env.flag("OTEL_SDK_DISABLED")?.unwrap_or(false);
        let exporter = |variable: &str| match env.var(variable)?.as_deref().map(str::trim) {
            None | Some("otlp") => Ok(!disabled),
            Some("none") => Ok(false),
            Some(_) => Err(ExportError::InvalidEnv {
                variable: variable.to_string(),
                expected: "`otlp` or `none`",
            }),
        };
        Ok(Self {
            traces: exporter("OTEL_TRACES_EXPORTER")?,
            logs: exporter("OTEL_LOGS_EXPORTER")?,
            metrics: exporter("OTEL_METRICS_EXPORTER")?,
            disabled,
        })
    }

    /// Whether calls go anywhere over OTLP.
    pub fn sends_calls(&self) -> bool {
        self.traces || self.logs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Variables, by name and value.
    type Variables<'a> = &'a [(&'a str, &'a str)];

    fn selection(variables: &[(&str, &str)]) -> Result<[bool; 4], String> {
        SignalSelection::from_env(&Env::fixed(variables.iter().copied()))
            .map(|s| [s.traces, s.logs, s.metrics, s.disabled])
            .map_err(|error| error.to_string())
    }

    #[test]
    fn each_signal_is_on_unless_its_exporter_is_none() {
        let cases: [(Variables, [bool; 4]); 6] = [
            (&[], [true, true, true, false]),
            (
                &[("OTEL_TRACES_EXPORTER", "otlp")],
                [true, true, true, false],
            ),
            (
                &[("OTEL_TRACES_EXPORTER", "none")],
                [false, true, true, false],
            ),
            (
                &[("OTEL_LOGS_EXPORTER", " none ")],
                [true, false, true, false],
            ),
            (
                &[("OTEL_METRICS_EXPORTER", "none")],
                [true, true, false, false],
            ),
            (
                &[
                    ("OTEL_LOGS_EXPORTER", "none"),
                    ("OTEL_TRACES_EXPORTER", "none"),
                ],
                [false, false, true, false],
            ),
        ];
        for (variables, expected) in cases {
            assert_eq!(selection(variables), Ok(expected), "{variables:?}");
        }
    }

    #[test]
    fn a_disabled_sdk_sends_nothing_whatever_the_exporters_say() {
        for variables in [
            &[("OTEL_SDK_DISABLED", "true")][..],
            &[
                ("OTEL_SDK_DISABLED", "TRUE"),
                ("OTEL_TRACES_EXPORTER", "otlp"),
            ],
        ] {
            assert_eq!(selection(variables), Ok([false, false, false, true]));
        }
        assert_eq!(
            selection(&[("OTEL_SDK_DISABLED", "false")]),
            Ok([true, true, true, false])
        );
    }

    #[test]
    fn values_kspan_cannot_use_are_refused_naming_the_variable() {
        let cases = [
            ("OTEL_TRACES_EXPORTER", "console", "`otlp` or `none`"),
            ("OTEL_LOGS_EXPORTER", "otlp,console", "`otlp` or `none`"),
            ("OTEL_METRICS_EXPORTER", "prometheus", "`otlp` or `none`"),
            ("OTEL_SDK_DISABLED", "1", "`true` or `false`"),
        ];
        for (variable, value, expected) in cases {
            assert_eq!(
                selection(&[(variable, value)]),
                Err(format!("invalid {variable}: expected {expected}")),
                "{variable}={value}"
            );
            // Checked even when the SDK is disabled.
            if variable != "OTEL_SDK_DISABLED" {
                assert!(selection(&[("OTEL_SDK_DISABLED", "true"), (variable, value)]).is_err());
            }
        }
    }
}
