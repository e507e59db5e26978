//! The resources kspan's telemetry is sent under: by default one per traced process (its own
//! `service.name`, `process.*`) on top of the host's attributes, and one of kspan's own for its
//! health metrics.

use opentelemetry_proto::tonic::{
    common::v1::{any_value, AnyValue, KeyValue},
    resource::v1::Resource,
};

use opentelemetry_semantic_conventions::attribute;

use crate::{env::env_var, ExportError};

/// kspan's name, as `telemetry.distro.name` and its own `service.name`.
const KSPAN: &str = "kspan";

/// Facts about the host, gathered by the agent.
#[derive(Clone, Debug)]
pub struct HostInfo {
    /// `host.name`.
    pub host_name: String,
    /// `host.id`: the machine id (`/etc/machine-id`), when there is one.
    pub host_id: Option<String>,
    /// `os.version`: the kernel release.
    pub kernel_release: String,
    /// `os.name`: `NAME` from `/etc/os-release`, when there is one.
    pub os_name: Option<String>,
}

/// Which resource the calls are sent under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResourcePer {
    /// One per traced process: `service.name` is the process's executable name (unless the user
    /// names the service), with `process.pid` and `process.executable.name`.
    #[default]
    Process,
    /// One for the whole host, as kspan's own (`service.name = kspan`).
    Host,
}

/// Every resource kspan sends under, built once at start.
#[derive(Clone, Debug)]
pub struct Resources {
    /// The attributes every resource carries: host, OS, `telemetry.distro.*` and
    /// `OTEL_RESOURCE_ATTRIBUTES` (which win over kspan's own on the same key).
    shared: Vec<KeyValue>,
    /// `service.name` as the user set it (`OTEL_SERVICE_NAME`, else `OTEL_RESOURCE_ATTRIBUTES`):
    /// then it names every resource.
    user_service_name: Option<String>,
    /// `service.instance.id` of this run of kspan.
    instance_id: String,
    per: ResourcePer,
}

impl Resources {
    /// Reads `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`; fails on a variable kspan cannot
    /// read whole, rather than dropping part of it.
    pub fn from_env(
        host: &HostInfo,
        per: ResourcePer,
        instance_id: String,
    ) -> Result<Self, ExportError> {
        let from_env = match env_var("OTEL_RESOURCE_ATTRIBUTES")? {
            Some(list) => parse_resource_attributes(&list)?,
            None => Vec::new(),
        };
        let service_name = env_var("OTEL_SERVICE_NAME")?.filter(|name| !name.trim().is_empty());
        Ok(Self::new(host, per, instance_id, from_env, service_name))
    }

    pub(crate) fn new(
        host: &HostInfo,
        per: ResourcePer,
        instance_id: String,
        from_env: Vec<(String, String)>,
        service_name: Option<String>,
    ) -> Self {
        let mut shared: Vec<(String, String)> = [
            Some((attribute::HOST_NAME, host.host_name.clone())),
            host.host_id.clone().map(|id| (attribute::HOST_ID, id)),
            Some((attribute::HOST_ARCH, host_arch().to_string())),
            Some((attribute::OS_TYPE, "linux".to_string())),
            host.os_name.clone().map(|name| (attribute::OS_NAME, name)),
            Some((attribute::OS_VERSION, host.kernel_release.clone())),
            Some((attribute::TELEMETRY_DISTRO_NAME, KSPAN.to_string())),
            Some((
                attribute::TELEMETRY_DISTRO_VERSION,
                env!("CARGO_PKG_VERSION").to_string(),
            )),
        ]
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
        let mut user_service_name = None;
        for (key, value) in from_env {
            if key == attribute::SERVICE_NAME {
                user_service_name = Some(value);
                continue;
            }
            shared.retain(|(known, _)| *known != key);
            shared.push((key, value));
        }
        Self {
            shared: shared
                .into_iter()
                .map(|(key, value)| string_attribute(&key, value))
                .collect(),
            user_service_name: service_name.or(user_service_name),
            instance_id,
            per,
        }
    }

    /// Which resource calls go under.
    pub fn per(&self) -> ResourcePer {
        self.per
    }

    /// The shared attributes, for the encoder to write before each resource's own.
    pub fn shared(&self) -> &[KeyValue] {
        &self.shared
    }

    /// The service name of a process named `executable`: the user's, if set.
    pub fn service_name<'a>(&'a self, executable: &'a str) -> &'a str {
        self.user_service_name.as_deref().unwrap_or(executable)
    }

    /// kspan's own resource: its health metrics', and every call's with [`ResourcePer::Host`].
    pub fn agent(&self) -> Resource {
        let service = self.user_service_name.as_deref().unwrap_or(KSPAN);
        let mut attributes = vec![
            string_attribute(attribute::SERVICE_NAME, service.to_string()),
            string_attribute(attribute::SERVICE_INSTANCE_ID, self.instance_id.clone()),
        ];
        attributes.extend(self.shared.iter().cloned());
        Resource {
            attributes,
            ..Resource::default()
        }
    }
}

