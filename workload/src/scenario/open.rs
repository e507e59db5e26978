//! `open`: threads released together, each making openat calls through the raw syscall in a
//! cycle of cases a declared probe on openat must show exactly: opens and creates that return
//! an fd (through AT_FDCWD and through a directory fd), paths longer than a probe's string bound,
//! an unreadable path pointer and the errors ENOENT, ENAMETOOLONG, EFAULT and ENOTDIR. The
//! calls go to the declared manifest. Told the kernel function openat runs (`--openat-inner`),
//! it records that call as each openat's child and makes each open once more through openat2,
//! which reaches the same function from a second syscall.
//!
//! A scenario thread makes no other openat call: its identity is read through syscalls that
//! open nothing, the files are made before the threads start and removed after they end, and
//! each returned fd is closed with close(2).

use super::{on_threads, Scenario};
use crate::error::WorkloadError;
use crate::manifest::declared::{DeclaredArg, DeclaredCall};
use crate::manifest::{CallerIdentity, ManifestError};
use crate::record::Recorder;
use crate::sys;
use libc::{
    AT_FDCWD, O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDONLY, O_RDWR,
    O_WRONLY,
};
use nix::errno::Errno::{self, EFAULT, ENAMETOOLONG, ENOENT, ENOTDIR};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The syscall this scenario makes, as its tracepoints name it.
const SYSCALL: &str = "openat";

/// A path at least this long (without its NUL) is longer than a probe's 256-byte string bound.
const LONG_PATH: usize = 300;

/// The name of a path component longer than NAME_MAX (255): ENAMETOOLONG.
const LONG_NAME_LEN: usize = 300;

/// The kernel's `O_LARGEFILE` (libc says 0 on 64-bit targets, where the kernel sets it itself).
const KERNEL_O_LARGEFILE: i32 = 0o100000;

/// An address no process maps: the kernel cannot read a path from it (EFAULT).
const UNREADABLE_POINTER: u64 = 1;

/// How long after the start the threads are let go together; a thread that starts later (on a
/// very busy machine) just starts at once.
const RELEASE_AFTER: Duration = Duration::from_millis(50);

/// Runs `threads` threads of `calls_per_thread` openat calls each, recording what `extras`
/// asks for besides.
pub fn run(
    recorder: &Recorder,
    threads: usize,
    calls_per_thread: u64,
    extras: Extras<'_>,
) -> Result<(), WorkloadError> {
    let files = Files::create()?;
    let process = CallerIdentity::current();
    let release_at = Instant::now() + RELEASE_AFTER;
    on_threads(Scenario::Open, threads, |index| {
        let caller = process.on_this_thread();
        std::thread::sleep(release_at.saturating_duration_since(Instant::now()));
        for k in 0..calls_per_thread {
            let case = Case::ALL[k as usize % Case::ALL.len()];
            call(recorder, &caller, &files.open_call(case, index, k), extras)?;
        }
        Ok(())
    })
}

/// The kinds of call each thread cycles through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// An existing file by its absolute path, from AT_FDCWD.
    Existing,
    /// A new file (O_CREAT|O_EXCL, mode 0640) relative to the directory fd.
    Create,
    /// An existing file relative to the directory fd, read-write.
    Relative,
    /// A name that does not exist: ENOENT.
    Missing,
    /// A real file whose absolute path is longer than a probe's string bound, from AT_FDCWD.
    LongPath,
    /// A component longer than NAME_MAX: ENAMETOOLONG, with a path longer than the bound.
    LongName,
    /// A path pointer the kernel cannot read: EFAULT.
    Unreadable,
    /// O_DIRECTORY on a regular file: ENOTDIR.
    NotDirectory,
}

impl Case {
    const ALL: [Case; 8] = [
        Case::Existing,
        Case::Create,
        Case::Relative,
        Case::Missing,
        Case::LongPath,
        Case::LongName,
        Case::Unreadable,
        Case::NotDirectory,
    ];
}

/// The scenario's files: a temporary directory (removed on drop), a file in it and a file at
/// the end of a long path below it, and the directory open as a directory fd.
struct Files {
    dir: PathBuf,
    dir_fd: File,
    existing: PathBuf,
    long_path: PathBuf,
}

