//! The declared-call manifest: one [`DeclaredCall`] per call of a syscall that kspan traces
//! through a declared probe (`kspan --probe syscall:NAME`), each argument as it was passed, so
//! the judge can check a span's argument attributes, strings, result and time.

use super::CallerIdentity;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One syscall call exactly as the workload made it, and what the kernel answered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DeclaredCall {
    /// Order of the call in this run (unique across both manifests, taken just before the call).
    pub seq: u64,
    /// Name of the scenario that made the call.
    pub scenario: String,
    /// Who made it.
    #[serde(flatten)]
    pub caller: CallerIdentity,
    /// The syscall, as its tracepoints name it (`openat` for `sys_enter_openat`).
    pub syscall: String,
    /// Every argument the syscall's tracefs format names, in its order.
    pub args: Vec<DeclaredArg>,
    /// The raw return value: the result, or -errno.
    pub ret: i64,
    /// The errno's symbolic name when `ret` is negative, e.g. "ENOENT".
    pub errno_name: Option<String>,
    /// CLOCK_REALTIME in unix ns, read just before the syscall.
    pub wall_before_ns: u64,
    /// CLOCK_REALTIME in unix ns, read just after the syscall.
    pub wall_after_ns: u64,
    /// The `seq` of the record whose span must be this one's parent (a probed call made inside
    /// another on the same thread); `None`: the span has no parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_seq: Option<u64>,
    /// A kernel function the syscall ran (`syscall` names it), seen by a kprobe pair, rather
    /// than the syscall itself, seen by its tracepoints.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kernel_function: bool,
}

/// One argument of a [`DeclaredCall`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DeclaredArg {
    /// The argument's name in the tracefs format (`dfd`, `filename`, ...).
    pub name: String,
    /// What was passed.
    pub value: ArgValue,
}

impl DeclaredArg {
    /// An integer argument.
    pub fn int(name: &str, value: i64) -> Self {
        Self {
            name: name.to_string(),
            value: ArgValue::Int(value),
        }
    }

    /// A string argument in user memory.
    pub fn user_string(name: &str, value: &str) -> Self {
        Self {
            name: name.to_string(),
            value: ArgValue::UserString(value.to_string()),
        }
    }

    /// A string argument whose pointer cannot be read.
    pub fn unreadable(name: &str, pointer: u64) -> Self {
        Self {
            name: name.to_string(),
            value: ArgValue::Unreadable(pointer),
        }
    }
}

/// The value of an argument as the calling thread passed it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArgValue {
    /// An integer, sign-extended from its C type (AT_FDCWD is -100).
    Int(i64),
    /// A `const char *` into user memory: the whole string up to its NUL. A probe reads at most
    /// its bound of it; the judge applies the bound.
    UserString(String),
    /// A string pointer the kernel cannot read (the EFAULT case): the pointer passed.
    Unreadable(u64),
}

impl DeclaredCall {
    /// Whether the syscall failed (returned -errno).
    pub fn failed(&self) -> bool {
        self.ret < 0
    }
}

impl fmt::Display for DeclaredCall {
    /// `openat(dfd=-100, filename="/tmp/x", flags=524288, mode=0)`: the call, whole strings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.syscall)?;
        for (index, arg) in self.args.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}=", arg.name)?;
            match &arg.value {
                ArgValue::Int(value) => write!(f, "{value}")?,
                ArgValue::UserString(text) => write!(f, "{text:?}")?,
                ArgValue::Unreadable(pointer) => write!(f, "{pointer:#x}")?,
            }
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DeclaredCall {
        DeclaredCall {
            seq: 3,
            scenario: "open".into(),
            caller: CallerIdentity {
                pid: 10,
                tid: 11,
                uid: 0,
                euid: 0,
                thread_name: "open-0".into(),
                executable: "signalfd-workload".into(),
                cgroup_id: Some(1),
                cgroup_path: Some("/".into()),
            },
            syscall: "openat".into(),
            args: vec![
                DeclaredArg::int("dfd", -100),
                DeclaredArg::user_string("filename", "/tmp/x"),
                DeclaredArg::int("flags", 0o2000000),
                DeclaredArg::int("mode", 0),
            ],
            ret: -2,
            errno_name: Some("ENOENT".into()),
            wall_before_ns: 1_700_000_000_000_000_000,
            wall_after_ns: 1_700_000_000_000_000_500,
            parent_seq: None,
            kernel_function: false,
        }
    }

    #[test]
    fn a_record_reads_back_equal_with_the_caller_inline() {
        let mut unreadable = record();
        unreadable.args[1] = DeclaredArg::unreadable("filename", 1);
        unreadable.parent_seq = Some(2);
        for written in [record(), unreadable] {
            let json = serde_json::to_string(&written).expect("encode");
            assert!(json.contains(r#""tid":11,"#), "{json}");
            assert_eq!(
                serde_json::from_str::<DeclaredCall>(&json).expect("decode"),
                written
            );
        }
        let json = serde_json::to_string(&record()).expect("encode");
        assert!(
            json.contains(r#"{"name":"filename","value":{"user_string":"/tmp/x"}}"#),
            "{json}"
        );
        assert!(!json.contains("parent_seq"), "{json}");
    }

    #[test]
    fn display_shows_the_call_with_its_arguments() {
        let mut call = record();
        assert_eq!(
            call.to_string(),
            r#"openat(dfd=-100, filename="/tmp/x", flags=524288, mode=0)"#
        );
        call.args[1] = DeclaredArg::unreadable("filename", 1);
        assert_eq!(
            call.to_string(),
            "openat(dfd=-100, filename=0x1, flags=524288, mode=0)"
        );
        assert!(call.failed());
    }
}
