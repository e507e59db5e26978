//! Containers and pods on this host, without a container engine: the harness makes cgroups named
//! as containerd, cri-o and docker name them (systemd and cgroupfs drivers) under the v2 mount,
//! runs a workload process in each, and the judge checks every span's `container.id`,
//! `container.runtime.name`, `k8s.pod.uid` (on its resource) and `kspan.cgroup.path` against
//! what the harness made and the workload saw of itself. Then the filters: `--cgroup` and
//! `--container` capture exactly the chosen cgroups' calls, and count the rest as nothing lost.

mod common;

use kspan_e2e::{judge_dir, FakeContainers, Verdict};

/// Each workload: a few masks and errors on one thread, and calls on two more.
const SCENARIOS: &[&str] = &[
    "--scenario",
    "masks",
    "--scenario",
    "errors",
    "--scenario",
    "threads",
    "--threads",
    "2",
    "--calls",
    "5",
];

/// Runs a workload in each of `containers`' cgroups under kspan with `kspan_args`, and judges.
async fn capture(name: &str, containers: &FakeContainers, kspan_args: &[&str]) -> Verdict {
    let workload = containers.workload(SCENARIOS.iter().map(|arg| arg.to_string()).collect());
    let config = common::config(name, workload, kspan_args);
    containers
        .write(&config.out_dir)
        .expect("writing containers.json");
    common::run(&config).await;
    judge_dir(&config.out_dir)
        .unwrap_or_else(|error| panic!("cannot judge {}: {error:#}", config.out_dir.display()))
}

fn fake_containers(name: &str) -> FakeContainers {
    common::require_root();
    FakeContainers::create(name).unwrap_or_else(|error| panic!("making test cgroups: {error:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_span_names_its_container_and_pod() {
    let containers = fake_containers("all");
    let verdict = capture(
        "containers-all",
        &containers,
        &["--cgroup", &containers.root],
    )
    .await;
    let workloads = containers.containers.len();
    assert!(
        verdict.expected >= 20 * workloads,
        "{workloads} workloads made only {} calls",
        verdict.expected
    );
    assert!(verdict.passed(), "{verdict}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_filter_captures_only_that_container() {
    let mut containers = fake_containers("one");
    let chosen = containers.containers[0]
        .container_id
        .clone()
        .expect("the first naming has an id");
    containers.select_only(&chosen);
    // A prefix as `docker ps` shows it, together with a cgroup that does not exist (a warning).
    let missing = format!("{}/no-such-cgroup", containers.root);
    let verdict = capture(
        "containers-one",
        &containers,
        &["--container", &chosen[..12], "--cgroup", &missing],
    )
    .await;
    assert!(verdict.expected >= 20, "only {} calls", verdict.expected);
    assert!(verdict.passed(), "{verdict}");
}

/// The judge must notice a span that names the wrong container: here kspan watches every
/// cgroup while the judge expects only one.
#[tokio::test(flavor = "multi_thread")]
async fn calls_from_other_containers_are_detected() {
    let mut containers = fake_containers("wrong");
    let chosen = containers.containers[1].container_id.clone().unwrap();
    containers.select_only(&chosen);
    let verdict = capture(
        "containers-wrong",
        &containers,
        &["--cgroup", &containers.root],
    )
    .await;
    assert!(!verdict.passed(), "spans from unselected containers passed");
    assert!(
        verdict
            .mismatches
            .iter()
            .any(|m| m.contains("which made no expected call")),
        "{verdict}"
    );
}

/// The run the VM guests make: `--container` and `--cgroup` together select their union.
#[tokio::test(flavor = "multi_thread")]
async fn container_and_cgroup_filters_select_their_union() {
    let mut containers = fake_containers("union");
    let args = containers.filter_args();
    let selected = containers.containers.iter().filter(|c| c.selected).count();
    assert_eq!(selected, 2, "{:?}", containers.containers);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let verdict = capture("containers-union", &containers, &args).await;
    assert!(verdict.expected >= 40, "only {} calls", verdict.expected);
    assert!(verdict.passed(), "{verdict}");
}
