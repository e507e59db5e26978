//! Ring-buffer records to [`Call`]s: layout check, enum validation, wall-clock times, names.

use std::sync::Arc;

use crate::{
    clock::BootClock, process_details::ProcessDetailsCache, process_names::ProcessNames, Call,
    CallDetail, CgroupResolver, DeclaredCall, Name, ProbeInfo,
};
use kspan_common::{
    declared::{DeclaredEvent, DECLARED_EVENT_WITHOUT_STRINGS},
    ProbeKind, COMM_LEN, EXE_NAME_LEN,
};

/// A record that is not a valid [`DeclaredEvent`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Wrong size: the probes and the agent disagree on the layout.
    #[error(
        "ring buffer record of {0} bytes, expected {whole} or {without_strings}",
        whole = size_of::<DeclaredEvent>(),
        without_strings = DECLARED_EVENT_WITHOUT_STRINGS
    )]
    Size(usize),
    /// A call of a probe the agent did not declare.
    #[error("ring buffer record of undeclared probe {0}")]
    UndeclaredProbe(u32),
    /// A field holds a value no probe writes.
    #[error("ring buffer record has invalid {field} value {value}")]
    Field {
        /// The field.
        field: &'static str,
        /// Its raw value.
        value: u8,
    },
}

/// Reads a [`DeclaredEvent`] from a ring buffer record: whole, or without its strings (a probe
/// that reads none sends [`DECLARED_EVENT_WITHOUT_STRINGS`] bytes; its strings read empty).
pub fn parse_declared_event(bytes: &[u8]) -> Result<DeclaredEvent, EventError> {
    if bytes.len() != size_of::<DeclaredEvent>() && bytes.len() != DECLARED_EVENT_WITHOUT_STRINGS {
        return Err(EventError::Size(bytes.len()));
    }
    let mut event = std::mem::MaybeUninit::<DeclaredEvent>::zeroed();
    // SAFETY: at most the event's size is copied into it (checked above); all zero and any
    // bit pattern are valid values of its integer fields.
    Ok(unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), event.as_mut_ptr().cast::<u8>(), bytes.len());
        event.assume_init()
    })
}

/// The caller's identity, as a record carries it.
struct Identity<'a> {
    probe: ProbeKind,
    pid: u32,
    tid: u32,
    uid: u32,
    euid: u32,
    cgroup_id: u64,
    comm: &'a [u8; COMM_LEN],
    exe_name: &'a [u8; EXE_NAME_LEN],
    exe_name_len: u8,
    start_boot_ns: u64,
    end_boot_ns: u64,
}

/// Turns kernel events into calls, with wall-clock times and process names.
pub struct CallDecoder {
    clock: BootClock,
    names: ProcessNames,
    /// Set when each process's executable path and command line are wanted.
    details: Option<ProcessDetailsCache>,
    /// Set when each call's cgroup is resolved to its path, container and pod.
    cgroups: Option<CgroupResolver>,
    /// The declared probes, by index.
    declared: Vec<Arc<ProbeInfo>>,
}

impl CallDecoder {
    /// A decoder using `clock` for times.
    pub fn new(clock: BootClock) -> Self {
        Self {
            clock,
            names: ProcessNames::default(),
            details: None,
            cgroups: None,
            declared: Vec::new(),
        }
    }

    /// Also decodes the calls of these declared probes (index = the probe's number).
    pub fn with_declared(mut self, probes: Vec<Arc<ProbeInfo>>) -> Self {
        self.declared = probes;
        self
    }

    /// Also resolves each call's cgroup id with `resolver`.
    pub fn with_cgroups(mut self, resolver: CgroupResolver) -> Self {
        self.cgroups = Some(resolver);
        self
    }

    /// Also reads each process's executable path and command line.
    pub fn with_process_details(mut self) -> Self {
        self.details = Some(ProcessDetailsCache::default());
        self
    }

