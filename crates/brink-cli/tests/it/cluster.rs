//! Issue 17: the cluster scripts of `cluster/`, run for real. A one-node Slurm cluster
//! (Debian's slurm-wlm and munge, started by the script and stopped on every exit path)
//! runs the shards as a job array and the merge as a dependent job; the Kubernetes
//! Indexed Job's container command runs once per completion index. Either way the merge
//! must equal a one-machine exploration of the same trace (`cluster/compare.py`).

use std::path::{Path, PathBuf};
use std::process::Command;

use brink_testkit::Need;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Run a cluster test script with this build's brink; its last line says PASS or FAIL.
fn run_script(script: &str, workload: &str) {
    let o = Command::new("bash")
        .arg(repo().join(script))
        .env("BRINK", env!("CARGO_BIN_EXE_brink"))
        .env("WORKLOAD", workload)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    let last = out.lines().last().unwrap_or("");
    assert!(o.status.success() && last.contains(": PASS"), "{script} {workload}:\n{out}\n{err}");
}

#[test]
fn slurm_job_array_and_merge_job_give_the_one_machine_results() {
    let needs = [Need::Root, Need::Fuse, Need::Loop, Need::Program("slurmctld"), Need::Program("munged")];
    if !brink_testkit::can_run("slurm_job_array_and_merge_job_give_the_one_machine_results", &needs) {
        return;
    }
    // One Slurm at a time: both runs use the script's own ports and daemons.
    for workload in ["append-log-fixed", "append-log-buggy"] {
        run_script("cluster/slurm/test-one-node.sh", workload);
    }
    assert!(brink_testkit::processes_with("slurmctld").is_empty(), "slurmctld left running");
}

#[test]
fn kubernetes_indexed_job_command_per_index_gives_the_one_machine_results() {
    if !brink_testkit::can_run("kubernetes_indexed_job_command_per_index_gives_the_one_machine_results", &Need::KERNEL)
    {
        return;
    }
    run_script("cluster/k8s/test-indexed-locally.sh", "append-log-buggy");
}
