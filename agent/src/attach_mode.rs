//! The probe pairs kspan can attach, and the `--attach` choice among them.

use std::fmt;

/// A probe pair kspan can attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeMode {
    /// kprobe + kretprobe on the kernel function.
    Kprobe,
    /// fentry + fexit on the kernel function (needs BTF and BPF trampolines).
    Fentry,
    /// The `syscalls:sys_{enter,exit}_signalfd{,4}` tracepoints.
    Tracepoint,
}

impl fmt::Display for ProbeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeMode::Kprobe => "kprobe",
            ProbeMode::Fentry => "fentry",
            ProbeMode::Tracepoint => "tracepoint",
        })
    }
}

/// What `--attach` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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
    /// The probe pairs to try, in order.
    pub fn candidates(self) -> &'static [ProbeMode] {
        match self {
            AttachMode::Auto => &[ProbeMode::Kprobe, ProbeMode::Fentry, ProbeMode::Tracepoint],
            AttachMode::Kprobe => &[ProbeMode::Kprobe],
            AttachMode::Fentry => &[ProbeMode::Fentry],
            AttachMode::Tracepoint => &[ProbeMode::Tracepoint],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_in_order() {
        assert_eq!(
            AttachMode::Auto.candidates(),
            [ProbeMode::Kprobe, ProbeMode::Fentry, ProbeMode::Tracepoint]
        );
        assert_eq!(AttachMode::Fentry.candidates(), [ProbeMode::Fentry]);
    }
}
