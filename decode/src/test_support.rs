//! Calls for other crates' tests (feature `test-support`) and this crate's own.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use kspan_common::{
    declared::{CapturedArgs, CapturedString, DeclaredEvent, MAX_STRINGS, STRING_BYTES},
    MaskSource, ProbeKind, Syscall, COMM_LEN, EXE_NAME_LEN,
};

use crate::{
    ArgType, ArgValue, ArgumentInfo, Call, CallDetail, DeclaredCall, Decoder, ProbeInfo,
    ResultKind, SignalMask, SignalfdCall, SignalfdLayout,
};

/// A successful `signalfd4` create.
pub fn sample_call() -> Call {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    Call {
        probe: ProbeKind::Tracepoint,
        pid: 100,
        tid: 101,
        uid: 0,
        euid: 0,
        cgroup_id: 7,
        cgroup: None,
        process_name: "app".into(),
        process_details: None,
        thread_name: "worker".into(),
        start,
        end: start + Duration::from_micros(3),
        detail: CallDetail::Signalfd(SignalfdCall {
            syscall: Syscall::Signalfd4,
            mask_source: MaskSource::User,
            ufd: -1,
            flags: libc::SFD_CLOEXEC,
            mask: SignalMask(1 << (libc::SIGINT - 1) | 1 << (libc::SIGUSR1 - 1)),
            ret: 5,
        }),
    }
}

/// The sample call with its signalfd arguments changed by `change`.
pub fn with_signalfd(change: impl FnOnce(&mut SignalfdCall)) -> Call {
    let mut call = sample_call();
    if let Some(signalfd) = call.signalfd_mut() {
        change(signalfd);
    }
    call
}

/// A declared `openat` probe as `--probe syscall:openat` makes it, with `open_flags` on `flags`.
pub fn openat_probe() -> ProbeInfo {
    let argument = |name: &str, position, ty| ArgumentInfo {
        name: name.to_owned(),
        attribute: format!("openat.{name}"),
        ty,
        position,
        string_slot: 0,
        decoder: None,
    };
    let int = |bytes| ArgType::Int {
        bytes,
        signed: true,
    };
    ProbeInfo {
        arguments: vec![
            argument("dfd", 0, int(4)),
            argument("filename", 1, ArgType::String { user: true }),
            ArgumentInfo {
                decoder: Some(Decoder::OpenFlags),
                ..argument("flags", 2, int(4))
            },
            argument("mode", 3, int(2)),
        ],
        ..ProbeInfo::new("openat", ResultKind::ErrnoOrValue)
    }
}

/// A successful `openat` of `/etc/hosts`, seen by a declared tracepoint pair, made inside no
/// other declared call.
pub fn sample_declared_call() -> Call {
    let call = sample_call();
    Call {
        detail: CallDetail::Declared(DeclaredCall {
            probe: Arc::new(openat_probe()),
            values: vec![
                ArgValue::Int(-100),
                ArgValue::String {
                    text: "/etc/hosts".into(),
                    truncated: false,
                },
                ArgValue::Int((libc::O_RDONLY | libc::O_CLOEXEC).into()),
                ArgValue::Int(0),
            ],
            ret: 3,
            parent_start: None,
            root_start: call.start,
        }),
        ..call
    }
}

/// The built-in signalfd probe as the agent declares it on `signalfd4`'s tracepoints
/// (`ufd, user_mask, sizemask, flags`; x86_64's numbers).
pub fn signalfd_probe() -> ProbeInfo {
    ProbeInfo {
        signalfd: Some(SignalfdLayout {
            ufd: 0,
            mask: 1,
            flags: Some(3),
            signalfd_number: 282,
            signalfd4_number: 289,
        }),
        ..ProbeInfo::new("signalfd", ResultKind::Fd)
    }
}

/// A `signalfd4(-1, [SIGUSR1], 8, 0) = 4` record of [`signalfd_probe`] (probe 0) from a
/// tracepoint pair, by a thread named `test` of this process, 2 µs long.
pub fn signalfd_event() -> DeclaredEvent {
    let mut comm = [0; COMM_LEN];
    comm[..4].copy_from_slice(b"test");
    let empty = CapturedString {
        len: 0,
        _pad: 0,
        bytes: [0; STRING_BYTES],
    };
    DeclaredEvent {
        start_boot_ns: 1_000,
        end_boot_ns: 3_000,
        parent_start_boot_ns: 0,
        root_start_boot_ns: 1_000,
        ret: 4,
        cgroup_id: 1,
        probe: 0,
        pid: std::process::id(),
        tid: 12,
        uid: 0,
        euid: 0,
        kind: ProbeKind::Tracepoint as u8,
        depth: 0,
        exe_name_len: 0,
        _pad: 0,
        comm,
        exe_name: [0; EXE_NAME_LEN],
        captured: CapturedArgs {
            values: [(-1i64) as u64, 1 << (libc::SIGUSR1 - 1), 8, 0, 0, 0],
            unreadable: 0,
            skipped: 0,
            syscall: 289,
            strings: [empty; MAX_STRINGS],
        },
    }
}

/// `event` as the ring buffer carries it (whole).
pub fn event_bytes(event: &DeclaredEvent) -> Vec<u8> {
    // SAFETY: reading a repr(C) value of plain integers, without padding, as bytes.
    unsafe {
        std::slice::from_raw_parts(
            (event as *const DeclaredEvent).cast::<u8>(),
            size_of::<DeclaredEvent>(),
        )
    }
    .to_vec()
}
