//! Errno values to their names (`EINVAL`).

use std::{borrow::Cow, sync::LazyLock};

use nix::errno::Errno;

/// Errno values up to this one are named from a table built once (Linux's highest is 133).
const TABLE_LEN: i32 = 256;

/// Every errno's name, by number: failed calls are named per call, the names built once.
static NAMES: LazyLock<Vec<String>> = LazyLock::new(|| (0..TABLE_LEN).map(build_name).collect());

/// The symbolic name of a positive errno value, or `E<n>` when the platform has none.
pub fn errno_name(errno: i32) -> Cow<'static, str> {
    match usize::try_from(errno)
        .ok()
        .and_then(|index| NAMES.get(index))
    {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(build_name(errno)),
    }
}

fn build_name(errno: i32) -> String {
    match Errno::from_raw(errno) {
        Errno::UnknownErrno => format!("E{errno}"),
        known => format!("{known:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_errnos_signalfd_returns() {
        assert_eq!(errno_name(libc::EINVAL), "EINVAL");
        assert_eq!(errno_name(libc::EBADF), "EBADF");
        assert_eq!(errno_name(libc::EFAULT), "EFAULT");
        assert_eq!(errno_name(libc::EMFILE), "EMFILE");
        assert_eq!(errno_name(libc::ENOMEM), "ENOMEM");
    }

    #[test]
    fn unknown_errno_keeps_its_number() {
        assert_eq!(errno_name(4095), "E4095");
        assert_eq!(errno_name(200), "E200");
        assert_eq!(errno_name(0), "E0");
        assert_eq!(errno_name(-3), "E-3");
    }
}
