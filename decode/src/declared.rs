//! Declared probes in user-space terms: what each captures and how its values read
//! ([`ProbeInfo`], built by the agent from the declaration and the kernel's types), and one
//! declared call's arguments and result ([`DeclaredCall`]).

use std::{
    borrow::Cow,
    fmt::{self, Write},
    sync::Arc,
    time::SystemTime,
};

use kspan_common::declared::{CapturedArgs, CapturedString, STRING_BYTES};

use crate::{errno_name, Decoder};

/// How a probe's result reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultKind {
    /// A value, or a negated errno (`-4095..=-1`): syscalls.
    ErrnoOrValue,
    /// A file descriptor, or a negated errno.
    Fd,
    /// A kernel pointer, or an errno encoded in it (`ERR_PTR`); the address itself is never
    /// shown (it would leak the kernel's layout).
    Pointer,
    /// Nothing (`void`, or not wanted).
    None,
}

impl ResultKind {
    /// Every kind, as declarations name them.
    pub const ALL: [ResultKind; 4] = [
        ResultKind::ErrnoOrValue,
        ResultKind::Fd,
        ResultKind::Pointer,
        ResultKind::None,
    ];

    /// Its name in declarations.
    pub const fn name(self) -> &'static str {
        match self {
            ResultKind::ErrnoOrValue => "errno-or-value",
            ResultKind::Fd => "fd",
            ResultKind::Pointer => "pointer",
            ResultKind::None => "none",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// The largest errno the kernel returns negated (`MAX_ERRNO`).
const MAX_ERRNO: i64 = 4095;

/// An argument's type, as the kernel declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    /// An integer (or a pointer captured as its address) of `bytes` bytes.
    Int {
        /// Its size: 1, 2, 4 or 8.
        bytes: u8,
        /// Whether it is sign-extended.
        signed: bool,
    },
    /// A NUL-terminated string the argument points at.
    String {
        /// In the caller's memory (a syscall's `const char __user *`), else the kernel's.
        user: bool,
    },
}

/// One captured argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgumentInfo {
    /// Its name in the kernel's prototype.
    pub name: String,
    /// Its attribute's key (default `<probe>.<name>`).
    pub attribute: String,
    /// Its type.
    pub ty: ArgType,
    /// Its position among the call's arguments.
    pub position: usize,
    /// For strings: the captured string slot.
    pub string_slot: usize,
    /// The decoder that names its value, if any.
    pub decoder: Option<Decoder>,
}

/// What one declared probe captures and how it reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeInfo {
    /// The probe's name (the syscall or function, unless declared otherwise).
    pub name: String,
    /// The span's name.
    pub span_name: String,
    /// The log record's event name: `<name>.call`.
    pub event_name: String,
    /// The captured arguments, in call order.
    pub arguments: Vec<ArgumentInfo>,
    /// How the result reads.
    pub result: ResultKind,
    /// The result's attribute key, when it has one: `<name>.fd` or `<name>.result`.
    pub result_attribute: String,
    /// The result's size in bytes: a function returning `int` leaves the register's upper
    /// half undefined, so the value is its low half, sign-extended.
    pub result_bytes: u8,
    /// Set for the built-in signalfd probe: its calls read as [`crate::SignalfdCall`]s, with
    /// the attributes and log records signalfd always had.
    pub signalfd: Option<crate::call::SignalfdLayout>,
}

impl ProbeInfo {
    /// A probe named `name` with its span named alike and default attribute keys.
    pub fn new(name: &str, result: ResultKind) -> Self {
        let result_attribute = match result {
            ResultKind::Fd => format!("{name}.fd"),
            _ => format!("{name}.result"),
        };
        Self {
            name: name.to_owned(),
            span_name: name.to_owned(),
            event_name: format!("{name}.call"),
            arguments: Vec::new(),
            result,
            result_attribute,
            result_bytes: 8,
            signalfd: None,
        }
    }
}

/// A captured argument's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgValue {
    /// An integer, narrowed and extended as its type says.
    Int(i64),
    /// A string (lossy UTF-8), and whether it was cut at the probe's bound.
    String {
        /// The text.
        text: String,
        /// Cut at [`STRING_BYTES`] - 1 bytes.
        truncated: bool,
    },
    /// A string whose address could not be read.
    Unreadable,
}

/// A declared call's probe, arguments, result and place among the thread's calls.
#[derive(Clone, Debug, PartialEq)]
pub struct DeclaredCall {
    /// What was declared.
    pub probe: Arc<ProbeInfo>,
    /// One value per [`ProbeInfo::arguments`] item.
    pub values: Vec<ArgValue>,
    /// The raw return value.
    pub ret: i64,
    /// The entry time of the declared call this one ran inside on the same thread.
    pub parent_start: Option<SystemTime>,
    /// The entry time of the outermost such call (its own when it has no parent).
    pub root_start: SystemTime,
}

