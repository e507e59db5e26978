//! What kspan must emit for one declared call: the argument and result attributes, and the
//! log record's one-line summary.

use std::collections::BTreeMap;

use kspan_common::ProbeKind;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use signalfd_workload::manifest::declared::{ArgValue, DeclaredCall};

/// The most a probe reads of a user-memory string, its NUL included: a longer string arrives
/// as its first `STRING_BOUND - 1` bytes, marked truncated.
pub const STRING_BOUND: usize = 256;

/// `kspan.probe` of a declared call's probe: a syscall's tracepoints, or the pair its kernel
/// function attached as (`function_kinds`, from kspan's ready file).
pub(super) fn probe(
    call: &DeclaredCall,
    function_kinds: &BTreeMap<String, ProbeKind>,
) -> &'static str {
    match call.kernel_function {
        true => function_kinds
            .get(&call.syscall)
            .map_or("(a kind the ready file names)", |kind| kind.name()),
        false => ProbeKind::Tracepoint.name(),
    }
}

/// A string argument as a probe with [`STRING_BOUND`] reads it, and whether it was cut.
fn bounded(text: &str) -> (String, bool) {
    let bytes = text.as_bytes();
    if bytes.len() < STRING_BOUND {
        return (text.to_string(), false);
    }
    let kept = &bytes[..STRING_BOUND - 1];
    (String::from_utf8_lossy(kept).into_owned(), true)
}

/// The attributes in the call's own namespace, each with its value: `<syscall>.<arg>` per
/// argument (a cut string adds `.truncated`, an unreadable one has only `.unreadable`), then
/// `<syscall>.result` for a result or `error.type` for an errno.
pub(super) fn attributes(call: &DeclaredCall) -> Vec<(String, Value)> {
    let mut attributes = Vec::new();
    for arg in &call.args {
        // A member path's key joins its names with dots, as kspan's default does.
        let key = format!("{}.{}", call.syscall, arg.name.replace("->", "."));
        match &arg.value {
            ArgValue::Int(value) => attributes.push((key, Value::IntValue(*value))),
            ArgValue::UserString(text) => {
                let (kept, truncated) = bounded(text);
                if truncated {
                    attributes.push((format!("{key}.truncated"), Value::BoolValue(true)));
                }
                attributes.push((key, Value::StringValue(kept)));
            }
            ArgValue::Unreadable(_) => {
                attributes.push((format!("{key}.unreadable"), Value::BoolValue(true)));
            }
        }
    }
    match (&call.errno_name, call.failed()) {
        (Some(errno), true) => {
            attributes.push(("error.type".to_string(), Value::StringValue(errno.clone())))
        }
        _ => attributes.push((
            format!("{}.result", call.syscall),
            Value::IntValue(call.ret),
        )),
    }
    attributes
}

