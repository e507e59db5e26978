//! Flags words to flag names: `signalfd4`'s and `open`'s.

use std::borrow::Cow;

/// `SFD_CLOEXEC` and `SFD_NONBLOCK`: the only flags `do_signalfd4` accepts.
const SIGNALFD_FLAGS: [(i32, &str); 2] = [
    (libc::SFD_CLOEXEC, "SFD_CLOEXEC"),
    (libc::SFD_NONBLOCK, "SFD_NONBLOCK"),
];

/// Names of the set `signalfd4` flags, known ones first; unknown bits are kept as one hex value
/// (the only name that is built: known ones are borrowed, as they are decoded per call).
pub fn flag_names(flags: i32) -> impl Iterator<Item = Cow<'static, str>> {
    let known = SIGNALFD_FLAGS
        .iter()
        .filter(move |(bit, _)| flags & bit != 0)
        .map(|(_, name)| Cow::Borrowed(*name));
    let unknown = flags & !SIGNALFD_FLAGS.iter().fold(0, |all, (bit, _)| all | bit);
    known.chain(unknown_bits(unknown))
}

/// The bits no name covers, as one hex value.
fn unknown_bits(bits: i32) -> Option<Cow<'static, str>> {
    (bits != 0).then(|| Cow::Owned(format!("{:#x}", bits as u32)))
}

/// The kernel's `O_LARGEFILE` (asm-generic): libc defines it as 0 on 64-bit targets, but the
/// kernel sets it on every open there (`force_o_largefile`), where kernel functions see it.
const O_LARGEFILE: i32 = 0o100000;

/// `open` flags whose bits include others' (`O_TMPFILE` holds `O_DIRECTORY`, `O_SYNC` holds
/// `O_DSYNC`) come before those, so each set bit is named once.
const OPEN_FLAGS: [(i32, &str); 17] = [
    (libc::O_TMPFILE, "O_TMPFILE"),
    (libc::O_SYNC, "O_SYNC"),
    (libc::O_CREAT, "O_CREAT"),
    (libc::O_EXCL, "O_EXCL"),
    (libc::O_NOCTTY, "O_NOCTTY"),
    (libc::O_TRUNC, "O_TRUNC"),
    (libc::O_APPEND, "O_APPEND"),
    (libc::O_NONBLOCK, "O_NONBLOCK"),
    (libc::O_DSYNC, "O_DSYNC"),
    (libc::O_ASYNC, "O_ASYNC"),
    (libc::O_DIRECT, "O_DIRECT"),
    (O_LARGEFILE, "O_LARGEFILE"),
    (libc::O_DIRECTORY, "O_DIRECTORY"),
    (libc::O_NOFOLLOW, "O_NOFOLLOW"),
    (libc::O_NOATIME, "O_NOATIME"),
    (libc::O_CLOEXEC, "O_CLOEXEC"),
    (libc::O_PATH, "O_PATH"),
];

/// Names of an `open` flags word: the access mode first (`O_RDONLY` is 0, so always named),
/// then each flag, then unknown bits as one hex value.
pub fn open_flag_names(flags: i32) -> Vec<Cow<'static, str>> {
    let access = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let mut names = vec![Cow::Borrowed(access)];
    let mut left = flags & !libc::O_ACCMODE;
    for (bits, name) in OPEN_FLAGS {
        if bits != 0 && left & bits == bits {
            names.push(Cow::Borrowed(name));
            left &= !bits;
        }
    }
    names.extend(unknown_bits(left));
    names
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
    fn open_flags_name_the_access_mode_and_each_flag_once() {
        let cases: [(i32, &[&str]); 5] = [
            (libc::O_RDONLY, &["O_RDONLY"]),
            (
                libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                &["O_WRONLY", "O_CREAT", "O_CLOEXEC"],
            ),
            (libc::O_RDWR | libc::O_TMPFILE, &["O_RDWR", "O_TMPFILE"]),
            (
                libc::O_SYNC | libc::O_DIRECTORY,
                &["O_RDONLY", "O_SYNC", "O_DIRECTORY"],
            ),
            (
                libc::O_DSYNC | 0x4000_0000,
                &["O_RDONLY", "O_DSYNC", "0x40000000"],
            ),
        ];
        for (flags, expected) in cases {
            assert_eq!(open_flag_names(flags), expected, "{flags:#x}");
        }
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
