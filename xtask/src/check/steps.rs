//! The step table `cargo xtask test` prints, compared with the one in the README, and the
//! compiler diagnostics it counts.

use std::{fmt::Write as _, time::Instant};

/// The README heading whose table holds the fresh-clone step times.
pub const README_STEPS_HEADING: &str = "Fresh-clone CI steps";

/// A step that took this many times its README time (and at least [`MIN_GROWTH_SECS`] more) is
/// named at the end of the run.
const GROWTH_FACTOR: f64 = 1.5;
/// Growth below this is noise on a shared 2-core machine, whatever the factor.
const MIN_GROWTH_SECS: f64 = 10.0;

/// Wall time of each step, in the order they ran.
#[derive(Debug, Default)]
pub struct StepTimes(Vec<(String, f64)>);

impl StepTimes {
    /// Records that `name` ran from `started` until now.
    pub fn record(&mut self, name: &str, started: Instant) {
        self.push(name, started.elapsed().as_secs_f64());
    }

    /// Records that `name` took `secs`.
    pub fn push(&mut self, name: &str, secs: f64) {
        self.0.push((name.to_owned(), secs));
    }

    /// The step table with a total, each step beside its README time, and the steps that grew
    /// by half or more named on a line of their own.
    pub fn report(&self, readme: &[(String, f64)]) -> String {
        let readme_secs = |name: &str| {
            readme
                .iter()
                .find(|(step, _)| step == name)
                .map(|(_, secs)| *secs)
        };
        let total: f64 = self.0.iter().map(|(_, secs)| secs).sum();
        let mut out = String::from(
            "\n==> steps (wall time, s; in brackets: the README's fresh-clone table)\n",
        );
        let mut grown = Vec::new();
        for (name, secs) in self.0.iter().chain([&("total".to_owned(), total)]) {
            let _ = write!(out, "  {name:<26} {secs:>7.1}");
            if let Some(before) = readme_secs(name) {
                let _ = write!(out, "   [{before:>6.0}]");
                if *secs >= before * GROWTH_FACTOR && secs - before >= MIN_GROWTH_SECS {
                    grown.push(format!("{name} ({secs:.0} s, README {before:.0} s)"));
                }
            }
            out.push('\n');
        }
        if !grown.is_empty() {
            let _ = writeln!(
                out,
                "==> grew by half or more since the README's table: {}",
                grown.join(", ")
            );
        }
        out
    }
}

/// Seconds since `.ci/run` started (`KSPAN_CI_STARTED_AT`, UNIX seconds), when it set it: what
/// compiling xtask took before xtask could time anything.
pub fn secs_since_ci_started() -> Option<f64> {
    let started: f64 = std::env::var("KSPAN_CI_STARTED_AT").ok()?.parse().ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    (now >= started).then_some(now - started)
}

/// The `| step | seconds |` table under [`README_STEPS_HEADING`], as (step, seconds).
pub fn parse_readme_table(readme: &str) -> Vec<(String, f64)> {
    let mut lines = readme
        .lines()
        .skip_while(|line| !(line.starts_with('#') && line.contains(README_STEPS_HEADING)))
        .skip(1)
        .skip_while(|line| !line.starts_with('|'));
    // The header row and the alignment row.
    lines.next();
    lines.next();
    lines
        .map_while(|line| line.strip_prefix('|'))
        .filter_map(|row| {
            let mut cells = row.split('|').map(str::trim);
            let step = cells.next()?.trim_matches('*');
            let secs = cells.next()?.trim_matches('*').parse().ok()?;
            Some((step.to_owned(), secs))
        })
        .collect()
}

/// A compiler diagnostic from cargo's JSON messages.
#[derive(Debug, PartialEq)]
pub struct Diagnostic {
    /// As rustc prints it.
    pub rendered: String,
    /// Whether it is a warning (errors fail the build by themselves).
    pub is_warning: bool,
}

/// The diagnostic in one line of `cargo --message-format=json...` output, if it is one.
pub fn diagnostic(line: &str) -> Option<Diagnostic> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value["reason"] != "compiler-message" {
        return None;
    }
    let message = &value["message"];
    Some(Diagnostic {
        rendered: message["rendered"].as_str()?.to_owned(),
        is_warning: message["level"] == "warning",
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const README: &str = "\
## Tests

### Fresh-clone CI steps

| step | seconds |
|---|---:|
| setup | 4 |
| test | 200 |
| **total** | **204** |

After the table.
";

    #[test]
    fn reads_the_readme_table() {
        assert_eq!(
            parse_readme_table(README),
            vec![
                ("setup".to_owned(), 4.0),
                ("test".to_owned(), 200.0),
                ("total".to_owned(), 204.0)
            ]
        );
        assert_eq!(parse_readme_table("# kspan\nno table"), vec![]);
    }

    #[test]
    fn names_steps_that_grew_by_half() {
        let times = StepTimes(vec![("setup".into(), 9.0), ("test".into(), 320.0)]);
        let report = times.report(&parse_readme_table(README));
        assert!(report.contains("  total"), "{report}");
        // setup more than doubled, but by 5 s only: noise.
        assert!(
            report.contains("grew by half or more since the README's table: test (320 s, README 200 s), total (329 s, README 204 s)"),
            "{report}"
        );
        let steady = StepTimes(vec![("test".into(), 250.0)]).report(&parse_readme_table(README));
        assert!(!steady.contains("grew"), "{steady}");
    }

    #[test]
    fn records_elapsed_time() {
        let mut times = StepTimes::default();
        times.record("format", Instant::now() - Duration::from_secs(2));
        assert!(times.0[0].1 >= 2.0, "{times:?}");
    }

    #[test]
    fn picks_compiler_warnings_out_of_cargo_messages() {
        let warning = r#"{"reason":"compiler-message","message":{"level":"warning","rendered":"warning: unused\n"}}"#;
        assert_eq!(
            diagnostic(warning),
            Some(Diagnostic {
                rendered: "warning: unused\n".into(),
                is_warning: true
            })
        );
        let error =
            r#"{"reason":"compiler-message","message":{"level":"error","rendered":"error: x\n"}}"#;
        assert_eq!(diagnostic(error).map(|d| d.is_warning), Some(false));
        assert_eq!(
            diagnostic(r#"{"reason":"build-finished","success":true}"#),
            None
        );
        assert_eq!(diagnostic("   Compiling kspan"), None);
    }
}
