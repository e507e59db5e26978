//! A small userfaultfd: pages whose first touch waits until this process supplies them, the
//! faults they raise, and supplying a page (which wakes whoever waits on it). Faults the kernel
//! takes on a syscall's behalf (`copy_from_user`) are handled too, so a syscall that reads such
//! a page waits inside the kernel until the page is supplied.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use linux_raw_sys::{general as uapi, ioctl};

/// An anonymous private mapping, unmapped when dropped.
pub struct Mapping {
    start: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; the pointer is only an address.
unsafe impl Send for Mapping {}
// SAFETY: as above; this type never reads or writes through the pointer itself.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `pages` fresh pages, readable and writable, not yet populated.
    pub fn anonymous(pages: usize) -> io::Result<Self> {
        let len = pages.max(1) * page_size();
        // SAFETY: a new anonymous mapping at an address the kernel picks; no existing memory is
        // touched.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            start: start.cast(),
            len,
        })
    }

    /// The address of page `index`.
    pub fn page(&self, index: usize) -> *mut u8 {
        assert!(
            index * page_size() < self.len,
            "page {index} is outside the mapping"
        );
        self.start.wrapping_add(index * page_size())
    }

    /// Which page holds `address`, if it is inside the mapping.
    pub fn page_index(&self, address: u64) -> Option<usize> {
        let offset = usize::try_from(address)
            .ok()?
            .checked_sub(self.start as usize)?;
        (offset < self.len).then(|| offset / page_size())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range mmap returned, unmapped once; nothing borrows it any more.
        unsafe { libc::munmap(self.start.cast(), self.len) };
    }
}

/// The system's page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory arguments.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// A page fault reported by the userfaultfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The faulting address.
    pub address: u64,
    /// The thread that faulted.
    pub tid: u32,
}

/// A userfaultfd that also handles faults taken in kernel mode.
pub struct UserFaultFd {
    fd: OwnedFd,
}

impl UserFaultFd {
    /// Opens one. Kernel-mode faults need CAP_SYS_PTRACE unless `vm.unprivileged_userfaultfd`
    /// is 1 (without them the kernel would fail the syscall with EFAULT instead of waiting).
    pub fn open() -> io::Result<Self> {
        // SAFETY: a plain syscall with an integer flag; it returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
        if fd < 0 {
            let error = io::Error::last_os_error();
            return Err(match error.raw_os_error() {
                Some(libc::EPERM) => io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "handling kernel-mode faults needs CAP_SYS_PTRACE (run as root) or sysctl vm.unprivileged_userfaultfd=1",
                ),
                _ => error,
            });
        }
        // SAFETY: the syscall just returned this fd; nothing else owns it.
        let uffd = Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
        };
        let mut api = uapi::uffdio_api {
            api: u64::from(uapi::UFFD_API),
            features: u64::from(uapi::UFFD_FEATURE_THREAD_ID),
            ioctls: 0,
        };
        uffd.ioctl(ioctl::UFFDIO_API, &mut api)?;
        Ok(uffd)
    }

    /// Registers every page of `mapping`: a touch of a page not yet supplied raises a fault.
    pub fn register(&self, mapping: &Mapping) -> io::Result<()> {
        let mut register = uapi::uffdio_register {
            range: uapi::uffdio_range {
                start: mapping.start as u64,
                len: mapping.len as u64,
            },
            mode: u64::from(uapi::UFFDIO_REGISTER_MODE_MISSING),
            ioctls: 0,
        };
        self.ioctl(ioctl::UFFDIO_REGISTER, &mut register)
    }

    /// The next fault, or `None` if none comes within `timeout`.
    pub fn next_fault(&self, timeout: Duration) -> io::Result<Option<Fault>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pollfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let millis = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd, count 1.
            match unsafe { libc::poll(&mut pollfd, 1, millis) } {
                0 => return Ok(None),
                n if n < 0 => {
                    let error = io::Error::last_os_error();
                    if error.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(error);
                }
                _ => {}
            }
            // SAFETY: uffd_msg is plain data; read below fills it.
            let mut message: uapi::uffd_msg = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<uapi::uffd_msg>();
            // SAFETY: `message` is a writable buffer of exactly `size` bytes.
            let got = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut message as *mut uapi::uffd_msg).cast(),
                    size,
                )
            };
            if got < 0 {
                let error = io::Error::last_os_error();
                if matches!(
                    error.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) {
                    continue;
                }
                return Err(error);
            }
            if got as usize != size || u32::from(message.event) != uapi::UFFD_EVENT_PAGEFAULT {
                // Only page faults are enabled; anything else is not ours to answer.
                continue;
            }
            // SAFETY: the event is a page fault, so `pagefault` is the union member the kernel
            // wrote, and UFFD_FEATURE_THREAD_ID makes `ptid` the member of its `feat` union.
            let (address, tid) = unsafe {
                (
                    message.arg.pagefault.address,
                    message.arg.pagefault.feat.ptid,
                )
            };
            return Ok(Some(Fault { address, tid }));
        }
    }

    /// Fills page `index` of `mapping` with `contents` (at most a page) and wakes the threads
    /// waiting on it.
    pub fn supply(&self, mapping: &Mapping, index: usize, contents: &[u8]) -> io::Result<()> {
        let size = page_size();
        assert!(contents.len() <= size, "more than a page of contents");
        // The source must be a whole page of our own, outside the registered range.
        let source = Mapping::anonymous(1)?;
        // SAFETY: `source` is a fresh, writable page of `size` bytes and `contents` fits in it;
        // the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(contents.as_ptr(), source.start, contents.len()) };
        let mut copy = uapi::uffdio_copy {
            dst: mapping.page(index) as u64,
            src: source.start as u64,
            len: size as u64,
            mode: 0,
            copy: 0,
        };
        match self.ioctl(ioctl::UFFDIO_COPY, &mut copy) {
            // Already supplied: nothing waits on it.
            Err(error) if error.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    fn ioctl<T>(&self, request: u32, argument: &mut T) -> io::Result<()> {
        // SAFETY: every request used here takes a pointer to the uapi struct passed with it,
        // which lives for the duration of the call.
        let rc = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                request as libc::c_ulong,
                (argument as *mut T).cast::<libc::c_void>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touched_page_waits_until_supplied() {
        let uffd = UserFaultFd::open()
            .expect("userfaultfd for kernel-mode faults: run the tests as root (CI does)");
        let pages = Mapping::anonymous(2).expect("mmap");
        uffd.register(&pages).expect("register");
        let address = pages.page(1) as usize;
        let reader = std::thread::spawn(move || {
            // SAFETY: page 1 of a live mapping; the read waits until the page is supplied.
            unsafe { std::ptr::read_volatile((address + 8) as *const u64) }
        });
        let fault = uffd
            .next_fault(Duration::from_secs(10))
            .expect("poll")
            .expect("the reader faults");
        assert_eq!(pages.page_index(fault.address), Some(1));
        assert_ne!(fault.tid, 0);
        let mut contents = [0u8; 16];
        contents[8..].copy_from_slice(&0x1234u64.to_ne_bytes());
        uffd.supply(&pages, 1, &contents).expect("supply");
        assert_eq!(reader.join().expect("reader"), 0x1234);
        assert_eq!(pages.page_index(0), None);
    }
}
