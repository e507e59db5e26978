//! A declared kernel function, typed from its BTF prototype and found by its address.

use kspan_common::{declared::ArgRead, AttachMode, ProbeKind};
use kspan_decode::{ArgType, ResultKind};

use crate::{
    btf::{Btf, ValueType},
    declaration::{Declaration, DeclarationError},
    declared_probe::{assemble, invalid, HookPoint, Parameter, ResolvedProbe, Returns},
    kernel_function,
};

/// Resolves `declaration` (a kernel function) as probe number `index`: its arguments from
/// `btf`. Arguments passed by value that are not one number (a
/// struct) and pointers that are not strings are left out when every argument is asked for
/// (kspan shows no kernel addresses), and refused when named.
pub fn resolve(
    btf: &Btf,
    declaration: &Declaration,
    function: &str,
    index: u32,
    default_attach: AttachMode,
) -> Result<ResolvedProbe, DeclarationError> {
    let invalid = |why: String| invalid(declaration, why);
    let attach = declaration.attach.unwrap_or(default_attach);
    let kinds: Vec<ProbeKind> = attach
        .candidates()
        .iter()
        .copied()
        .filter(|kind| matches!(kind, ProbeKind::Kprobe | ProbeKind::Fentry))
        .collect();
    if kinds.is_empty() {
        return Err(invalid(format!(
            "a kernel function is probed with a kprobe or fentry pair, but the attach mode \
             allows only {}",
            attach.candidates()[0]
        )));
    }
    if let Some(why) = kernel_function::why_unprobeable(function) {
        return Err(invalid(why));
    }
    let prototype = btf
        .function(function)
        .map_err(|error| invalid(error.to_string()))?;
    let named = |name: &str| {
        declaration
            .arguments
            .as_ref()
            .is_some_and(|arguments| arguments.iter().any(|argument| argument.name == name))
    };
    let mut parameters = Vec::new();
    for (position, parameter) in prototype.params.iter().enumerate() {
        let name = &parameter.name;
        let (ty, string_read) = match &parameter.value {
            ValueType::Int { bytes, signed } => (
                ArgType::Int {
                    bytes: *bytes,
                    signed: *signed,
                },
                ArgRead::Value,
            ),
            ValueType::String { user: true } => {
                (ArgType::String { user: true }, ArgRead::UserString)
            }
            // BTF without `__user` tags cannot tell: try the kernel's memory, then the caller's.
            ValueType::String { user: false } => {
                (ArgType::String { user: false }, ArgRead::AnyString)
            }
            other if named(name) => {
                return Err(invalid(format!(
                    "argument `{name}` of {function} is {}: kspan captures numbers and strings",
                    describe(other)
                )))
            }
            _ => continue,
        };
        parameters.push(Parameter {
            name: name.clone(),
            position,
            ty,
            string_read,
            hops: Vec::new(),
            user_memory: false,
        });
    }
    // Member paths named in the declaration (`how->flags`), typed by the member's type.
    for path in declaration.member_paths() {
        let member = btf
            .member_path(function, &path.name)
            .map_err(|error| invalid(error.to_string()))?;
        let parameter = path.name.split(['-', '.']).next().unwrap_or_default();
        let position = prototype
            .params
            .iter()
            .position(|p| p.name == parameter)
            .unwrap_or_default();
        let (ty, string_read) = typed(&member.value).ok_or_else(|| {
            invalid(format!(
                "argument `{}` is {}: kspan captures numbers and strings",
                path.name,
                describe(&member.value)
            ))
        })?;
        parameters.push(Parameter {
            name: path.name.clone(),
            position,
            ty,
            string_read,
            hops: member.hops,
            user_memory: false,
        });
    }
    let (result, result_bytes) = match prototype.returns {
        ValueType::Void => (ResultKind::None, 8),
        ValueType::Pointer | ValueType::String { .. } => (ResultKind::Pointer, 8),
        ValueType::Int { bytes, .. } => (ResultKind::ErrnoOrValue, bytes),
        ValueType::Unsupported(_) => (ResultKind::None, 8),
    };
    let hook = HookPoint::Function {
        name: function.to_owned(),
        kinds,
    };
    let result = Returns {
        kind: result,
        bytes: result_bytes,
    };
    assemble(declaration, index, function, &parameters, result, hook)
}

/// How kspan captures a value of this type: numbers and strings; `None` for the rest.
fn typed(value: &ValueType) -> Option<(ArgType, ArgRead)> {
    match value {
        ValueType::Int { bytes, signed } => Some((
            ArgType::Int {
                bytes: *bytes,
                signed: *signed,
            },
            ArgRead::Value,
        )),
        ValueType::String { user: true } => {
            Some((ArgType::String { user: true }, ArgRead::UserString))
        }
        // BTF without `__user` tags cannot tell: try the kernel's memory, then the caller's.
        ValueType::String { user: false } => {
            Some((ArgType::String { user: false }, ArgRead::AnyString))
        }
        ValueType::Pointer | ValueType::Void | ValueType::Unsupported(_) => None,
    }
}

