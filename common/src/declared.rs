//! Declared probes: what a generic program reads at a call's entry is data the agent writes into
//! [`DECLARED_SYSCALLS_MAP`] and [`DECLARED_MAP`] (one [`DeclaredProbe`] per hooked syscall or
//! function), never code per probe.
//! Each thread keeps its open calls as a small stack ([`CallStack`]) in its task storage, so a
//! declared call made inside another on the same thread pairs with its own return and knows its
//! parent; each return sends one [`DeclaredEvent`].

/// Name of the hash map from a kernel function's hook ([`function_key`]) to its
/// [`DeclaredProbe`].
pub const DECLARED_MAP: &str = "DECLARED";
/// Name of the array of [`DeclaredProbe`]s by syscall number ([`syscall_key`]): an array lookup
/// is a bounds check and an add, where a hash lookup is a call.
pub const DECLARED_SYSCALLS_MAP: &str = "DECLARED_SYSCALLS";
/// Slots of [`DECLARED_SYSCALLS_MAP`]: above every syscall number (x86_64's are below 512), and
/// below every kernel address, so a key below it is a syscall's.
pub const SYSCALL_SLOTS: u32 = 1024;
/// Most probes one agent declares (hooks in [`DECLARED_MAP`]).
pub const MAX_DECLARED_PROBES: u32 = 64;
/// Most arguments a probe captures: a syscall has at most six, so does a register-passed call.
pub const MAX_ARGS: usize = 6;
/// Most strings a probe reads per call.
pub const MAX_STRINGS: usize = 2;
/// Bytes kept of each string, its NUL included: longer ones are cut and marked truncated.
pub const STRING_BYTES: usize = 256;
/// Most declared calls open at once on one thread (a call inside a call inside ...): deeper
/// entries are counted as lost, and so are their returns.
pub const MAX_DEPTH: usize = 8;
// The probes index the stack with a mask.
const _: () = assert!(MAX_DEPTH.is_power_of_two());
/// Most pointers an argument's member path goes through (`file->f_path.dentry->d_name.name`
/// goes through two).
pub const MAX_HOPS: usize = 4;
/// Name of the per-CPU array of per-probe counters: slot `probe * Counter::SLOTS + counter`.
pub const DECLARED_COUNTERS_MAP: &str = "DECLARED_COUNTERS";

/// The [`DECLARED_MAP`] key of a syscall's tracepoints: the syscall's number, which their records
/// carry (the event id, `common_type`, is not: BPF programs get the registers in its place).
pub const fn syscall_key(number: u32) -> u64 {
    number as u64
}

/// The [`DECLARED_MAP`] key of a kernel function probed with kprobes: its address
/// (`bpf_get_func_ip`), which is never below 2^32 where syscall numbers and fentry slots are.
pub const fn function_key(address: u64) -> u64 {
    address
}

/// The [`DECLARED_MAP`] key of the function fentry pair `slot` hooks: each pair is loaded for
/// one function, so its slot names it, and no address is needed (the kernel hides them from
/// processes without `CAP_SYSLOG`).
pub const fn fentry_key(slot: usize) -> u64 {
    SYSCALL_SLOTS as u64 + slot as u64
}

/// [`CapturedArgs::syscall`] when the probe does not record it.
pub const NO_SYSCALL: u32 = u32::MAX;

/// Most declared kernel functions probed with fentry at once: a tracing program is loaded for
/// one target, so the probes object carries this many identical fentry/fexit pairs
/// ([`crate::programs::DECLARED_FENTRY`]); past them, functions are probed with kprobes.
pub const MAX_FENTRY_PROBES: usize = 8;

/// How an argument's value is read at entry.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, num_enum::TryFromPrimitive)]
pub enum ArgRead {
    /// Not captured.
    #[default]
    Skip = 0,
    /// The 8-byte value (user space narrows it to the argument's type).
    Value = 1,
    /// A NUL-terminated string in the caller's memory, at the value's address.
    UserString = 2,
    /// A NUL-terminated string in kernel memory, at the value's address.
    KernelString = 3,
    /// A string in kernel memory, else in the caller's (a kernel function's `char *` whose BTF
    /// does not say which).
    AnyString = 4,
}

