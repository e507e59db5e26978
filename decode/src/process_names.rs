//! Process names (`/proc/<pid>/comm`): the kernel reports the calling thread's name, which for
//! named threads (`tokio-runtime-w`) is not the program's.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::Name;

/// Cached names are dropped this often, so a reused pid does not keep an old name for long.
const FORGET_EVERY: Duration = Duration::from_secs(10);
/// Bound on the cache, whatever the churn of processes.
const MAX_ENTRIES: usize = 16_384;

/// A small, bounded cache of process names.
#[derive(Debug)]
pub struct ProcessNames {
    names: HashMap<u32, Name>,
    cleared_at: Instant,
}

impl Default for ProcessNames {
    fn default() -> Self {
        Self {
            names: HashMap::new(),
            cleared_at: Instant::now(),
        }
    }
}

impl ProcessNames {
    /// The name of process `pid`, or `fallback` when it has already exited.
    pub fn name(&mut self, pid: u32, fallback: &Name) -> Name {
        if self.cleared_at.elapsed() > FORGET_EVERY || self.names.len() >= MAX_ENTRIES {
            self.names.clear();
            self.cleared_at = Instant::now();
        }
        if let Some(name) = self.names.get(&pid) {
            return name.clone();
        }
        match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(name) => {
                let name = Name::from(name.trim_end_matches('\n'));
                self.names.insert(pid, name.clone());
                name
            }
            Err(_) => fallback.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_this_process() {
        let own = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(
            ProcessNames::default().name(std::process::id(), &"x".into()),
            own.trim_end()
        );
    }

    #[test]
    fn gone_process_gets_the_fallback() {
        assert_eq!(
            ProcessNames::default().name(u32::MAX, &"thread".into()),
            "thread"
        );
    }
}
