//! Ring-buffer records to [`Call`]s: layout check, enum validation, wall-clock times, names.

use std::sync::Arc;

use crate::{
    clock::BootClock, process_details::ProcessDetailsCache, process_names::ProcessNames, Call,
    CallDetail, CgroupResolver, DeclaredCall, Name, ProbeInfo, SignalMask, SignalfdCall,
};
use kspan_common::{
    declared::{DeclaredEvent, DECLARED_EVENT_WITHOUT_STRINGS},
    CallEvent, MaskSource, ProbeKind, Syscall, COMM_LEN, EXE_NAME_LEN,
};

/// A record that is not a valid [`CallEvent`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Wrong size: the probes and the agent disagree on the layout.
    #[error(
        "ring buffer record of {0} bytes, expected {signalfd}, {declared} or {without_strings}",
        signalfd = size_of::<CallEvent>(),
        declared = size_of::<DeclaredEvent>(),
        without_strings = DECLARED_EVENT_WITHOUT_STRINGS
    )]
    Size(usize),
    /// A declared call of a probe the agent did not declare.
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

/// Reads a [`CallEvent`] from a ring buffer record.
pub fn parse_event(bytes: &[u8]) -> Result<CallEvent, EventError> {
    if bytes.len() != size_of::<CallEvent>() {
        return Err(EventError::Size(bytes.len()));
    }
    // SAFETY: the length matches, CallEvent is a repr(C) struct of integers (any bit pattern is
    // valid), and read_unaligned copes with the ring buffer's 8-byte alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<CallEvent>()) })
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

/// The caller's identity, as both kinds of record carry it.
struct Identity<'a> {
    probe: u8,
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

/// The [`Identity`] of a record of either kind: their fields have the same names (the probe
/// kind's aside, named by `$kind`).
macro_rules! identity {
    ($event:expr, $kind:ident) => {
        Identity {
            probe: $event.$kind,
            pid: $event.pid,
            tid: $event.tid,
            uid: $event.uid,
            euid: $event.euid,
            cgroup_id: $event.cgroup_id,
            comm: &$event.comm,
            exe_name: &$event.exe_name,
            exe_name_len: $event.exe_name_len,
            start_boot_ns: $event.start_boot_ns,
            end_boot_ns: $event.end_boot_ns,
        }
    };
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

    /// Decodes one ring buffer record: a signalfd call or a declared one, told by its size.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Call, EventError> {
        if bytes.len() == size_of::<DeclaredEvent>()
            || bytes.len() == DECLARED_EVENT_WITHOUT_STRINGS
        {
            return self.decode_declared(&parse_declared_event(bytes)?);
        }
        let event = parse_event(bytes)?;
        let invalid = |field, value| EventError::Field { field, value };
        let syscall = Syscall::try_from(event.syscall).map_err(|e| invalid("syscall", e.number))?;
        let mask_source = MaskSource::try_from(event.mask_source)
            .map_err(|e| invalid("mask_source", e.number))?;
        let detail = CallDetail::Signalfd(SignalfdCall {
            syscall,
            mask_source,
            ufd: event.ufd,
            flags: event.flags,
            mask: SignalMask(event.mask),
            ret: event.ret,
        });
        self.call(&identity!(event, probe), detail)
    }

    fn decode_declared(&mut self, event: &DeclaredEvent) -> Result<Call, EventError> {
        let probe = self
            .declared
            .get(event.probe as usize)
            .cloned()
            .ok_or(EventError::UndeclaredProbe(event.probe))?;
        let parent_start = (event.parent_start_boot_ns != 0)
            .then(|| self.clock.wall_time(event.parent_start_boot_ns));
        let detail = CallDetail::Declared(DeclaredCall {
            values: DeclaredCall::values_from(&probe, &event.captured),
            ret: DeclaredCall::result_from(&probe, event.ret),
            probe,
            parent_start,
            root_start: self.clock.wall_time(event.root_start_boot_ns),
        });
        self.call(&identity!(event, kind), detail)
    }

    fn call(&mut self, identity: &Identity<'_>, detail: CallDetail) -> Result<Call, EventError> {
        let probe = ProbeKind::try_from(identity.probe).map_err(|e| EventError::Field {
            field: "probe",
            value: e.number,
        })?;
        let thread_name = comm_to_name(identity.comm);
        Ok(Call {
            probe,
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
        })
    }
}

