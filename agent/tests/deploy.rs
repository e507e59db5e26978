//! deploy/ against kspan itself: every YAML file parses, every image is pinned to a version,
//! the Collector config has a pipeline for each signal kspan sends, and the kspan containers use
//! only flags kspan has and variables it reads, and name their node.

use std::{
    collections::BTreeSet,
    ffi::OsStr,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use assert_cmd::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every file in deploy/ (recursively) whose name ends in `suffixes`.
fn files(suffixes: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, suffixes: &[&str], found: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|error| panic!("listing {}: {error}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, suffixes, found);
            } else if suffixes
                .iter()
                .any(|suffix| path.to_string_lossy().ends_with(suffix))
            {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&deploy_dir(), suffixes, &mut found);
    found.sort();
    found
}

/// Every YAML document in deploy/, with its file.
fn yaml_documents() -> Vec<(PathBuf, Yaml)> {
    let paths = files(&[".yaml", ".yml"]);
    assert!(!paths.is_empty(), "no YAML file in deploy/");
    paths
        .into_iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
            let documents = YamlLoader::load_from_str(&text)
                .unwrap_or_else(|error| panic!("{} is not valid YAML: {error}", path.display()));
            assert!(!documents.is_empty(), "{} is empty", path.display());
            documents.into_iter().map(move |doc| (path.clone(), doc))
        })
        .collect()
}

/// Every mapping in `node`, depth first.
fn mappings(node: &Yaml) -> Vec<&Yaml> {
    let mut found = Vec::new();
    match node {
        Yaml::Hash(hash) => {
            found.push(node);
            for value in hash.values() {
                found.extend(mappings(value));
            }
        }
        Yaml::Array(items) => items.iter().for_each(|item| found.extend(mappings(item))),
        _ => {}
    }
    found
}

/// Strings of a YAML sequence (none if it is not one).
fn strings(node: &Yaml) -> Vec<&str> {
    node.as_vec()
        .map(|items| items.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

/// Whether an image reference names a version: a digest, or a tag other than `latest`.
fn is_pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    // A registry's port also follows a colon: the tag is after the last path component's.
    let name = image.rsplit('/').next().unwrap_or(image);
    matches!(name.split_once(':'), Some((_, tag)) if !tag.is_empty() && tag != "latest")
}

#[test]
fn every_image_is_pinned_to_a_version() {
    let mut images = Vec::new();
    for (path, doc) in yaml_documents() {
        for mapping in mappings(&doc) {
            if let Some(image) = mapping["image"].as_str() {
                images.push((path.clone(), image.to_string()));
            }
        }
    }
    for path in files(&["Dockerfile"]) {
        let text = std::fs::read_to_string(&path).expect("Dockerfile");
        let mut stages = BTreeSet::new();
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["FROM", image, rest @ ..] = words.as_slice() {
                // `FROM <earlier stage>` names no image.
                if !stages.contains(&image.to_lowercase()) {
                    images.push((path.clone(), image.to_string()));
                }
                if let [as_keyword, stage] = rest {
                    if as_keyword.eq_ignore_ascii_case("as") {
                        stages.insert(stage.to_lowercase());
                    }
                }
            }
        }
    }
    assert!(images.len() >= 4, "too few images found: {images:?}");
    let unpinned: Vec<_> = images
        .iter()
        .filter(|(_, image)| !is_pinned(image))
        .collect();
    assert!(
        unpinned.is_empty(),
        "images without a version (or `latest`): {unpinned:?}"
    );
}

#[test]
fn pinning_is_recognised() {
    assert!(is_pinned("jaegertracing/jaeger:2.1.0"));
    assert!(is_pinned("registry.example.com:5000/kspan:0.1.0"));
    assert!(is_pinned("debian@sha256:0123"));
    assert!(!is_pinned("jaegertracing/jaeger"));
    assert!(!is_pinned("jaegertracing/jaeger:latest"));
    assert!(!is_pinned("registry.example.com:5000/kspan"));
}

