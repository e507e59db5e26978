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
    capture_wrapped(name, containers, kspan_args, Vec::new()).await
}

/// [`capture`], kspan launched through `wrapper`.
async fn capture_wrapped(
    name: &str,
    containers: &FakeContainers,
    kspan_args: &[&str],
    wrapper: Vec<String>,
) -> Verdict {
    let workload = containers.workload(SCENARIOS.iter().map(|arg| arg.to_string()).collect());
    let mut config = common::config(name, workload, kspan_args);
    config.kspan_wrapper = wrapper;
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

/// kspan in a cgroup namespace of its own, as in a pod on cgroup v2: `mountinfo` then shows the
/// v2 mount's root relative to kspan's cgroup (`/../..`), and the spans must still name every
/// cgroup by its path in the whole hierarchy, with its container and pod.
#[tokio::test(flavor = "multi_thread")]
async fn kspan_in_a_cgroup_namespace_still_names_every_container() {
    let mut containers = fake_containers("cgroupns");
    let agent = containers
        .side_cgroup("agent/kspan")
        .expect("making kspan's cgroup");
    // The shell moves itself into kspan's cgroup, then runs kspan ($0) in a new cgroup namespace
    // rooted there.
    let wrapper = [
        "sh",
        "-c",
        &format!(
            "echo $$ > {}/cgroup.procs && exec unshare --cgroup \"$0\" \"$@\"",
            agent.display()
        ),
    ]
    .map(String::from)
    .to_vec();
    // kspan's own cgroup is outside the ones the filter names.
    let kspan_args: Vec<String> = containers
        .containers
        .iter()
        .flat_map(|c| ["--cgroup".to_string(), c.cgroup_path.clone()])
        .collect();
    let kspan_args: Vec<&str> = kspan_args.iter().map(String::as_str).collect();
    let verdict = capture_wrapped("containers-cgroupns", &containers, &kspan_args, wrapper).await;
    assert!(verdict.expected >= 20 * containers.containers.len());
    assert!(verdict.passed(), "{verdict}");
}
