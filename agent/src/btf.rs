//! The kernel's own type information (BTF): field offsets for the probes' task loads, and the
//! typed arguments of a function for declared probes.
//!
//! Only what [`TaskLayout`] and [`Function`] need: structs and unions by name, their members
//! (through anonymous members, as `task_struct`'s randomised layouts use), type sizes to check
//! each field is what the probes load, and functions' prototypes classified as [`ValueType`]s.

use std::{collections::HashMap, path::Path};

use kspan_common::{TaskLayout, EXE_NAME_LEN};

/// Where a kernel built with `CONFIG_DEBUG_INFO_BTF` describes its types.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
const TYPE_LEN: usize = 12;

/// Why a field's offset could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    /// The type data is not BTF or is cut short.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// The kernel has no struct of that name.
    #[error("the kernel's BTF has no struct {0}")]
    NoStruct(String),
    /// The struct has no such member.
    #[error("the kernel's BTF has no field {0}.{1}")]
    NoField(String, String),
    /// The member is not of the size the probes load.
    #[error("{0}.{1} is {2} bytes in this kernel, the probes load {3}")]
    UnexpectedSize(String, String, u64, u64),
    /// The member is a bit field.
    #[error("{0}.{1} is a bit field")]
    BitField(String, String),
    /// The kernel has no function of that name.
    #[error("the kernel's BTF has no function {0}: it may be inlined, renamed or not built in")]
    NoFunction(String),
    /// The function's type is not a prototype.
    #[error("the kernel's BTF gives function {0} a type that is not a function prototype")]
    NotAPrototype(String),
    /// A member path that the types do not have.
    #[error("member path `{0}`: {1}")]
    BadPath(String, String),
}

/// A member reached from a parameter through pointers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberPath {
    /// At each pointer followed, the member offset added to it before loading the next value.
    pub hops: Vec<u32>,
    /// How the member reads.
    pub value: ValueType,
}

/// How a function's argument or return value can be read from a register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// An integer, enum, `bool` or `char`, through typedefs and qualifiers.
    Int { bytes: u8, signed: bool },
    /// A pointer to `char`; `user` when BTF tags the pointee `__user` (a user-space string).
    String { user: bool },
    /// Any other pointer.
    Pointer,
    /// No value (a return type only).
    Void,
    /// Passed by value but not readable as one register: the kind, e.g. `struct open_how`.
    Unsupported(String),
}

/// One parameter of a [`Function`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameter {
    /// The name in the kernel's source, or `argN` (N from 0) when BTF has none.
    pub name: String,
    /// How to read it.
    pub value: ValueType,
}

/// A kernel function's prototype, from BTF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Parameters in order (all of them: the caller checks how many it can read).
    pub params: Vec<Parameter>,
    /// The return value.
    pub returns: ValueType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Enum64,
    Float,
    /// Typedef, const, volatile, restrict: the same type as what they refer to.
    Alias,
    /// An alias with an attribute, e.g. `user` for `__user`.
    TypeTag,
    Func,
    FuncProto,
    /// Anything that has no size here (variables, sections, forward declarations).
    Other,
}

#[derive(Debug)]
struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
    bit_field: bool,
}

#[derive(Debug)]
struct Type {
    name: u32,
    kind: Kind,
    /// Size in bytes (ints, structs, unions, enums) or the referred type id (aliases, pointers).
    size_or_type: u32,
    /// Element type and count, for arrays.
    array: Option<(u32, u32)>,
    /// Signed ints (by their encoding) and signed enums (by the kind flag).
    signed: bool,
    members: Vec<Member>,
    /// Name and type id of each parameter, for function prototypes.
    params: Vec<(u32, u32)>,
}

/// A parsed BTF blob: the types (id 1 is the first) and the string table.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs: HashMap<String, u32>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Malformed("type data cut short"))
}

impl Btf {
    /// Reads the BTF file at `path` (usually [`VMLINUX_BTF`]).
    pub fn read(path: &Path) -> Result<Self, BtfError> {
        let data =
            std::fs::read(path).map_err(|e| BtfError::Read(path.display().to_string(), e))?;
        Self::parse(&data)
    }