impl Files {
    fn create() -> Result<Self, WorkloadError> {
        // One directory per run, so that runs in one process (tests) do not share files.
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "signalfd-workload-open-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let setup = |what: &'static str| move |source| WorkloadError::Setup { what, source };
        std::fs::create_dir_all(&dir).map_err(setup("create the open scenario's directory"))?;
        let mut long_dir = dir.clone();
        while long_dir.as_os_str().len() + 1 + 100 < LONG_PATH {
            long_dir.push("d".repeat(100));
        }
        let files = Self {
            dir_fd: File::open(&dir).map_err(setup("open the open scenario's directory"))?,
            existing: dir.join("existing"),
            long_path: long_dir.join("f".repeat(100)),
            dir,
        };
        // From here on, a failure removes the directory (`files` is dropped).
        File::create(&files.existing).map_err(setup("create the open scenario's file"))?;
        std::fs::create_dir_all(&long_dir)
            .map_err(setup("create the open scenario's long directory path"))?;
        File::create(&files.long_path)
            .map_err(setup("create the open scenario's file at a long path"))?;
        Ok(files)
    }

    /// Call `k` of thread `index`.
    fn open_call(&self, case: Case, index: usize, k: u64) -> OpenCall {
        let dir_fd = self.dir_fd.as_raw_fd();
        let ok = Ok(());
        let (dfd, path, flags, mode, expect) = match case {
            Case::Existing => (AT_FDCWD, path(&self.existing), O_RDONLY | O_CLOEXEC, 0, ok),
            Case::Create => (
                dir_fd,
                Some(format!("created-{index}-{k}")),
                O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                0o640,
                ok,
            ),
            Case::Relative => (
                dir_fd,
                name("existing"),
                O_RDWR | O_APPEND | O_NOFOLLOW,
                0,
                ok,
            ),
            Case::Missing => (dir_fd, name("missing"), O_RDONLY, 0, Err(ENOENT)),
            Case::LongPath => (AT_FDCWD, path(&self.long_path), O_RDONLY | O_CLOEXEC, 0, ok),
            Case::LongName => (
                dir_fd,
                Some("n".repeat(LONG_NAME_LEN)),
                O_RDONLY,
                0,
                Err(ENAMETOOLONG),
            ),
            Case::Unreadable => (AT_FDCWD, None, O_RDONLY, 0, Err(EFAULT)),
            Case::NotDirectory => (
                dir_fd,
                name("existing"),
                O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                0,
                Err(ENOTDIR),
            ),
        };
        OpenCall {
            dfd,
            path,
            flags,
            mode,
            expect,
        }
    }
}

fn path(path: &Path) -> Option<String> {
    // The scenario's paths are made of ASCII names below the temp dir.
    Some(path.to_string_lossy().into_owned())
}

fn name(name: &str) -> Option<String> {
    Some(name.to_string())
}

