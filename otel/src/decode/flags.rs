//! The `flags` word of `signalfd4` to flag names.

/// `SFD_CLOEXEC` and `SFD_NONBLOCK`: the only flags `do_signalfd4` accepts.
const KNOWN_FLAGS: [(i32, &str); 2] = [
    (libc::SFD_CLOEXEC, "SFD_CLOEXEC"),
    (libc::SFD_NONBLOCK, "SFD_NONBLOCK"),
];

/// Names of the set flags, known ones first; unknown bits are kept as one hex value.
pub fn flag_names(flags: i32) -> Vec<String> {
    let mut names: Vec<String> = KNOWN_FLAGS
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| (*name).to_string())
        .collect();
    let unknown = flags & !KNOWN_FLAGS.iter().fold(0, |all, (bit, _)| all | bit);
    if unknown != 0 {
        names.push(format!("{:#x}", unknown as u32));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_is_empty() {
        assert!(flag_names(0).is_empty());
    }

    #[test]
    fn names_both_known_flags() {
        assert_eq!(
            flag_names(libc::SFD_CLOEXEC | libc::SFD_NONBLOCK),
            ["SFD_CLOEXEC", "SFD_NONBLOCK"]
        );
    }

    #[test]
    fn keeps_unknown_bits_as_hex() {
        assert_eq!(flag_names(1), ["0x1"]);
        assert_eq!(
            flag_names(libc::SFD_NONBLOCK | 0x4000_0000),
            ["SFD_NONBLOCK", "0x40000000"]
        );
        assert_eq!(flag_names(i32::MIN), ["0x80000000"]);
    }
}
