//! A declaration made concrete: what the generic programs capture for its hook (the kernel's
//! [`DeclaredProbe`]) and how its calls read back ([`ProbeInfo`]), assembled the same way from
//! a syscall's tracefs format or a kernel function's BTF prototype.

use std::sync::Arc;

use kspan_common::{
    declared::{ArgRead, ArgSpec, DeclaredProbe, MAX_ARGS, MAX_HOPS, MAX_STRINGS},
    ProbeKind,
};
use kspan_decode::{ArgType, ArgumentInfo, Decoder, ProbeInfo, ResultKind};

use crate::declaration::{Declaration, DeclarationError};

/// Where a declared probe attaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookPoint {
    /// A syscall's `sys_enter_*` and `sys_exit_*` tracepoints, found by the syscall's number.
    Syscall {
        /// The two tracepoints.
        tracepoints: [String; 2],
        /// The number its records carry.
        number: u32,
        /// How many arguments it takes: its entry program reads that many.
        arguments: usize,
    },
    /// A kernel function's fentry/fexit pair (found by the pair's slot) or its kprobe/kretprobe
    /// pair (found by the function's address).
    Function {
        /// The function.
        name: String,
        /// The pairs to try, in order (the attach mode's function pairs).
        kinds: Vec<ProbeKind>,
    },
}

/// A declared probe, ready to load.
#[derive(Debug)]
pub struct ResolvedProbe {
    /// How its calls read.
    pub info: Arc<ProbeInfo>,
    /// What the programs capture.
    pub spec: DeclaredProbe,
    /// Where it attaches.
    pub hook: HookPoint,
}

/// One argument of the hooked call, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameter {
    /// Its name in the prototype.
    pub name: String,
    /// Its position (0: first).
    pub position: usize,
    /// Its type.
    pub ty: ArgType,
    /// How a string is read, when it is one: the caller's memory, the kernel's, or either.
    pub string_read: ArgRead,
    /// For a member path: the member offset added at each pointer followed (empty: the
    /// parameter itself).
    pub hops: Vec<u32>,
    /// Whether those pointers point into the caller's memory (a syscall's arguments).
    pub user_memory: bool,
}

/// How the hooked call returns, when the declaration does not say how to read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Returns {
    /// How its value reads.
    pub kind: ResultKind,
    /// Its size in bytes.
    pub bytes: u8,
}

/// The one-line reason a declaration is refused, naming its probe.
pub fn invalid(declaration: &Declaration, why: String) -> DeclarationError {
    DeclarationError::Invalid {
        probe: declaration.name.clone(),
        origin: declaration.origin.clone(),
        why,
    }
}

/// Assembles probe number `index` from the hook's parameters: the declared arguments (every
/// parameter when none are named), their attribute keys, decoders and string slots; `returns`
/// reads the return value unless the declaration says how.
pub fn assemble(
    declaration: &Declaration,
    index: u32,
    hook_name: &str,
    parameters: &[Parameter],
    returns: Returns,
    hook: HookPoint,
) -> Result<ResolvedProbe, DeclarationError> {
    let invalid = |why: String| invalid(declaration, why);
    let wanted: Vec<(&Parameter, Option<&crate::declaration::ArgumentDeclaration>)> =
        match &declaration.arguments {
            None => parameters
                .iter()
                .map(|parameter| (parameter, None))
                .collect(),
            Some(arguments) => arguments
                .iter()
                .map(|argument| {
                    let found = parameters.iter().find(|p| p.name == argument.name);
                    found.map(|p| (p, Some(argument))).ok_or_else(|| {
                        let names: Vec<_> = parameters.iter().map(|p| p.name.as_str()).collect();
                        let names = if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        };
                        invalid(format!(
                            "argument `{}`: {hook_name} has {names}",
                            argument.name
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
    let mut spec = DeclaredProbe {
        probe: index,
        declared: 1,
        ..DeclaredProbe::default()
    };
    let mut arguments = Vec::new();
    let mut strings = 0;
    for (parameter, declared) in wanted {
        let name = &parameter.name;
        if parameter.position >= MAX_ARGS {
            return Err(invalid(format!(
                "argument `{name}` is argument {} of {hook_name}: kspan reads the first {MAX_ARGS}",
                parameter.position + 1
            )));
        }
        let (read, string_slot) = match parameter.ty {
            ArgType::String { .. } if strings == MAX_STRINGS => {
                return Err(invalid(format!(
                    "argument `{name}`: at most {MAX_STRINGS} strings per probe"
                )))
            }
            ArgType::String { .. } => {
                strings += 1;
                (parameter.string_read, strings - 1)
            }
            ArgType::Int { .. } => (ArgRead::Value, 0),
        };
        if arguments
            .iter()
            .any(|other: &ArgumentInfo| other.position == parameter.position)
        {
            return Err(invalid(format!(
                "argument `{name}`: parameter {} is read once per call, and another argument \
                 already reads it",
                parameter.position + 1
            )));
        }
        let mut offsets = [0u16; MAX_HOPS];
        if parameter.hops.len() > MAX_HOPS {
            return Err(invalid(format!(
                "argument `{name}` goes through {} pointers: at most {MAX_HOPS}",
                parameter.hops.len()
            )));
        }
        for (slot, &offset) in offsets.iter_mut().zip(&parameter.hops) {
            *slot = u16::try_from(offset).map_err(|_| {
                invalid(format!(
                    "argument `{name}`: a member {offset} bytes in is too far"
                ))
            })?;
        }
        spec.args[parameter.position] = ArgSpec {
            read: read as u8,
            string_slot: string_slot as u8,
            hops: parameter.hops.len() as u8,
            user_memory: parameter.user_memory.into(),
            offsets,
            ..ArgSpec::default()
        };
        spec.arg_count = spec.arg_count.max(parameter.position as u16 + 1);
        // Decoder names were checked when the declaration was read.
        let decoder = declared
            .and_then(|argument| argument.decoder.as_deref())
            .and_then(Decoder::from_name);
        if decoder.is_some() && matches!(parameter.ty, ArgType::String { .. }) {
            return Err(invalid(format!(
                "argument `{name}`: a decoder names a number, and this is a string"
            )));
        }
        arguments.push(ArgumentInfo {
            // A member path's key joins its names with dots: `<probe>.how.flags`.
            attribute: declared
                .and_then(|argument| argument.attribute.clone())
                .unwrap_or_else(|| format!("{}.{}", declaration.name, name.replace("->", "."))),
            name: name.clone(),
            ty: parameter.ty,
            position: parameter.position,
            string_slot,
            decoder,
        });
    }
    let info = ProbeInfo {
        span_name: declaration
            .span_name
            .clone()
            .unwrap_or_else(|| declaration.name.clone()),
        arguments,
        result_bytes: returns.bytes,
        ..ProbeInfo::new(
            &declaration.name,
            declaration.result.unwrap_or(returns.kind),
        )
    };
    Ok(ResolvedProbe {
        info: Arc::new(info),
        spec,
        hook,
    })
}