/// One argument a probe captures.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgSpec {
    /// An [`ArgRead`] value.
    pub read: u8,
    /// For strings: which of the call's [`MAX_STRINGS`] string slots receives it.
    pub string_slot: u8,
    /// How many of `offsets` to follow: a member path through pointers.
    pub hops: u8,
    /// 1: the member path's pointers point into the caller's memory (a syscall's arguments).
    pub user_memory: u8,
    /// Each hop: the value becomes the 8 bytes at (value + offset), a member's offset in the
    /// struct the value points to (BTF-resolved by the agent).
    pub offsets: [u16; MAX_HOPS],
    /// 0: the member path is always followed; `n`: only when argument `n - 1` (one without a
    /// member path) equals `only_if_value`, as the kernel reads a buffer only when its size
    /// argument is right. Not followed, the argument is marked skipped.
    pub only_if: u8,
    /// Explicit padding.
    pub _pad: u8,
    /// The value `only_if`'s argument must have.
    pub only_if_value: u16,
}

impl ArgSpec {
    /// Whether the argument is read as a string.
    pub fn is_string(&self) -> bool {
        [
            ArgRead::UserString,
            ArgRead::KernelString,
            ArgRead::AnyString,
        ]
        .iter()
        .any(|read| self.read == *read as u8)
    }
}

/// What a generic program captures for one hook.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeclaredProbe {
    /// The probe's index in the agent's table: events and counters carry it.
    pub probe: u32,
    /// How many leading arguments are read (the rest of `args` is [`ArgRead::Skip`]).
    pub arg_count: u16,
    /// 1: a probe is declared here (an array slot reads all zero until one is).
    pub declared: u8,
    /// 1: a kernel function's entry records the syscall its caller is in (one function reached
    /// from several syscalls, told apart by it). A syscall's own probes always know theirs.
    pub reads_syscall: u8,
    /// One past the last argument that has a member path, 0 for none (derived from `args` by
    /// [`Self::summarized`]): an entry looks at no argument past it.
    pub member_paths_end: u8,
    /// One past the last argument read as a string, 0 for none (derived likewise).
    pub strings_end: u8,
    /// Explicit padding.
    pub _pad: [u8; 6],
    /// Per argument, by position.
    pub args: [ArgSpec; MAX_ARGS],
}

impl DeclaredProbe {
    /// With [`Self::member_paths_end`] and [`Self::strings_end`] derived from `args`: an
    /// entry skips the arguments that need nothing beyond their value (each one looked at costs
    /// the traced call).
    pub fn summarized(mut self) -> Self {
        let end = |wanted: fn(&ArgSpec) -> bool| {
            let last = self.args.iter().rposition(wanted);
            last.map_or(0, |position| position as u8 + 1)
        };
        self.member_paths_end = end(|arg| arg.hops != 0);
        self.strings_end = end(ArgSpec::is_string);
        self
    }
}

/// A string read at entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapturedString {
    /// Bytes read, its NUL included; 0 when nothing was read; negative: the read failed.
    pub len: i32,
    /// Explicit padding.
    pub _pad: u32,
    /// The bytes; `len == STRING_BYTES` with a NUL last may be a cut string.
    pub bytes: [u8; STRING_BYTES],
}

/// What a call's entry captured: copied whole from the thread's stack into its event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapturedArgs {
    /// The arguments' raw values, by position (a string argument: its address; a member path:
    /// the member's value).
    pub values: [u64; MAX_ARGS],
    /// Bit per argument: its member path could not be followed (a pointer on it was bad).
    pub unreadable: u16,
    /// Bit per argument: its member path was not followed (its `only_if` did not hold).
    pub skipped: u16,
    /// The syscall the call was made in ([`NO_SYSCALL`] when not recorded).
    pub syscall: u32,
    /// The strings, by slot.
    pub strings: [CapturedString; MAX_STRINGS],
}

