//! What the user declares to trace: `--probe` one-liners and `--probes` TOML files, read into
//! one list, checked for what needs no kernel (names, decoders, result kinds, limits).

use std::path::{Path, PathBuf};

use kspan_common::{
    declared::{MAX_ARGS, MAX_DECLARED_PROBES},
    AttachMode,
};
use kspan_decode::{Decoder, ResultKind};
use serde::Deserialize;

/// The built-in declaration's name: the `do_signalfd4` pair.
pub const SIGNALFD: &str = "signalfd";

/// What a declared probe traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probed {
    /// The built-in signalfd pair.
    Signalfd,
    /// A syscall's `sys_enter_*`/`sys_exit_*` tracepoints.
    Syscall(String),
    /// A kernel function.
    Function(String),
}

/// One argument to capture, by its name in the kernel's prototype.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgumentDeclaration {
    /// The argument's name.
    pub name: String,
    /// Its attribute's key [default: `<probe>.<name>`].
    pub attribute: Option<String>,
    /// A decoder that names its value.
    pub decoder: Option<String>,
}

/// One declared probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declaration {
    /// What it hooks.
    pub probed: Probed,
    /// Its name: attribute prefix and log event `<name>.call` [default: the syscall or function].
    pub name: String,
    /// The span's name [default: `name`].
    pub span_name: Option<String>,
    /// Which probe kinds to try [default: `--attach`].
    pub attach: Option<AttachMode>,
    /// The arguments to capture [default: every one].
    pub arguments: Option<Vec<ArgumentDeclaration>>,
    /// How the result reads [default: errno-or-value for a syscall; for a function, as its
    /// BTF return type says].
    pub result: Option<ResultKind>,
    /// Where it was declared, for messages.
    pub origin: String,
}

impl Declaration {
    /// The arguments named as member paths through pointers (`how->flags`).
    pub fn member_paths(&self) -> impl Iterator<Item = &ArgumentDeclaration> {
        self.arguments
            .iter()
            .flatten()
            .filter(|argument| argument.name.contains(['-', '.']))
    }
}

/// A declaration kspan refuses before touching the kernel.
#[derive(Debug, thiserror::Error)]
pub enum DeclarationError {
    /// A `--probes` file could not be read.
    #[error("cannot read probe file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `--probes` file is not valid.
    #[error("probe file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, flattened to one line.
        message: String,
    },
    /// A probe is wrong in itself.
    #[error("probe {probe} ({origin}): {why}")]
    Invalid {
        /// The probe's name.
        probe: String,
        /// Where it was declared.
        origin: String,
        /// What is wrong.
        why: String,
    },
    /// Two probes of one name (their attributes and event names would mix).
    #[error("probe {0} is declared twice: give one a different `name`")]
    Duplicate(String),
    /// Two probes on one hook (each would overwrite the other's declaration).
    #[error("probes {first} and {second} both hook {hook}: declare it once")]
    SharedHook {
        /// The probe declared first.
        first: String,
        /// The other.
        second: String,
        /// The syscall's tracepoint or the function.
        hook: String,
    },
    /// More probes than the kernel map holds.
    #[error("{0} probes declared: kspan holds at most {MAX_DECLARED_PROBES}")]
    TooMany(usize),
}

/// A `--probes` file: `[[probe]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeFile {
    #[serde(default)]
    probe: Vec<ProbeTable>,
}

/// One `[[probe]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeTable {
    syscall: Option<String>,
    function: Option<String>,
    name: Option<String>,
    span_name: Option<String>,
    attach: Option<String>,
    result: Option<String>,
    #[serde(default, rename = "argument")]
    arguments: Option<Vec<ArgumentDeclaration>>,
}

/// Reads every `--probe` and `--probes` declaration; none means the built-in signalfd alone.
pub fn read(
    one_liners: &[String],
    files: &[PathBuf],
) -> Result<Vec<Declaration>, DeclarationError> {
    let mut declarations: Vec<Declaration> =
        one_liners.iter().map(|spec| one_liner(spec)).collect();
    for path in files {
        declarations.extend(read_file(path)?);
    }
    if declarations.is_empty() {
        declarations.push(one_liner(SIGNALFD));
    }
    check(&declarations)?;
    Ok(declarations)
}