    /// Decodes one ring buffer record.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Call, EventError> {
        self.decode_event(&parse_declared_event(bytes)?)
    }

    fn decode_event(&mut self, event: &DeclaredEvent) -> Result<Call, EventError> {
        let probe = self
            .declared
            .get(event.probe as usize)
            .cloned()
            .ok_or(EventError::UndeclaredProbe(event.probe))?;
        let kind = ProbeKind::try_from(event.kind).map_err(|e| EventError::Field {
            field: "probe",
            value: e.number,
        })?;
        let detail = match &probe.signalfd {
            Some(layout) => CallDetail::Signalfd(layout.call(kind, &event.captured, event.ret)),
            None => CallDetail::Declared(DeclaredCall {
                values: DeclaredCall::values_from(&probe, &event.captured),
                ret: DeclaredCall::result_from(&probe, event.ret),
                parent_start: (event.parent_start_boot_ns != 0)
                    .then(|| self.clock.wall_time(event.parent_start_boot_ns)),
                root_start: self.clock.wall_time(event.root_start_boot_ns),
                probe,
            }),
        };
        let identity = Identity {
            probe: kind,
            pid: event.pid,
            tid: event.tid,
            uid: event.uid,
            euid: event.euid,
            cgroup_id: event.cgroup_id,
            comm: &event.comm,
            exe_name: &event.exe_name,
            exe_name_len: event.exe_name_len,
            start_boot_ns: event.start_boot_ns,
            end_boot_ns: event.end_boot_ns,
        };
        Ok(self.call(&identity, detail))
    }

    fn call(&mut self, identity: &Identity<'_>, detail: CallDetail) -> Call {
        let thread_name = comm_to_name(identity.comm);
        Call {
            probe: identity.probe,
            pid: identity.pid,
            tid: identity.tid,
            uid: identity.uid,
            euid: identity.euid,
            cgroup_id: identity.cgroup_id,
            cgroup: self
                .cgroups
                .as_mut()
                .map(|resolver| resolver.resolve(identity.cgroup_id)),
            process_name: match executable_name(identity.exe_name, identity.exe_name_len) {
                Some(name) => name,
                None => self.names.name(identity.pid, &thread_name),
            },
            process_details: self.details.as_mut().map(|cache| cache.get(identity.pid)),
            thread_name,
            start: self.clock.wall_time(identity.start_boot_ns),
            end: self.clock.wall_time(identity.end_boot_ns),
            detail,
        }
    }
}

/// The executable's name the probe read, when it could (see [`DeclaredEvent::exe_name`]).
fn executable_name(exe_name: &[u8; EXE_NAME_LEN], len: u8) -> Option<Name> {
    let len = usize::from(len);
    (1..=EXE_NAME_LEN)
        .contains(&len)
        .then(|| Name::from_utf8_lossy(&exe_name[..len]))
}

