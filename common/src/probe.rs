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
/// checks that each is in its object. The declared probes' names fit the kernel's 15 characters,
/// so that `bpftool` and the bench tell entry from exit.
pub mod programs {
    /// `sys_enter_*` of every declared syscall, by its number of arguments (position `n`: a
    /// syscall of `n` arguments).
    pub const DECLARED_TP_ENTER: [&str; crate::declared::MAX_ARGS + 1] = [
        "kspan_dtp_ent_0",
        "kspan_dtp_ent_1",
        "kspan_dtp_ent_2",
        "kspan_dtp_ent_3",
        "kspan_dtp_ent_4",
        "kspan_dtp_ent_5",
        "kspan_dtp_ent_6",
    ];
    /// Every declared syscall's `sys_exit_*` tracepoint.
    pub const DECLARED_TP_EXIT: &str = "kspan_dtp_exit";
    /// kprobe on every declared kernel function.
    pub const DECLARED_KPROBE: &str = "kspan_dkp_enter";
    /// kretprobe on every declared kernel function.
    pub const DECLARED_KRETPROBE: &str = "kspan_dkp_exit";
    /// fentry on one declared kernel function each.
    pub const DECLARED_FENTRY: [&str; crate::declared::MAX_FENTRY_PROBES] = [
        "kspan_dfentry_0",
        "kspan_dfentry_1",
        "kspan_dfentry_2",
        "kspan_dfentry_3",
        "kspan_dfentry_4",
        "kspan_dfentry_5",
        "kspan_dfentry_6",
        "kspan_dfentry_7",
    ];
    /// fexit on the function of the fentry of the same position.
    pub const DECLARED_FEXIT: [&str; crate::declared::MAX_FENTRY_PROBES] = [
        "kspan_dfexit_0",
        "kspan_dfexit_1",
        "kspan_dfexit_2",
        "kspan_dfexit_3",
        "kspan_dfexit_4",
        "kspan_dfexit_5",
        "kspan_dfexit_6",
        "kspan_dfexit_7",
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
    fn declared_program_names_fit_the_kernel_s_program_names() {
        use programs::*;
        let names = [DECLARED_TP_EXIT, DECLARED_KPROBE, DECLARED_KRETPROBE];
        let entries = DECLARED_TP_ENTER.iter().chain(&DECLARED_FENTRY);
        for name in names.iter().chain(entries).chain(&DECLARED_FEXIT) {
            // BPF_OBJ_NAME_LEN is 16, its NUL included.
            assert!(name.len() <= 15, "{name}");
        }
    }

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
