//! One observed call, in user-space terms: wall-clock times, names, and what the probe read:
//! signalfd's arguments (the built-in probe) or a declared probe's.

use std::{
    borrow::Cow,
    fmt::{self, Write},
    sync::Arc,
    time::SystemTime,
};

use kspan_common::{declared::CapturedArgs, MaskSource, ProbeKind, Syscall};

use crate::{errno_name, flag_names, CgroupLookup, DeclaredCall, Name, ProcessDetails, SignalMask};

/// A complete call as the agent hands it to telemetry.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The probe pair that saw it.
    pub probe: ProbeKind,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// Effective user id (the one permission checks use).
    pub euid: u32,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// What `cgroup_id` resolved to (path, container, pod), when the decoder resolves cgroups.
    pub cgroup: Option<Arc<CgroupLookup>>,
    /// The process's name (`/proc/<pid>/comm`), or the thread's when the process is gone.
    pub process_name: Name,
    /// The process's executable path and command line, when asked for.
    pub process_details: Option<Arc<ProcessDetails>>,
    /// The calling thread's `comm`.
    pub thread_name: Name,
    /// Entry time.
    pub start: SystemTime,
    /// Return time.
    pub end: SystemTime,
    /// What the probe read.
    pub detail: CallDetail,
}

/// What a probe read of a call.
#[derive(Clone, Debug, PartialEq)]
pub enum CallDetail {
    /// A `do_signalfd4` call, from the built-in probe.
    Signalfd(SignalfdCall),
    /// A call of a declared probe.
    Declared(DeclaredCall),
}

/// Where the built-in signalfd probe's arguments sit among its hook's captured values, and the
/// numbers of the two syscalls that reach `do_signalfd4` (a function probe records which).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalfdLayout {
    /// Position of `ufd`.
    pub ufd: usize,
    /// Position of the mask, read through its pointer.
    pub mask: usize,
    /// Position of `flags` (`signalfd` has none).
    pub flags: Option<usize>,
    /// `signalfd`'s number.
    pub signalfd_number: u32,
    /// `signalfd4`'s number.
    pub signalfd4_number: u32,
}

impl SignalfdLayout {
    /// The signalfd call a probe of `kind` captured: the mask from the kernel's copy
    /// (kernel-function probes) or the caller's (tracepoints), or why it was not read.
    pub fn call(&self, kind: ProbeKind, captured: &CapturedArgs, ret: i64) -> SignalfdCall {
        let value = |position: usize| captured.values.get(position).copied().unwrap_or(0);
        let mask_bit = 1u16.checked_shl(self.mask as u32).unwrap_or(0);
        let mask_source = if captured.skipped & mask_bit != 0 {
            MaskSource::NotRead
        } else if captured.unreadable & mask_bit != 0 {
            MaskSource::Unreadable
        } else if kind == ProbeKind::Tracepoint {
            MaskSource::User
        } else {
            MaskSource::Kernel
        };
        let syscall = match captured.syscall {
            number if number == self.signalfd_number => Syscall::Signalfd,
            number if number == self.signalfd4_number => Syscall::Signalfd4,
            _ => Syscall::Unknown,
        };
        // Every argument and the result are C `int`s: the registers' upper halves are not part
        // of them.
        SignalfdCall {
            syscall,
            mask_source,
            ufd: value(self.ufd) as i32,
            flags: self.flags.map_or(0, |position| value(position) as i32),
            mask: SignalMask(value(self.mask)),
            ret: ret as i32,
        }
    }
}

/// The arguments and result of one signalfd call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalfdCall {
    /// The syscall that led into `do_signalfd4`.
    pub syscall: Syscall,
    /// Where the mask was read.
    pub mask_source: MaskSource,
    /// The `ufd` argument: -1 creates.
    pub ufd: i32,
    /// The `flags` argument.
    pub flags: i32,
    /// The signal mask argument.
    pub mask: SignalMask,
    /// The raw `int` result: an fd or a negative errno.
    pub ret: i32,
}

