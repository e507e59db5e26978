//! Mid-flight calls: calls already inside the kernel when an agent attaches.
//!
//! Each call's mask lies on its own page registered with a userfaultfd. The syscall's entry
//! (where the `sys_enter` tracepoint fires) comes before the kernel copies the mask from user
//! memory; that copy faults, and the call waits inside the kernel until this process supplies
//! the page. Once every call has faulted, the run's gate (an agent's ready file) is awaited, then
//! the pages are supplied and the calls finish: an agent that attached meanwhile sees only
//! their returns. Each thread then makes one ordinary call, which must pair as usual.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use crate::call::{CallSpec, Caller};
use crate::error::WorkloadError;
use crate::manifest::Syscall;
use crate::mask::{bit, first_realtime, last_realtime};
use crate::record::Recorder;
use crate::scenario::Scenario;
use crate::uffd::{Mapping, UserFaultFd};

/// Longest wait for every held call to reach its fault.
const FAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The held call of thread `index`: a create, alternating between the two syscalls.
fn held_call(index: usize) -> CallSpec {
    let syscall = if index.is_multiple_of(2) {
        Syscall::Signalfd4
    } else {
        Syscall::Signalfd
    };
    let spec = CallSpec::create(syscall, own_mask(index) | bit(libc::SIGUSR1));
    match syscall {
        Syscall::Signalfd4 => spec.with_flags(libc::SFD_CLOEXEC),
        Syscall::Signalfd => spec,
    }
}

/// A real-time signal of the thread's own, so masks tell the threads apart.
fn own_mask(index: usize) -> u64 {
    let count = (last_realtime() - first_realtime() + 1) as usize;
    bit(first_realtime() + (index % count) as i32)
}

/// Holds `calls` calls inside the kernel, creates `held_file` (if any) once all are, waits for
/// `gate`, then lets them finish; each thread then updates its new fd once.
pub fn run(
    recorder: &Recorder,
    calls: usize,
    held_file: Option<&Path>,
    gate: impl FnOnce() -> Result<(), WorkloadError>,
) -> Result<(), WorkloadError> {
    let setup = |what| move |source| WorkloadError::Setup { what, source };
    let uffd = UserFaultFd::open().map_err(setup("open a userfaultfd"))?;
    let pages = Mapping::anonymous(calls).map_err(setup("map the mid-flight mask pages"))?;
    uffd.register(&pages)
        .map_err(setup("register the mid-flight mask pages"))?;
    let held = std::thread::scope(|scope| {
        let mut threads = Vec::with_capacity(calls);
        let mut spawned = Ok(());
        for index in 0..calls {
            let mask_at = pages.page(index) as usize;
            let thread = std::thread::Builder::new()
                .name(format!("midflight-{index}"))
                .spawn_scoped(scope, move || held_then_ordinary(recorder, index, mask_at));
            match thread {
                Ok(thread) => threads.push(thread),
                Err(source) => {
                    spawned = Err(WorkloadError::Spawn {
                        scenario: Scenario::MidFlight.name(),
                        source,
                    });
                    break;
                }
            }
        }
        let gated = spawned
            .and_then(|()| wait_for_faults(&uffd, &pages, threads.len()))
            .and_then(|()| match held_file {
                Some(path) => std::fs::write(path, format!("held={calls}\n")).map_err(|source| {
                    WorkloadError::Setup {
                        what: "write the mid-flight ready file",
                        source,
                    }
                }),
                None => Ok(()),
            })
            .and_then(|()| gate());
        // Whatever happened, every thread must be let go before the scope joins them.
        let supplied = (0..calls).try_for_each(|index| {
            let mask = held_call(index).mask.unwrap_or(0);
            uffd.supply(&pages, index, &mask.to_ne_bytes())
        });
        drop(uffd); // closing it also wakes any thread whose page could not be supplied
        let joined = threads.into_iter().try_for_each(|thread| {
            thread.join().unwrap_or(Err(WorkloadError::Panicked {
                scenario: Scenario::MidFlight.name(),
            }))
        });
        gated?;
        supplied.map_err(setup("supply a mid-flight mask page"))?;
        joined
    });
    drop(pages);
    held
}