/// One open call on a thread's stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenCall {
    /// `bpf_ktime_get_boot_ns()` at entry.
    pub start_boot_ns: u64,
    /// Its hook's key: a return pairs with it only if it is the same hook's.
    pub key: u64,
    /// Where its frame is on the kernel stack (a function's stack pointer at entry; the top of
    /// the address space for a syscall, below which everything it calls runs).
    pub stack_pointer: u64,
    /// The probe's index.
    pub probe: u32,
    /// A [`crate::ProbeKind`] value.
    pub kind: u8,
    /// Whether the probe reads strings: its event then carries them.
    pub has_strings: u8,
    /// Explicit padding.
    pub _pad: [u8; 2],
    /// What its entry captured.
    pub captured: CapturedArgs,
}

/// A thread's open declared calls, innermost last, in its task storage.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallStack {
    /// Calls open: `calls[..depth]`.
    pub depth: u32,
    /// Entries refused because the stack was full and not yet returned: their returns are
    /// dropped without popping.
    pub overflow: u32,
    /// The open calls.
    pub calls: [OpenCall; MAX_DEPTH],
}

/// One complete declared call, paired in the kernel: the caller's identity, its place in the thread's stack, and what its entry captured.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeclaredEvent {
    /// `bpf_ktime_get_boot_ns()` at entry.
    pub start_boot_ns: u64,
    /// At return.
    pub end_boot_ns: u64,
    /// Entry time of the call this one was made in on the same thread; 0 at the stack's bottom.
    pub parent_start_boot_ns: u64,
    /// Entry time of the bottom call of the thread's stack (this call's own when it is it).
    pub root_start_boot_ns: u64,
    /// The raw return value (`long` for syscalls, the return register for functions).
    pub ret: i64,
    /// The caller's cgroup v2 id.
    pub cgroup_id: u64,
    /// The probe's index.
    pub probe: u32,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real uid.
    pub uid: u32,
    /// Effective uid.
    pub euid: u32,
    /// A [`crate::ProbeKind`] value.
    pub kind: u8,
    /// Calls open below this one on the thread when it started (0: none).
    pub depth: u8,
    /// Length of `exe_name` (0: unknown).
    pub exe_name_len: u8,
    /// Explicit padding.
    pub _pad: u8,
    /// The thread's `comm`.
    pub comm: [u8; crate::COMM_LEN],
    /// The executable's basename.
    pub exe_name: [u8; crate::EXE_NAME_LEN],
    /// What the entry captured.
    pub captured: CapturedArgs,
}

/// Bytes of a [`DeclaredEvent`] whose probe reads no strings: it ends before them (a quarter of
/// the whole, in the ring buffer and in the copies on both sides).
pub const DECLARED_EVENT_WITHOUT_STRINGS: usize =
    core::mem::offset_of!(DeclaredEvent, captured) + core::mem::offset_of!(CapturedArgs, strings);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `repr(C)` structs of plain integers without padding holes: any bit pattern is valid.
    unsafe impl aya::Pod for super::DeclaredProbe {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DeclaredEvent {}
}

// Both sides read these as raw bytes: no implicit padding.
const _: () = assert!(core::mem::size_of::<ArgSpec>() == 16);
const _: () = assert!(core::mem::size_of::<DeclaredProbe>() == 112);
const _: () = assert!(core::mem::size_of::<CapturedString>() == 8 + STRING_BYTES);
const _: () = assert!(core::mem::size_of::<CapturedArgs>() == 56 + 2 * (8 + STRING_BYTES));
const _: () = assert!(core::mem::size_of::<OpenCall>() == 32 + 584);
const _: () = assert!(core::mem::size_of::<DeclaredEvent>() == 128 + 584);
const _: () = assert!(DECLARED_EVENT_WITHOUT_STRINGS == 128 + 56);
const _: () = assert!(DECLARED_EVENT_WITHOUT_STRINGS.is_multiple_of(8));
