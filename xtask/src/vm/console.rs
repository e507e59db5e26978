//! What the guest's serial console says: the progress markers `/init` prints, and kernel panics.

use std::collections::VecDeque;

use crate::probe_run::ProbeRun;

/// Console lines kept to show when a guest fails.
const TAIL_LINES: usize = 20;

/// Lines kept from before a panic message; the rest of [`TAIL_LINES`] follow it.
const LINES_BEFORE_PANIC: usize = 5;

/// `/init` started; followed by the guest's uptime in seconds.
pub const INIT_MARKER: &str = "KSPAN-INIT";
/// A mode's guest command starts; followed by the mode.
pub const MODE_START_MARKER: &str = "KSPAN-MODE-START";
/// A mode's results were shipped; followed by the mode.
pub const MODE_DONE_MARKER: &str = "KSPAN-MODE-DONE";
/// Every mode ran; the guest powers off.
pub const POWEROFF_MARKER: &str = "KSPAN-POWEROFF";

/// A console line that matters to the host.
#[derive(Debug, PartialEq)]
pub enum ConsoleEvent {
    /// `/init` runs; the guest's uptime then, if it printed one.
    InitStarted { guest_uptime_secs: Option<f64> },
    /// A mode's run starts.
    ModeStarted(ProbeRun),
    /// A mode's results are out.
    ModeDone(ProbeRun),
    /// All modes ran.
    PoweringOff,
    /// The kernel panicked.
    KernelPanic,
}

/// The event a console line reports, if any.
pub fn parse_line(line: &str) -> Option<ConsoleEvent> {
    let line = line.trim();
    if is_panic(line) {
        return Some(ConsoleEvent::KernelPanic);
    }
    let (marker, rest) = line.split_once(' ').unwrap_or((line, ""));
    let mode = || ProbeRun::from_name(rest.trim());
    match marker {
        INIT_MARKER => Some(ConsoleEvent::InitStarted {
            guest_uptime_secs: rest.trim().parse().ok(),
        }),
        MODE_START_MARKER => mode().map(ConsoleEvent::ModeStarted),
        MODE_DONE_MARKER => mode().map(ConsoleEvent::ModeDone),
        POWEROFF_MARKER => Some(ConsoleEvent::PoweringOff),
        _ => None,
    }
}

/// The end of a console worth showing: its last lines, or once the kernel panicked, the panic
/// message with what led to it and what followed (more telling than the end of a stack trace).
#[derive(Default)]
pub struct ConsoleTail {
    last: VecDeque<String>,
    panic_report: Option<Vec<String>>,
}

impl ConsoleTail {
    /// Keeps `line` and returns the event it reports; a panic is reported once (its message
    /// shows up again in the closing `---[ end Kernel panic …` line).
    pub fn push(&mut self, line: String) -> Option<ConsoleEvent> {
        let event = parse_line(&line);
        let mut report_event = event.is_some();
        match self.panic_report.as_mut() {
            Some(report) => {
                if report.len() < TAIL_LINES {
                    report.push(line.clone());
                }
                report_event = event != Some(ConsoleEvent::KernelPanic);
            }
            None if event == Some(ConsoleEvent::KernelPanic) => {
                let skip = self.last.len().saturating_sub(LINES_BEFORE_PANIC);
                let before = self.last.iter().skip(skip).cloned();
                self.panic_report = Some(before.chain([line.clone()]).collect());
            }
            None => {}
        }
        if self.last.len() == TAIL_LINES {
            self.last.pop_front();
        }
        self.last.push_back(line);
        event.filter(|_| report_event)
    }

    /// Whether the kernel panicked.
    pub fn panicked(&self) -> bool {
        self.panic_report.is_some()
    }

    /// Adds lines that did not come from the console (e.g. QEMU's own errors).
    pub fn extend(&mut self, lines: impl IntoIterator<Item = String>) {
        self.last.extend(lines);
    }

    /// The lines worth showing.
    pub fn into_lines(self) -> Vec<String> {
        self.panic_report.unwrap_or_else(|| self.last.into())
    }
}

/// Whether a console line is the kernel's panic message (also printed when `/init` dies).
fn is_panic(line: &str) -> bool {
    line.contains("Kernel panic - not syncing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_init_markers() {
        assert_eq!(
            parse_line("KSPAN-INIT 2.41\r"),
            Some(ConsoleEvent::InitStarted {
                guest_uptime_secs: Some(2.41)
            })
        );
        assert_eq!(
            parse_line("KSPAN-INIT"),
            Some(ConsoleEvent::InitStarted {
                guest_uptime_secs: None
            })
        );
        assert_eq!(
            parse_line("KSPAN-MODE-START fentry"),
            Some(ConsoleEvent::ModeStarted(ProbeRun::Fentry))
        );
        assert_eq!(
            parse_line("KSPAN-MODE-DONE kprobe"),
            Some(ConsoleEvent::ModeDone(ProbeRun::Kprobe))
        );
        assert_eq!(parse_line("KSPAN-MODE-DONE uprobe"), None);
        assert_eq!(
            parse_line("KSPAN-POWEROFF"),
            Some(ConsoleEvent::PoweringOff)
        );
        assert_eq!(parse_line("kspan: attached kprobe"), None);
    }

    #[test]
    fn detects_kernel_panics() {
        for line in [
            "[    2.345678] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100",
            "[    0.912000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
        ] {
            assert_eq!(parse_line(line), Some(ConsoleEvent::KernelPanic), "{line}");
        }
        assert_eq!(parse_line("[    1.0] panic=-1 on the command line"), None);
    }

    #[test]
    fn keeps_the_last_lines() {
        let mut tail = ConsoleTail::default();
        for n in 0..30 {
            assert_eq!(tail.push(format!("line {n}")), None);
        }
        assert!(!tail.panicked());
        let lines = tail.into_lines();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(
            (lines[0].as_str(), lines[19].as_str()),
            ("line 10", "line 29")
        );
    }

    #[test]
    fn keeps_the_panic_message_with_its_context_and_reports_it_once() {
        let mut tail = ConsoleTail::default();
        for n in 0..10 {
            tail.push(format!("before {n}"));
        }
        let panic =
            "[ 7.6] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300";
        assert_eq!(
            tail.push(panic.to_string()),
            Some(ConsoleEvent::KernelPanic)
        );
        for n in 0..30 {
            tail.push(format!("trace {n}"));
        }
        let end = "[ 7.7] ---[ end Kernel panic - not syncing: Attempted to kill init! ]---";
        assert_eq!(tail.push(end.to_string()), None);
        assert!(tail.panicked());
        let lines = tail.into_lines();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines[0], "before 5");
        assert_eq!(lines[LINES_BEFORE_PANIC], panic);
        assert_eq!(lines[TAIL_LINES - 1], "trace 13");
    }
}