/// Waits until `count` distinct pages of `pages` have faulted: each such call is inside the
/// kernel.
fn wait_for_faults(uffd: &UserFaultFd, pages: &Mapping, count: usize) -> Result<(), WorkloadError> {
    let mut faulted = vec![false; count];
    while faulted.iter().any(|seen| !seen) {
        let fault = uffd
            .next_fault(FAULT_TIMEOUT)
            .map_err(|source| WorkloadError::Setup {
                what: "read a mid-flight fault",
                source,
            })?;
        let Some(fault) = fault else {
            let waiting = faulted.iter().filter(|seen| !**seen).count();
            return Err(WorkloadError::Setup {
                what: "hold the mid-flight calls",
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{waiting} of {count} calls did not fault on their mask page within {FAULT_TIMEOUT:?}"
                    ),
                ),
            });
        };
        if let Some(seen) = pages
            .page_index(fault.address)
            .and_then(|i| faulted.get_mut(i))
        {
            tracing::debug!(
                tid = fault.tid,
                address = fault.address,
                "mid-flight call held"
            );
            *seen = true;
        }
    }
    Ok(())
}

/// One thread: the held call, then an ordinary update of the fd it created.
fn held_then_ordinary(
    recorder: &Recorder,
    index: usize,
    mask_at: usize,
) -> Result<(), WorkloadError> {
    let caller = Caller::new(recorder, Scenario::MidFlight);
    let spec = held_call(index);
    let called = caller.call_held(&spec, mask_at as *const u64)?;
    if let Some(fd) = called.into_owned_fd() {
        let update = CallSpec::update(
            Syscall::Signalfd4,
            fd.as_raw_fd(),
            spec.flags,
            own_mask(index) | bit(libc::SIGUSR2),
        );
        caller.call(&update)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::manifest::{read_manifest, ManifestWriter};
    use crate::test_support::TempPath;

    /// The gate opens only after every call is held, and the held calls finish only after it.
    #[test]
    fn calls_stay_inside_the_kernel_until_the_gate_opens() {
        let path = TempPath::new("midflight");
        let held_file = TempPath::new("midflight-held");
        let recorder = Recorder::new(Some(
            ManifestWriter::create(path.as_ref()).expect("manifest"),
        ));
        let gate_opened_at = std::sync::Mutex::new(0);
        let held_seen = AtomicBool::new(false);
        run(&recorder, 3, Some(held_file.as_ref()), || {
            held_seen.store(held_file.as_ref().exists(), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
            *gate_opened_at.lock().expect("lock") = crate::sys::realtime_ns();
            Ok(())
        })
        .expect("mid-flight run (needs root for kernel-mode userfaultfd: CI runs as root)");
        let summary = recorder.finish(Duration::ZERO).expect("finish");
        assert!(summary.all_as_expected(), "{:#?}", summary.problems);
        assert!(
            held_seen.load(Ordering::Relaxed),
            "the held file came after the gate"
        );
        let opened = *gate_opened_at.lock().expect("lock");
        let records = read_manifest(path.as_ref()).expect("read");
        assert_eq!(records.len(), 6);
        let held: Vec<_> = records.iter().filter(|r| r.midflight).collect();
        assert_eq!(held.len(), 3);
        for r in &held {
            assert!(r.fd.is_some(), "{r:?}");
            assert!(
                r.wall_before_ns < opened && r.wall_after_ns > opened,
                "call did not span the gate: {r:?}, gate at {opened}"
            );
            let update = records
                .iter()
                .find(|u| u.tid == r.tid && !u.midflight)
                .expect("each thread updates its fd");
            assert_eq!(update.ufd, r.fd.expect("fd"));
            assert!(update.wall_before_ns >= r.wall_after_ns);
        }
        assert!(held.iter().any(|r| r.syscall == Syscall::Signalfd));
        assert!(held.iter().any(|r| r.syscall == Syscall::Signalfd4));
    }

    /// A failing gate still lets every held call go (else the run would hang).
    #[test]
    fn a_failing_gate_releases_the_calls() {
        let recorder = Recorder::new(None);
        let outcome = run(&recorder, 2, None, || {
            Err(WorkloadError::WaitTimeout {
                path: "ready".into(),
                timeout: Duration::from_millis(1),
            })
        });
        assert!(
            matches!(outcome, Err(WorkloadError::WaitTimeout { .. })),
            "{outcome:?}"
        );
        assert_eq!(recorder.finish(Duration::ZERO).expect("finish").calls, 4);
    }
}
