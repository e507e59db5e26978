//! A process's executable path and command line, for its resource: read from `/proc/<pid>/exe`
//! and `/proc/<pid>/cmdline` once per process and shared by all its calls.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

/// Cached details are dropped this often, so a reused pid does not keep an old process's.
const FORGET_EVERY: Duration = Duration::from_secs(10);
/// Bound on the cache, whatever the churn of processes.
const MAX_ENTRIES: usize = 16_384;
/// Longest command line kept; a longer one is cut at a character boundary and ends in `…`.
const MAX_COMMAND_LINE: usize = 4096;

/// What kspan could read of a process; a field it could not read (the process has gone, or
/// kspan may not look: `/proc/<pid>/exe` needs ptrace access) is `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessDetails {
    /// `process.executable.path`: where `/proc/<pid>/exe` points.
    pub executable_path: Option<String>,
    /// `process.command_line`: the arguments, joined by spaces.
    pub command_line: Option<String>,
}

impl ProcessDetails {
    /// Reads them now.
    fn read(pid: u32) -> Self {
        let executable_path = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|path| path.to_string_lossy().into_owned());
        let command_line = std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .filter(|bytes| !bytes.is_empty())
            .map(|bytes| command_line(&bytes));
        Self {
            executable_path,
            command_line,
        }
    }
}

/// `cmdline`'s NUL-separated arguments as one line, bounded.
fn command_line(bytes: &[u8]) -> String {
    let arguments: Vec<String> = bytes
        .strip_suffix(&[0])
        .unwrap_or(bytes)
        .split(|&byte| byte == 0)
        .map(|argument| String::from_utf8_lossy(argument).into_owned())
        .collect();
    let mut line = arguments.join(" ");
    if line.len() > MAX_COMMAND_LINE {
        let mut end = MAX_COMMAND_LINE;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}

/// A small, bounded cache of process details.
#[derive(Debug)]
pub struct ProcessDetailsCache {
    details: HashMap<u32, Arc<ProcessDetails>>,
    cleared_at: Instant,
}

impl Default for ProcessDetailsCache {
    fn default() -> Self {
        Self {
            details: HashMap::new(),
            cleared_at: Instant::now(),
        }
    }
}

impl ProcessDetailsCache {
    /// The details of process `pid`, read on its first call.
    pub fn get(&mut self, pid: u32) -> Arc<ProcessDetails> {
        if self.cleared_at.elapsed() > FORGET_EVERY || self.details.len() >= MAX_ENTRIES {
            self.details.clear();
            self.cleared_at = Instant::now();
        }
        self.details
            .entry(pid)
            .or_insert_with(|| Arc::new(ProcessDetails::read(pid)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let details = ProcessDetailsCache::default().get(std::process::id());
        let exe = std::env::current_exe().unwrap();
        assert_eq!(details.executable_path.as_deref(), exe.to_str());
        let args: Vec<String> = std::env::args().collect();
        assert_eq!(details.command_line, Some(args.join(" ")));
    }

    #[test]
    fn a_gone_process_has_none() {
        assert_eq!(
            *ProcessDetailsCache::default().get(u32::MAX),
            ProcessDetails::default()
        );
    }

    #[test]
    fn command_lines_are_joined_and_bounded() {
        assert_eq!(
            command_line(b"nginx\0-g\0daemon off;\0"),
            "nginx -g daemon off;"
        );
        let long = "é".repeat(MAX_COMMAND_LINE);
        let line = command_line(long.as_bytes());
        assert!(line.ends_with('…'));
        assert!(line.len() <= MAX_COMMAND_LINE + '…'.len_utf8());
    }
}