impl Call {
    /// The span name.
    pub fn name(&self) -> &str {
        match &self.detail {
            CallDetail::Signalfd(call) => call.name(),
            CallDetail::Declared(call) => &call.probe.span_name,
        }
    }

    /// The log record's event name.
    pub fn event_name(&self) -> &str {
        match &self.detail {
            CallDetail::Signalfd(_) => SignalfdCall::EVENT_NAME,
            CallDetail::Declared(call) => &call.probe.event_name,
        }
    }

    /// The errno name, when the call failed.
    pub fn error(&self) -> Option<Cow<'static, str>> {
        match &self.detail {
            CallDetail::Signalfd(call) => call.error(),
            CallDetail::Declared(call) => call.error(),
        }
    }

    /// The signalfd arguments, for a signalfd call.
    pub fn signalfd(&self) -> Option<&SignalfdCall> {
        match &self.detail {
            CallDetail::Signalfd(call) => Some(call),
            CallDetail::Declared(_) => None,
        }
    }

    /// The signalfd arguments, for a signalfd call (tests build calls from a sample).
    pub fn signalfd_mut(&mut self) -> Option<&mut SignalfdCall> {
        match &mut self.detail {
            CallDetail::Signalfd(call) => Some(call),
            CallDetail::Declared(_) => None,
        }
    }

    /// The entry time of the outermost call this one runs in on its thread (its own when none):
    /// the call's trace is that call's.
    pub fn trace_start(&self) -> SystemTime {
        match &self.detail {
            CallDetail::Declared(call) => call.root_start,
            CallDetail::Signalfd(_) => self.start,
        }
    }

    /// The entry time of the call this one runs in on its thread, if any.
    pub fn parent_start(&self) -> Option<SystemTime> {
        match &self.detail {
            CallDetail::Declared(call) => call.parent_start,
            CallDetail::Signalfd(_) => None,
        }
    }

    /// `kprobe`, `fentry` or `tracepoint`.
    pub fn probe_name(&self) -> &'static str {
        self.probe.name()
    }

    /// A strace-like one-liner: `signalfd4(ufd=-1, mask=[SIGINT,SIGUSR1], flags=SFD_CLOEXEC) = 5`.
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }

    /// Writes the [`summary`](Call::summary) to `out` without `format_args!`: the OTLP encoder
    /// writes one per log record, and formatting machinery was a tenth of its time.
    pub fn write_summary<W: Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        match &self.detail {
            CallDetail::Signalfd(call) => call.write_summary(out),
            CallDetail::Declared(call) => call.write_summary(out),
        }
    }
}

impl SignalfdCall {
    /// The log record's event name of every signalfd call.
    pub const EVENT_NAME: &'static str = "signalfd.call";

    /// The span name: the syscall, or the kernel function when the syscall is unknown.
    pub fn name(&self) -> &'static str {
        match self.syscall {
            Syscall::Signalfd => "signalfd",
            Syscall::Signalfd4 => "signalfd4",
            Syscall::Unknown => "do_signalfd4",
        }
    }

    /// `create` for `ufd == -1`, `update` otherwise.
    pub fn operation(&self) -> &'static str {
        if self.ufd == -1 {
            "create"
        } else {
            "update"
        }
    }

    /// The returned fd, when the call succeeded.
    pub fn fd(&self) -> Option<i32> {
        (self.ret >= 0).then_some(self.ret)
    }

    /// The errno name, when the call failed. Negating `ret` would overflow for `i32::MIN`, which
    /// no kernel returns but a corrupt record can carry: that one is named by its magnitude.
    pub fn error(&self) -> Option<Cow<'static, str>> {
        (self.ret < 0).then(|| {
            let errno = self.ret.unsigned_abs();
            i32::try_from(errno).map_or_else(|_| Cow::Owned(format!("E{errno}")), errno_name)
        })
    }

    /// Where the mask came from: `kernel`, `user`, `not_read` or `unreadable`.
    pub fn mask_source_name(&self) -> &'static str {
        match self.mask_source {
            MaskSource::Kernel => "kernel",
            MaskSource::User => "user",
            MaskSource::NotRead => "not_read",
            MaskSource::Unreadable => "unreadable",
        }
    }
}