    /// Parses a little-endian BTF blob.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < HEADER_LEN || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed("no little-endian BTF header"));
        }
        let header_len = u32_at(data, 4)? as usize;
        let section = |offset_at: usize| -> Result<&[u8], BtfError> {
            let start = header_len + u32_at(data, offset_at)? as usize;
            let len = u32_at(data, offset_at + 4)? as usize;
            data.get(start..start + len)
                .ok_or(BtfError::Malformed("section outside the data"))
        };
        let (type_data, strings) = (section(8)?, section(16)?);
        let mut types = Vec::new();
        let mut at = 0;
        while at < type_data.len() {
            let (name, info) = (u32_at(type_data, at)?, u32_at(type_data, at + 4)?);
            let size_or_type = u32_at(type_data, at + 8)?;
            let (vlen, kind_flag) = ((info & 0xffff) as usize, info >> 31 == 1);
            at += TYPE_LEN;
            let mut ty = Type {
                name,
                kind: Kind::Other,
                size_or_type,
                array: None,
                signed: false,
                members: Vec::new(),
                params: Vec::new(),
            };
            // Each kind is followed by data of its own: skip or read it.
            at += match (info >> 24) & 0x1f {
                1 => {
                    const SIGNED: u32 = 1;
                    ty.kind = Kind::Int;
                    ty.signed = (u32_at(type_data, at)? >> 24) & SIGNED != 0;
                    4
                }
                2 => {
                    ty.kind = Kind::Ptr;
                    0
                }
                3 => {
                    ty.kind = Kind::Array;
                    ty.array = Some((u32_at(type_data, at)?, u32_at(type_data, at + 8)?));
                    12
                }
                kind @ (4 | 5) => {
                    ty.kind = if kind == 4 { Kind::Struct } else { Kind::Union };
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = u32_at(type_data, m + 8)?;
                        ty.members.push(Member {
                            name: u32_at(type_data, m)?,
                            type_id: u32_at(type_data, m + 4)?,
                            bit_offset: if kind_flag {
                                offset & 0xff_ffff
                            } else {
                                offset
                            },
                            bit_field: kind_flag && offset >> 24 != 0,
                        });
                    }
                    vlen * 12
                }
                6 => {
                    (ty.kind, ty.signed) = (Kind::Enum, kind_flag);
                    vlen * 8
                }
                7 => 0,
                8..=11 => {
                    ty.kind = Kind::Alias;
                    0
                }
                12 => {
                    ty.kind = Kind::Func;
                    0
                }
                13 => {
                    ty.kind = Kind::FuncProto;
                    for i in 0..vlen {
                        let p = at + i * 8;
                        ty.params
                            .push((u32_at(type_data, p)?, u32_at(type_data, p + 4)?));
                    }
                    vlen * 8
                }
                14 | 17 => 4,
                15 => vlen * 12,
                16 => {
                    ty.kind = Kind::Float;
                    0
                }
                18 => {
                    ty.kind = Kind::TypeTag;
                    0
                }
                19 => {
                    (ty.kind, ty.signed) = (Kind::Enum64, kind_flag);
                    vlen * 12
                }
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            types.push(ty);
        }
        let mut btf = Self {
            types,
            strings: strings.to_vec(),
            structs: HashMap::new(),
        };
        for (index, ty) in btf.types.iter().enumerate() {
            if matches!(ty.kind, Kind::Struct | Kind::Union) && ty.name != 0 {
                let name = btf.string(ty.name).to_string();
                btf.structs.entry(name).or_insert(index as u32 + 1);
            }
        }
        Ok(btf)
    }

    fn string(&self, offset: u32) -> &str {
        let tail = self.strings.get(offset as usize..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).unwrap_or_default()
    }

    fn type_by_id(&self, id: u32) -> Result<&Type, BtfError> {
        id.checked_sub(1)
            .and_then(|index| self.types.get(index as usize))
            .ok_or(BtfError::Malformed("type id out of range"))
    }

    /// Size in bytes of type `id`.
    fn size(&self, id: u32) -> Result<u64, BtfError> {
        let mut ty = self.type_by_id(id)?;
        // Aliases can chain (a const typedef); a cycle would be malformed BTF.
        for _ in 0..32 {
            return Ok(match ty.kind {
                Kind::Alias | Kind::TypeTag => {
                    ty = self.type_by_id(ty.size_or_type)?;
                    continue;
                }
                Kind::Ptr => 8,
                Kind::Array => {
                    let (element, count) = ty.array.ok_or(BtfError::Malformed("array"))?;
                    self.size(element)? * u64::from(count)
                }
                Kind::Int
                | Kind::Struct
                | Kind::Union
                | Kind::Enum
                | Kind::Enum64
                | Kind::Float => u64::from(ty.size_or_type),
                Kind::Func | Kind::FuncProto | Kind::Other => {
                    return Err(BtfError::Malformed("member of a sizeless type"))
                }
            });
        }
        Err(BtfError::Malformed("type aliases loop"))
    }

    /// Bit offset, type id and bit-field flag of `member` in the struct or union `id`,
    /// searching anonymous members.
    fn find(&self, id: u32, member: &str) -> Result<Option<(u32, u32, bool)>, BtfError> {
        for m in &self.type_by_id(id)?.members {
            if self.string(m.name) == member {
                return Ok(Some((m.bit_offset, m.type_id, m.bit_field)));
            }
            let inner = self.type_by_id(m.type_id)?;
            if m.name == 0 && matches!(inner.kind, Kind::Struct | Kind::Union) {
                if let Some((offset, type_id, bit_field)) = self.find(m.type_id, member)? {
                    return Ok(Some((m.bit_offset + offset, type_id, bit_field)));
                }
            }
        }
        Ok(None)
    }

    /// Byte offset of `structure.member`, checked to be `size` bytes.
    pub fn offset(&self, structure: &str, member: &str, size: u64) -> Result<u32, BtfError> {
        let (offset, found_size) = self.member(structure, member)?;
        if found_size != size {
            return Err(BtfError::UnexpectedSize(
                structure.to_string(),
                member.to_string(),
                found_size,
                size,
            ));
        }
        Ok(offset)
    }

    /// Byte offset and size of `structure.member`, whatever its size.
    fn member(&self, structure: &str, member: &str) -> Result<(u32, u64), BtfError> {
        let names = || (structure.to_string(), member.to_string());
        let id = *self
            .structs
            .get(structure)
            .ok_or_else(|| BtfError::NoStruct(structure.to_string()))?;
        let (bit_offset, type_id, bit_field) = self.find(id, member)?.ok_or_else(|| {
            let (s, m) = names();
            BtfError::NoField(s, m)
        })?;
        if bit_field || bit_offset % 8 != 0 {
            let (s, m) = names();
            return Err(BtfError::BitField(s, m));
        }
        Ok((bit_offset / 8, self.size(type_id)?))
    }

    /// Follows `path` (`how->flags`, `file->f_path.dentry->d_name.name`) from a parameter of
    /// `function`: the member offset to add at each pointer followed, and how the member reads.
    pub fn member_path(&self, function: &str, path: &str) -> Result<MemberPath, BtfError> {
        let bad = |why: &str| BtfError::BadPath(path.to_string(), why.to_string());
        let (parameter, rest) = split_parameter(path);
        let proto = self.prototype(function)?;
        let type_id = proto
            .params
            .iter()
            .find(|&&(name, _)| self.string(name) == parameter)
            .map(|&(_, type_id)| type_id)
            .ok_or_else(|| bad(&format!("{function} has no parameter `{parameter}`")))?;
        self.follow(type_id, path, rest)
    }

    /// Follows `path` (`how->flags`) from a syscall argument whose C type tracefs gives as
    /// `c_type` (`struct open_how *`): the struct is found by name.
    pub fn member_path_from(&self, c_type: &str, path: &str) -> Result<MemberPath, BtfError> {
        let bad = |why: &str| BtfError::BadPath(path.to_string(), why.to_string());
        let (parameter, rest) = split_parameter(path);
        let name = c_type
            .trim_start_matches("const ")
            .strip_prefix("struct ")
            .and_then(|pointer| pointer.strip_suffix('*'))
            .map(str::trim)
            .ok_or_else(|| {
                bad(&format!(
                    "`{parameter}` is `{c_type}`, not a struct pointer"
                ))
            })?;
        let structure = *self
            .structs
            .get(name)
            .ok_or_else(|| BtfError::NoStruct(name.to_string()))?;
        // A pointer type to start from, as a parameter of that type would have.
        let pointer = self
            .types
            .iter()
            .position(|ty| ty.kind == Kind::Ptr && ty.size_or_type == structure)
            .ok_or_else(|| bad(&format!("the kernel's BTF has no pointer to struct {name}")))?;
        self.follow(pointer as u32 + 1, path, rest)
    }

    /// Follows the members in `rest` (`->f_path.dentry`) from a value of type `type_id`.
    fn follow(&self, mut type_id: u32, path: &str, mut rest: &str) -> Result<MemberPath, BtfError> {
        let bad = |why: &str| BtfError::BadPath(path.to_string(), why.to_string());
        let mut hops: Vec<u32> = Vec::new();
        while !rest.is_empty() {
            let (through_pointer, after) = match (rest.strip_prefix("->"), rest.strip_prefix('.')) {
                (Some(after), _) => (true, after),
                (None, Some(after)) => (false, after),
                _ => return Err(bad("members are joined by `->` or `.`")),
            };
            let end = after.find(['-', '.']).unwrap_or(after.len());
            let member = &after[..end];
            rest = &after[end..];
            if through_pointer {
                type_id = self
                    .pointee(type_id)?
                    .ok_or_else(|| bad(&format!("`->{member}` follows something not a pointer")))?;
                hops.push(0);
            }
            let Some(offset) = hops.last_mut() else {
                return Err(bad("a parameter's members are reached through `->`"));
            };
            let structure = self.unaliased(type_id)?;
            let (bit_offset, member_type, bit_field) = match self.type_by_id(structure)?.kind {
                Kind::Struct | Kind::Union => self.find(structure, member)?,
                _ => None,
            }
            .ok_or_else(|| bad(&format!("no member `{member}` there")))?;
            if bit_field || bit_offset % 8 != 0 {
                return Err(bad(&format!("`{member}` is a bit field")));
            }
            *offset += bit_offset / 8;
            type_id = member_type;
        }
        if hops.is_empty() {
            return Err(bad("no member named"));
        }
        Ok(MemberPath {
            hops,
            value: self.value_type(type_id)?,
        })
    }

    /// The FUNC_PROTO of `function`.
    fn prototype(&self, function: &str) -> Result<&Type, BtfError> {
        let func = self
            .types
            .iter()
            .find(|ty| ty.kind == Kind::Func && self.string(ty.name) == function)
            .ok_or_else(|| BtfError::NoFunction(function.to_string()))?;
        let proto = self.type_by_id(func.size_or_type)?;
        if proto.kind != Kind::FuncProto {
            return Err(BtfError::NotAPrototype(function.to_string()));
        }
        Ok(proto)
    }

    /// `id` without its aliases and tags.
    fn unaliased(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..32 {
            let ty = self.type_by_id(id)?;
            match ty.kind {
                Kind::Alias | Kind::TypeTag => id = ty.size_or_type,
                _ => return Ok(id),
            }
        }
        Err(BtfError::Malformed("type aliases loop"))
    }

    /// What the pointer type `id` points to, if it is a pointer.
    fn pointee(&self, id: u32) -> Result<Option<u32>, BtfError> {
        let ty = self.type_by_id(self.unaliased(id)?)?;
        Ok((ty.kind == Kind::Ptr).then_some(ty.size_or_type))
    }

    /// Where a dentry keeps a short name inline, and how many bytes it has there:
    /// `d_shortname` since 6.14, `d_iname` before.
    fn dentry_inline_name(&self) -> Result<(u32, u32), BtfError> {
        let (offset, size) = self
            .member("dentry", "d_shortname")
            .or_else(|_| self.member("dentry", "d_iname"))?;
        if size == 0 || size > EXE_NAME_LEN as u64 {
            return Err(BtfError::UnexpectedSize(
                "dentry".into(),
                "d_shortname".into(),
                size,
                EXE_NAME_LEN as u64,
            ));
        }
        Ok((offset, size as u32))
    }

    /// Where the probes find the caller's identity in this kernel.
    pub fn task_layout(&self) -> Result<TaskLayout, BtfError> {
        let (dentry_inline_name, dentry_inline_name_size) = self.dentry_inline_name()?;
        Ok(TaskLayout {
            task_pid: self.offset("task_struct", "pid", 4)?,
            task_tgid: self.offset("task_struct", "tgid", 4)?,
            task_comm: self.offset("task_struct", "comm", kspan_common::COMM_LEN as u64)?,
            task_cred: self.offset("task_struct", "cred", 8)?,
            cred_uid: self.offset("cred", "uid", 4)?,
            cred_euid: self.offset("cred", "euid", 4)?,
            task_cgroups: self.offset("task_struct", "cgroups", 8)?,
            css_set_dfl_cgrp: self.offset("css_set", "dfl_cgrp", 8)?,
            cgroup_kn: self.offset("cgroup", "kn", 8)?,
            kernfs_node_id: self.offset("kernfs_node", "id", 8)?,
            task_mm: self.offset("task_struct", "mm", 8)?,
            mm_exe_file: self.offset("mm_struct", "exe_file", 8)?,
            // Both are embedded structs: the offsets add up.
            file_dentry: self.offset("file", "f_path", 16)? + self.offset("path", "dentry", 8)?,
            dentry_name_len: self.offset("dentry", "d_name", 16)?
                + self.offset("qstr", "len", 4)?,
            dentry_inline_name,
            dentry_inline_name_size,
        })
    }

    /// The parameters and return value of the kernel function `name` (its `BTF_KIND_FUNC`).
    pub fn function(&self, name: &str) -> Result<Function, BtfError> {
        let proto = self.prototype(name)?;
        let params = proto
            .params
            .iter()
            .enumerate()
            .map(|(index, &(param_name, type_id))| {
                Ok(Parameter {
                    name: match self.string(param_name) {
                        "" => format!("arg{index}"),
                        named => named.to_string(),
                    },
                    // Type 0 among parameters is a variadic function's `...`.
                    value: match type_id {
                        0 => ValueType::Unsupported("variadic arguments (...)".into()),
                        _ => self.value_type(type_id)?,
                    },
                })
            })
            .collect::<Result<_, BtfError>>()?;
        Ok(Function {
            params,
            returns: self.value_type(proto.size_or_type)?,
        })
    }

    /// How a value of type `id` reads from a register: through aliases, and through one
    /// pointer to tell strings (and whether a `user` tag marks them) from other pointers.
    fn value_type(&self, mut id: u32) -> Result<ValueType, BtfError> {
        let (mut pointer, mut user) = (false, false);
        // Aliases can chain; a cycle would be malformed BTF.
        for _ in 0..32 {
            if id == 0 {
                // Void, or what a `void *` points to.
                return Ok(if pointer {
                    ValueType::Pointer
                } else {
                    ValueType::Void
                });
            }
            let ty = self.type_by_id(id)?;
            let name = self.string(ty.name);
            let value = match ty.kind {
                Kind::TypeTag => {
                    user |= name == "user";
                    id = ty.size_or_type;
                    continue;
                }
                Kind::Alias => {
                    id = ty.size_or_type;
                    continue;
                }
                Kind::Ptr if !pointer => {
                    pointer = true;
                    id = ty.size_or_type;
                    continue;
                }
                Kind::Int
                    if pointer && matches!(name, "char" | "unsigned char" | "signed char") =>
                {
                    ValueType::String { user }
                }
                _ if pointer => ValueType::Pointer,
                Kind::Int | Kind::Enum | Kind::Enum64 => match u8::try_from(ty.size_or_type) {
                    Ok(bytes @ 1..=8) => ValueType::Int {
                        bytes,
                        signed: ty.signed,
                    },
                    _ => ValueType::Unsupported(format!("{}-byte {name}", ty.size_or_type)),
                },
                Kind::Struct | Kind::Union => {
                    let kind = if ty.kind == Kind::Struct {
                        "struct"
                    } else {
                        "union"
                    };
                    ValueType::Unsupported(match name {
                        "" => format!("anonymous {kind}"),
                        named => format!("{kind} {named}"),
                    })
                }
                Kind::Array => ValueType::Unsupported("array".into()),
                Kind::Float => ValueType::Unsupported(format!("floating-point {name}")),
                Kind::Ptr | Kind::Func | Kind::FuncProto | Kind::Other => {
                    ValueType::Unsupported("a type without a value".into())
                }
            };
            return Ok(value);
        }
        Err(BtfError::Malformed("type aliases loop"))
    }
}

