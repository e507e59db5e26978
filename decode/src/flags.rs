//! The `flags` word of `signalfd4` to flag names.

use std::borrow::Cow;

/// `SFD_CLOEXEC` and `SFD_NONBLOCK`: the only flags `do_signalfd4` accepts.
const KNOWN_FLAGS: [(i32, &str); 2] = [
    (libc::SFD_CLOEXEC, "SFD_CLOEXEC"),
    (libc::SFD_NONBLOCK, "SFD_NONBLOCK"),
];

/// Names of the set flags, known ones first; unknown bits are kept as one hex value (the only
/// name that is built: known ones are borrowed, as they are decoded per call).
pub fn flag_names(flags: i32) -> impl Iterator<Item = Cow<'static, str>> {
    let known = KNOWN_FLAGS
        .iter()
        .filter(move |(bit, _)| flags & bit != 0)
        .map(|(_, name)| Cow::Borrowed(*name));
    let unknown = flags & !KNOWN_FLAGS.iter().fold(0, |all, (bit, _)| all | bit);
    let unknown = (unknown != 0).then(|| Cow::Owned(format!("{:#x}", unknown as u32)));
    known.chain(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(flags: i32) -> Vec<Cow<'static, str>> {
        flag_names(flags).collect()
    }

    #[test]
    fn no_flags_is_empty() {
        assert_eq!(flag_names(0).count(), 0);
    }

    #[test]
    fn names_both_known_flags() {
        assert_eq!(
            names(libc::SFD_CLOEXEC | libc::SFD_NONBLOCK),
            ["SFD_CLOEXEC", "SFD_NONBLOCK"]
        );
    }

    #[test]
    fn keeps_unknown_bits_as_hex() {
        assert_eq!(names(1), ["0x1"]);
        assert_eq!(
            names(libc::SFD_NONBLOCK | 0x4000_0000),
            ["SFD_NONBLOCK", "0x40000000"]
        );
        assert_eq!(names(i32::MIN), ["0x80000000"]);
    }
}