/// A NUL-padded `comm` as text.
fn comm_to_name(comm: &[u8; COMM_LEN]) -> Name {
    let len = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    Name::from_utf8_lossy(&comm[..len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{event_bytes, signalfd_event, signalfd_probe};
    use kspan_common::{MaskSource, Syscall};

    fn decoder() -> CallDecoder {
        CallDecoder::new(BootClock::measure().unwrap())
            .with_declared(vec![Arc::new(signalfd_probe())])
    }

    #[test]
    fn round_trips_a_record_whole_and_without_strings() {
        let bytes = event_bytes(&signalfd_event());
        assert_eq!(parse_declared_event(&bytes), Ok(signalfd_event()));
        let short = &bytes[..DECLARED_EVENT_WITHOUT_STRINGS];
        let mut without_strings = signalfd_event();
        without_strings.captured.strings = parse_declared_event(&vec![0; bytes.len()])
            .unwrap()
            .captured
            .strings;
        assert_eq!(parse_declared_event(short), Ok(without_strings));
    }

    #[test]
    fn refuses_wrong_sizes() {
        assert_eq!(parse_declared_event(&[0; 8]), Err(EventError::Size(8)));
        let mut long = event_bytes(&signalfd_event());
        long.push(0);
        let len = long.len();
        assert_eq!(parse_declared_event(&long), Err(EventError::Size(len)));
    }

    #[test]
    fn the_executable_name_is_the_probe_s_else_the_process_name() {
        let mut decoder = decoder();
        let mut exe_name = [0; EXE_NAME_LEN];
        let long = b"a-program-with-a-long-name";
        exe_name[..long.len()].copy_from_slice(long);
        let read = DeclaredEvent {
            exe_name_len: long.len() as u8,
            exe_name,
            ..signalfd_event()
        };
        let call = decoder.decode(&event_bytes(&read)).unwrap();
        assert_eq!(call.process_name, "a-program-with-a-long-name");
        // Not read (0), or a corrupt length: this process's name from /proc, as before.
        let own = std::fs::read_to_string("/proc/self/comm").unwrap();
        for len in [0, EXE_NAME_LEN as u8 + 1] {
            let unread = DeclaredEvent {
                exe_name_len: len,
                ..read
            };
            let call = decoder.decode(&event_bytes(&unread)).unwrap();
            assert_eq!(call.process_name, own.trim_end(), "length {len}");
        }
    }

    #[test]
    fn refuses_unknown_probe_kinds_and_undeclared_probes() {
        let mut decoder = decoder();
        let bad = DeclaredEvent {
            kind: 9,
            ..signalfd_event()
        };
        assert_eq!(
            decoder.decode(&event_bytes(&bad)),
            Err(EventError::Field {
                field: "probe",
                value: 9
            })
        );
        let undeclared = DeclaredEvent {
            probe: 1,
            ..signalfd_event()
        };
        assert_eq!(
            decoder.decode(&event_bytes(&undeclared)),
            Err(EventError::UndeclaredProbe(1))
        );
    }

    #[test]
    fn a_signalfd_record_decodes_names_times_mask_and_syscall() {
        let call = decoder().decode(&event_bytes(&signalfd_event())).unwrap();
        assert_eq!(call.thread_name, "test");
        assert!(!call.process_name.is_empty());
        let signalfd = call.signalfd().unwrap();
        assert!(signalfd.mask.names().eq(["SIGUSR1"]));
        assert_eq!(
            (
                signalfd.syscall,
                signalfd.mask_source,
                signalfd.ufd,
                signalfd.ret
            ),
            (Syscall::Signalfd4, MaskSource::User, -1, 4)
        );
        assert_eq!(
            call.end.duration_since(call.start).unwrap().as_nanos(),
            2_000
        );
    }

    /// Where the built-in probe's mask read stands, as the probes mark it.
    #[test]
    fn the_mask_source_follows_the_probe_kind_and_the_marks() {
        let mut decoder = decoder();
        let cases = [
            (ProbeKind::Tracepoint, 0, 0, MaskSource::User),
            (ProbeKind::Kprobe, 0, 0, MaskSource::Kernel),
            (ProbeKind::Fentry, 0, 0, MaskSource::Kernel),
            (ProbeKind::Tracepoint, 1 << 1, 0, MaskSource::NotRead),
            (ProbeKind::Tracepoint, 0, 1 << 1, MaskSource::Unreadable),
            // Another argument's marks say nothing of the mask.
            (ProbeKind::Kprobe, 1 << 2, 1 << 0, MaskSource::Kernel),
        ];
        for (kind, skipped, unreadable, expected) in cases {
            let mut event = DeclaredEvent {
                kind: kind as u8,
                ..signalfd_event()
            };
            event.captured.skipped = skipped;
            event.captured.unreadable = unreadable;
            let call = decoder.decode(&event_bytes(&event)).unwrap();
            let source = call.signalfd().unwrap().mask_source;
            assert_eq!(
                source, expected,
                "{kind} skipped {skipped:#b} unreadable {unreadable:#b}"
            );
        }
    }

    #[test]
    fn comm_without_nul_uses_all_bytes() {
        assert_eq!(comm_to_name(b"0123456789abcdef"), "0123456789abcdef");
    }
}

#[cfg(test)]
mod properties {
    //! Whatever bytes arrive, decoding answers with a call or an error, never a panic.
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            let sizes = [size_of::<DeclaredEvent>(), DECLARED_EVENT_WITHOUT_STRINGS];
            prop_assert_eq!(parse_declared_event(&bytes).is_ok(), sizes.contains(&bytes.len()));
        }

        #[test]
        fn declared_records_decode_or_are_refused_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), size_of::<DeclaredEvent>()),
            signalfd in any::<bool>(),
        ) {
            let mut bytes = bytes;
            // Probe 0, the one declared, seen by a tracepoint pair: the rest stays random.
            let probe_at = std::mem::offset_of!(DeclaredEvent, probe);
            bytes[probe_at..probe_at + 4].copy_from_slice(&0u32.to_ne_bytes());
            bytes[std::mem::offset_of!(DeclaredEvent, kind)] = ProbeKind::Tracepoint as u8;
            let (probe, name) = match signalfd {
                true => (crate::test_support::signalfd_probe(), None),
                false => (crate::test_support::openat_probe(), Some("openat")),
            };
            let mut decoder =
                CallDecoder::new(BootClock::measure().unwrap()).with_declared(vec![Arc::new(probe)]);
            // Whole, and without its strings, as a probe that reads none sends it.
            for record in [&bytes[..], &bytes[..DECLARED_EVENT_WITHOUT_STRINGS]] {
                match decoder.decode(record) {
                    Ok(call) => {
                        if let Some(name) = name {
                            prop_assert_eq!(call.name(), name);
                        }
                        // Writing the summary reads every value the record holds.
                        let _ = call.summary().to_string();
                    }
                    Err(error) => prop_assert!(false, "a declared record was refused: {error}"),
                }
            }
        }
    }
}