/// `signalfd`, `syscall:NAME` or `FUNCTION`.
fn one_liner(spec: &str) -> Declaration {
    let probed = match spec.strip_prefix("syscall:") {
        _ if spec == SIGNALFD => Probed::Signalfd,
        Some(name) => Probed::Syscall(name.to_owned()),
        None => Probed::Function(spec.to_owned()),
    };
    Declaration {
        name: probed_name(&probed).to_owned(),
        probed,
        span_name: None,
        attach: None,
        arguments: None,
        result: None,
        origin: format!("--probe {spec}"),
    }
}

fn probed_name(probed: &Probed) -> &str {
    match probed {
        Probed::Signalfd => SIGNALFD,
        Probed::Syscall(name) | Probed::Function(name) => name,
    }
}

fn read_file(path: &Path) -> Result<Vec<Declaration>, DeclarationError> {
    let text = std::fs::read_to_string(path).map_err(|source| DeclarationError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: ProbeFile = toml::from_str(&text).map_err(|error| DeclarationError::Parse {
        path: path.to_owned(),
        message: error
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    })?;
    file.probe
        .into_iter()
        .enumerate()
        .map(|(index, table)| {
            from_table(table, &format!("{} probe #{}", path.display(), index + 1))
        })
        .collect()
}

fn from_table(table: ProbeTable, origin: &str) -> Result<Declaration, DeclarationError> {
    let invalid = |probe: &str, why: String| DeclarationError::Invalid {
        probe: probe.to_owned(),
        origin: origin.to_owned(),
        why,
    };
    let probed = match (table.syscall, table.function) {
        (Some(name), None) => Probed::Syscall(name),
        (None, Some(name)) if name == SIGNALFD => Probed::Signalfd,
        (None, Some(name)) => Probed::Function(name),
        _ => {
            return Err(invalid(
                "?",
                "give exactly one of `syscall` or `function`".into(),
            ))
        }
    };
    let name = table
        .name
        .unwrap_or_else(|| probed_name(&probed).to_owned());
    let attach = table
        .attach
        .map(|mode| {
            <AttachMode as clap::ValueEnum>::from_str(&mode, false).map_err(|_| {
                invalid(
                    &name,
                    format!("attach `{mode}`: expected auto, kprobe, fentry or tracepoint"),
                )
            })
        })
        .transpose()?;
    let result = match table.result {
        None => None,
        Some(kind) => Some(ResultKind::from_name(&kind).ok_or_else(|| {
            let known: Vec<_> = ResultKind::ALL.iter().map(|kind| kind.name()).collect();
            invalid(
                &name,
                format!("result `{kind}`: expected one of {}", known.join(", ")),
            )
        })?),
    };
    Ok(Declaration {
        probed,
        name,
        span_name: table.span_name,
        attach,
        arguments: table.arguments,
        result,
        origin: origin.to_owned(),
    })
}

/// What can be checked without the kernel.
fn check(declarations: &[Declaration]) -> Result<(), DeclarationError> {
    if declarations.len() > MAX_DECLARED_PROBES as usize {
        return Err(DeclarationError::TooMany(declarations.len()));
    }
    for (index, declaration) in declarations.iter().enumerate() {
        let invalid = |why: String| DeclarationError::Invalid {
            probe: declaration.name.clone(),
            origin: declaration.origin.clone(),
            why,
        };
        if declarations[..index]
            .iter()
            .any(|other| other.name == declaration.name)
        {
            return Err(DeclarationError::Duplicate(declaration.name.clone()));
        }
        let valid_name = |name: &str| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        };
        if !valid_name(&declaration.name) {
            return Err(invalid(
                "a name is letters, digits, `_`, `.` and `-`".into(),
            ));
        }
        match &declaration.probed {
            Probed::Signalfd if declaration.arguments.is_some() => {
                return Err(invalid(
                    "the built-in signalfd probe captures its own arguments".into(),
                ))
            }
            Probed::Syscall(name) | Probed::Function(name) if !valid_name(name) => {
                return Err(invalid(format!("`{name}` is not a kernel symbol name")))
            }
            _ => {}
        }
        let arguments = declaration.arguments.as_deref().unwrap_or_default();
        if arguments.len() > MAX_ARGS {
            return Err(invalid(format!(
                "{} arguments: at most {MAX_ARGS}",
                arguments.len()
            )));
        }
        for argument in arguments {
            if let Some(decoder) = &argument.decoder {
                if Decoder::from_name(decoder).is_none() {
                    let known: Vec<_> = Decoder::ALL.iter().map(|decoder| decoder.name()).collect();
                    return Err(invalid(format!(
                        "argument {}: unknown decoder `{decoder}` (known: {})",
                        argument.name,
                        known.join(", ")
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::with(text)
    }

    /// A file removed when dropped (tests only).
    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn with(text: &str) -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static NEXT: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "kspan-probes-{}-{}.toml",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&path, text).expect("temp dir is writable");
                Self(path)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn no_declaration_is_the_built_in_signalfd_and_one_liners_name_their_hook() {
        let builtin = read(&[], &[]).unwrap();
        assert_eq!(builtin.len(), 1);
        assert_eq!(
            (builtin[0].probed.clone(), builtin[0].name.as_str()),
            (Probed::Signalfd, "signalfd")
        );
        let declared = read(&["syscall:openat".into(), "vfs_fsync".into()], &[]).unwrap();
        let hooks: Vec<_> = declared
            .iter()
            .map(|d| (d.probed.clone(), d.name.as_str()))
            .collect();
        assert_eq!(
            hooks,
            [
                (Probed::Syscall("openat".into()), "openat"),
                (Probed::Function("vfs_fsync".into()), "vfs_fsync")
            ]
        );
    }

    #[test]
    fn a_file_declares_names_arguments_decoders_and_results() {
        let file = write(
            r#"
            [[probe]]
            syscall = "openat"
            name = "open"
            span_name = "open file"
            attach = "tracepoint"
            result = "fd"
            [[probe.argument]]
            name = "filename"
            attribute = "file.path"
            [[probe.argument]]
            name = "flags"
            decoder = "open_flags"

            [[probe]]
            function = "signalfd"
            "#,
        );
        let declared = read(&[], std::slice::from_ref(&file.0)).unwrap();
        let open = &declared[0];
        assert_eq!(open.probed, Probed::Syscall("openat".into()));
        assert_eq!(
            (open.name.as_str(), open.span_name.as_deref()),
            ("open", Some("open file"))
        );
        assert_eq!(
            (open.attach, open.result),
            (Some(AttachMode::Tracepoint), Some(ResultKind::Fd))
        );
        let arguments = open.arguments.as_deref().unwrap();
        assert_eq!(arguments[0].attribute.as_deref(), Some("file.path"));
        assert_eq!(arguments[1].decoder.as_deref(), Some("open_flags"));
        assert_eq!(declared[1].probed, Probed::Signalfd);
    }

    #[test]
    fn bad_declarations_are_refused_with_the_probe_named() {
        let cases = [
            ("[[probe]]\nname = \"x\"", "give exactly one of `syscall` or `function`"),
            ("[[probe]]\nsyscall = \"openat\"\nresult = \"int\"", "probe openat"),
            ("[[probe]]\nsyscall = \"openat\"\nattach = \"uprobe\"", "attach `uprobe`"),
            (
                "[[probe]]\nsyscall = \"openat\"\n[[probe.argument]]\nname = \"flags\"\ndecoder = \"ksym\"",
                "unknown decoder `ksym`",
            ),
            ("[[probe]]\nsyscall = \"openat\"\ncolour = 1", "unknown field `colour`"),
            ("[[probe]]\nsyscall = \"open at\"", "a name is letters"),
            ("[[probe]]\nsyscall = \"openat\"\n[[probe]]\nsyscall = \"openat\"", "declared twice"),
            ("[[probe]]\nfunction = \"signalfd\"\n[[probe.argument]]\nname = \"ufd\"", "captures its own"),
        ];
        for (text, expected) in cases {
            let file = write(text);
            let error = read(&[], std::slice::from_ref(&file.0))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
        let error = read(&[], &["/no/such/probes.toml".into()]).unwrap_err();
        assert!(error
            .to_string()
            .starts_with("cannot read probe file /no/such/probes.toml"));
    }
}
