//! Errno values to their names (`EINVAL`).

use nix::errno::Errno;

/// The symbolic name of a positive errno value, or `E<n>` when the platform has none.
pub fn errno_name(errno: i32) -> String {
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
        assert_eq!(errno_name(0), "E0");
    }
}
