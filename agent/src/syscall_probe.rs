//! A declared syscall, typed from its tracepoints' tracefs format.

use std::path::Path;

use kspan_common::{
    declared::{ArgRead, MAX_ARGS},
    tracepoint_offsets, AttachMode, ProbeKind,
};
use kspan_decode::{ArgType, ResultKind};

use crate::{
    btf::{Btf, ValueType},
    declaration::{Declaration, DeclarationError},
    declared_probe::{assemble, invalid, HookPoint, Parameter, ResolvedProbe, Returns},
    syscall_numbers,
    tracefs::{self, FormatField},
};

/// Resolves `declaration` (a syscall) as probe number `index`, reading its tracepoints' formats
/// under the tracing root.
pub fn resolve(
    root: &Path,
    btf: Option<&Btf>,
    declaration: &Declaration,
    syscall: &str,
    index: u32,
    default_attach: AttachMode,
) -> Result<ResolvedProbe, DeclarationError> {
    let invalid = |why: String| invalid(declaration, why);
    let attach = declaration.attach.unwrap_or(default_attach);
    if !attach.candidates().contains(&ProbeKind::Tracepoint) {
        return Err(invalid(format!(
            "a syscall attaches to its tracepoints, but the attach mode allows only {}",
            attach.candidates()[0]
        )));
    }
    let events = root.join("events/syscalls");
    let read = |event: &str, file: &str| {
        std::fs::read_to_string(events.join(event).join(file)).map_err(|error| {
            invalid(format!(
                "no syscall `{syscall}` here: cannot read {} ({error})",
                events.join(event).join(file).display()
            ))
        })
    };
    let (enter, exit) = (
        format!("sys_enter_{syscall}"),
        format!("sys_exit_{syscall}"),
    );
    let fields = argument_fields(&read(&enter, "format")?);
    read(&exit, "format")?;
    let number = syscall_numbers::number(syscall)
        .ok_or_else(|| invalid(format!("no number known for syscall `{syscall}`")))?;
    let position = |field: &FormatField| (field.offset - tracepoint_offsets::ARGS) / 8;
    let mut parameters: Vec<Parameter> = fields
        .iter()
        .map(|field| Parameter {
            name: field.name.clone(),
            position: position(field),
            ty: c_type(field),
            string_read: ArgRead::UserString,
            hops: Vec::new(),
            user_memory: false,
        })
        .collect();
    // Member paths named in the declaration (`how->flags`), through the caller's memory, typed
    // from the BTF struct the argument's C type names.
    for path in declaration.member_paths() {
        let parameter = path.name.split(['-', '.']).next().unwrap_or_default();
        let field = fields
            .iter()
            .find(|field| field.name == parameter)
            .ok_or_else(|| {
                invalid(format!(
                    "argument `{}`: {enter} has no `{parameter}`",
                    path.name
                ))
            })?;
        let btf = btf.ok_or_else(|| invalid("member paths need the kernel's BTF".to_string()))?;
        let member = btf
            .member_path_from(&field.c_type, &path.name)
            .map_err(|error| invalid(error.to_string()))?;
        let ty = match member.value {
            ValueType::Int { bytes, signed } => ArgType::Int { bytes, signed },
            ValueType::String { .. } => ArgType::String { user: true },
            _ => {
                return Err(invalid(format!(
                    "argument `{}` is not a number or a string: kspan captures those",
                    path.name
                )))
            }
        };
        parameters.push(Parameter {
            name: path.name.clone(),
            position: position(field),
            ty,
            string_read: ArgRead::UserString,
            hops: member.hops,
            user_memory: true,
        });
    }
    let hook = HookPoint::Syscall {
        tracepoints: [enter.clone(), exit],
        number,
        arguments: fields
            .iter()
            .map(|field| position(field) + 1)
            .max()
            .unwrap_or(0),
    };
    // A syscall returns `long`.
    let result = Returns {
        kind: ResultKind::ErrnoOrValue,
        bytes: 8,
    };
    assemble(declaration, index, &enter, &parameters, result, hook)
}

/// The argument fields of a `sys_enter_*` format: those after `__syscall_nr`, 8 bytes each
/// from [`tracepoint_offsets::ARGS`].
fn argument_fields(format: &str) -> Vec<FormatField> {
    tracefs::format_fields(format)
        .into_iter()
        .filter(|field| {
            field
                .offset
                .checked_sub(tracepoint_offsets::ARGS)
                .is_some_and(|position| position % 8 == 0 && position / 8 < MAX_ARGS)
        })
        .collect()
}