impl DeclaredCall {
    /// The raw return value as wide as the probe's result is.
    pub fn result_from(probe: &ProbeInfo, raw: i64) -> i64 {
        narrow(raw as u64, probe.result_bytes, true)
    }

    /// Reads the captured values as the probe's arguments are typed.
    pub fn values_from(probe: &ProbeInfo, captured: &CapturedArgs) -> Vec<ArgValue> {
        probe
            .arguments
            .iter()
            .map(|argument| {
                let raw = captured.values.get(argument.position).copied().unwrap_or(0);
                if captured.unreadable & (1 << argument.position) != 0 {
                    // A member path through a bad pointer.
                    return ArgValue::Unreadable;
                }
                match argument.ty {
                    ArgType::Int { bytes, signed } => ArgValue::Int(narrow(raw, bytes, signed)),
                    ArgType::String { .. } => captured
                        .strings
                        .get(argument.string_slot)
                        .map_or(ArgValue::Unreadable, string_value),
                }
            })
            .collect()
    }

    /// The errno name when the result says the call failed.
    pub fn error(&self) -> Option<Cow<'static, str>> {
        let failed = match self.probe.result {
            ResultKind::ErrnoOrValue | ResultKind::Fd | ResultKind::Pointer => {
                (-MAX_ERRNO..0).contains(&self.ret)
            }
            ResultKind::None => false,
        };
        // In range, so it fits an i32.
        failed.then(|| errno_name(-self.ret as i32))
    }

    /// The result's value as its attribute carries it, when it has one.
    pub fn result_value(&self) -> Option<i64> {
        match self.probe.result {
            ResultKind::ErrnoOrValue | ResultKind::Fd => {
                (!(-MAX_ERRNO..0).contains(&self.ret)).then_some(self.ret)
            }
            ResultKind::Pointer | ResultKind::None => None,
        }
    }

    /// A strace-like line: `openat(dfd=-100, filename="/etc/hosts", flags=O_RDONLY, mode=0) = 3`.
    pub fn write_summary<W: Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        out.write_str(&self.probe.span_name)?;
        out.write_char('(')?;
        for (index, (argument, value)) in self.probe.arguments.iter().zip(&self.values).enumerate()
        {
            if index > 0 {
                out.write_str(", ")?;
            }
            out.write_str(&argument.name)?;
            out.write_char('=')?;
            match (value, argument.decoder) {
                (ArgValue::Int(value), Some(decoder)) => out.write_str(&decoder.summary(*value))?,
                (ArgValue::Int(value), None) => write!(out, "{value}")?,
                (ArgValue::String { text, truncated }, _) => {
                    write!(out, "{text:?}")?;
                    if *truncated {
                        out.write_str("...")?;
                    }
                }
                (ArgValue::Unreadable, _) => out.write_str("<unreadable>")?,
            }
        }
        out.write_char(')')?;
        match (self.error(), self.probe.result) {
            (Some(errno), _) => write!(out, " = -1 {errno}"),
            (None, ResultKind::None) => Ok(()),
            (None, ResultKind::Pointer) => out.write_str(" = <pointer>"),
            (None, _) => write!(out, " = {}", self.ret),
        }
    }
}

/// The low `bytes` of `raw`, sign-extended when `signed`.
fn narrow(raw: u64, bytes: u8, signed: bool) -> i64 {
    let bits = u32::from(bytes.clamp(1, 8)) * 8;
    if bits == 64 {
        return raw as i64;
    }
    let low = raw & ((1u64 << bits) - 1);
    if signed && low >> (bits - 1) == 1 {
        (low | !((1u64 << bits) - 1)) as i64
    } else {
        low as i64
    }
}

/// A string slot as the probe filled it: its length includes the NUL; a failed read is negative.
fn string_value(string: &CapturedString) -> ArgValue {
    let Ok(len) = usize::try_from(string.len) else {
        return ArgValue::Unreadable;
    };
    let bytes = &string.bytes[..len.min(STRING_BYTES)];
    let text = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    ArgValue::String {
        text: String::from_utf8_lossy(text).into_owned(),
        // The helper stops at the buffer's end: a full buffer may hold a longer string's head.
        truncated: len >= STRING_BYTES,
    }
}

#[cfg(test)]
mod tests {
    use kspan_common::declared::MAX_STRINGS;

    use super::*;

    fn openat() -> ProbeInfo {
        let argument = |name: &str, position, ty, decoder| ArgumentInfo {
            name: name.to_owned(),
            attribute: format!("openat.{name}"),
            ty,
            position,
            string_slot: 0,
            decoder,
        };
        ProbeInfo {
            arguments: vec![
                argument(
                    "dfd",
                    0,
                    ArgType::Int {
                        bytes: 4,
                        signed: true,
                    },
                    None,
                ),
                argument("filename", 1, ArgType::String { user: true }, None),
                argument(
                    "flags",
                    2,
                    ArgType::Int {
                        bytes: 4,
                        signed: true,
                    },
                    Some(Decoder::OpenFlags),
                ),
                argument(
                    "mode",
                    3,
                    ArgType::Int {
                        bytes: 2,
                        signed: false,
                    },
                    None,
                ),
            ],
            ..ProbeInfo::new("openat", ResultKind::ErrnoOrValue)
        }
    }