/// The executable's name the probe read, when it could (see [`CallEvent::exe_name`]).
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

    fn event() -> CallEvent {
        let mut comm = [0; COMM_LEN];
        comm[..4].copy_from_slice(b"test");
        CallEvent {
            start_boot_ns: 1_000,
            end_boot_ns: 3_000,
            mask: 1 << 9,
            cgroup_id: 1,
            pid: std::process::id(),
            tid: 12,
            uid: 0,
            ufd: -1,
            flags: 0,
            ret: 4,
            syscall: Syscall::Signalfd4 as u8,
            probe: ProbeKind::Kprobe as u8,
            mask_source: MaskSource::Kernel as u8,
            exe_name_len: 0,
            euid: 0,
            comm,
            exe_name: [0; EXE_NAME_LEN],
        }
    }

    fn bytes(event: &CallEvent) -> Vec<u8> {
        // SAFETY: reading a repr(C) value of plain integers as bytes.
        unsafe {
            std::slice::from_raw_parts(
                (event as *const CallEvent).cast::<u8>(),
                size_of::<CallEvent>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn round_trips_a_record() {
        assert_eq!(parse_event(&bytes(&event())), Ok(event()));
    }

    #[test]
    fn refuses_wrong_sizes() {
        assert_eq!(parse_event(&[0; 8]), Err(EventError::Size(8)));
        let mut long = bytes(&event());
        long.push(0);
        assert_eq!(parse_event(&long), Err(EventError::Size(121)));
    }

    #[test]
    fn the_executable_name_is_the_probe_s_else_the_process_name() {
        let mut decoder = CallDecoder::new(BootClock::measure().unwrap());
        let mut exe_name = [0; EXE_NAME_LEN];
        let long = b"a-program-with-a-long-name";
        exe_name[..long.len()].copy_from_slice(long);
        let read = CallEvent {
            exe_name_len: long.len() as u8,
            exe_name,
            ..event()
        };
        let call = decoder.decode(&bytes(&read)).unwrap();
        assert_eq!(call.process_name, "a-program-with-a-long-name");
        // Not read (0), or a corrupt length: this process's name from /proc, as before.
        let own = std::fs::read_to_string("/proc/self/comm").unwrap();
        for len in [0, EXE_NAME_LEN as u8 + 1] {
            let unread = CallEvent {
                exe_name_len: len,
                ..read
            };
            let call = decoder.decode(&bytes(&unread)).unwrap();
            assert_eq!(call.process_name, own.trim_end(), "length {len}");
        }
    }

    #[test]
    fn refuses_unknown_enum_values() {
        let mut decoder = CallDecoder::new(BootClock::measure().unwrap());
        let bad = CallEvent {
            probe: 9,
            ..event()
        };
        assert_eq!(
            decoder.decode(&bytes(&bad)),
            Err(EventError::Field {
                field: "probe",
                value: 9
            })
        );
    }

    #[test]
    fn decodes_names_times_and_mask() {
        let mut decoder = CallDecoder::new(BootClock::measure().unwrap());
        let call = decoder.decode(&bytes(&event())).unwrap();
        assert_eq!(call.thread_name, "test");
        assert!(!call.process_name.is_empty());
        assert!(call.signalfd().unwrap().mask.names().eq(["SIGUSR1"]));
        assert_eq!(
            call.end.duration_since(call.start).unwrap().as_nanos(),
            2_000
        );
        assert_eq!(call.signalfd().unwrap().syscall, Syscall::Signalfd4);
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
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(parse_event(&bytes).is_ok(), bytes.len() == size_of::<CallEvent>());
        }

        #[test]
        fn declared_records_decode_or_are_refused_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), size_of::<DeclaredEvent>()),
        ) {
            let mut bytes = bytes;
            // Probe 0, the one declared, seen by a tracepoint pair: the rest stays random.
            let probe_at = std::mem::offset_of!(DeclaredEvent, probe);
            bytes[probe_at..probe_at + 4].copy_from_slice(&0u32.to_ne_bytes());
            bytes[std::mem::offset_of!(DeclaredEvent, kind)] = ProbeKind::Tracepoint as u8;
            let probe = std::sync::Arc::new(crate::test_support::openat_probe());
            let mut decoder =
                CallDecoder::new(BootClock::measure().unwrap()).with_declared(vec![probe]);
            // Whole, and without its strings, as a probe that reads none sends it.
            for record in [&bytes[..], &bytes[..DECLARED_EVENT_WITHOUT_STRINGS]] {
                match decoder.decode(record) {
                    Ok(call) => {
                        prop_assert_eq!(call.name(), "openat");
                        // Writing the summary reads every value the record holds.
                        let _ = call.summary().to_string();
                    }
                    Err(error) => prop_assert!(false, "a declared record was refused: {error}"),
                }
            }
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), size_of::<CallEvent>())) {
            let mut decoder = CallDecoder::new(BootClock::measure().unwrap());
            match decoder.decode(&bytes) {
                Ok(call) => prop_assert!(call.end >= std::time::SystemTime::UNIX_EPOCH),
                Err(error) => prop_assert!(matches!(error, EventError::Field { .. }), "{error}"),
            }
        }
    }
}