/// [`Call::summary`]: written straight to its destination, as it is made for every call.
pub struct Summary<'a>(&'a Call);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_summary(f)
    }
}

impl SignalfdCall {
    /// Writes the call's summary line.
    pub fn write_summary<W: Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        let mut digits = itoa::Buffer::new();
        out.write_str(self.name())?;
        out.write_str("(ufd=")?;
        out.write_str(digits.format(self.ufd))?;
        out.write_str(", mask=")?;
        match self.mask_source {
            MaskSource::Kernel | MaskSource::User => {
                out.write_char('[')?;
                separated(out, self.mask.names(), ',')?;
                out.write_char(']')?;
            }
            MaskSource::NotRead => out.write_char('?')?,
            MaskSource::Unreadable => out.write_str("<unreadable>")?,
        }
        if self.syscall != Syscall::Signalfd {
            out.write_str(", flags=")?;
            if self.flags == 0 {
                out.write_char('0')?;
            }
            separated(out, flag_names(self.flags), '|')?;
        }
        match self.error() {
            Some(errno) => {
                out.write_str(") = -1 ")?;
                out.write_str(&errno)
            }
            None => {
                out.write_str(") = ")?;
                out.write_str(digits.format(self.ret))
            }
        }
    }
}

fn separated<W: Write + ?Sized>(
    out: &mut W,
    items: impl Iterator<Item = impl AsRef<str>>,
    separator: char,
) -> fmt::Result {
    for (index, item) in items.enumerate() {
        if index > 0 {
            out.write_char(separator)?;
        }
        out.write_str(item.as_ref())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{sample_call, with_signalfd};

    #[test]
    fn summary_reads_like_strace() {
        assert_eq!(
            sample_call().summary().to_string(),
            "signalfd4(ufd=-1, mask=[SIGINT,SIGUSR1], flags=SFD_CLOEXEC) = 5"
        );
    }

    #[test]
    fn failed_update_names_errno() {
        let call = with_signalfd(|call| {
            call.ufd = 3;
            call.ret = -libc::EINVAL;
            call.flags = 0;
            call.syscall = Syscall::Signalfd;
        });
        assert_eq!(
            call.summary().to_string(),
            "signalfd(ufd=3, mask=[SIGINT,SIGUSR1]) = -1 EINVAL"
        );
        let signalfd = call.signalfd().unwrap();
        assert_eq!(signalfd.operation(), "update");
        assert_eq!(signalfd.fd(), None);
        assert_eq!(call.error().as_deref(), Some("EINVAL"));
    }

    /// Found by the event_decoder fuzz target (its input is kept as
    /// fuzz/corpus/event_decoder/edge-ret-i32-min).
    #[test]
    fn the_most_negative_result_is_named_without_overflow() {
        let call = with_signalfd(|call| call.ret = i32::MIN);
        assert_eq!(call.error().as_deref(), Some("E2147483648"));
        assert!(call.summary().to_string().ends_with(") = -1 E2147483648"));
        assert_eq!(call.signalfd().unwrap().fd(), None);
    }

    #[test]
    fn unread_mask_is_not_shown_as_empty() {
        let call = with_signalfd(|call| {
            call.mask_source = MaskSource::NotRead;
            call.mask = SignalMask(0);
            call.ret = -libc::EINVAL;
        });
        assert_eq!(
            call.summary().to_string(),
            "signalfd4(ufd=-1, mask=?, flags=SFD_CLOEXEC) = -1 EINVAL"
        );
    }
}
