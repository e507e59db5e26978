//! Decoders a declaration picks by name for an argument (`decoder = "open_flags"`): each turns
//! the raw value into names, shown in the call's summary and as the attribute `<attr>.names`.

use std::borrow::Cow;

use crate::{errno_name, flag_names, flags::open_flag_names, SignalMask};

/// A named decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoder {
    /// A (positive or negated) errno to its name.
    Errno,
    /// A 64-bit signal set to the signals' names.
    Signals,
    /// `signalfd4` flags.
    SignalfdFlags,
    /// `open` flags, access mode first.
    OpenFlags,
}

impl Decoder {
    /// Every decoder, as declarations name them.
    pub const ALL: [Decoder; 4] = [
        Decoder::Errno,
        Decoder::Signals,
        Decoder::SignalfdFlags,
        Decoder::OpenFlags,
    ];

    /// Its name in declarations.
    pub const fn name(self) -> &'static str {
        match self {
            Decoder::Errno => "errno",
            Decoder::Signals => "signals",
            Decoder::SignalfdFlags => "signalfd_flags",
            Decoder::OpenFlags => "open_flags",
        }
    }

    /// The decoder called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|decoder| decoder.name() == name)
    }

    /// The value's names.
    pub fn names(self, value: i64) -> Vec<Cow<'static, str>> {
        match self {
            Decoder::Errno => {
                let errno = value.unsigned_abs();
                vec![i32::try_from(errno)
                    .map_or_else(|_| Cow::Owned(format!("E{errno}")), errno_name)]
            }
            Decoder::Signals => SignalMask(value as u64)
                .names()
                .map(Cow::Borrowed)
                .collect(),
            Decoder::SignalfdFlags => flag_names(value as i32).collect(),
            Decoder::OpenFlags => open_flag_names(value as i32),
        }
    }

    /// How the names read in a summary: flags joined by `|` (`0` when none), signals as a list.
    pub fn summary(self, value: i64) -> String {
        let names = self.names(value);
        match self {
            Decoder::Signals => format!("[{}]", names.join(",")),
            _ if names.is_empty() => "0".to_owned(),
            _ => names.join("|"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decoder_is_found_by_its_name_and_decodes() {
        let cases: [(&str, i64, &str); 5] = [
            ("errno", -2, "ENOENT"),
            ("signals", 1 << (libc::SIGINT - 1), "[SIGINT]"),
            ("signalfd_flags", libc::SFD_CLOEXEC.into(), "SFD_CLOEXEC"),
            ("signalfd_flags", 0, "0"),
            (
                "open_flags",
                (libc::O_WRONLY | libc::O_CREAT).into(),
                "O_WRONLY|O_CREAT",
            ),
        ];
        for (name, value, summary) in cases {
            let decoder = Decoder::from_name(name).unwrap_or_else(|| panic!("{name} unknown"));
            assert_eq!(decoder.name(), name);
            assert_eq!(decoder.summary(value), summary, "{name} {value}");
        }
        assert_eq!(Decoder::from_name("ksym"), None);
    }
}
