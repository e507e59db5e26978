//! The collector-free sink: one readable line per call.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use kspan_decode::{Call, CgroupLookup};

use crate::ids::TraceGrouping;

/// Where the lines go: the process's stdout, or memory for tests.
enum Output {
    Stdout,
    Memory(Arc<Mutex<Vec<String>>>),
}

/// Prints each call as `time summary key=value...`.
pub struct StdoutSink {
    grouping: TraceGrouping,
    output: Output,
}

impl StdoutSink {
    /// A sink writing to standard output.
    pub fn new(grouping: TraceGrouping) -> Self {
        Self {
            grouping,
            output: Output::Stdout,
        }
    }

    /// A sink keeping its lines in memory (for tests).
    pub fn capturing(grouping: TraceGrouping) -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Self {
            grouping,
            output: Output::Memory(lines.clone()),
        };
        (sink, lines)
    }

    pub(super) fn export(&self, calls: &[Call]) -> Result<(), String> {
        let lines = calls.iter().map(|call| self.line(call));
        let written = match &self.output {
            Output::Memory(memory) => {
                let mut memory = memory
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                memory.extend(lines);
                Ok(())
            }
            Output::Stdout => {
                let mut stdout = std::io::stdout().lock();
                lines
                    .into_iter()
                    .try_for_each(|line| writeln!(stdout, "{line}"))
                    .and_then(|()| stdout.flush())
            }
        };
        written.map_err(|error| format!("writing to stdout: {error}"))
    }

    fn line(&self, call: &Call) -> String {
        let duration = call
            .end
            .duration_since(call.start)
            .unwrap_or(Duration::ZERO);
        let ids = self.grouping.ids(call);
        let mut line = format!(
            "{} {} pid={} tid={} comm={} dur={:.1}µs probe={} trace={} span={}",
            humantime::format_rfc3339_micros(call.start),
            call.summary(),
            call.pid,
            call.tid,
            call.thread_name,
            duration.as_nanos() as f64 / 1000.0,
            call.probe_name(),
            ids.trace,
            ids.span,
        );
        if let Some(parent) = ids.parent {
            line.push_str(" parent=");
            line.push_str(&parent.to_string());
        }
        if let Some(lookup) = call.cgroup.as_deref() {
            push_cgroup(&mut line, call.cgroup_id, lookup);
        }
        line
    }
}

/// ` cgroup=PATH`, then the container, runtime and pod where the path names them; an
/// unresolved cgroup shows its id and why.
fn push_cgroup(line: &mut String, cgroup_id: u64, lookup: &CgroupLookup) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = match (lookup.cgroup(), lookup.unresolved_reason()) {
        (Some(cgroup), _) => write!(line, " cgroup={}", cgroup.path),
        (None, reason) => write!(line, " cgroup={cgroup_id}({})", reason.unwrap_or_default()),
    };
    let Some(identity) = lookup.cgroup().map(|cgroup| &cgroup.identity) else {
        return;
    };
    if let Some(id) = &identity.container_id {
        let _ = write!(line, " container={id}");
    }
    if let Some(runtime) = identity.runtime {
        let _ = write!(line, " runtime={}", runtime.name());
    }
    if let Some(uid) = &identity.pod_uid {
        let _ = write!(line, " pod={uid}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kspan_decode::test_support::sample_call;

    #[test]
    fn line_shows_time_call_and_ids() {
        let grouping = TraceGrouping::new("boot", Duration::from_secs(60));
        let (sink, lines) = StdoutSink::capturing(grouping.clone());
        let call = sample_call();
        sink.export(std::slice::from_ref(&call)).unwrap();
        let line = lines.lock().unwrap()[0].clone();
        assert!(line.starts_with("2023-11-14T22:13:20.000000Z signalfd4(ufd=-1, mask=[SIGINT,SIGUSR1], flags=SFD_CLOEXEC) = 5 pid=100 tid=101 comm=worker dur=3.0µs probe=tracepoint"), "{line}");
        assert!(
            line.contains(&format!("trace={}", grouping.ids(&call).trace)),
            "{line}"
        );
    }

    #[test]
    fn line_ends_with_the_cgroup_and_what_it_names() {
        use kspan_decode::cgroup::{Cgroup, ContainerIdentity, ContainerRuntime};
        let (sink, lines) =
            StdoutSink::capturing(TraceGrouping::new("boot", Duration::from_secs(60)));
        let id = "ab".repeat(32);
        let found = CgroupLookup::Found(Cgroup {
            path: format!("/system.slice/docker-{id}.scope"),
            identity: ContainerIdentity {
                container_id: Some(id.clone()),
                runtime: Some(ContainerRuntime::Docker),
                pod_uid: None,
            },
        });
        let calls = [found, CgroupLookup::NotFound].map(|lookup| Call {
            cgroup: Some(Arc::new(lookup)),
            ..sample_call()
        });
        sink.export(&calls).unwrap();
        let lines = lines.lock().unwrap();
        assert!(
            lines[0].ends_with(&format!(
                " cgroup=/system.slice/docker-{id}.scope container={id} runtime=docker"
            )),
            "{}",
            lines[0]
        );
        assert!(lines[1].ends_with(" cgroup=7(not_found)"), "{}", lines[1]);
    }
}
