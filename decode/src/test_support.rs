//! Calls for other crates' tests (feature `test-support`) and this crate's own.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use kspan_common::{MaskSource, ProbeKind, Syscall};

use crate::{
    ArgType, ArgValue, ArgumentInfo, Call, CallDetail, DeclaredCall, Decoder, ProbeInfo,
    ResultKind, SignalMask, SignalfdCall,
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