/// What a value kspan does not capture is, for messages.
fn describe(value: &ValueType) -> String {
    match value {
        ValueType::Pointer => "a pointer (not to a string)".to_owned(),
        ValueType::Unsupported(kind) => format!("passed by value as {kind}"),
        ValueType::Void => "void".to_owned(),
        ValueType::Int { .. } | ValueType::String { .. } => "readable".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declaration::{ArgumentDeclaration, Probed};

    fn declaration(function: &str, arguments: Option<Vec<&str>>) -> Declaration {
        Declaration {
            probed: Probed::Function(function.into()),
            name: function.into(),
            span_name: None,
            attach: None,
            arguments: arguments.map(|names| {
                names
                    .into_iter()
                    .map(|name| ArgumentDeclaration {
                        name: name.into(),
                        attribute: None,
                        decoder: None,
                    })
                    .collect()
            }),
            result: None,
            origin: format!("--probe {function}"),
        }
    }

    fn vmlinux() -> Btf {
        Btf::read(std::path::Path::new(crate::btf::VMLINUX_BTF)).expect("this kernel has BTF")
    }

    /// This host's kernel: its BTF and its symbols.
    fn resolve_here(
        declared: &Declaration,
        function: &str,
    ) -> Result<ResolvedProbe, DeclarationError> {
        resolve(&vmlinux(), declared, function, 0, AttachMode::Auto)
    }

    #[test]
    fn every_number_and_string_argument_is_typed_from_btf_and_pointers_are_left_out() {
        let probe = resolve_here(&declaration("do_sys_openat2", None), "do_sys_openat2").unwrap();
        let typed: Vec<_> = probe
            .info
            .arguments
            .iter()
            .map(|argument| (argument.name.as_str(), argument.position, argument.ty))
            .collect();
        let filename = typed.iter().find(|(name, ..)| *name == "filename").copied();
        assert_eq!(
            typed[0],
            (
                "dfd",
                0,
                ArgType::Int {
                    bytes: 4,
                    signed: true
                }
            )
        );
        assert!(
            matches!(filename, Some(("filename", 1, ArgType::String { .. }))),
            "{typed:?}"
        );
        assert!(typed.iter().all(|(name, ..)| *name != "how"), "{typed:?}");
        assert_eq!(probe.info.result, ResultKind::ErrnoOrValue);
        // `int` on this kernel (older ones: `long`).
        assert!(matches!(probe.info.result_bytes, 4 | 8));
        // `auto` (the test's default) tries kprobe first, then fentry.
        let HookPoint::Function { kinds, .. } = &probe.hook else {
            panic!("{:?}", probe.hook)
        };
        assert_eq!(kinds, &[ProbeKind::Kprobe, ProbeKind::Fentry]);
    }

    #[test]
    fn member_paths_read_through_pointers_into_their_parameter_s_slot() {
        let declared = declaration("do_sys_openat2", Some(vec!["dfd", "how->flags"]));
        let probe = resolve_here(&declared, "do_sys_openat2").unwrap();
        let flags = &probe.info.arguments[1];
        assert_eq!(
            (
                flags.name.as_str(),
                flags.attribute.as_str(),
                flags.position
            ),
            ("how->flags", "do_sys_openat2.how.flags", 2)
        );
        assert_eq!(
            flags.ty,
            ArgType::Int {
                bytes: 8,
                signed: false
            }
        );
        assert_eq!(probe.spec.args[2].hops, 1);
        assert_eq!(probe.spec.arg_count, 3);
        let twice = declaration("do_sys_openat2", Some(vec!["how->flags", "how->mode"]));
        let error = resolve_here(&twice, "do_sys_openat2")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("another argument already reads it"),
            "{error}"
        );
    }

    #[test]
    fn what_a_function_does_not_offer_is_refused_by_name() {
        let cases = [
            (
                declaration("do_sys_openat2", Some(vec!["how"])),
                "do_sys_openat2",
                "argument `how` of do_sys_openat2 is a pointer",
            ),
            (
                declaration("do_sys_openat2", Some(vec!["mode"])),
                "do_sys_openat2",
                "argument `mode`: do_sys_openat2 has dfd, filename",
            ),
            (
                declaration("no_such_function_here", None),
                "no_such_function_here",
                "is not a function of this kernel",
            ),
        ];
        for (declared, function, expected) in cases {
            let error = resolve_here(&declared, function).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(
                error.starts_with(&format!("probe {function} (--probe {function}): ")),
                "{error}"
            );
        }
        let mut tracepoint_only = declaration("vfs_fsync", None);
        tracepoint_only.attach = Some(AttachMode::Tracepoint);
        let error = resolve_here(&tracepoint_only, "vfs_fsync")
            .unwrap_err()
            .to_string();
        assert!(error.contains("allows only tracepoint"), "{error}");
    }
}