/// A Collector without a pipeline for one of kspan's signals refuses it (the bug this catches:
/// health metrics answered UNIMPLEMENTED).
#[test]
fn the_collector_has_a_pipeline_for_every_signal_kspan_sends() {
    let configs: Vec<(PathBuf, Yaml)> = yaml_documents()
        .into_iter()
        .filter(|(_, doc)| !doc["service"]["pipelines"].is_badvalue())
        .collect();
    assert!(!configs.is_empty(), "no Collector config in deploy/");
    for (path, config) in configs {
        let protocols = &config["receivers"]["otlp"]["protocols"];
        for protocol in ["grpc", "http"] {
            assert!(
                !protocols[protocol].is_badvalue(),
                "{}: the otlp receiver does not take {protocol}",
                path.display()
            );
        }
        for signal in ["traces", "logs", "metrics"] {
            let receivers = strings(&config["service"]["pipelines"][signal]["receivers"]);
            assert!(
                receivers.contains(&"otlp"),
                "{}: no `{signal}` pipeline fed by the otlp receiver (receivers: {receivers:?})",
                path.display()
            );
        }
    }
}

/// kspan puts `k8s.pod.uid` on each process's resource; a Collector that adds pod metadata must
/// find the pod by it (the connection's address is kspan's own pod), for spans and log records,
/// and must add the pod's name, namespace and workload.
#[test]
fn k8sattributes_finds_pods_by_the_uid_kspan_sends() {
    let configs: Vec<(PathBuf, Yaml)> = yaml_documents()
        .into_iter()
        .filter(|(_, doc)| !doc["processors"]["k8sattributes"].is_badvalue())
        .collect();
    assert!(
        !configs.is_empty(),
        "no Collector config in deploy/ adds pod metadata (k8sattributes)"
    );
    for (path, config) in configs {
        let processor = &config["processors"]["k8sattributes"];
        assert_eq!(
            processor["passthrough"].as_bool(),
            Some(false),
            "{}: k8sattributes in passthrough mode adds nothing",
            path.display()
        );
        let by_uid = processor["pod_association"]
            .as_vec()
            .into_iter()
            .flatten()
            .flat_map(|rule| rule["sources"].as_vec().cloned().unwrap_or_default())
            .any(|source| {
                source["from"].as_str() == Some("resource_attribute")
                    && source["name"].as_str() == Some("k8s.pod.uid")
            });
        assert!(
            by_uid,
            "{}: k8sattributes does not associate by the resource's k8s.pod.uid",
            path.display()
        );
        let metadata = strings(&processor["extract"]["metadata"]);
        for wanted in ["k8s.pod.name", "k8s.namespace.name", "k8s.deployment.name"] {
            assert!(
                metadata.contains(&wanted),
                "{}: k8sattributes does not add {wanted} (it adds {metadata:?})",
                path.display()
            );
        }
        for signal in ["traces", "logs"] {
            let processors = strings(&config["service"]["pipelines"][signal]["processors"]);
            assert!(
                processors.contains(&"k8sattributes"),
                "{}: the {signal} pipeline does not run k8sattributes ({processors:?})",
                path.display()
            );
        }
    }
}