/// `how->flags` as `how` and `->flags`.
fn split_parameter(path: &str) -> (&str, &str) {
    path.split_at(path.find(['-', '.']).unwrap_or(path.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF blobs for tests: strings and types, appended in id order.
    #[derive(Default)]
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Builder {
        fn name(&mut self, name: &str) -> u32 {
            if self.strings.is_empty() {
                self.strings.push(0);
            }
            if name.is_empty() {
                return 0;
            }
            let at = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            at
        }

        fn header(&mut self, name: &str, kind: u32, vlen: u32, kind_flag: bool, size: u32) {
            let name = self.name(name);
            let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
            for word in [name, info, size] {
                self.types.extend_from_slice(&word.to_le_bytes());
            }
        }

        fn int(&mut self, name: &str, size: u32) {
            self.int_encoded(name, size, 0);
        }

        /// An int with encoding bits (1 signed, 2 char, 4 bool).
        fn int_encoded(&mut self, name: &str, size: u32, encoding: u32) {
            self.header(name, 1, 0, false, size);
            self.types
                .extend_from_slice(&((encoding << 24) | (size * 8)).to_le_bytes());
        }

        /// A typedef (8), const (10), type tag (18) or other kind that only refers to `to`.
        fn refer(&mut self, kind: u32, name: &str, to: u32) {
            self.header(name, kind, 0, false, to);
        }

        fn enumeration(&mut self, name: &str, size: u32, signed: bool) {
            self.header(name, 6, 1, signed, size);
            let value = self.name("VALUE");
            for word in [value, 0] {
                self.types.extend_from_slice(&word.to_le_bytes());
            }
        }

        fn func_proto(&mut self, returns: u32, params: &[(&str, u32)]) {
            self.header("", 13, params.len() as u32, false, returns);
            for &(param, type_id) in params {
                let param = self.name(param);
                for word in [param, type_id] {
                    self.types.extend_from_slice(&word.to_le_bytes());
                }
            }
        }

        fn func(&mut self, name: &str, proto: u32) {
            self.header(name, 12, 0, false, proto);
        }

        fn ptr(&mut self, to: u32) {
            self.header("", 2, 0, false, to);
        }

        fn array(&mut self, element: u32, count: u32) {
            self.header("", 3, 0, false, 0);
            for word in [element, element, count] {
                self.types.extend_from_slice(&word.to_le_bytes());
            }
        }

        fn structure(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) {
            self.header(name, 4, members.len() as u32, false, size);
            for &(member, type_id, bit_offset) in members {
                let member = self.name(member);
                for word in [member, type_id, bit_offset] {
                    self.types.extend_from_slice(&word.to_le_bytes());
                }
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let mut data = Vec::new();
            data.extend_from_slice(&MAGIC.to_le_bytes());
            data.extend_from_slice(&[1, 0]);
            let (types, strings) = (self.types.len() as u32, self.strings.len() as u32);
            for word in [HEADER_LEN as u32, 0, types, types, strings] {
                data.extend_from_slice(&word.to_le_bytes());
            }
            data.extend_from_slice(&self.types);
            data.extend_from_slice(&self.strings);
            data
        }
    }

    /// A kernel whose task_struct hides `pid` and `comm` inside an anonymous struct.
    fn kernel() -> Vec<u8> {
        let mut b = Builder::default();
        b.int("int", 4); // 1
        b.int("char", 1); // 2
        b.array(2, 16); // 3
        b.structure("", 20, &[("pid", 1, 0), ("comm", 3, 32)]); // 4: anonymous
        b.structure("cred", 8, &[("usage", 1, 0), ("uid", 1, 32)]); // 5
        b.ptr(5); // 6
        b.structure(
            "task_struct",
            64,
            &[("state", 1, 0), ("", 4, 64), ("cred", 6, 256)],
        ); // 7
        b.bytes()
    }

    #[test]
    fn finds_members_through_anonymous_structs() {
        let btf = Btf::parse(&kernel()).expect("parses");
        assert_eq!(btf.offset("task_struct", "pid", 4).unwrap(), 8);
        assert_eq!(btf.offset("task_struct", "comm", 16).unwrap(), 12);
        assert_eq!(btf.offset("task_struct", "cred", 8).unwrap(), 32);
        assert_eq!(btf.offset("cred", "uid", 4).unwrap(), 4);
    }

    #[test]
    fn a_missing_or_resized_field_is_named() {
        let btf = Btf::parse(&kernel()).expect("parses");
        let error = btf.offset("task_struct", "tgid", 4).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the kernel's BTF has no field task_struct.tgid"
        );
        let error = btf.offset("task_struct", "pid", 8).unwrap_err();
        assert_eq!(
            error.to_string(),
            "task_struct.pid is 4 bytes in this kernel, the probes load 8"
        );
        let error = btf.offset("css_set", "dfl_cgrp", 8).unwrap_err();
        assert_eq!(error.to_string(), "the kernel's BTF has no struct css_set");
        assert!(btf.task_layout().is_err());
    }

    #[test]
    fn garbage_and_truncated_blobs_are_errors() {
        assert!(Btf::parse(b"not btf at all, not even close").is_err());
        let blob = kernel();
        for cut in [HEADER_LEN, blob.len() / 2, blob.len() - 1] {
            assert!(Btf::parse(&blob[..cut]).is_err(), "cut at {cut}");
        }
    }

    fn int(bytes: u8, signed: bool) -> ValueType {
        ValueType::Int { bytes, signed }
    }

    /// `(name, value)` of each parameter, then the return value: easy to compare and to show.
    fn prototype(btf: &Btf, function: &str) -> (Vec<(String, ValueType)>, ValueType) {
        let function = btf.function(function).unwrap_or_else(|e| panic!("{e}"));
        let params = function.params.into_iter().map(|p| (p.name, p.value));
        (params.collect(), function.returns)
    }

    fn expected(
        params: &[(&str, ValueType)],
        returns: ValueType,
    ) -> (Vec<(String, ValueType)>, ValueType) {
        let params = params
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()));
        (params.collect(), returns)
    }

    #[test]
    fn classifies_parameters_through_aliases_tags_and_pointers() {
        let mut b = Builder::default();
        b.int_encoded("int", 4, 1); // 1
        b.int_encoded("char", 1, 1); // 2
        b.refer(10, "", 2); // 3: const char
        b.refer(18, "user", 3); // 4: __user const char
        b.ptr(4); // 5: const char __user *
        b.ptr(3); // 6: const char *
        b.int("short unsigned int", 2); // 7
        b.refer(8, "umode_t", 7); // 8
        b.enumeration("direction", 4, true); // 9
        b.structure("open_how", 24, &[]); // 10
        b.ptr(10); // 11
        b.ptr(0); // 12: void *
        b.int_encoded("_Bool", 1, 4); // 13
        b.func_proto(
            1,
            &[
                ("path", 5),
                ("name", 6),
                ("mode", 8),
                ("", 9),
                ("how", 10),
                ("howp", 11),
                ("data", 12),
                ("force", 13),
            ],
        ); // 14
        b.func("everything", 14); // 15
        b.func_proto(0, &[("how", 11)]); // 16
        b.func("returns_nothing", 16); // 17
        b.func("not_a_function", 1); // 18
        b.func_proto(1, &[("format", 6), ("", 0)]); // 19
        b.func("printk", 19); // 20
        let btf = Btf::parse(&b.bytes()).expect("parses");
        assert_eq!(
            prototype(&btf, "everything"),
            expected(
                &[
                    ("path", ValueType::String { user: true }),
                    ("name", ValueType::String { user: false }),
                    ("mode", int(2, false)),
                    ("arg3", int(4, true)),
                    ("how", ValueType::Unsupported("struct open_how".into())),
                    ("howp", ValueType::Pointer),
                    ("data", ValueType::Pointer),
                    ("force", int(1, false)),
                ],
                int(4, true),
            )
        );
        assert_eq!(
            prototype(&btf, "returns_nothing"),
            expected(&[("how", ValueType::Pointer)], ValueType::Void)
        );
        assert_eq!(
            prototype(&btf, "printk"),
            expected(
                &[
                    ("format", ValueType::String { user: false }),
                    (
                        "arg1",
                        ValueType::Unsupported("variadic arguments (...)".into())
                    ),
                ],
                int(4, true),
            )
        );
        assert_eq!(
            btf.function("not_a_function").unwrap_err().to_string(),
            "the kernel's BTF gives function not_a_function a type that is not a function prototype"
        );
    }

    #[test]
    fn the_running_kernel_types_functions_arguments() {
        let path = Path::new(VMLINUX_BTF);
        assert!(
            path.exists(),
            "{VMLINUX_BTF} is missing: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF), which kspan needs"
        );
        let btf = Btf::read(path).expect("reads the kernel's BTF");
        // `__user` reaches BTF only as a type tag, which only clang-built kernels (with a pahole
        // that keeps tags) emit; this host's kernel is built without, so `filename` is a string
        // with no user tag even though it points to user memory.
        let user = false;
        // `do_sys_openat2` returned `long` until 6.x kernels made it `int`: this one says int.
        assert_eq!(
            prototype(&btf, "do_sys_openat2"),
            expected(
                &[
                    ("dfd", int(4, true)),
                    ("filename", ValueType::String { user }),
                    ("how", ValueType::Pointer),
                ],
                int(4, true),
            )
        );
        assert_eq!(
            prototype(&btf, "do_signalfd4"),
            expected(
                &[
                    ("ufd", int(4, true)),
                    ("mask", ValueType::Pointer),
                    ("flags", int(4, true)),
                ],
                int(4, true),
            )
        );
        assert_eq!(
            prototype(&btf, "vfs_fsync"),
            expected(
                &[("file", ValueType::Pointer), ("datasync", int(4, true))],
                int(4, true),
            )
        );
        // `umode_t` is a typedef of `unsigned short`.
        assert_eq!(
            prototype(&btf, "do_mkdirat"),
            expected(
                &[
                    ("dfd", int(4, true)),
                    ("name", ValueType::Pointer),
                    ("mode", int(2, false)),
                ],
                int(4, true),
            )
        );
        assert_eq!(
            btf.function("kspan_no_such_function").unwrap_err().to_string(),
            "the kernel's BTF has no function kspan_no_such_function: it may be inlined, renamed or not built in"
        );
    }

    #[test]
    fn member_paths_follow_pointers_and_add_member_offsets() {
        let btf = Btf::read(Path::new(VMLINUX_BTF)).expect("this kernel has BTF");
        let flags = btf.member_path("do_sys_openat2", "how->flags").unwrap();
        let open_how_flags = btf.offset("open_how", "flags", 8).unwrap();
        assert_eq!(flags.hops, [open_how_flags]);
        assert_eq!(
            flags,
            MemberPath {
                hops: vec![open_how_flags],
                value: int(8, false)
            }
        );
        // From a syscall argument's tracefs type, the same path reads the same member.
        assert_eq!(
            btf.member_path_from("struct open_how *", "how->flags")
                .unwrap(),
            flags
        );
        for (c_type, expected) in [
            ("int", "`how` is `int`, not a struct pointer"),
            ("struct kspan_no_such *", "no struct kspan_no_such"),
        ] {
            let error = btf.member_path_from(c_type, "how->flags").unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
        let name = btf
            .member_path("vfs_fsync", "file->f_path.dentry->d_name.name")
            .unwrap();
        let (f_path, _) = btf.member("file", "f_path").unwrap();
        let (dentry, _) = btf.member("path", "dentry").unwrap();
        let (d_name, _) = btf.member("dentry", "d_name").unwrap();
        assert_eq!(name.hops[0], f_path + dentry);
        assert!(name.hops[1] >= d_name, "{name:?}");
        assert_eq!(name.value, ValueType::String { user: false });
        for (path, why) in [
            ("how->nope", "no member `nope` there"),
            ("nope->flags", "has no parameter `nope`"),
            ("dfd->flags", "follows something not a pointer"),
            ("how", "no member named"),
            ("how.flags", "reached through `->`"),
        ] {
            let error = btf
                .member_path("do_sys_openat2", path)
                .unwrap_err()
                .to_string();
            assert!(error.contains(why), "{path}: {error}");
        }
    }

    #[test]
    fn the_running_kernel_describes_every_field_the_probes_load() {
        let path = Path::new(VMLINUX_BTF);
        assert!(
            path.exists(),
            "{VMLINUX_BTF} is missing: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF), which kspan needs"
        );
        let layout = Btf::read(path)
            .expect("reads the kernel's BTF")
            .task_layout()
            .expect("every field is there");
        assert_ne!(layout.task_pid, layout.task_tgid);
        assert!(layout.task_comm > 0 && layout.task_cred > 0 && layout.task_cgroups > 0);
        assert!(layout.task_mm > 0 && layout.file_dentry > 0 && layout.dentry_name_len > 0);
        assert!(
            [32, 40].contains(&layout.dentry_inline_name_size),
            "{layout:?}"
        );
    }
}