/// A syscall argument's type: `const char *` is a string in the caller's memory (a syscall's
/// path or name), other pointers their address; integers narrowed as their C type says. A type
/// kspan does not know keeps the record's 8 bytes, signed as the format says.
fn c_type(field: &FormatField) -> ArgType {
    let int = |bytes, signed| ArgType::Int { bytes, signed };
    match field.c_type.as_str() {
        "const char *" => ArgType::String { user: true },
        pointer if pointer.ends_with('*') => int(8, false),
        "int" | "pid_t" | "key_serial_t" | "clockid_t" | "mqd_t" | "rwf_t" | "timer_t" => {
            int(4, true)
        }
        "unsigned int" | "unsigned" | "uid_t" | "gid_t" | "qid_t" | "u32" | "__u32" => {
            int(4, false)
        }
        "umode_t" | "unsigned short" | "u16" => int(2, false),
        "long" | "off_t" | "loff_t" | "ssize_t" | "__kernel_old_time_t" | "time_t" => int(8, true),
        "unsigned long" | "size_t" | "u64" | "__u64" | "aio_context_t" => int(8, false),
        _ => int(8, field.signed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kspan_decode::Decoder;

    /// `sys_enter_openat`'s format on Linux 6.1 (tracefs).
    const OPENAT_FORMAT: &str = "name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: \"dfd: 0x%08lx\"
";

    /// `sys_enter_openat2`'s format on Linux 6.18 (its arguments' lines).
    const OPENAT2_FORMAT: &str = "name: sys_enter_openat2
format:
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:struct open_how * how;\toffset:32;\tsize:8;\tsigned:0;
\tfield:size_t usize;\toffset:40;\tsize:8;\tsigned:0;
";

    /// A tracing root of its own, removed when dropped.
    struct TracingRoot(std::path::PathBuf);

    impl std::ops::Deref for TracingRoot {
        type Target = Path;

        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TracingRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A tracing root with `sys_{enter,exit}_openat` and `openat2` in it.
    fn root() -> TracingRoot {
        static ROOTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "kspan-syscall-formats-{}-{}",
            std::process::id(),
            ROOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        for (event, format) in [
            ("sys_enter_openat", OPENAT_FORMAT),
            ("sys_exit_openat", "format:\n"),
            ("sys_enter_openat2", OPENAT2_FORMAT),
            ("sys_exit_openat2", "format:\n"),
        ] {
            let dir = root.join("events/syscalls").join(event);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("format"), format).unwrap();
        }
        TracingRoot(root)
    }

    fn declaration(arguments: Option<Vec<crate::declaration::ArgumentDeclaration>>) -> Declaration {
        Declaration {
            probed: crate::declaration::Probed::Syscall("openat".into()),
            name: "openat".into(),
            span_name: None,
            attach: None,
            arguments,
            result: None,
            origin: "--probe syscall:openat".into(),
        }
    }

    #[test]
    fn every_argument_of_the_format_is_typed_and_placed() {
        let probe = resolve(
            &root(),
            None,
            &declaration(None),
            "openat",
            3,
            AttachMode::Auto,
        )
        .unwrap();
        let typed: Vec<_> = probe
            .info
            .arguments
            .iter()
            .map(|a| (a.name.as_str(), a.attribute.as_str(), a.position, a.ty))
            .collect();
        let int = |bytes, signed| ArgType::Int { bytes, signed };
        assert_eq!(
            typed,
            [
                ("dfd", "openat.dfd", 0, int(4, true)),
                (
                    "filename",
                    "openat.filename",
                    1,
                    ArgType::String { user: true }
                ),
                ("flags", "openat.flags", 2, int(4, true)),
                ("mode", "openat.mode", 3, int(2, false)),
            ]
        );
        let reads: Vec<_> = probe.spec.args.iter().map(|arg| arg.read).collect();
        let (value, string) = (ArgRead::Value as u8, ArgRead::UserString as u8);
        assert_eq!(reads, [value, string, value, value, 0, 0]);
        assert_eq!((probe.spec.probe, probe.spec.arg_count), (3, 4));
        assert_eq!(
            probe.hook,
            HookPoint::Syscall {
                tracepoints: ["sys_enter_openat".into(), "sys_exit_openat".into()],
                number: 257,
                arguments: 4,
            }
        );
        assert_eq!(probe.info.event_name, "openat.call");
    }

    #[test]
    fn chosen_arguments_keep_their_positions_names_and_decoders() {
        let argument = |name: &str, attribute: Option<&str>, decoder: Option<&str>| {
            crate::declaration::ArgumentDeclaration {
                name: name.into(),
                attribute: attribute.map(Into::into),
                decoder: decoder.map(Into::into),
            }
        };
        let chosen = Some(vec![
            argument("flags", None, Some("open_flags")),
            argument("filename", Some("file.path"), None),
        ]);
        let probe = resolve(
            &root(),
            None,
            &declaration(chosen),
            "openat",
            0,
            AttachMode::Auto,
        )
        .unwrap();
        let arguments = &probe.info.arguments;
        assert_eq!(
            (arguments[0].position, arguments[0].decoder),
            (2, Some(Decoder::OpenFlags))
        );
        assert_eq!(
            (arguments[1].position, arguments[1].attribute.as_str()),
            (1, "file.path")
        );
        assert_eq!(probe.spec.arg_count, 3);
        assert_eq!(probe.spec.args[0].read, ArgRead::Skip as u8);
    }

    #[test]
    fn member_paths_read_through_the_caller_s_memory_typed_from_btf() {
        let btf = crate::btf::Btf::read(Path::new(crate::btf::VMLINUX_BTF)).expect("BTF");
        let argument = |name: &str| crate::declaration::ArgumentDeclaration {
            name: name.into(),
            attribute: None,
            decoder: None,
        };
        let declared = |names: &[&str]| {
            let mut declared = declaration(Some(names.iter().map(|n| argument(n)).collect()));
            declared.name = "openat2".into();
            declared
        };
        let resolved = |names: &[&str]| {
            resolve(
                &root(),
                Some(&btf),
                &declared(names),
                "openat2",
                0,
                AttachMode::Auto,
            )
        };
        let probe = resolved(&["dfd", "how->flags"]).unwrap();
        let typed: Vec<(&str, usize, ArgType)> = probe
            .info
            .arguments
            .iter()
            .map(|a| (a.name.as_str(), a.position, a.ty))
            .collect();
        let (int, u64) = (
            ArgType::Int {
                bytes: 4,
                signed: true,
            },
            ArgType::Int {
                bytes: 8,
                signed: false,
            },
        );
        assert_eq!(typed, [("dfd", 0, int), ("how->flags", 2, u64)]);
        let flags = probe.spec.args[2];
        assert_eq!((flags.hops, flags.user_memory, flags.offsets[0]), (1, 1, 0));
        assert_eq!(probe.info.arguments[1].attribute, "openat2.how.flags");
        for (names, expected) in [
            (&["how->flags", "how->mode"][..], "read once per call"),
            (&["dfd->x"][..], "`dfd` is `int`, not a struct pointer"),
            (&["how->nothing"][..], "no member `nothing`"),
            (&["nope->flags"][..], "sys_enter_openat2 has no `nope`"),
        ] {
            let error = resolved(names).unwrap_err().to_string();
            assert!(error.contains(expected), "{names:?}: {error}");
        }
        let no_btf = resolve(
            &root(),
            None,
            &declared(&["how->flags"]),
            "openat2",
            0,
            AttachMode::Auto,
        );
        assert!(no_btf
            .unwrap_err()
            .to_string()
            .contains("need the kernel's BTF"));
    }

    #[test]
    fn what_the_syscall_does_not_have_is_refused_by_name() {
        let unknown = Some(vec![crate::declaration::ArgumentDeclaration {
            name: "how".into(),
            attribute: None,
            decoder: None,
        }]);
        let cases = [
            (
                resolve(
                    &root(),
                    None,
                    &declaration(unknown),
                    "openat",
                    0,
                    AttachMode::Auto,
                ),
                "argument `how`: sys_enter_openat has dfd, filename, flags, mode",
            ),
            (
                resolve(
                    &root(),
                    None,
                    &declaration(None),
                    "no_such_call",
                    0,
                    AttachMode::Auto,
                ),
                "no syscall `no_such_call` here",
            ),
            (
                resolve(
                    &root(),
                    None,
                    &declaration(None),
                    "openat",
                    0,
                    AttachMode::Kprobe,
                ),
                "allows only kprobe",
            ),
        ];
        for (result, expected) in cases {
            let error = result.unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(
                error.starts_with("probe openat (--probe syscall:openat): "),
                "{error}"
            );
        }
    }
}