/// The containers that run kspan, with their file.
fn kspan_containers() -> Vec<(PathBuf, Yaml)> {
    let containers: Vec<(PathBuf, Yaml)> = yaml_documents()
        .into_iter()
        .flat_map(|(path, doc)| {
            mappings(&doc)
                .into_iter()
                .filter(|mapping| {
                    mapping["image"]
                        .as_str()
                        .is_some_and(|image| image.contains("kspan"))
                })
                .map(|container| (path.clone(), container.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!containers.is_empty(), "no kspan container in deploy/");
    containers
}

/// The long options `kspan --help` lists.
fn kspan_flags() -> BTreeSet<String> {
    let help = Command::cargo_bin("kspan")
        .expect("the kspan binary")
        .arg("--help")
        .output()
        .expect("kspan --help");
    assert!(help.status.success(), "kspan --help failed: {help:?}");
    String::from_utf8_lossy(&help.stdout)
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("--"))
        .filter_map(|rest| rest.split([' ', '<', '=', ',']).next())
        .map(|flag| format!("--{flag}"))
        .collect()
}

#[test]
fn kspan_containers_use_only_flags_kspan_has_and_are_ready_by_its_ready_file() {
    let flags = kspan_flags();
    assert!(
        flags.contains("--ready-file") && flags.contains("--attach"),
        "kspan --help lists no usable options: {flags:?}"
    );
    for (path, container) in kspan_containers() {
        let args: Vec<&str> = strings(&container["command"])
            .into_iter()
            .chain(strings(&container["args"]))
            .collect();
        for arg in &args {
            if let Some(flag) = arg.strip_prefix("--") {
                let flag = format!("--{}", flag.split('=').next().unwrap_or(flag));
                assert!(
                    flags.contains(&flag),
                    "{}: kspan has no option {flag} (kspan --help lists {flags:?})",
                    path.display()
                );
            }
        }
        let ready_file = args
            .iter()
            .position(|arg| *arg == "--ready-file")
            .and_then(|at| args.get(at + 1))
            .unwrap_or_else(|| panic!("{}: kspan runs without --ready-file", path.display()));
        let probe = strings(&container["readinessProbe"]["exec"]["command"]);
        assert!(
            probe.contains(ready_file),
            "{}: the readiness probe {probe:?} does not check the ready file {ready_file}",
            path.display()
        );
    }
}

/// A variable kspan reads through its settings is refused, naming it, when its value is not
/// UTF-8 (exit 2, before anything is loaded): a variable kspan ignores would not be.
#[test]
fn kspan_containers_set_only_variables_kspan_reads() {
    let mut checked = 0;
    for (path, container) in kspan_containers() {
        let names: Vec<&str> = container["env"]
            .as_vec()
            .map(|env| env.iter().filter_map(|var| var["name"].as_str()).collect())
            .unwrap_or_default();
        for name in names
            .into_iter()
            .filter(|name| name.starts_with("OTEL_") || name.starts_with("KSPAN_"))
        {
            let output = Command::cargo_bin("kspan")
                .expect("the kspan binary")
                .args(["--exporter", "stdout"])
                .env_clear()
                .env(name, OsStr::from_bytes(b"\xff"))
                .timeout(Duration::from_secs(20))
                .output()
                .expect("running kspan");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.code() == Some(2) && stderr.contains(name),
                "{}: kspan does not read {name} (a value that is not UTF-8 was not refused: {:?}, {stderr})",
                path.display(),
                output.status
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no OTEL_ or KSPAN_ variable in deploy/");
}

/// Spans name the node they were captured on: `k8s.node.name` in OTEL_RESOURCE_ATTRIBUTES,
/// from a variable set earlier from the downward API's `spec.nodeName` (Kubernetes expands
/// `$(VAR)` only from variables above it).
#[test]
fn kspan_containers_name_their_node() {
    for (path, container) in kspan_containers() {
        let env = container["env"].as_vec().cloned().unwrap_or_default();
        let position = |name: &str| {
            env.iter()
                .position(|var| var["name"].as_str() == Some(name))
        };
        let attributes_at = position("OTEL_RESOURCE_ATTRIBUTES")
            .unwrap_or_else(|| panic!("{}: kspan has no OTEL_RESOURCE_ATTRIBUTES", path.display()));
        let attributes = env[attributes_at]["value"].as_str().unwrap_or_default();
        let node_var = attributes
            .split(',')
            .find_map(|entry| entry.trim().strip_prefix("k8s.node.name="))
            .and_then(|value| value.strip_prefix("$(")?.strip_suffix(')'))
            .unwrap_or_else(|| {
                panic!(
                    "{}: OTEL_RESOURCE_ATTRIBUTES `{attributes}` has no k8s.node.name=$(VAR)",
                    path.display()
                )
            });
        let node_at = position(node_var).unwrap_or_else(|| {
            panic!("{}: {node_var} is not set", path.display());
        });
        assert!(
            node_at < attributes_at,
            "{}: {node_var} is set after OTEL_RESOURCE_ATTRIBUTES, which then keeps `$({node_var})` literally",
            path.display()
        );
        assert_eq!(
            env[node_at]["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            Some("spec.nodeName"),
            "{}: {node_var} does not come from the downward API's spec.nodeName",
            path.display()
        );
    }
}
