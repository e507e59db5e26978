//! The ways kspan attaches to `do_signalfd4`, as the VM test names them, and the fallback
//! check.

use std::fmt;

use serde::Deserialize;

/// One of kspan's `--attach` values that a guest run exercises.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// kprobe + kretprobe on `do_signalfd4`.
    Kprobe,
    /// fentry + fexit on `do_signalfd4`.
    Fentry,
    /// The `syscalls:sys_{enter,exit}_signalfd{,4}` tracepoints.
    Tracepoint,
    /// `auto` told to probe a kernel function that does not exist: it must fall back to the
    /// tracepoints, capture every call and say why kprobe and fentry were refused.
    Fallback,
}

impl AttachMode {
    /// Every mode, in the order a guest runs them.
    pub const ALL: [AttachMode; 4] = [
        AttachMode::Kprobe,
        AttachMode::Fentry,
        AttachMode::Tracepoint,
        AttachMode::Fallback,
    ];

    /// The name kspan's `--attach` and the guest's result directories use.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Kprobe => "kprobe",
            AttachMode::Fentry => "fentry",
            AttachMode::Tracepoint => "tracepoint",
            AttachMode::Fallback => "fallback",
        }
    }

    /// The mode named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        AttachMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == name)
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for mode in AttachMode::ALL {
            assert_eq!(AttachMode::from_name(mode.as_str()), Some(mode));
        }
        assert_eq!(AttachMode::from_name("uprobe"), None);
    }
}
