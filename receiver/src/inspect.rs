//! Reading values out of received telemetry: attributes by key, typed values, ids as hex.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use std::fmt::Write as _;

/// The value of the first attribute named `key`.
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref())
}

/// The value of attribute `key` if it is a string.
pub fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attribute(attributes, key).and_then(as_str)
}

/// The value of attribute `key` if it is an integer.
pub fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    attribute(attributes, key).and_then(as_int)
}

/// The value of attribute `key` if it is an array of strings.
pub fn string_array_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<Vec<&'a str>> {
    attribute(attributes, key).and_then(as_string_array)
}

/// The string in `value`, if it holds one.
pub fn as_str(value: &AnyValue) -> Option<&str> {
    match &value.value {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// The integer in `value`, if it holds one.
pub fn as_int(value: &AnyValue) -> Option<i64> {
    match value.value {
        Some(Value::IntValue(i)) => Some(i),
        _ => None,
    }
}

/// The boolean in `value`, if it holds one.
pub fn as_bool(value: &AnyValue) -> Option<bool> {
    match value.value {
        Some(Value::BoolValue(b)) => Some(b),
        _ => None,
    }
}

/// The strings in `value`, if it holds an array whose elements are all strings.
pub fn as_string_array(value: &AnyValue) -> Option<Vec<&str>> {
    match &value.value {
        Some(Value::ArrayValue(array)) => array.values.iter().map(as_str).collect(),
        _ => None,
    }
}

/// A short human-readable form of a value: strings quoted, arrays in brackets, bytes as hex.
pub fn display_value(value: &AnyValue) -> String {
    match &value.value {
        None => String::new(),
        Some(Value::StringValue(s)) => format!("{s:?}"),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::ArrayValue(array)) => {
            let items: Vec<_> = array.values.iter().map(display_value).collect();
            format!("[{}]", items.join(","))
        }
        Some(Value::KvlistValue(list)) => {
            let items: Vec<_> = list
                .values
                .iter()
                .map(|kv| {
                    let value = kv.value.as_ref().map(display_value).unwrap_or_default();
                    format!("{}={}", kv.key, value)
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Some(Value::BytesValue(bytes)) => format!("0x{}", hex_id(bytes)),
        Some(Value::StringValueStrindex(index)) => format!("strindex#{index}"),
    }
}

/// Bytes as lowercase hex, the way OTLP/JSON and the W3C trace context spell trace and span ids.
pub fn hex_id(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, byte| {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::received::tests::kv;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn any(value: Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    fn strings(items: &[&str]) -> Value {
        Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|s| any(Value::StringValue((*s).to_owned())))
                .collect(),
        })
    }

    #[test]
    fn typed_attribute_lookups() {
        let attributes = vec![
            kv("name", Value::StringValue("signalfd4".to_owned())),
            kv("fd", Value::IntValue(-9)),
            kv("signals", strings(&["SIGINT", "SIGTERM"])),
            kv(
                "mixed",
                Value::ArrayValue(ArrayValue {
                    values: vec![
                        any(Value::IntValue(1)),
                        any(Value::StringValue("x".to_owned())),
                    ],
                }),
            ),
            kv("ok", Value::BoolValue(true)),
            kv("fd", Value::IntValue(100)),
        ];
        assert_eq!(string_attribute(&attributes, "name"), Some("signalfd4"));
        assert_eq!(int_attribute(&attributes, "fd"), Some(-9), "first one wins");
        assert_eq!(
            string_array_attribute(&attributes, "signals"),
            Some(vec!["SIGINT", "SIGTERM"])
        );
        assert_eq!(string_array_attribute(&attributes, "mixed"), None);
        assert_eq!(attribute(&attributes, "ok").and_then(as_bool), Some(true));
        assert_eq!(string_attribute(&attributes, "fd"), None, "wrong type");
        assert_eq!(int_attribute(&attributes, "missing"), None);
    }

    #[test]
    fn values_display_compactly() {
        assert_eq!(
            display_value(&any(Value::StringValue("a b".to_owned()))),
            "\"a b\""
        );
        assert_eq!(display_value(&any(Value::DoubleValue(1.5))), "1.5");
        assert_eq!(display_value(&any(strings(&["A", "B"]))), "[\"A\",\"B\"]");
        assert_eq!(
            display_value(&any(Value::BytesValue(vec![0, 255]))),
            "0x00ff"
        );
        let list = Value::KvlistValue(KeyValueList {
            values: vec![kv("k", Value::IntValue(1))],
        });
        assert_eq!(display_value(&any(list)), "{k=1}");
        assert_eq!(display_value(&AnyValue { value: None }), "");
    }

    #[test]
    fn ids_are_lowercase_hex_with_leading_zeros() {
        assert_eq!(hex_id(&[0x00, 0x0a, 0xff, 0x10]), "000aff10");
        assert_eq!(hex_id(&[]), "");
    }
}