impl Drop for Files {
    fn drop(&mut self) {
        // Left behind only if it cannot be removed; nothing to report it to.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One openat call to make.
#[derive(Debug)]
struct OpenCall {
    dfd: RawFd,
    /// The path passed, or `None` for the unreadable pointer.
    path: Option<String>,
    flags: i32,
    mode: u32,
    /// Success (an fd), or this errno.
    expect: Result<(), Errno>,
}

impl OpenCall {
    /// The same open again: a file it creates gets a name of its own (it is created `O_EXCL`).
    fn again(&self) -> OpenCall {
        let path = match self.flags & O_CREAT {
            0 => self.path.clone(),
            _ => self.path.as_ref().map(|path| format!("{path}-again")),
        };
        OpenCall {
            path,
            dfd: self.dfd,
            flags: self.flags,
            mode: self.mode,
            expect: self.expect,
        }
    }
}

/// The syscall that makes an open.
#[derive(Clone, Copy)]
enum Through {
    Openat,
    Openat2,
}

/// Makes the call through `through`, closes the fd it returns, and says whether the kernel
/// answered as expected.
fn make(
    open: &OpenCall,
    through: Through,
) -> (sys::TimedResult, impl Fn(&DeclaredCall) -> Option<String>) {
    // The scenario's paths have no NUL byte.
    let path = open
        .path
        .as_deref()
        .map(|path| CString::new(path).unwrap_or_default());
    let pointer = path
        .as_ref()
        .map_or(UNREADABLE_POINTER as *const libc::c_char, |p| p.as_ptr());
    let timed = match through {
        Through::Openat => sys::timed_openat(open.dfd, pointer, open.flags, open.mode),
        Through::Openat2 => sys::timed_openat2(open.dfd, pointer, open.flags, open.mode),
    };
    if let Ok(fd) = timed.result {
        // SAFETY: the kernel just returned this fd and nothing else owns it; dropping it
        // closes it (close, not openat).
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let (expect, result) = (open.expect, timed.result);
    let problem = move |record: &DeclaredCall| match (expect, result) {
        (Ok(()), Ok(_)) => None,
        (Err(want), Err(got)) if want == got => None,
        (Ok(()), Err(got)) => Some(format!("{record}: expected an fd, got {got:?}")),
        (Err(want), got) => Some(format!("{record}: expected {want:?}, got {got:?}")),
    };
    (timed, problem)
}

/// `filename` as a probe reads it.
fn filename_arg(open: &OpenCall) -> DeclaredArg {
    match &open.path {
        Some(path) => DeclaredArg::user_string("filename", path),
        None => DeclaredArg::unreadable("filename", UNREADABLE_POINTER),
    }
}

/// `do_sys_openat2(dfd, filename, how)` of an open: the syscall's first two arguments, and
/// `how->flags` as openat and openat2 fill it: the flags with O_LARGEFILE, which both force on
/// 64-bit kernels (every flag the scenario passes is a valid open flag).
fn inner_args(open: &OpenCall) -> Vec<DeclaredArg> {
    vec![
        DeclaredArg::int("dfd", open.dfd.into()),
        filename_arg(open),
        DeclaredArg::int("how->flags", i64::from(open.flags | KERNEL_O_LARGEFILE)),
    ]
}

/// `record` with the answer and clock readings of `timed`.
fn answered(record: DeclaredCall, timed: &sys::TimedResult) -> DeclaredCall {
    DeclaredCall {
        ret: timed
            .result
            .map_or_else(|errno| -i64::from(errno as i32), i64::from),
        errno_name: timed.result.err().map(|errno| format!("{errno:?}")),
        wall_before_ns: timed.wall_before_ns,
        wall_after_ns: timed.wall_after_ns,
        ..record
    }
}

/// What the scenario records besides each openat call.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras<'a> {
    /// The kernel function openat runs: recorded as each openat's child, and the open is made
    /// again through openat2, which reaches the same function from a second syscall.
    pub inner: Option<&'a str>,
    /// Each open made again through openat2, recorded as an openat2 call (the parent of the
    /// inner function's call, if one is named).
    pub openat2: bool,
}

/// Makes the open through openat and records it (with a problem if the kernel answered
/// otherwise than expected), with what `extras` asks for.
fn call(
    recorder: &Recorder,
    caller: &CallerIdentity,
    open: &OpenCall,
    extras: Extras<'_>,
) -> Result<(), ManifestError> {
    let seq = recorder.next_seq();
    let (timed, problem) = make(open, Through::Openat);
    let record = DeclaredCall {
        seq,
        scenario: Scenario::Open.name().to_string(),
        caller: caller.clone(),
        syscall: SYSCALL.to_string(),
        args: vec![
            DeclaredArg::int("dfd", open.dfd.into()),
            filename_arg(open),
            DeclaredArg::int("flags", open.flags.into()),
            DeclaredArg::int("mode", open.mode.into()),
        ],
        ret: 0,
        errno_name: None,
        wall_before_ns: 0,
        wall_after_ns: 0,
        parent_seq: None,
        kernel_function: false,
    };
    let record = answered(record, &timed);
    let problem = problem(&record);
    if let Some(function) = extras.inner {
        let child = DeclaredCall {
            seq: recorder.next_seq(),
            syscall: function.to_string(),
            args: inner_args(open),
            parent_seq: Some(seq),
            kernel_function: true,
            ..record.clone()
        };
        recorder.record_inner(&child)?;
    }
    recorder.record_declared(&record, Scenario::Open, problem)?;
    if extras.inner.is_none() && !extras.openat2 {
        return Ok(());
    }

    let again = open.again();
    let seq = recorder.next_seq();
    let (timed, problem) = make(&again, Through::Openat2);
    // `how->flags` as the caller passed them: the syscall reads them from its memory.
    let openat2 = DeclaredCall {
        seq,
        syscall: "openat2".to_string(),
        args: vec![
            DeclaredArg::int("dfd", again.dfd.into()),
            filename_arg(&again),
            DeclaredArg::int("how->flags", again.flags.into()),
        ],
        ..answered(record, &timed)
    };
    let problem = problem(&openat2);
    let Some(function) = extras.inner else {
        return recorder.record_declared(&openat2, Scenario::Open, problem);
    };
    let inner = DeclaredCall {
        seq: if extras.openat2 {
            recorder.next_seq()
        } else {
            seq
        },
        syscall: function.to_string(),
        args: inner_args(&again),
        parent_seq: extras.openat2.then_some(seq),
        kernel_function: true,
        ..openat2.clone()
    };
    if extras.openat2 {
        recorder.record_inner(&inner)?;
        recorder.record_declared(&openat2, Scenario::Open, problem)
    } else {
        recorder.record_declared(&inner, Scenario::Open, problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;
    use crate::manifest::declared::ArgValue;
    use crate::manifest::read_records;
    use crate::test_support::TempPath;
    use std::collections::BTreeMap;

    fn run_open(threads: usize, calls: u64) -> Vec<DeclaredCall> {
        let records = run_open_with(threads, calls, None, false);
        assert!(records.iter().all(|record| record.parent_seq.is_none()));
        records
    }

    fn run_open_with(
        threads: usize,
        calls: u64,
        inner: Option<&str>,
        openat2: bool,
    ) -> Vec<DeclaredCall> {
        let path = TempPath::new("open");
        let config = RunConfig {
            scenarios: vec![Scenario::Open],
            threads,
            calls,
            declared_manifest: Some(path.as_ref().to_path_buf()),
            openat_inner: inner.map(str::to_string),
            openat2,
            ..RunConfig::default()
        };
        let summary = crate::run(&config).expect("run");
        assert!(summary.all_as_expected(), "{:#?}", summary.problems);
        let mut records: Vec<DeclaredCall> = read_records(path.as_ref()).expect("read");
        // Per open: the openat call, its inner function's call, and the open again through
        // openat2 (recorded as openat2, as the inner function, or as both).
        let calls_per_open = if inner.is_some() || openat2 { 2 } else { 1 };
        let records_per_open = 1 + usize::from(inner.is_some()) * 2 + usize::from(openat2);
        assert_eq!(
            summary.calls as usize / calls_per_open * records_per_open,
            records.len()
        );
        records.sort_by_key(|r| r.seq);
        records
    }

    #[test]
    fn openat2_calls_are_recorded_as_the_caller_passed_them_and_as_their_inner_call_s_parent() {
        // One thread: its openat and openat2 calls alternate.
        let records = run_open_with(1, 8, None, true);
        let openat2: Vec<&DeclaredCall> =
            records.iter().filter(|r| r.syscall == "openat2").collect();
        assert_eq!(openat2.len(), 8);
        for (call, openat) in openat2
            .iter()
            .zip(records.iter().filter(|r| r.syscall == "openat"))
        {
            let names: Vec<&str> = call.args.iter().map(|a| a.name.as_str()).collect();
            assert_eq!(names, ["dfd", "filename", "how->flags"]);
            // Without O_LARGEFILE: the kernel adds it to its own copy only.
            assert_eq!(
                call.args[2].value, openat.args[2].value,
                "{call} vs {openat}"
            );
            assert_eq!((call.parent_seq, call.kernel_function), (None, false));
        }
        let both = run_open_with(1, 8, Some("do_sys_openat2"), true);
        let by_seq: BTreeMap<u64, &DeclaredCall> = both.iter().map(|r| (r.seq, r)).collect();
        let inner: Vec<&str> = both
            .iter()
            .filter(|r| r.kernel_function)
            .map(|r| by_seq[&r.parent_seq.expect("a parent")].syscall.as_str())
            .collect();
        assert_eq!(inner, [["openat", "openat2"]; 8].concat());
    }

    fn filename(call: &DeclaredCall) -> &ArgValue {
        &call.args[1].value
    }

    #[test]
    fn an_inner_function_is_recorded_as_each_call_s_child_with_its_first_arguments() {
        let records = run_open_with(2, 8, Some("do_sys_openat2"), false);
        let calls: BTreeMap<u64, &DeclaredCall> = records
            .iter()
            .filter(|record| record.syscall == "openat")
            .map(|record| (record.seq, record))
            .collect();
        let (children, through_openat2): (Vec<&DeclaredCall>, Vec<&DeclaredCall>) = records
            .iter()
            .filter(|record| record.syscall == "do_sys_openat2")
            .partition(|record| record.parent_seq.is_some());
        assert_eq!(
            (calls.len(), children.len(), through_openat2.len()),
            (16, 16, 16)
        );
        // The same opens through openat2: the same answers, files created under names of
        // their own.
        let mut answers: Vec<(String, i64)> = through_openat2
            .iter()
            .map(|call| {
                let filename = format!("{:?}", call.args[1].value).replace("-again", "");
                (filename, call.ret.min(0))
            })
            .collect();
        let mut expected: Vec<(String, i64)> = children
            .iter()
            .map(|call| (format!("{:?}", call.args[1].value), call.ret.min(0)))
            .collect();
        answers.sort();
        expected.sort();
        assert_eq!(answers, expected);
        for child in children {
            let parent = calls[&child.parent_seq.expect("a parent")];
            assert_eq!(child.args[..2], parent.args[..2], "{child}");
            let flags = match parent.args[2].value {
                ArgValue::Int(flags) => flags,
                _ => panic!("flags are a number: {parent}"),
            };
            assert_eq!(
                child.args[2],
                DeclaredArg::int("how->flags", flags | 0o100000)
            );
            assert_eq!(
                (
                    child.ret,
                    &child.caller,
                    child.wall_before_ns,
                    child.wall_after_ns
                ),
                (
                    parent.ret,
                    &parent.caller,
                    parent.wall_before_ns,
                    parent.wall_after_ns
                )
            );
            assert_ne!(child.seq, parent.seq);
        }
    }

    #[test]
    fn each_thread_cycles_through_every_case() {
        let records = run_open(3, 16);
        assert_eq!(records.len(), 48);
        let mut by_thread: BTreeMap<u32, Vec<&DeclaredCall>> = BTreeMap::new();
        for r in &records {
            assert_eq!(
                (r.scenario.as_str(), r.syscall.as_str()),
                ("open", "openat")
            );
            assert_eq!(r.caller.pid, std::process::id());
            assert!(r.wall_before_ns <= r.wall_after_ns, "{r:?}");
            assert_eq!(r.failed(), r.errno_name.is_some(), "{r:?}");
            let names: Vec<&str> = r.args.iter().map(|a| a.name.as_str()).collect();
            assert_eq!(names, ["dfd", "filename", "flags", "mode"]);
            by_thread.entry(r.caller.tid).or_default().push(r);
        }
        let names: Vec<&str> = by_thread
            .values()
            .map(|calls| calls[0].caller.thread_name.as_str())
            .collect();
        assert_eq!(
            names
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            ["open-0", "open-1", "open-2"].into()
        );
        for calls in by_thread.values() {
            let outcomes: Vec<&str> = calls
                .iter()
                .take(8)
                .map(|r| r.errno_name.as_deref().unwrap_or("fd"))
                .collect();
            assert_eq!(
                outcomes,
                [
                    "fd",
                    "fd",
                    "fd",
                    "ENOENT",
                    "fd",
                    "ENAMETOOLONG",
                    "EFAULT",
                    "ENOTDIR"
                ]
            );
            assert_eq!(calls[0].args[0].value, ArgValue::Int(-100));
            assert_eq!(calls[1].args[3].value, ArgValue::Int(0o640));
            assert!(calls[1].args[0].value != ArgValue::Int(-100));
            for long in [calls[4], calls[5]] {
                let ArgValue::UserString(path) = filename(long) else {
                    panic!("a path: {long:?}");
                };
                assert!(path.len() >= LONG_PATH, "{path}");
            }
            assert_eq!(
                *filename(calls[6]),
                ArgValue::Unreadable(UNREADABLE_POINTER)
            );
            assert_eq!(calls[3].ret, -(ENOENT as i64));
            assert!(calls[0].ret >= 0);
        }
    }

    #[test]
    fn the_files_are_made_before_and_gone_after() {
        let files = Files::create().expect("files");
        let dir = files.dir.clone();
        assert!(files.existing.is_file() && files.long_path.is_file());
        assert!(files.long_path.as_os_str().len() >= LONG_PATH);
        let open = files.open_call(Case::Create, 2, 9);
        assert_eq!(open.path.as_deref(), Some("created-2-9"));
        drop(files);
        assert!(!dir.exists(), "{} is left over", dir.display());
    }
}