/// The log record's body: `openat(dfd=-100, filename="/tmp/x", flags=524288, mode=0) = 3`, or
/// `= -1 ENOENT` for an error. A cut string is followed by `...`; an unreadable one shows as
/// `<unreadable>`.
pub fn call_summary(call: &DeclaredCall) -> String {
    let args: Vec<String> = call
        .args
        .iter()
        .map(|arg| {
            let value = match &arg.value {
                ArgValue::Int(value) => value.to_string(),
                ArgValue::UserString(text) => match bounded(text) {
                    (kept, false) => format!("{kept:?}"),
                    (kept, true) => format!("{kept:?}..."),
                },
                ArgValue::Unreadable(_) => "<unreadable>".to_string(),
            };
            format!("{}={value}", arg.name)
        })
        .collect();
    let result = match (&call.errno_name, call.failed()) {
        (Some(errno), true) => format!("-1 {errno}"),
        _ => call.ret.to_string(),
    };
    format!("{}({}) = {result}", call.syscall, args.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use signalfd_workload::manifest::declared::DeclaredArg;
    use signalfd_workload::manifest::CallerIdentity;

    fn openat(filename: DeclaredArg, ret: i64, errno: Option<&str>) -> DeclaredCall {
        DeclaredCall {
            seq: 1,
            scenario: "open".into(),
            caller: CallerIdentity {
                pid: 10,
                tid: 11,
                uid: 0,
                euid: 0,
                thread_name: "open-0".into(),
                executable: "app".into(),
                cgroup_id: None,
                cgroup_path: None,
            },
            syscall: "openat".into(),
            args: vec![
                DeclaredArg::int("dfd", -100),
                filename,
                DeclaredArg::int("flags", 524288),
                DeclaredArg::int("mode", 0),
            ],
            ret,
            errno_name: errno.map(str::to_string),
            wall_before_ns: 1_000,
            wall_after_ns: 2_000,
            parent_seq: None,
            kernel_function: false,
        }
    }

    #[test]
    fn strings_are_cut_at_the_bound_and_marked() {
        assert_eq!(bounded(&"a".repeat(255)), ("a".repeat(255), false));
        assert_eq!(bounded(&"a".repeat(256)), ("a".repeat(255), true));
        assert_eq!(bounded(&"a".repeat(300)), ("a".repeat(255), true));
        assert_eq!(bounded("/tmp/x"), ("/tmp/x".to_string(), false));
    }

    #[test]
    fn a_result_and_an_errno_give_their_attributes() {
        let ok = openat(DeclaredArg::user_string("filename", "/tmp/x"), 3, None);
        let keys: Vec<String> = attributes(&ok).into_iter().map(|(key, _)| key).collect();
        assert_eq!(
            keys,
            [
                "openat.dfd",
                "openat.filename",
                "openat.flags",
                "openat.mode",
                "openat.result"
            ]
        );
        assert_eq!(attributes(&ok)[0].1, Value::IntValue(-100));
        let long = openat(
            DeclaredArg::user_string("filename", &"l".repeat(300)),
            -36,
            Some("ENAMETOOLONG"),
        );
        let attrs = attributes(&long);
        assert!(attrs.contains(&("openat.filename.truncated".into(), Value::BoolValue(true))));
        assert!(attrs.contains(&(
            "openat.filename".into(),
            Value::StringValue("l".repeat(255))
        )));
        assert!(attrs.contains(&(
            "error.type".into(),
            Value::StringValue("ENAMETOOLONG".into())
        )));
        assert!(!attrs.iter().any(|(key, _)| key == "openat.result"));
        let bad = openat(DeclaredArg::unreadable("filename", 1), -14, Some("EFAULT"));
        let attrs = attributes(&bad);
        assert!(attrs.contains(&("openat.filename.unreadable".into(), Value::BoolValue(true))));
        assert!(!attrs.iter().any(|(key, _)| key == "openat.filename"));
    }

    #[test]
    fn the_summary_is_the_call_and_its_result() {
        let ok = openat(DeclaredArg::user_string("filename", "/tmp/x"), 3, None);
        assert_eq!(
            call_summary(&ok),
            r#"openat(dfd=-100, filename="/tmp/x", flags=524288, mode=0) = 3"#
        );
        let missing = openat(
            DeclaredArg::user_string("filename", "/nope"),
            -2,
            Some("ENOENT"),
        );
        assert_eq!(
            call_summary(&missing),
            r#"openat(dfd=-100, filename="/nope", flags=524288, mode=0) = -1 ENOENT"#
        );
        let bad = openat(DeclaredArg::unreadable("filename", 1), -14, Some("EFAULT"));
        assert_eq!(
            call_summary(&bad),
            "openat(dfd=-100, filename=<unreadable>, flags=524288, mode=0) = -1 EFAULT"
        );
        let long = openat(
            DeclaredArg::user_string("filename", &"l".repeat(300)),
            4,
            None,
        );
        assert_eq!(
            call_summary(&long),
            format!(
                "openat(dfd=-100, filename=\"{}\"..., flags=524288, mode=0) = 4",
                "l".repeat(255)
            )
        );
    }
}