    fn captured(text: &[u8], len: i32) -> CapturedArgs {
        let mut string = CapturedString {
            len,
            _pad: 0,
            bytes: [0; STRING_BYTES],
        };
        string.bytes[..text.len()].copy_from_slice(text);
        CapturedArgs {
            values: [
                (-100i64) as u64 & 0xffff_ffff,
                0x7fff_0000,
                0o2000101,
                0o644,
                0,
                0,
            ],
            unreadable: 0,
            skipped: 0,
            syscall: 0,
            strings: [string; MAX_STRINGS],
        }
    }

    fn call(values: Vec<ArgValue>, ret: i64) -> DeclaredCall {
        DeclaredCall {
            probe: Arc::new(openat()),
            values,
            ret,
            parent_start: None,
            root_start: SystemTime::UNIX_EPOCH,
        }
    }

    fn summary(call: &DeclaredCall) -> String {
        let mut line = String::new();
        call.write_summary(&mut line).unwrap();
        line
    }

    #[test]
    fn values_are_narrowed_as_typed_and_strings_read_to_their_nul() {
        let values = DeclaredCall::values_from(&openat(), &captured(b"/tmp/a\0", 7));
        assert_eq!(
            values,
            [
                ArgValue::Int(-100),
                ArgValue::String {
                    text: "/tmp/a".into(),
                    truncated: false
                },
                ArgValue::Int(0o2000101),
                ArgValue::Int(0o644),
            ]
        );
        let call = call(values, 3);
        assert_eq!(
            summary(&call),
            r#"openat(dfd=-100, filename="/tmp/a", flags=O_WRONLY|O_CREAT|O_CLOEXEC, mode=420) = 3"#
        );
        assert_eq!((call.error(), call.result_value()), (None, Some(3)));
    }

    #[test]
    fn cut_and_unreadable_strings_are_marked() {
        let long = [b'x'; STRING_BYTES];
        let mut cut = long;
        cut[STRING_BYTES - 1] = 0;
        let values = DeclaredCall::values_from(&openat(), &captured(&cut, STRING_BYTES as i32));
        assert_eq!(
            values[1],
            ArgValue::String {
                text: "x".repeat(STRING_BYTES - 1),
                truncated: true
            }
        );
        let values = DeclaredCall::values_from(&openat(), &captured(b"", -14));
        assert_eq!(values[1], ArgValue::Unreadable);
        let call = call(values, -14);
        assert!(summary(&call).ends_with(
            "filename=<unreadable>, flags=O_WRONLY|O_CREAT|O_CLOEXEC, mode=420) = -1 EFAULT"
        ));
        assert_eq!(
            (call.error().as_deref(), call.result_value()),
            (Some("EFAULT"), None)
        );
        // A member path through a bad pointer: the argument's bit.
        let mut bad_path = captured(b"/tmp/a\0", 7);
        bad_path.unreadable = 1 << 2;
        let through_bad = DeclaredCall::values_from(&openat(), &bad_path);
        assert_eq!(
            (&through_bad[1], &through_bad[2]),
            (
                &ArgValue::String {
                    text: "/tmp/a".into(),
                    truncated: false
                },
                &ArgValue::Unreadable
            )
        );
    }

    #[test]
    fn results_read_as_their_kind() {
        let with = |result, ret| DeclaredCall {
            probe: Arc::new(ProbeInfo {
                arguments: Vec::new(),
                ..ProbeInfo::new("f", result)
            }),
            ..call(Vec::new(), ret)
        };
        let cases = [
            (ResultKind::Fd, 5, None, Some(5), "f() = 5"),
            (ResultKind::Fd, -9, Some("EBADF"), None, "f() = -1 EBADF"),
            (
                ResultKind::ErrnoOrValue,
                -5000,
                None,
                Some(-5000),
                "f() = -5000",
            ),
            (
                ResultKind::Pointer,
                -0x1000_0000,
                None,
                None,
                "f() = <pointer>",
            ),
            (
                ResultKind::Pointer,
                -12,
                Some("ENOMEM"),
                None,
                "f() = -1 ENOMEM",
            ),
            (ResultKind::None, -1, None, None, "f()"),
        ];
        for (kind, ret, error, value, line) in cases {
            let call = with(kind, ret);
            assert_eq!(call.error().as_deref(), error, "{kind:?} {ret}");
            assert_eq!(call.result_value(), value, "{kind:?} {ret}");
            assert_eq!(summary(&call), line);
        }
        assert_eq!(
            ResultKind::from_name("errno-or-value"),
            Some(ResultKind::ErrnoOrValue)
        );
    }
}