/// `host.arch` as the semantic conventions spell it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm32",
        "powerpc" => "ppc32",
        "powerpc64" => "ppc64",
        other => other,
    }
}

fn string_attribute(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// `key1=value1,key2=value2`, values percent-decoded (the W3C Baggage format the resource
/// specification names, without properties); whitespace around keys and values is trimmed and
/// empty entries are skipped.
fn parse_resource_attributes(list: &str) -> Result<Vec<(String, String)>, ExportError> {
    list.split(',')
        .enumerate()
        .filter(|(_, entry)| !entry.trim().is_empty())
        .map(|(index, entry)| {
            let invalid = |reason| ExportError::InvalidResourceAttribute {
                entry: index + 1,
                reason,
            };
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| invalid("is not key=value"))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(invalid("has an empty key"));
            }
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .map_err(|_| invalid("has a value that does not percent-decode to UTF-8"))?;
            Ok((key.to_string(), value.into_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(list: &str) -> Result<Vec<(String, String)>, String> {
        parse_resource_attributes(list).map_err(|error| error.to_string())
    }

    fn host() -> HostInfo {
        HostInfo {
            host_name: "node-1".into(),
            host_id: Some("0123abcd".into()),
            kernel_release: "6.1.0".into(),
            os_name: Some("Debian GNU/Linux".into()),
        }
    }

    fn strings(resource: &Resource) -> Vec<(String, String)> {
        resource
            .attributes
            .iter()
            .map(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => (kv.key.clone(), s.clone()),
                    other => panic!("{}: {other:?}", kv.key),
                },
            )
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_agent_resource_names_kspan_the_host_and_no_sdk() {
        let resources = Resources::new(&host(), ResourcePer::Process, "id-1".into(), vec![], None);
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            strings(&resources.agent()),
            pairs(&[
                ("service.name", "kspan"),
                ("service.instance.id", "id-1"),
                ("host.name", "node-1"),
                ("host.id", "0123abcd"),
                ("host.arch", host_arch()),
                ("os.type", "linux"),
                ("os.name", "Debian GNU/Linux"),
                ("os.version", "6.1.0"),
                ("telemetry.distro.name", "kspan"),
                ("telemetry.distro.version", version),
            ])
        );
        assert_eq!(resources.service_name("nginx"), "nginx");
    }

    #[test]
    fn a_service_name_the_user_sets_names_every_resource() {
        let from_env = pairs(&[
            ("service.name", "from-attributes"),
            ("host.name", "override"),
        ]);
        let resources = Resources::new(
            &host(),
            ResourcePer::Process,
            "i".into(),
            from_env.clone(),
            None,
        );
        assert_eq!(resources.service_name("nginx"), "from-attributes");
        assert_eq!(strings(&resources.agent())[0].1, "from-attributes");
        let host_names: Vec<_> = strings(&resources.agent())
            .into_iter()
            .filter(|(key, _)| key == "host.name")
            .collect();
        assert_eq!(host_names, pairs(&[("host.name", "override")]));

        // OTEL_SERVICE_NAME wins over OTEL_RESOURCE_ATTRIBUTES, as the SDK specification says.
        let resources = Resources::new(
            &host(),
            ResourcePer::Process,
            "i".into(),
            from_env,
            Some("svc".into()),
        );
        assert_eq!(resources.service_name("nginx"), "svc");
    }

    #[test]
    fn resource_attributes_are_percent_decoded_and_trimmed() {
        let expected = pairs(&[
            ("deployment.environment", "prod west"),
            ("team", "a=b,c"),
            ("empty", ""),
            ("k8s.node", "nöde"),
        ]);
        assert_eq!(
            parsed(
                " deployment.environment = prod%20west ,team=a%3Db%2Cc,,empty=,k8s.node=n%C3%B6de"
            ),
            Ok(expected)
        );
        assert_eq!(parsed(""), Ok(vec![]));
    }

    #[test]
    fn malformed_resource_attributes_are_refused_with_the_entry() {
        let cases = [
            ("a=1,foo", "entry 2 is not key=value"),
            ("=bar", "entry 1 has an empty key"),
            ("a=1, =bar", "entry 2 has an empty key"),
            (
                "a=%FF",
                "entry 1 has a value that does not percent-decode to UTF-8",
            ),
        ];
        for (list, expected) in cases {
            assert_eq!(
                parsed(list),
                Err(format!("malformed OTEL_RESOURCE_ATTRIBUTES: {expected}")),
                "{list}"
            );
        }
    }
}
