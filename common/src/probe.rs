//! The probe vocabulary, defined once for the probes, the agent, the decoder and the tools: the
//! kinds of probe pair, the `--attach` choice among them and the programs' names.

use num_enum::TryFromPrimitive;

/// A kind of probe pair: what an event's `probe` byte says and what `kspan.probe` names.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, TryFromPrimitive)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ProbeKind {
    /// kprobe + kretprobe on a kernel function.
    Kprobe = 1,
    /// fentry + fexit on a kernel function (needs BTF and BPF trampolines).
    Fentry = 2,
    /// A syscall's `syscalls:sys_enter_*` and `sys_exit_*` tracepoints.
    Tracepoint = 3,
}

impl ProbeKind {
    /// Every kind, in the order `--attach auto` tries them.
    pub const ALL: [ProbeKind; 3] = [ProbeKind::Kprobe, ProbeKind::Fentry, ProbeKind::Tracepoint];

    /// The kind's name, as `--attach`, the ready file and `kspan.probe` spell it.
    pub const fn name(self) -> &'static str {
        match self {
            ProbeKind::Kprobe => "kprobe",
            ProbeKind::Fentry => "fentry",
            ProbeKind::Tracepoint => "tracepoint",
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl core::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `--attach` asks for: one kind of pair, or each in turn until one attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum AttachMode {
    /// kprobe, else fentry, else tracepoint.
    Auto,
    /// Only kprobe.
    Kprobe,
    /// Only fentry.
    Fentry,
    /// Only tracepoint.
    Tracepoint,
}

impl AttachMode {
    /// The kinds to try, in order.
    pub const fn candidates(self) -> &'static [ProbeKind] {
        match self {
            AttachMode::Auto => &ProbeKind::ALL,
            AttachMode::Kprobe => &[ProbeKind::Kprobe],
            AttachMode::Fentry => &[ProbeKind::Fentry],
            AttachMode::Tracepoint => &[ProbeKind::Tracepoint],
        }
    }
}

/// The programs' names in the probe objects (the functions' names in `probes/src/`); the agent
/// checks that each is in its object.
pub mod programs {
    /// kprobe at the entry of `do_signalfd4`.
    pub const KPROBE_ENTRY: &str = "kspan_kprobe_enter";
    /// kretprobe at its return.
    pub const KPROBE_RETURN: &str = "kspan_kprobe_return";
    /// fentry on `do_signalfd4`.
    pub const FENTRY: &str = "kspan_fentry";
    /// fexit on `do_signalfd4`.
    pub const FEXIT: &str = "kspan_fexit";
    /// `syscalls:sys_enter_signalfd`.
    pub const TP_ENTER_SIGNALFD: &str = "kspan_tp_enter_signalfd";
    /// `syscalls:sys_enter_signalfd4`.
    pub const TP_ENTER_SIGNALFD4: &str = "kspan_tp_enter_signalfd4";
    /// `syscalls:sys_exit_signalfd` and `sys_exit_signalfd4`.
    pub const TP_EXIT: &str = "kspan_tp_exit";
    /// Every declared syscall's `sys_enter_*` tracepoint.
    pub const DECLARED_TP_ENTER: &str = "kspan_declared_tp_enter";
    /// Every declared syscall's `sys_exit_*` tracepoint.
    pub const DECLARED_TP_EXIT: &str = "kspan_declared_tp_exit";
    /// kprobe on every declared kernel function.
    pub const DECLARED_KPROBE: &str = "kspan_declared_kprobe";
    /// kretprobe on every declared kernel function.
    pub const DECLARED_KRETPROBE: &str = "kspan_declared_kretprobe";
    /// fentry on one declared kernel function each.
    pub const DECLARED_FENTRY: [&str; crate::declared::MAX_FENTRY_PROBES] = [
        "kspan_declared_fentry_0",
        "kspan_declared_fentry_1",
        "kspan_declared_fentry_2",
        "kspan_declared_fentry_3",
        "kspan_declared_fentry_4",
        "kspan_declared_fentry_5",
        "kspan_declared_fentry_6",
        "kspan_declared_fentry_7",
    ];
    /// fexit on the function of the fentry of the same position.
    pub const DECLARED_FEXIT: [&str; crate::declared::MAX_FENTRY_PROBES] = [
        "kspan_declared_fexit_0",
        "kspan_declared_fexit_1",
        "kspan_declared_fexit_2",
        "kspan_declared_fexit_3",
        "kspan_declared_fexit_4",
        "kspan_declared_fexit_5",
        "kspan_declared_fexit_6",
        "kspan_declared_fexit_7",
    ];

    /// The empty programs of the floor object (`kspan-floor`), on the same hooks.
    pub mod floor {
        /// Empty kprobe.
        pub const KPROBE: &str = "kspan_floor_kprobe";
        /// Empty kretprobe.
        pub const KRETPROBE: &str = "kspan_floor_kretprobe";
        /// Empty fentry.
        pub const FENTRY: &str = "kspan_floor_fentry";
        /// Empty fexit.
        pub const FEXIT: &str = "kspan_floor_fexit";
        /// Empty syscall-entry tracepoint program.
        pub const TP_ENTER: &str = "kspan_floor_tp_enter";
        /// Empty syscall-exit tracepoint program.
        pub const TP_EXIT: &str = "kspan_floor_tp_exit";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_in_order_and_names_round_trip() {
        assert_eq!(
            AttachMode::Auto.candidates(),
            [ProbeKind::Kprobe, ProbeKind::Fentry, ProbeKind::Tracepoint]
        );
        assert_eq!(AttachMode::Fentry.candidates(), [ProbeKind::Fentry]);
        for kind in ProbeKind::ALL {
            assert_eq!(ProbeKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(ProbeKind::from_name("uprobe"), None);
    }
}
